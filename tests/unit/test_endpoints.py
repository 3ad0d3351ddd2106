"""Endpoint advertisements (signed, strict decoding, newest wins, lapse), which of them peers take
(only at the IP the node registered, only where the address policy routes), and the ingress routes
built from them and the chain state (only what the chain placed on the advertising node)."""

from __future__ import annotations

import collections
import ipaddress
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import codec
from chain.blocks import Header
from chain.broadcast import Broadcast
from chain.keys import Keypair
from chain.runtime import apps
from chain.wire import WireError
from orchestrator.addresses import canonical_ip, ip_text, registered_ip
from orchestrator.endpoints import (
    MAX_CLOCK_AHEAD_MS,
    AdvertBook,
    Advertisement,
    EndpointService,
    NodeEndpoint,
    ReadyReplica,
    build_routes,
    decode_advertisement,
    node_ip,
)
from orchestrator.ingress import Backend, Route
from orchestrator.manifest_cache import ManifestCache
from p2p.gossip import GossipMessage, Verdict
from p2p.identity import PeerId
from testkit.trio_clock import TrioClock
from tests.factories import ALICE, BOB
from tests.unit.test_apps import CREATE, DELETE, active_chain, named, web
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain, registration, tower_spec
from tests.unit.test_workloads import FinalizedStore

NOW_MS = 1_800_000_000_000
STRANGER = Keypair.from_seed(bytes(range(32)))
PEER = PeerId("12D3KooWpeer")
INGRESS_PORT = 8080


def advert(
    who: Keypair = NODE_KEYS[0],
    issued: int = NOW_MS,
    address: str = "127.0.0.1",
    *ready: object,
    port: int = INGRESS_PORT,
) -> Advertisement:
    """Signed by `who`, its address in canonical form."""
    entries = ready or (ReadyReplica("web", 1, 0),)
    text = ip_text(ipaddress.ip_address(address))
    return Advertisement.signed(who, issued, text, port, entries)  # type: ignore[arg-type]


def test_an_advertisement_round_trips_and_is_signed_by_its_node() -> None:
    sent = advert(
        NODE_KEYS[0], NOW_MS, "2001:db8::1", ReadyReplica("b", 2, 1), ReadyReplica("a", 1, 0),
        port=65535,
    )  # fmt: skip
    got = decode_advertisement(sent.encode())
    assert got == sent and got.verify() and got.ingress_port == 65535
    assert [r.app for r in got.ready] == ["a", "b"]  # sorted: equal sets give equal bytes
    forged = Advertisement(
        sent.node_id, sent.issued_ms + 1, sent.address, sent.ingress_port, sent.ready,
        sent.signature,
    )  # fmt: skip
    assert not forged.verify()
    moved = Advertisement(
        sent.node_id, sent.issued_ms, sent.address, 8081, sent.ready, sent.signature
    )
    assert not moved.verify()
    other = Advertisement(
        STRANGER.public, sent.issued_ms, sent.address, sent.ingress_port, sent.ready,
        sent.signature,
    )  # fmt: skip
    assert not other.verify()


def body(*fields: object) -> bytes:
    return codec.encode([codec.encode(list(fields)), bytes(64)])  # type: ignore[arg-type]


P = b"\x1f\x90"  # 8080


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc0", "an advertisement is [body, signature]"),
        (body(bytes(32), b"\x01", b"10.0.0.1", P), "[node id, issued, address, ingress port, "),
        (body(bytes(32), b"\x01", b"10.0.0.1", []), "[node id, issued, address, ingress port, "),
        (body(bytes(31), b"\x01", b"10.0.0.1", P, []), "a node id is 32 bytes"),
        (body(bytes(32), b"\x01", b"localhost", P, []), "is not an IP address"),
        (body(bytes(32), b"\x01", b"fe80::1%x", P, []), "is not an IP address"),
        (body(bytes(32), b"\x01", b"2001:DB8::1", P, []), "not in canonical form"),
        (body(bytes(32), b"\x01", b"::FFFF:127.0.0.1", P, []), "not in canonical form"),
        (body(bytes(32), b"\x01", b"::ffff:7f00:1", P, []), "not in canonical form"),  # RFC 5952 5
        (body(bytes(32), b"\x01", b"10.0.0.1", b"", []), "ingress port 0 is not 1 to 65535"),
        (body(bytes(32), b"\x01", b"10.0.0.1", b"\x01\x00\x00", []), "65536 is not 1 to 65535"),
        (body(bytes(32), b"\x01", b"10.0.0.1", b"\x00\x50", []), "not an advertisement"),
        (body(bytes(32), b"\x01", b"10.0.0.1", [], []), "not an advertisement"),
        (body(bytes(32), b"\x01", b"10.0.0.1", P, [[b"", b"\x01", b""]]), "1 to 253 bytes"),
        (body(bytes(32), b"\x01", b"10.0.0.1", P, [[b"w", b"\x01"]]), "[app, revision, replica]"),
        (body(bytes(32), b"\x00\x01", b"10.0.0.1", P, []), "not an advertisement"),
        (body(bytes(32), b"\x01", b"10.0.0.1", P, [[b"w", b"\x01", b""]] * 4097), "more than 4096"),
    ],
)
def test_malformed_advertisements_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=re.escape(message)):
        decode_advertisement(data)


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("::ffff:169.254.169.254", "::ffff:169.254.169.254"),
        ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
        ("::127.0.0.1", "::7f00:1"),
        ("2002:7f00:1::", "2002:7f00:1::"),
        ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe"),
        ("0.0.0.0", "0.0.0.0"),
    ],
)
def test_embedded_and_refused_addresses_decode_for_the_policy_to_judge(
    address: str, canonical: str
) -> None:
    sent = advert(NODE_KEYS[0], NOW_MS, address)
    assert sent.address == canonical and decode_advertisement(sent.encode()) == sent


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    try:
        decode_advertisement(data)
    except WireError:
        pass


def test_the_newest_advertisement_wins_and_lapses() -> None:
    book = AdvertBook(ttl_seconds=30)
    first, second = advert(issued=NOW_MS), advert(issued=NOW_MS + 1)
    assert book.offer(second, now=100.0)
    version = book.version
    assert not book.offer(first, now=101.0) and book.fresh() == [second]
    assert book.offer(advert(issued=NOW_MS + 2), now=110.0)
    assert book.version == version  # same replicas, address and port: routes need no rebuild
    book.expire(now=139.0)
    assert len(book.fresh()) == 1
    book.expire(now=140.5)
    assert book.fresh() == [] and book.version == version + 1
    assert book.offer(advert(issued=NOW_MS + 3), now=141.0)
    assert book.offer(advert(issued=NOW_MS + 4, port=8081), now=142.0)
    assert book.version == version + 3  # back, then on another ingress port


def placed_chain():  # type: ignore[no-untyped-def]
    """Three active nodes (registered at /ip4/127.0.0.1); `web` (ingress web.statemesh.internal,
    / -> service port 80 -> container port 8080) with one replica on each."""
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(3)))
    return chain


def test_routes_hold_only_ready_replicas_placed_on_the_advertising_node() -> None:
    chain = placed_chain()
    placement = {e.node: e for e in apps.placement(chain.state, "web")}
    by_key = {k.public: k for k in NODE_KEYS}
    (n0, e0), (n1, e1), (n2, _) = sorted(placement.items())
    ready = {
        n0: NodeEndpoint("10.0.0.1", frozenset({ReadyReplica("web", 1, e0.index)}), 8080),
        # n1 claims its own replica and n0's: only its own is routed.
        n1: NodeEndpoint(
            "10.0.0.2",
            frozenset({ReadyReplica("web", 1, e1.index), ReadyReplica("web", 1, e0.index)}),
            8081,
        ),
        n2: NodeEndpoint("10.0.0.3", frozenset(), 8080),  # running, not ready
    }
    assert n0 in by_key
    # Seen from n0: its own replica at its pod's address and the service's target port; n1's
    # through n1's ingress proxy.
    pods = {ReadyReplica("web", 1, e0.index): "172.18.0.2"}
    table = build_routes(chain.state, ManifestCache(), ready, n0, pods)
    assert table.hosts == {
        "web.statemesh.internal": (
            Route(
                "web",
                "/",
                (
                    Backend("10.0.0.2", 8081, "10.0.0.2", relay=True),
                    Backend("172.18.0.2", 8080, "10.0.0.1"),
                ),
            ),
        )
    }
    assert table.addresses("web.statemesh.internal") == ("10.0.0.1", "10.0.0.2")
    # A ready replica of this node whose pod has no address yet is not routed.
    assert build_routes(chain.state, ManifestCache(), ready, n0, {}).hosts[
        "web.statemesh.internal"
    ] == (Route("web", "/", (Backend("10.0.0.2", 8081, "10.0.0.2", relay=True),)),)
    # A node that serves no ingress (port 0) cannot be relayed to.
    quiet = {**ready, n1: ready[n1]._replace(ingress_port=0)}
    assert build_routes(chain.state, ManifestCache(), quiet, n0, pods).hosts[
        "web.statemesh.internal"
    ] == (Route("web", "/", (Backend("172.18.0.2", 8080, "10.0.0.1"),)),)
    stale = {n0: NodeEndpoint("10.0.0.1", frozenset({ReadyReplica("web", 7, e0.index)}), 8080)}
    assert build_routes(chain.state, ManifestCache(), stale, n0, pods).hosts[
        "web.statemesh.internal"
    ] == (Route("web", "/", ()),)


class Clock:
    """Wall-clock time stays at NOW_MS; the monotonic reading is what the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def now_ms(self) -> int:
        return NOW_MS

    def monotonic(self) -> float:
        return self.now


@dataclass
class FinalizedLedger:
    """What the endpoint service reads of a ledger: `chain` as finalized, a feed of finalized
    heads the test publishes to, and a clock."""

    chain: TowerChain
    clock: Clock | TrioClock
    finalized_heads: Broadcast[Header] = field(default_factory=Broadcast)

    @property
    def store(self) -> FinalizedStore:
        return FinalizedStore(self.chain)


def service(  # type: ignore[no-untyped-def]
    chain,
    address: str = "127.0.0.1",
    clock: Clock | TrioClock | None = None,
    *,
    identity: Keypair = NODE_KEYS[3],
    port: int = INGRESS_PORT,
    allow_private: bool = False,
    workloads: object = None,
) -> EndpointService:
    return EndpointService(
        FinalizedLedger(chain, clock or Clock()),  # type: ignore[arg-type]
        identity,
        address,
        port,
        workloads,  # type: ignore[arg-type]
        allow_private=allow_private,
        ttl_seconds=30,
    )


def test_gossiped_advertisements_are_judged_before_relay() -> None:
    chain = placed_chain()
    clock = Clock()
    endpoints = service(chain, clock=clock)
    check = endpoints._check
    good = advert(NODE_KEYS[0], NOW_MS)
    assert check(PEER, good.encode()) is Verdict.ACCEPT
    assert check(PEER, b"junk") is Verdict.REJECT
    tampered = bytearray(good.encode())
    tampered[-1] ^= 1
    assert check(PEER, bytes(tampered)) is Verdict.REJECT
    # Not blamed: an unregistered node (perhaps not finalized here yet), clocks, our own.
    for ignored in (
        advert(STRANGER, NOW_MS),
        advert(NODE_KEYS[0], NOW_MS + MAX_CLOCK_AHEAD_MS + 1),
        advert(NODE_KEYS[0], NOW_MS - 31_000),
        advert(NODE_KEYS[3], NOW_MS),
    ):
        assert check(PEER, ignored.encode()) is Verdict.IGNORE
    endpoints.book.offer(good, now=clock.now)
    assert check(PEER, good.encode()) is Verdict.IGNORE
    # A node's next advertisement is taken, but not a burst of them.
    soon, next_one = advert(NODE_KEYS[0], NOW_MS + 99), advert(NODE_KEYS[0], NOW_MS + 100)
    assert check(PEER, soon.encode()) is Verdict.IGNORE
    assert check(PEER, next_one.encode()) is Verdict.ACCEPT


def test_loopback_addresses_are_taken_only_among_loopback_nodes() -> None:
    chain = placed_chain()  # every node registered at /ip4/127.0.0.1
    on_loopback, on_the_internet = service(chain, "127.0.0.1"), service(chain, "34.1.0.99")
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "2002:7f00:1::"):
        local = advert(NODE_KEYS[0], NOW_MS, address).encode()
        # Only as itself, never wrapped in another form.
        expected = Verdict.ACCEPT if address == "127.0.0.1" else Verdict.REJECT
        assert on_loopback._check(PEER, local) is expected
        # It would send this node's own traffic to itself.
        assert on_the_internet._check(PEER, local) is Verdict.REJECT
    # Even among loopback nodes: never what no peer can be reached at, nor another loopback IP.
    for address in ("::ffff:169.254.169.254", "::ffff:0.0.0.0", "64:ff9b::a9fe:a9fe", "127.0.0.2"):
        refused = advert(NODE_KEYS[0], NOW_MS, address).encode()
        assert on_loopback._check(PEER, refused) is Verdict.REJECT
    for bad in ("0.0.0.0", "fe80::1", "224.0.0.1"):
        with pytest.raises(ValueError, match="cannot be dialled"):
            node_ip(bad)
    with pytest.raises(ValueError, match="scope"):
        node_ip("fe80::1%eth0")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0", "0.0.0.0 cannot be dialled by another node: it is the unspecified address"),
        ("10.0.0.5", "10.0.0.5 cannot be dialled by another node: it is a private address"),
        ("100.64.0.1", "it is a private address"),
        ("::ffff:169.254.169.254", "it carries 169.254.169.254, a link-local address"),
        ("::ffff:0.0.0.0", "it carries 0.0.0.0, the unspecified address"),
        ("64:ff9b::a9fe:a9fe", "it carries 169.254.169.254, a link-local address"),
        ("192.0.2.1", "it is a documentation address"),
        ("ff02::1", "it is a multicast address"),
        ("fe80::1%eth0", "'fe80::1%eth0' has an IPv6 scope"),
        ("localhost", "'localhost' does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_a_node_does_not_start_at_an_address_its_peers_refuse(address: str, message: str) -> None:
    chain = placed_chain()
    with pytest.raises(ValueError, match=re.escape(message)):
        service(chain, address)


def test_a_private_node_address_needs_the_flag_and_the_ingress_port_a_port() -> None:
    chain = placed_chain()
    assert service(chain, "10.0.0.5", allow_private=True).address == "10.0.0.5"
    assert service(chain, "::ffff:127.0.0.1").policy.allow_loopback
    for port in (-1, 65536):
        with pytest.raises(ValueError, match=f"ingress port {port} is not 0 to 65535"):
            service(chain, port=port)


def registered_chain(*addresses: str) -> TowerChain:
    """NODE_KEYS[i] registered (standby) at the multiaddr `addresses[i]`."""
    chain = TowerChain(tower_spec())
    for i, address in enumerate(addresses):
        chain.send(OPERATORS[i], registration(i, OPERATORS[i], address=address))
    return chain


GLOBAL = "/ip4/34.1.0.1/tcp/30333/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
A, R = Verdict.ACCEPT, Verdict.REJECT


@pytest.mark.parametrize(
    ("registered", "advertised", "own", "verdict"),
    [
        # Its own address, as itself; wrapped in an IPv6 form it only serves to slip past checks.
        (GLOBAL, "34.1.0.1", "34.1.0.99", A),
        (GLOBAL, "::ffff:34.1.0.1", "34.1.0.99", R),
        (GLOBAL, "2002:2201:1::", "34.1.0.99", R),
        ("/ip6/2a00:1450::1/tcp/30333", "2a00:1450::1", "34.1.0.99", A),
        ("/ip6/2a00:1450::1/tcp/30333", "2a00:1450::1", "2a00:1450::99", A),
        ("/ip4/127.0.0.1/tcp/30333", "127.0.0.1", "127.0.0.1", A),
        # Forged: a global address that is not the one it registered.
        (GLOBAL, "34.1.0.2", "34.1.0.99", R),
        (GLOBAL, "34.1.0.99", "34.1.0.99", R),  # this node's own
        (GLOBAL, "2a00:1450::1", "34.1.0.99", R),
        (GLOBAL, "::ffff:34.1.0.2", "34.1.0.99", R),
        ("/ip6/2a00:1450::1/tcp/30333", "2a00:1450::2", "34.1.0.99", R),
        # Registered without an IP address.
        ("/dns4/node.example.com/tcp/30333", "34.1.0.1", "34.1.0.99", R),
        ("", "34.1.0.1", "34.1.0.99", R),
        ("/ip4/localhost/tcp/1", "34.1.0.1", "34.1.0.99", R),
        # Registered there, but this node does not route there.
        ("/ip4/10.0.0.5/tcp/30333", "10.0.0.5", "34.1.0.99", R),
        ("/ip4/127.0.0.1/tcp/30333", "127.0.0.1", "34.1.0.99", R),
        ("/ip4/127.0.0.1/tcp/30333", "::ffff:127.0.0.1", "34.1.0.99", R),
        ("/ip4/169.254.169.254/tcp/30333", "169.254.169.254", "127.0.0.1", R),
    ],
)
def test_a_node_is_taken_only_at_the_ip_it_registered(
    registered: str, advertised: str, own: str, verdict: Verdict
) -> None:
    chain = registered_chain(registered)
    sent = advert(NODE_KEYS[0], NOW_MS, advertised).encode()
    assert service(chain, own)._check(PEER, sent) is verdict


def test_private_addresses_are_taken_only_with_the_flag() -> None:
    chain = registered_chain("/ip4/10.0.0.5/tcp/30333", "/ip6/fd00::5/tcp/30333")
    for who, address in ((NODE_KEYS[0], "10.0.0.5"), (NODE_KEYS[1], "fd00::5")):
        sent = advert(who, NOW_MS, address).encode()
        assert service(chain, "34.1.0.99")._check(PEER, sent) is Verdict.REJECT
        private = service(chain, "10.0.0.99", allow_private=True)
        assert private._check(PEER, sent) is Verdict.ACCEPT
        assert private._check(PEER, advert(who, NOW_MS, "10.0.0.6").encode()) is Verdict.REJECT


class TopicFake:
    """The endpoints topic as `p2p.gossip.Gossip` runs it for the service: the validator judges
    each arrival; only what it accepts reaches the subscriber and is relayed to peers, and a
    REJECT scores the forwarding peer down."""

    def __init__(self) -> None:
        self.validator = None
        self._send, self._inbox = trio.open_memory_channel[GossipMessage](1000)
        self.relayed: list[bytes] = []
        self.penalized: list[PeerId] = []
        self.published: list[bytes] = []

    def subscribe(self, name, validator):  # type: ignore[no-untyped-def]
        assert name == "endpoints"
        self.validator = validator
        return self._inbox

    async def publish(self, name: str, data: bytes) -> None:
        self.published.append(data)

    async def drain(self) -> None:
        pass

    def arrive(self, data: bytes, peer: PeerId = PEER) -> Verdict:
        assert self.validator is not None
        verdict: Verdict = self.validator(peer, data)
        if verdict is Verdict.ACCEPT:
            self.relayed.append(data)
            self._send.send_nowait(GossipMessage("endpoints", peer, data))
        elif verdict is Verdict.REJECT:
            self.penalized.append(peer)
        return verdict

    def close(self) -> None:
        self._send.close()


REFUSED_EVERYWHERE = [
    "::ffff:169.254.169.254", "::ffff:0.0.0.0", "64:ff9b::a9fe:a9fe", "169.254.169.254",
    "0.0.0.0", "0.1.2.3", "224.0.0.1", "ff02::1", "fe80::1", "255.255.255.255", "240.0.0.1",
    "192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1", "192.0.0.8", "fec0::1",
]  # fmt: skip
REFUSED_HERE = [
    "127.0.0.1", "::1", "::ffff:127.0.0.1", "2002:7f00:1::", "::127.0.0.1", "10.0.0.5",
    "172.16.0.1", "192.168.1.1", "100.64.0.1", "198.18.0.1", "fd00::1",
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED_EVERYWHERE + REFUSED_HERE)
def test_a_disallowed_address_is_rejected_even_where_the_node_registered_it(address: str) -> None:
    family = "ip6" if ":" in address else "ip4"
    chain = registered_chain(f"/{family}/{address}/tcp/30333")
    assert registered_ip(f"/{family}/{address}/tcp/30333".encode()) == canonical_ip(address)
    sent = advert(NODE_KEYS[0], NOW_MS, address).encode()
    assert service(chain, "34.1.0.99")._check(PEER, sent) is Verdict.REJECT
    if address in REFUSED_EVERYWHERE:
        assert service(chain, "127.0.0.1")._check(PEER, sent) is Verdict.REJECT
        private = service(chain, "10.0.0.99", allow_private=True)
        assert private._check(PEER, sent) is Verdict.REJECT


def test_only_the_genuine_advertisement_is_taken_and_relayed() -> None:
    chain = registered_chain(GLOBAL)
    endpoints = service(chain, "34.1.0.99")
    topic = TopicFake()
    endpoints.register(topic)  # type: ignore[arg-type]
    genuine = advert(NODE_KEYS[0], NOW_MS, "34.1.0.1")
    assert topic.arrive(genuine.encode()) is Verdict.ACCEPT
    bad = ["34.1.0.2", "2a00:1450::1", *REFUSED_EVERYWHERE, *REFUSED_HERE]
    # Newer than the genuine one: had any got through, the book would hold it instead.
    for n, address in enumerate(bad, start=1):
        assert topic.arrive(advert(NODE_KEYS[0], NOW_MS + n, address).encode()) is Verdict.REJECT
    topic.close()
    trio.run(endpoints._receive)
    assert endpoints.book.fresh() == [genuine]
    assert topic.relayed == [genuine.encode()] and topic.penalized == [PEER] * len(bad)
    assert endpoints.ready_by_node()[NODE_KEYS[0].public] == NodeEndpoint(
        "34.1.0.1", frozenset(genuine.ready), INGRESS_PORT
    )


Key = collections.namedtuple("Key", "app replica")


class ReadyController:
    """A workload controller whose replicas are all ready and never change."""

    def __init__(self, *ready: ReadyReplica) -> None:
        self._status = {
            Key(r.app, r.replica): SimpleNamespace(
                revision=r.revision, ready=True, address=f"172.18.0.{r.replica + 2}"
            )
            for r in ready
        }

    def status(self) -> dict[Key, SimpleNamespace]:
        return self._status

    async def changed(self) -> None:
        await trio.sleep_forever()


def advertised(endpoints: EndpointService, seconds: float = 25.0) -> list[Advertisement]:
    """What the service publishes in `seconds` (of a mock clock)."""
    topic = TopicFake()
    endpoints.register(topic)  # type: ignore[arg-type]

    async def main() -> None:
        with trio.move_on_after(seconds):
            await endpoints._advertise()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return [decode_advertisement(data) for data in topic.published]


def test_a_node_advertises_its_address_and_ingress_port() -> None:
    chain = registered_chain(GLOBAL)
    replica = ReadyReplica("web", 1, 0)
    workloads = SimpleNamespace(controller=ReadyController(replica))
    endpoints = service(chain, "34.1.0.1", identity=NODE_KEYS[0], workloads=workloads)
    sent = advertised(endpoints)
    assert len(sent) == 3  # at once, then every refresh
    assert {(a.address, a.ingress_port, a.ready) for a in sent} == {
        ("34.1.0.1", INGRESS_PORT, (replica,))
    }
    peer = service(chain, "34.1.0.99")
    assert peer._check(PEER, sent[0].encode()) is Verdict.ACCEPT


def test_a_node_without_ingress_advertises_nothing_but_knows_its_replicas() -> None:
    chain = registered_chain(GLOBAL)
    replica = ReadyReplica("web", 1, 0)
    workloads = SimpleNamespace(controller=ReadyController(replica))
    endpoints = service(chain, "34.1.0.1", identity=NODE_KEYS[0], port=0, workloads=workloads)
    assert advertised(endpoints) == []
    assert endpoints.ready_by_node()[NODE_KEYS[0].public] == NodeEndpoint(
        "34.1.0.1", frozenset({replica}), 0
    )


def test_a_node_does_not_advertise_an_address_it_did_not_register(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = registered_chain(GLOBAL, "/dns4/node.example.com/tcp/30333")
    workloads = SimpleNamespace(controller=ReadyController(ReadyReplica("web", 1, 0)))
    # Its peers would reject every advertisement and soon ban it.
    elsewhere = service(chain, "34.1.0.2", identity=NODE_KEYS[0], workloads=workloads)
    with caplog.at_level("WARNING", logger="statemesh.endpoints"):
        assert advertised(elsewhere) == []
    assert [r.getMessage() for r in caplog.records] == [
        "not advertising this node's replicas at 34.1.0.2: peers refuse it, it registered "
        "34.1.0.1 (they route to a node only at the IP of the address it registered)"
    ]
    unnamed = service(chain, "34.1.0.2", identity=NODE_KEYS[1], workloads=workloads)
    assert advertised(unnamed) == []
    # Not registered (in finalized state) yet: peers ignore it without blame.
    newcomer = service(chain, "34.1.0.2", identity=NODE_KEYS[2], workloads=workloads)
    assert len(advertised(newcomer)) == 3


def test_an_advertisement_cannot_be_replayed_after_it_lapsed() -> None:
    book = AdvertBook(ttl_seconds=30)
    ready, later = advert(issued=NOW_MS), advert(NODE_KEYS[0], NOW_MS + 1, "10.0.0.2")
    assert book.offer(ready, now=0.0) and book.offer(later, now=1.0)
    book.expire(now=40.0)
    assert book.fresh() == [] and not book.newer(ready)


def test_the_route_table_follows_advertisements() -> None:
    chain = placed_chain()
    endpoints = service(chain)
    entry = next(e for e in apps.placement(chain.state, "web") if e.node == NODE_KEYS[0].public)
    assert endpoints.routes().hosts["web.statemesh.internal"][0].backends == ()
    assert endpoints.lookup("web.statemesh.internal") == ()
    assert endpoints.lookup("nope.statemesh.internal") is None
    assert endpoints.has_below("statemesh.internal") and not endpoints.has_below(
        "web.statemesh.internal"
    )
    endpoints.book.offer(
        advert(NODE_KEYS[0], NOW_MS, "93.184.216.34", ReadyReplica("web", 1, entry.index)), now=0.0
    )
    assert endpoints.routes().hosts["web.statemesh.internal"][0].backends == ()  # as last built
    endpoints.refresh()
    # The advertising node's own proxy (the advert's ingress port) serves its replica.
    relay = Backend("93.184.216.34", 8080, "93.184.216.34", relay=True)
    assert endpoints.routes().hosts["web.statemesh.internal"][0].backends == (relay,)
    assert endpoints.lookup("web.statemesh.internal") == ("93.184.216.34",)
    assert endpoints.may_dial(relay)
    # Nothing else is dialled: not another port of that node, not a pod this node does not run.
    assert not endpoints.may_dial(Backend("93.184.216.34", 9944, "93.184.216.34", relay=True))
    assert not endpoints.may_dial(Backend("172.18.0.9", 8080, endpoints.address))
    assert not endpoints.may_dial(Backend("169.254.169.254", 80, "169.254.169.254", relay=True))


def test_a_name_deleted_and_created_again_is_read_afresh() -> None:
    chain = placed_chain()
    cache = ManifestCache()
    first = cache.get(chain.state, "web", 1)
    assert first is not None and first.spec.ingress is not None
    chain.send(ALICE, DELETE.call(app="web"))
    chain.send(BOB, CREATE.call(manifest=named("web", "shop.statemesh.internal")))
    again = cache.get(chain.state, "web", 1)
    assert again is not None and again.spec.ingress is not None
    assert again.spec.ingress.host == "shop.statemesh.internal"
    assert list(build_routes(chain.state, cache, {}, b"", {}).hosts) == ["shop.statemesh.internal"]


@pytest.mark.parametrize("wrapped", ["::ffff:127.0.0.1", "2002:7f00:1::", "::127.0.0.1"])
def test_on_a_loopback_network_a_wrapped_loopback_address_is_refused_too(wrapped: str) -> None:
    assert node_ip("::ffff:127.0.0.1") == "127.0.0.1"
    chain = registered_chain("/ip4/127.0.0.1/tcp/30333")
    endpoints = service(chain, address="127.0.0.1")
    forged = advert(NODE_KEYS[0], NOW_MS, wrapped)
    assert endpoints._judge(forged) is Verdict.REJECT
    assert endpoints._judge(advert(NODE_KEYS[0], NOW_MS, "127.0.0.1")) is Verdict.ACCEPT


def test_the_routes_follow_finalized_blocks_and_lapses_without_polling() -> None:
    """The service rebuilds its routes when the ledger finalizes a block and when an
    advertisement lapses; in between, nothing is read (an hour of quiet rebuilds nothing)."""
    chain = placed_chain()
    endpoints = service(chain, clock=TrioClock(NOW_MS))
    ledger = endpoints.ledger
    assert isinstance(ledger, FinalizedLedger)
    entry = next(e for e in apps.placement(chain.state, "web") if e.node == NODE_KEYS[0].public)
    relay = Backend("93.184.216.34", 8080, "93.184.216.34", relay=True)
    head: Header = SimpleNamespace(number=1)  # type: ignore[assignment]
    builds = 0
    build = endpoints.refresh

    def counted() -> object:
        nonlocal builds
        builds += 1
        return build()

    endpoints.refresh = counted  # type: ignore[method-assign]

    def backends() -> tuple[Backend, ...]:
        return endpoints.routes().hosts["web.statemesh.internal"][0].backends

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(endpoints.run)
            await trio.sleep(1)
            assert "shop.statemesh.internal" not in endpoints.routes().hosts
            chain.send(BOB, CREATE.call(manifest=named("shop", "shop.statemesh.internal")))
            quiet = builds
            await trio.sleep(3600)
            assert builds == quiet
            assert "shop.statemesh.internal" not in endpoints.routes().hosts  # not finalized yet
            ledger.finalized_heads.publish(head)
            await trio.sleep(0.1)
            assert "shop.statemesh.internal" in endpoints.routes().hosts
            # An advertisement is routed at once, and its lapse (30 s later) is too.
            offered = advert(
                NODE_KEYS[0], NOW_MS + 3_601_100, "93.184.216.34",
                ReadyReplica("web", 1, entry.index),
            )  # fmt: skip
            assert endpoints.book.offer(offered, now=trio.current_time())
            endpoints._rebuild.set()
            await trio.sleep(0.1)
            assert backends() == (relay,)
            await trio.sleep(29)
            assert backends() == (relay,)
            await trio.sleep(2)
            assert backends() == ()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_dropped_subscription_to_finalized_heads_is_taken_again() -> None:
    chain = placed_chain()
    endpoints = service(chain, clock=TrioClock(NOW_MS))
    ledger = endpoints.ledger
    assert isinstance(ledger, FinalizedLedger)
    ledger.finalized_heads = Broadcast(buffer=1)
    head: Header = SimpleNamespace(number=1)  # type: ignore[assignment]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(endpoints.run)
            # Three heads at once overflow its one slot (and the one it may be waiting on): the
            # broadcast drops its subscription.
            for _ in range(3):
                ledger.finalized_heads.publish(head)
            assert ledger.finalized_heads.dropped == 1
            await trio.sleep(0.1)
            assert len(ledger.finalized_heads) == 1  # subscribed again
            chain.send(BOB, CREATE.call(manifest=named("shop", "shop.statemesh.internal")))
            ledger.finalized_heads.publish(head)
            await trio.sleep(0.1)
            assert "shop.statemesh.internal" in endpoints.routes().hosts
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_node_advertises_as_soon_as_its_workload_controller_starts() -> None:
    chain = registered_chain(GLOBAL)
    workloads = SimpleNamespace(controller=None, controller_started=trio.Event())
    endpoints = service(chain, "34.1.0.1", identity=NODE_KEYS[0], workloads=workloads)
    topic = TopicFake()
    endpoints.register(topic)  # type: ignore[arg-type]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(endpoints._advertise)
            await trio.sleep(5.2)
            assert topic.published == []  # nothing runs here yet
            workloads.controller = ReadyController(ReadyReplica("web", 1, 0))
            workloads.controller_started.set()
            await trio.sleep(0.01)
            assert [decode_advertisement(d).ready for d in topic.published] == [
                (ReadyReplica("web", 1, 0),)
            ]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
