"""The table of connected peers and the events it gives the node."""

from __future__ import annotations

import trio

from p2p.identity import PeerId
from p2p.peers import PeerEvent, PeerEventKind, PeerSnapshot, PeerTable

PEER = PeerId("12D3KooWpeer")


def test_events_follow_connect_handshake_status_and_disconnect() -> None:
    table = PeerTable(event_buffer=8)
    assert table.connected(PEER, "/ip4/127.0.0.1/tcp/1", "inbound", 1700000000.0)
    assert not table.connected(PEER, "/ip4/127.0.0.1/tcp/2", "outbound", 1700000001.0)
    assert table.snapshot(PEER, -5.0) == PeerSnapshot(
        PEER, "/ip4/127.0.0.1/tcp/1", "inbound", 1700000000.0, -5.0, None
    )
    table.set_status(PEER, b"best=1")
    table.set_status(PEER, b"best=2")
    table.disconnected(PEER)
    table.disconnected(PEER)  # a second notice changes nothing
    table.close()

    events = []
    while True:
        try:
            events.append(table.events.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    assert events == [
        PeerEvent(PeerEventKind.CONNECTED, PEER, b"best=1"),
        PeerEvent(PeerEventKind.STATUS, PEER, b"best=2"),
        PeerEvent(PeerEventKind.DISCONNECTED, PEER),
    ]
    assert (table.connections, table.disconnections, table.events_dropped) == (1, 1, 0)
    assert table.snapshot(PEER, 0.0) is None


def test_a_peer_that_leaves_before_its_handshake_makes_no_events() -> None:
    table = PeerTable(event_buffer=8)
    table.connected(PEER, "a", "outbound", 0.0)
    table.disconnected(PEER)
    try:
        table.events.receive_nowait()
        raise AssertionError("no event expected")
    except trio.WouldBlock:
        pass


def test_events_beyond_the_buffer_are_dropped_and_counted() -> None:
    table = PeerTable(event_buffer=2)
    table.connected(PEER, "a", "outbound", 0.0)
    for n in range(5):
        table.set_status(PEER, bytes([n]))
    assert table.events_dropped == 3


def test_waiting_for_a_handshake_ends_with_the_status_or_the_disconnect() -> None:
    async def main() -> tuple[bool, bool]:
        table = PeerTable(event_buffer=8)
        other = PeerId("12D3KooWother")
        table.connected(PEER, "a", "outbound", 0.0)
        table.connected(other, "b", "outbound", 0.0)
        results: dict[str, bool] = {}

        async def wait(name: str, peer: PeerId) -> None:
            results[name] = await table.wait_handshake(peer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, "status", PEER)
            nursery.start_soon(wait, "gone", other)
            await trio.sleep(0.01)
            table.set_status(PEER, b"s")
            table.disconnected(other)
        return results["status"], results["gone"]

    assert trio.run(main) == (True, False)
