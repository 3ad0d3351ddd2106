"""One classification of IP addresses and its four users: the addresses a node may be routed to
(IPv6 forms reduced to the IPv4 they carry, the ranges the policy refuses, loopback and private
only when allowed), the registries only this node reaches, the ranges a replica's traffic never
goes to, and the RPC's operator addresses; and the IP a node registered."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.rpc.client_address import is_local
from orchestrator.addresses import (
    NOT_FOR_REPLICAS_V4,
    AddressClass,
    AddressPolicy,
    canonical_ip,
    classify,
    ip_text,
    private_reason,
    registered_ip,
)
from orchestrator.firewall import BLOCKED_V4

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
STRICT = AddressPolicy(allow_loopback=False, allow_private=False)
LOOPBACK = AddressPolicy(allow_loopback=True, allow_private=False)
PRIVATE = AddressPolicy(allow_loopback=False, allow_private=True)


@pytest.mark.parametrize(
    ("text", "carried"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::ffff:0.0.0.0", "0.0.0.0"),
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible
        ("::a9fe:a9fe", "169.254.169.254"),
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:a9fe:a9fe:1234::5", "169.254.169.254"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
        ("64:ff9b::7f00:1", "127.0.0.1"),
        ("64:ff9b:1:2:3:4:a00:5", "10.0.0.5"),  # NAT64 local-use prefix
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # Teredo (RFC 4380 example)
        ("2001:0:1:2:3:4:80ff:fffe", "127.0.0.1"),
        ("::1", "::1"),  # the IPv6 loopback, not ::0.0.0.1
        ("::", "::"),
        ("2a00:1450::1", "2a00:1450::1"),  # plain IPv6
        ("64:ff9b:2::1", "64:ff9b:2::1"),  # outside both NAT64 prefixes
        ("34.1.0.1", "34.1.0.1"),
    ],
)
def test_embedded_ipv4_forms_are_reduced_to_the_ipv4_they_carry(text: str, carried: str) -> None:
    assert canonical_ip(text) == ipaddress.ip_address(carried)
    assert canonical_ip(ipaddress.ip_address(text)) == ipaddress.ip_address(carried)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("::FFFF:7F00:1", "::ffff:127.0.0.1"),  # Python 3.11 would write ::ffff:7f00:1
        ("::ffff:0:0", "::ffff:0.0.0.0"),
        ("::127.0.0.1", "::7f00:1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("::ffff:1.2.3.4%2", "::ffff:1.2.3.4%2"),
        ("34.1.0.1", "34.1.0.1"),
    ],
)
def test_the_canonical_text_is_rfc_5952_on_every_python(text: str, canonical: str) -> None:
    assert ip_text(ipaddress.ip_address(text)) == canonical


@pytest.mark.parametrize("value", ["fe80::1%eth0", "::ffff:127.0.0.1%1", V6("fe80::1%2")])
def test_a_scoped_address_is_refused(value: str | V6) -> None:
    with pytest.raises(ValueError, match="has an IPv6 scope, which means nothing on another node"):
        canonical_ip(value)
    assert STRICT.check(value) is not None and "scope" in str(STRICT.check(value))


@pytest.mark.parametrize("text", ["localhost", "", "1.2.3", "127.000.000.001", "::ffff:1.2.3.4.5"])
def test_what_is_not_an_ip_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        canonical_ip(text)


ALWAYS = "always refused"

# (address, why the strict policy refuses it, refused even when loopback / private are allowed)
RANGES = [
    ("0.0.0.0", "it is the unspecified address", ALWAYS),
    ("::", "it is the unspecified address", ALWAYS),
    ("0.1.2.3", 'it is in 0.0.0.0/8, "this network"', ALWAYS),
    ("255.255.255.255", "it is the broadcast address", ALWAYS),
    ("224.0.0.1", "it is a multicast address", ALWAYS),
    ("239.255.255.250", "it is a multicast address", ALWAYS),
    ("ff02::1", "it is a multicast address", ALWAYS),
    ("169.254.169.254", "it is a link-local address", ALWAYS),
    ("169.254.0.1", "it is a link-local address", ALWAYS),
    ("fe80::1", "it is a link-local address", ALWAYS),
    ("febf::1", "it is a link-local address", ALWAYS),
    ("192.0.2.1", "it is a documentation address", ALWAYS),
    ("198.51.100.7", "it is a documentation address", ALWAYS),
    ("203.0.113.200", "it is a documentation address", ALWAYS),
    ("2001:db8::1", "it is a documentation address", ALWAYS),
    ("3fff::1", "it is a documentation address", ALWAYS),
    ("240.0.0.1", "it is a reserved address", ALWAYS),
    ("::2:0:0:1", "it is a reserved address", ALWAYS),
    ("4000::1", "it is a reserved address", ALWAYS),
    ("64:ff9b:2::1", "it is a reserved address", ALWAYS),
    ("192.0.0.8", "it is not a global unicast address", ALWAYS),
    ("192.88.99.1", "it is not a global unicast address", ALWAYS),
    ("fec0::1", "it is not a global unicast address", ALWAYS),
    ("100::1", "it is a reserved address", ALWAYS),
    ("2001:2::1", "it is not a global unicast address", ALWAYS),
    ("127.0.0.1", "it is a loopback address", "loopback"),
    ("127.255.0.9", "it is a loopback address", "loopback"),
    ("::1", "it is a loopback address", "loopback"),
    ("10.0.0.5", "it is a private address", "private"),
    ("172.16.0.1", "it is a private address", "private"),
    ("172.31.255.254", "it is a private address", "private"),
    ("192.168.1.1", "it is a private address", "private"),
    ("100.64.0.1", "it is a private address", "private"),
    ("100.127.255.254", "it is a private address", "private"),
    ("198.18.0.1", "it is a private address", "private"),
    ("198.19.255.254", "it is a private address", "private"),
    ("fc00::1", "it is a private address", "private"),
    ("fd12:3456::1", "it is a private address", "private"),
]


@pytest.mark.parametrize(("text", "reason", "unless"), RANGES)
def test_each_range_is_refused_unless_the_policy_allows_it(
    text: str, reason: str, unless: str
) -> None:
    ip = ipaddress.ip_address(text)
    refused = STRICT.check(ip)
    assert refused is not None and refused.startswith(reason)
    assert (LOOPBACK.check(ip) is None) is (unless == "loopback")
    assert (PRIVATE.check(ip) is None) is (unless == "private")
    both = AddressPolicy(allow_loopback=True, allow_private=True)
    assert (both.check(ip) is None) is (unless != ALWAYS)


@pytest.mark.parametrize(
    "text",
    ["34.1.0.1", "1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.32.0.1", "11.0.0.1",
     "192.0.3.1", "198.20.0.1", "2a00:1450::1", "2606:4700::1111", "2002:801:101::",
     "64:ff9b::808:808", "::ffff:8.8.8.8"],
)  # fmt: skip
def test_global_unicast_addresses_are_allowed(text: str) -> None:
    assert STRICT.check(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("::ffff:127.0.0.1", "it carries 127.0.0.1, a loopback address"),
        ("::ffff:169.254.169.254", "it carries 169.254.169.254, a link-local address"),
        ("::ffff:0.0.0.0", "it carries 0.0.0.0, the unspecified address"),
        ("2002:7f00:1::", "it carries 127.0.0.1, a loopback address"),
        ("64:ff9b::a9fe:a9fe", "it carries 169.254.169.254, a link-local address"),
        ("::127.0.0.1", "it carries 127.0.0.1, a loopback address"),
        ("::ffff:10.0.0.5", "it carries 10.0.0.5, a private address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "it carries 192.0.2.45, a documentation"),
    ],
)
def test_embedded_forms_are_judged_by_the_ipv4_they_carry(text: str, reason: str) -> None:
    refused = STRICT.check(text)
    assert refused is not None and refused.startswith(reason)


def test_a_loopback_network_still_refuses_what_is_never_routable() -> None:
    assert LOOPBACK.check("::ffff:127.0.0.1") is None
    assert LOOPBACK.check("2002:7f00:1::") is None
    for text in ("::ffff:169.254.169.254", "::ffff:0.0.0.0", "64:ff9b::a9fe:a9fe", "10.0.0.5"):
        assert LOOPBACK.check(text) is not None


def test_private_addresses_are_allowed_only_with_the_flag() -> None:
    assert STRICT.check("10.0.0.5") == (
        "it is a private address, routed to only when private endpoints are allowed"
    )
    assert PRIVATE.check("10.0.0.5") is None
    assert PRIVATE.check("127.0.0.1") is not None


@pytest.mark.parametrize(
    ("own", "allow_loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("34.1.0.1", False), ("10.0.0.5", False)],
)  # fmt: skip
def test_a_node_allows_loopback_only_when_its_own_address_is(
    own: str, allow_loopback: bool
) -> None:
    policy = AddressPolicy.for_node(own, allow_private=False)
    assert policy == AddressPolicy(allow_loopback=allow_loopback, allow_private=False)


@pytest.mark.parametrize(
    ("address", "ip"),
    [
        (
            b"/ip4/127.0.0.1/tcp/30333/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
            "127.0.0.1",
        ),
        (b"/ip4/34.1.0.1/tcp/30333", "34.1.0.1"),
        (b"/ip6/2a00:1450::1/tcp/30333/p2p/Qm", "2a00:1450::1"),
        (b"/ip6/::ffff:34.1.0.1/tcp/1", "34.1.0.1"),
        (b"/ip6/2002:7f00:1::/tcp/1", "127.0.0.1"),
        (b"/dns4/node.example.com/tcp/30333/p2p/Qm", None),
        (b"/dns6/node.example.com/tcp/30333", None),
        (b"", None),
        (b"/", None),
        (b"/ip4", None),
        (b"/ip4/", None),
        (b"/ip4/2a00:1450::1/tcp/1", None),  # the wrong family for its protocol
        (b"/ip6/34.1.0.1/tcp/1", None),
        (b"/ip4/localhost/tcp/1", None),
        (b"/ip6/fe80::1%eth0/tcp/1", None),
        (b"/ip6zone/eth0/ip6/fe80::1/tcp/1", None),
        (b"ip4/34.1.0.1/tcp/1", None),
        (b"34.1.0.1", None),
        (b"/ip4/34.1.0.1\xff/tcp/1", None),
    ],
)
def test_the_registered_ip_is_the_first_component_of_the_multiaddr(
    address: bytes, ip: str | None
) -> None:
    assert registered_ip(address) == (ipaddress.ip_address(ip) if ip is not None else None)


ipv4s = st.integers(0, 2**32 - 1).map(V4)


@given(ipv4s)
def test_every_embedding_of_an_ipv4_is_judged_as_that_ipv4(ip: V4) -> None:
    n = int(ip)
    forms = [
        V6((0xFFFF << 32) | n),  # mapped
        V6((0x2002 << 112) | (n << 80)),  # 6to4
        V6(int(V6("64:ff9b::")) | n),  # NAT64
        V6(int(V6("64:ff9b:1::")) | n),  # NAT64 local-use
        V6(int(V6("2001::")) | (n ^ 0xFFFF_FFFF)),  # Teredo
    ]
    if n > 1:
        forms.append(V6(n))  # compatible
    for policy in (STRICT, LOOPBACK, PRIVATE):
        for form in forms:
            assert canonical_ip(form) == ip
            assert (policy.check(form) is None) is (policy.check(ip) is None)


@given(st.integers(0, 2**128 - 1).map(V6))
def test_whatever_the_strict_policy_allows_is_global(ip: V6) -> None:
    if STRICT.check(ip) is None:
        plain = canonical_ip(ip)
        assert plain.is_global and not plain.is_private and not plain.is_loopback


C = AddressClass

# (address as given, what it is once reduced, why a registry there is refused, whether the host
# rules drop a replica's IPv4 packets to it, whether an RPC client there is the operator)
ABUSIVE = [
    ("127.0.0.1", C.LOOPBACK, "a loopback address", True, True),
    ("127.0.0.2", C.LOOPBACK, "a loopback address", True, False),  # any program may bind it
    ("::1", C.LOOPBACK, "a loopback address", None, True),
    ("::ffff:127.0.0.1", C.LOOPBACK, "a loopback address", True, True),  # v4-mapped
    ("::127.0.0.1", C.LOOPBACK, "a loopback address", True, False),  # v4-compatible
    ("2002:7f00:1::", C.LOOPBACK, "a loopback address", True, False),  # 6to4
    ("64:ff9b::7f00:1", C.LOOPBACK, "a loopback address", True, False),  # NAT64
    ("2001:0:1:2:3:4:80ff:fffe", C.LOOPBACK, "a loopback address", True, False),  # Teredo
    ("169.254.169.254", C.LINK_LOCAL, "a link-local address", True, False),  # cloud metadata
    ("::ffff:169.254.169.254", C.LINK_LOCAL, "a link-local address", True, False),
    ("::ffff:a9fe:a9fe", C.LINK_LOCAL, "a link-local address", True, False),
    ("64:ff9b::a9fe:a9fe", C.LINK_LOCAL, "a link-local address", True, False),
    ("2002:a9fe:a9fe::", C.LINK_LOCAL, "a link-local address", True, False),
    ("fe80::1", C.LINK_LOCAL, "a link-local address", None, False),
    ("0.0.0.0", C.UNSPECIFIED, "the unspecified address", True, False),
    ("::", C.UNSPECIFIED, "the unspecified address", None, False),
    ("::ffff:0.0.0.0", C.UNSPECIFIED, "the unspecified address", True, False),
    ("0.1.2.3", C.THIS_NETWORK, "the unspecified address", True, False),
    ("10.0.0.5", C.PRIVATE, "a private address", True, False),
    ("::ffff:10.0.0.5", C.PRIVATE, "a private address", True, False),
    ("172.31.255.254", C.PRIVATE, "a private address", True, False),
    ("192.168.1.1", C.PRIVATE, "a private address", True, False),
    ("100.64.0.1", C.PRIVATE, "a private address", True, False),  # carrier-grade NAT
    ("198.18.0.1", C.PRIVATE, "a private address", True, False),  # benchmarking, in labs
    ("fd12:3456::1", C.PRIVATE, "a private address", None, False),  # unique local
    ("fc00::1", C.PRIVATE, "a private address", None, False),
    ("224.0.0.1", C.MULTICAST, None, True, False),
    ("::ffff:239.255.255.250", C.MULTICAST, None, True, False),
    ("ff02::1", C.MULTICAST, None, None, False),
    ("255.255.255.255", C.BROADCAST, None, True, False),
    ("240.0.0.1", C.RESERVED, None, True, False),
    ("192.0.0.8", C.NOT_GLOBAL, None, True, False),
    ("192.0.2.1", C.DOCUMENTATION, None, False, False),  # routed nowhere, left to the world
    ("8.8.8.8", C.GLOBAL, None, False, False),
    ("::ffff:8.8.8.8", C.GLOBAL, None, False, False),
    ("2606:4700::1111", C.GLOBAL, None, None, False),
]


@pytest.mark.parametrize(("text", "kind", "registry", "dropped", "operator"), ABUSIVE)
def test_one_classification_decides_for_every_user_of_addresses(
    text: str, kind: AddressClass, registry: str | None, dropped: bool | None, operator: bool
) -> None:
    plain = canonical_ip(text)
    assert classify(plain) is kind
    # A node routes only to global unicast addresses (loopback and private when allowed).
    assert (STRICT.check(text) is None) is (kind is C.GLOBAL)
    if kind is not C.GLOBAL:
        assert kind.words in str(STRICT.check(text))
    # A tenant's image never comes from a registry only this node reaches.
    assert private_reason(text) == registry
    # A replica never reaches this host, the link, or the operator's networks (and no IPv6 at
    # all: workload networks have none, `rules_v6` drops it).
    if dropped is None:
        assert plain.version == 6
    else:
        assert any(plain in net for net in NOT_FOR_REPLICAS_V4) is dropped
    # Only the exact addresses the operator's tools call from are the operator's: never a
    # wrapped form a dual-stack socket would not report for an IPv4 peer.
    assert is_local(text) is operator


def test_a_scoped_address_is_judged_by_the_address_for_a_registry_and_refused_for_a_peer() -> None:
    assert private_reason("fe80::1%eth0") == "a link-local address"
    assert "scope" in str(STRICT.check("fe80::1%eth0"))
    assert is_local("::1%lo") is True


def test_the_host_rules_drop_what_the_classification_names() -> None:
    assert BLOCKED_V4 == tuple(str(net) for net in NOT_FOR_REPLICAS_V4)
    assert "169.254.0.0/16" in BLOCKED_V4 and "127.0.0.0/8" in BLOCKED_V4


NEVER_FROM_A_REPLICA = {
    C.UNSPECIFIED, C.THIS_NETWORK, C.BROADCAST, C.MULTICAST, C.LINK_LOCAL, C.LOOPBACK,
    C.PRIVATE, C.RESERVED,
}  # fmt: skip


@given(ipv4s)
def test_a_replica_reaches_every_global_ipv4_and_none_of_the_local_ones(ip: V4) -> None:
    dropped = any(ip in net for net in NOT_FOR_REPLICAS_V4)
    kind = classify(ip)
    if kind in NEVER_FROM_A_REPLICA:
        assert dropped
    if kind is C.GLOBAL:
        assert not dropped
    assert (private_reason(str(ip)) is not None) is (
        kind in {C.UNSPECIFIED, C.THIS_NETWORK, C.LOOPBACK, C.LINK_LOCAL, C.PRIVATE}
    )
