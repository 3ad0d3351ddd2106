"""How the connection limits count clients: the operator's own addresses, one place per IPv6
/64, and the places only the operator may take (`node.rpc.server._Slots`)."""

from __future__ import annotations

import pytest

from node.rpc.client_address import client_group, is_local
from node.rpc.limits import RpcLimits
from node.rpc.server import _Slots


@pytest.mark.parametrize(
    ("ip", "local"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        # Other loopback aliases are any local program's to bind, a flood's included.
        ("127.0.0.2", False),
        ("127.1.2.3", False),
        ("10.0.0.1", False),
        ("2001:db8::1", False),
        ("", False),
    ],
)
def test_only_the_canonical_loopback_addresses_are_the_operators(ip: str, local: bool) -> None:
    assert is_local(ip) is local


@pytest.mark.parametrize(
    ("ip", "group"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::1"),
        ("", ""),
    ],
)
def test_an_ipv6_client_is_its_64(ip: str, group: str) -> None:
    assert client_group(ip) == group


@pytest.mark.parametrize(
    ("connections", "reserved"), [(100, 10), (25, 2), (10, 1), (9, 1), (2, 1), (1, 0)]
)
def test_a_tenth_of_the_connections_is_kept_for_the_operator(
    connections: int, reserved: int
) -> None:
    limits = RpcLimits(max_connections=connections, max_connections_per_ip=connections)
    assert limits.reserved_for_local == reserved


def slots() -> _Slots:
    limits = RpcLimits()  # 100 places, 25 from one address, 10 kept for the operator
    return _Slots("connections", 100, limits.max_connections_per_ip, limits.reserved_for_local)


def test_other_addresses_never_take_the_operators_places() -> None:
    places = slots()
    for ip in ("127.0.0.2", "127.0.0.3", "203.0.113.7"):
        assert all(places.admit(ip) is None for _ in range(25))
    assert all(places.admit("2001:db8::1") is None for _ in range(15))
    assert places.admit("198.51.100.1") == (
        "the limit of 90 connections from addresses other than 127.0.0.1 and ::1 is reached"
    )
    for _ in range(10):
        assert places.admit("127.0.0.1") is None
    assert places.admit("::1") == "the limit of 100 connections is reached"
    assert places.refused == 2
    # A place given back by another address is another address's again; the operator's is not.
    places.release("127.0.0.2")
    assert places.admit("198.51.100.1") is None
    places.release("127.0.0.1")
    assert places.admit("127.0.0.2") == (
        "the limit of 90 connections from addresses other than 127.0.0.1 and ::1 is reached"
    )
    assert places.admit("127.0.0.1") is None


def test_the_operator_may_take_every_place_within_its_own_cap() -> None:
    places = _Slots("connections", 10, 10, 1)
    assert all(places.admit("127.0.0.1") is None for _ in range(10))
    assert places.admit("127.0.0.1") == "the limit of 10 connections is reached"
    assert places.admit("127.0.0.2") == "the limit of 10 connections is reached"
    assert len(places) == 10


def test_one_ipv6_host_gets_one_address_s_share_whatever_address_it_calls_from() -> None:
    places = slots()
    for n in range(25):
        assert places.admit(f"2001:db8:0:1::{n + 1:x}") is None
    assert places.admit("2001:db8:0:1:dead:beef:0:1") == (
        "the limit of 25 connections from one address is reached"
    )
    assert places.admit("2001:db8:0:2::1") is None  # another /64, another client
    for n in range(25):
        places.release(f"2001:db8:0:1::{n + 1:x}")
    assert places.admit("2001:db8:0:1:dead:beef:0:1") is None
    assert len(places) == 2
