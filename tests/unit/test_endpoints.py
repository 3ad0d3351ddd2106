"""Endpoint advertisements (signed, strict decoding, newest wins, lapse) and the ingress routes
built from them and the chain state (only what the chain placed on the advertising node)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import codec
from chain.runtime import apps
from node.endpoints import (
    MAX_CLOCK_AHEAD_MS,
    AdvertBook,
    Advertisement,
    EndpointService,
    ReadyReplica,
    build_routes,
    decode_advertisement,
    node_ip,
)
from node.manifests import ManifestCache
from node.wire import WireError
from orchestrator.ingress import Backend, Route
from p2p.gossip import Verdict
from tests.factories import ALICE, BOB
from tests.unit.test_apps import CREATE, DELETE, active_chain, named, web
from tests.unit.test_towers import NODE_KEYS
from wallet.keys import Keypair

NOW_MS = 1_800_000_000_000
STRANGER = Keypair.from_seed(bytes(range(32)))


def advert(
    who: Keypair = NODE_KEYS[0], issued: int = NOW_MS, address: str = "10.0.0.1", *ready: object
) -> Advertisement:
    entries = ready or (ReadyReplica("web", 1, 0),)
    return Advertisement.signed(who, issued, address, entries)  # type: ignore[arg-type]


def test_an_advertisement_round_trips_and_is_signed_by_its_node() -> None:
    sent = advert(
        NODE_KEYS[0], NOW_MS, "2001:db8::1", ReadyReplica("b", 2, 1), ReadyReplica("a", 1, 0)
    )
    got = decode_advertisement(sent.encode())
    assert got == sent and got.verify()
    assert [r.app for r in got.ready] == ["a", "b"]  # sorted: equal sets give equal bytes
    forged = Advertisement(
        sent.node_id, sent.issued_ms + 1, sent.address, sent.ready, sent.signature
    )
    assert not forged.verify()
    other = Advertisement(STRANGER.public, sent.issued_ms, sent.address, sent.ready, sent.signature)
    assert not other.verify()


def body(*fields: object) -> bytes:
    return codec.encode([codec.encode(list(fields)), bytes(64)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc0", "an advertisement is [body, signature]"),
        (body(bytes(32), b"\x01", b"10.0.0.1"), "body is [node id, issued, address, replicas]"),
        (body(bytes(31), b"\x01", b"10.0.0.1", []), "a node id is 32 bytes"),
        (body(bytes(32), b"\x01", b"localhost", []), "is not an IP address"),
        (body(bytes(32), b"\x01", b"2001:DB8::1", []), "not in canonical form"),
        (body(bytes(32), b"\x01", b"10.0.0.1", [[b"", b"\x01", b""]]), "1 to 253 bytes"),
        (body(bytes(32), b"\x01", b"10.0.0.1", [[b"w", b"\x01"]]), "[app, revision, replica]"),
        (body(bytes(32), b"\x00\x01", b"10.0.0.1", []), "not an advertisement"),
        (body(bytes(32), b"\x01", b"10.0.0.1", [[b"w", b"\x01", b""]] * 4097), "more than 4096"),
    ],
)
def test_malformed_advertisements_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=re.escape(message)):
        decode_advertisement(data)


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
    assert book.version == version  # same replicas, same address: routes need no rebuild
    book.expire(now=139.0)
    assert len(book.fresh()) == 1
    book.expire(now=140.5)
    assert book.fresh() == [] and book.version == version + 1


def placed_chain():  # type: ignore[no-untyped-def]
    """Three active nodes; `web` (ingress web.statemesh.internal, / -> service port 80 ->
    container port 8080) with one replica on each."""
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(3)))
    return chain


def test_routes_hold_only_ready_replicas_placed_on_the_advertising_node() -> None:
    chain = placed_chain()
    placement = {e.node: e for e in apps.placement(chain.state, "web")}
    by_key = {k.public: k for k in NODE_KEYS}
    (n0, e0), (n1, e1), (n2, _) = sorted(placement.items())
    ready = {
        n0: ("10.0.0.1", frozenset({ReadyReplica("web", 1, e0.index)})),
        # n1 claims its own replica and n0's: only its own is routed.
        n1: (
            "10.0.0.2",
            frozenset({ReadyReplica("web", 1, e1.index), ReadyReplica("web", 1, e0.index)}),
        ),
        n2: ("10.0.0.3", frozenset()),  # running, not ready
    }
    assert n0 in by_key
    table = build_routes(chain.state, ManifestCache(), ready)
    assert table.hosts == {
        "web.statemesh.internal": (
            Route("web", "/", (Backend("10.0.0.1", 8080), Backend("10.0.0.2", 8080))),
        )
    }
    assert table.addresses("web.statemesh.internal") == ("10.0.0.1", "10.0.0.2")
    stale = {n0: ("10.0.0.1", frozenset({ReadyReplica("web", 7, e0.index)}))}  # another revision
    assert build_routes(chain.state, ManifestCache(), stale).hosts["web.statemesh.internal"] == (
        Route("web", "/", ()),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def service(chain, address: str = "127.0.0.1", clock: Clock | None = None) -> EndpointService:  # type: ignore[no-untyped-def]
    return EndpointService(
        lambda: chain.root,
        lambda root: chain.state,
        NODE_KEYS[3],
        address,
        None,
        ttl_seconds=30,
        wall_ms=lambda: NOW_MS,
        monotonic=clock or Clock(),
    )


def test_gossiped_advertisements_are_judged_before_relay() -> None:
    chain = placed_chain()
    clock = Clock()
    endpoints = service(chain, clock=clock)
    check = endpoints._check
    good = advert(NODE_KEYS[0], NOW_MS)
    assert check("peer", good.encode()) is Verdict.ACCEPT  # type: ignore[arg-type]
    assert check("peer", b"junk") is Verdict.REJECT  # type: ignore[arg-type]
    tampered = bytearray(good.encode())
    tampered[-1] ^= 1
    assert check("peer", bytes(tampered)) is Verdict.REJECT  # type: ignore[arg-type]
    # Not blamed: an unregistered node (perhaps not finalized here yet), clocks, our own.
    for ignored in (
        advert(STRANGER, NOW_MS),
        advert(NODE_KEYS[0], NOW_MS + MAX_CLOCK_AHEAD_MS + 1),
        advert(NODE_KEYS[0], NOW_MS - 31_000),
        advert(NODE_KEYS[3], NOW_MS),
    ):
        assert check("peer", ignored.encode()) is Verdict.IGNORE  # type: ignore[arg-type]
    endpoints.book.offer(good, now=clock.now)
    assert check("peer", good.encode()) is Verdict.IGNORE  # type: ignore[arg-type]
    # A node's next advertisement is taken, but not a burst of them.
    soon, next_one = advert(NODE_KEYS[0], NOW_MS + 99), advert(NODE_KEYS[0], NOW_MS + 100)
    assert check("peer", soon.encode()) is Verdict.IGNORE  # type: ignore[arg-type]
    assert check("peer", next_one.encode()) is Verdict.ACCEPT  # type: ignore[arg-type]


def test_loopback_addresses_are_taken_only_among_loopback_nodes() -> None:
    chain = placed_chain()
    local = advert(NODE_KEYS[0], NOW_MS, "127.0.0.1").encode()
    assert service(chain, "127.0.0.1")._check("peer", local) is Verdict.ACCEPT  # type: ignore[arg-type]
    assert service(chain, "10.0.0.9")._check("peer", local) is Verdict.IGNORE  # type: ignore[arg-type]
    for bad in ("0.0.0.0", "fe80::1", "224.0.0.1"):
        with pytest.raises(ValueError, match="cannot be dialled"):
            node_ip(bad)
    with pytest.raises(ValueError, match="scope"):
        node_ip("fe80::1%eth0")
    scoped = body(bytes(32), b"\x01", b"fe80::1%x", [])
    with pytest.raises(WireError, match="not an IP address of a node"):
        decode_advertisement(scoped)


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
        advert(NODE_KEYS[0], NOW_MS, "10.9.9.9", ReadyReplica("web", 1, entry.index)), now=0.0
    )
    assert endpoints.routes().hosts["web.statemesh.internal"][0].backends == ()  # as last built
    endpoints.refresh()
    assert endpoints.routes().hosts["web.statemesh.internal"][0].backends == (
        Backend("10.9.9.9", 8080),
    )
    assert endpoints.lookup("web.statemesh.internal") == ("10.9.9.9",)


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
    assert list(build_routes(chain.state, cache, {}).hosts) == ["shop.statemesh.internal"]
