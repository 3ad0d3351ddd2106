"""Two P2PServices in one process on loopback: request/response failure modes, publish
backpressure, delivery rules and clean shutdown, each checked end to end."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol

from p2p.config import P2PConfig, StreamReuseConfig
from p2p.errors import (
    ListenFailed,
    MalformedResponse,
    MessageTooLarge,
    NotRunning,
    PeerUnreachable,
    RemoteError,
    RequestTooLarge,
    ResponseTooLarge,
    TruncatedResponse,
)
from p2p.gossip import GossipMessage, Verdict
from p2p.host import P2PService
from p2p.identity import NodeKey, PeerId
from p2p.names import protocol_id
from p2p.peers import PeerEventKind
from testkit.waiting import eventually

pytestmark = pytest.mark.integration

NET = "inproc"


def accept(peer: PeerId, data: bytes) -> Verdict:
    return Verdict.ACCEPT


async def echo(peer: PeerId, request: bytes) -> bytes:
    return request


def meshed(one: P2PService, other: P2PService) -> bool:
    return other.peer_id in one.mesh_peers("blocks") and one.peer_id in other.mesh_peers("blocks")


async def connected(service: P2PService) -> None:
    with trio.fail_after(5):
        async for event in service.events():
            if event.kind is PeerEventKind.CONNECTED:
                return


@asynccontextmanager
async def two_nodes(
    setup: Callable[[P2PService, P2PService], None] = lambda a, b: None,
    *,
    reuse_a: StreamReuseConfig | None = None,
    reuse_b: StreamReuseConfig | None = None,
) -> AsyncIterator[tuple[P2PService, P2PService]]:
    """A listens, B dials it; both have finished their status handshakes."""
    config_a = P2PConfig(network_id=NET, stream_reuse=reuse_a or StreamReuseConfig())
    a = P2PService(config_a, NodeKey.generate(), status=lambda: b"a")
    b_key = NodeKey.generate()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(a.run)
        config_b = P2PConfig(
            network_id=NET, bootnodes=(address,), stream_reuse=reuse_b or StreamReuseConfig()
        )
        b = P2PService(config_b, b_key)
        setup(a, b)
        await nursery.start(b.run)
        await connected(a)
        await connected(b)
        yield a, b
        nursery.cancel_scope.cancel()


async def raw_handler(a: P2PService, name: str, answer: bytes) -> None:
    """Serve `name` on A with a handler that writes `answer` verbatim, then closes."""

    async def handler(stream: INetStream) -> None:
        await stream.read(4096)
        await stream.write(answer)
        await stream.close()

    a._host.set_stream_handler(TProtocol(protocol_id(NET, name)), handler)


def test_responses_over_the_callers_limit_are_refused_and_cost_the_responder() -> None:
    async def main() -> None:
        async def big(peer: PeerId, request: bytes) -> bytes:
            return b"x" * 2000

        def setup(a: P2PService, b: P2PService) -> None:
            a.register_protocol(
                "big", big, max_request_bytes=10, max_response_bytes=4000, timeout=2
            )
            b.register_protocol(
                "big", big, max_request_bytes=10, max_response_bytes=1000, timeout=2
            )

        async with two_nodes(setup) as (a, b):
            with pytest.raises(ResponseTooLarge) as caught:
                await b.request(a.peer_id, "big", b"give")
            assert str(caught.value) == (
                f"request /statemesh/{NET}/big/1 to {a.peer_id}: "
                "frame of 2000 bytes exceeds the 1000-byte limit"
            )
            [peer] = b.peers()
            assert peer.score == -20
            with pytest.raises(RequestTooLarge) as too_big:
                await b.request(a.peer_id, "big", b"0123456789A")
            assert too_big.value.detail == "request of 11 bytes exceeds the 10-byte limit"

    trio.run(main)


def test_a_response_cut_short_by_the_peer_is_reported_truncated() -> None:
    async def main() -> None:
        async with two_nodes() as (a, b):
            # Announces 100 bytes, sends 10, closes: what a peer killed mid-answer looks like.
            await raw_handler(a, "cut", struct.pack(">BI", 0, 100) + b"0123456789")
            with pytest.raises(TruncatedResponse) as caught:
                await b.request(a.peer_id, "cut", b"?")
            assert caught.value.detail == (
                "stream ended after 10 of 100 bytes (peer closed mid-frame)"
            )
            await raw_handler(a, "weird", struct.pack(">BI", 9, 0))
            with pytest.raises(MalformedResponse) as malformed:
                await b.request(a.peer_id, "weird", b"?")
            assert malformed.value.detail == "response status byte 9 is not defined"

    trio.run(main)


def test_requests_beyond_the_concurrency_limit_are_answered_busy() -> None:
    async def main() -> None:
        release = trio.Event()

        async def hold(peer: PeerId, request: bytes) -> bytes:
            await release.wait()
            return b"done"

        def setup(a: P2PService, b: P2PService) -> None:
            a.register_protocol(
                "hold",
                hold,
                max_request_bytes=8,
                max_response_bytes=8,
                timeout=5,
                max_concurrent=1,
            )

        async with two_nodes(setup) as (a, b):
            results: list[bytes] = []

            async def first() -> None:
                results.append(await b.request(a.peer_id, "hold", b"1"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await trio.sleep(0.2)
                with pytest.raises(RemoteError) as caught:
                    await b.request(a.peer_id, "hold", b"2")
                assert caught.value.remote_message == "busy: try again"
                release.set()
            assert results == [b"done"]
            assert a.statistics().requests.busy == 1

    trio.run(main)


def test_requests_need_a_connection_and_a_running_service() -> None:
    async def main() -> None:
        async with two_nodes() as (_, b):
            stranger = NodeKey.generate().peer_id
            with pytest.raises(PeerUnreachable) as caught:
                await b.request(stranger, "status", b"")
            assert str(caught.value) == (
                f"request /statemesh/{NET}/status/1 to {stranger}: not connected"
            )
        idle = P2PService(P2PConfig(network_id=NET), NodeKey.generate())
        with pytest.raises(NotRunning) as not_running:
            await idle.publish("blocks", b"x")
        assert str(not_running.value) == "publish needs the running p2p service"

    trio.run(main)


def test_a_burst_is_delivered_whole_thanks_to_backpressure_and_never_to_its_sender() -> None:
    count = 400

    async def main() -> None:
        inboxes: dict[str, trio.MemoryReceiveChannel[GossipMessage]] = {}

        def setup(a: P2PService, b: P2PService) -> None:
            inboxes["a"] = a.subscribe("blocks", accept)
            inboxes["b"] = b.subscribe("blocks", accept)

        async with two_nodes(setup) as (a, b):
            await eventually(lambda: b.peer_id in a.mesh_peers("blocks"))
            for n in range(count):
                await a.publish("blocks", n.to_bytes(4, "big"))
            received: list[GossipMessage] = []
            with trio.move_on_after(10):
                while len(received) < count:
                    received.append(await inboxes["b"].receive())
            assert [int.from_bytes(m.data, "big") for m in received] == list(range(count))
            assert {m.origin for m in received} == {a.peer_id}
            with pytest.raises(trio.WouldBlock):
                inboxes["a"].receive_nowait()  # our own messages never come back
            stats = a.statistics().gossip
            assert stats.published == count
            assert stats.backpressure_timeouts == 0

            with pytest.raises(MessageTooLarge):
                await a.publish("blocks", b"x" * (1_048_576 - 16_384 + 1))
        # The service stopped: its delivery channels are closed, not left hanging.
        with pytest.raises(trio.EndOfChannel):
            while True:
                await inboxes["b"].receive()

    trio.run(main)


def test_a_validator_that_returns_something_else_counts_as_reject() -> None:
    async def main() -> None:
        def setup(a: P2PService, b: P2PService) -> None:
            a.subscribe("blocks", lambda peer, data: "yes")  # type: ignore[arg-type,return-value]
            b.subscribe("blocks", accept)

        async with two_nodes(setup) as (a, b):
            await eventually(lambda: a.peer_id in b.mesh_peers("blocks"))
            await b.publish("blocks", b"hello")
            await eventually(lambda: a.statistics().gossip.validator_errors > 0)
            assert a.statistics().gossip.rejected == 1
            assert [p.score for p in a.peers()] == [-20]

    trio.run(main)


def test_cancelling_run_shuts_everything_down_promptly() -> None:
    async def main() -> float:
        async with two_nodes():
            stopping = trio.current_time()
        return trio.current_time() - stopping

    assert trio.run(main) < 2.0


def test_a_port_in_use_fails_the_service_with_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        service = P2PService(P2PConfig(network_id=NET, listen_port=port), NodeKey.generate())
        with pytest.raises(BaseExceptionGroup) as caught:
            trio.run(service.run)
    matched, _ = caught.value.split(ListenFailed)
    assert matched is not None
    errors = []
    pending: list[BaseException] = [matched]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            errors.append(str(error))
    assert errors == [f"cannot listen on /ip4/127.0.0.1/tcp/{port} (is the port already in use?)"]


def test_a_restarted_node_is_heard_at_once_though_peers_remember_its_old_messages() -> None:
    # libp2p numbers messages from the wall clock in seconds, one per message: a node that
    # published 50 messages and restarts seconds later would reuse those numbers, and peers
    # (which remember message ids for 2 minutes) would drop its new messages as seen.
    async def main() -> None:
        key = NodeKey.generate()
        listener = P2PService(P2PConfig(network_id=NET), NodeKey.generate())
        inbox = listener.subscribe("blocks", accept)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(listener.run)
            for life, count in (("first", 50), ("second", 5)):
                publisher = P2PService(P2PConfig(network_id=NET, bootnodes=(address,)), key)
                publisher.subscribe("blocks", accept)
                async with trio.open_nursery() as inner:
                    await inner.start(publisher.run)
                    await eventually(partial(meshed, publisher, listener))
                    for n in range(count):
                        await publisher.publish("blocks", f"{life} {n}".encode())
                    with trio.fail_after(5):
                        got = [(await inbox.receive()).data for _ in range(count)]
                    assert got == [f"{life} {n}".encode() for n in range(count)]
                    inner.cancel_scope.cancel()
                await eventually(lambda: not listener.peers())
            nursery.cancel_scope.cancel()

    trio.run(main)
