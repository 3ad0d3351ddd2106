"""Request/response streams kept between exchanges, each feature beside its abuse: reuse and
concurrency, failures that must not poison the next request, idle timeouts, the retry of a
request whose kept stream was closed under it, bounds on a hostile peer's idle streams, bad
answers on a kept stream and a peer killed mid-request. Real hosts over loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from p2p.config import P2PConfig, StreamReuseConfig
from p2p.errors import (
    FrameError,
    RemoteError,
    RequestFailed,
    ResponseTooLarge,
    StreamAborted,
    TruncatedResponse,
)
from p2p.framing import ResponseStatus, encode_request, encode_response, read_request
from p2p.host import P2PService
from p2p.identity import NodeKey, PeerId
from p2p.names import protocol_id
from p2p.reqresp import Handler, RequestStatistics
from testkit.p2p_processes import P2PNode
from testkit.waiting import eventually
from tests.integration.test_p2p_inprocess import NET, connected, echo, two_nodes

pytestmark = pytest.mark.integration

OK_FIRST = encode_response(ResponseStatus.OK, b"first")


def requests(service: P2PService) -> RequestStatistics:
    return service.statistics().requests


def idle(service: P2PService) -> bool:
    """No request of the service's own (its status handshake) is in flight."""
    stats = requests(service)
    return stats.sent == stats.succeeded + stats.failed


@asynccontextmanager
async def settled(
    setup: Callable[[P2PService, P2PService], None] = lambda a, b: None,
    *,
    reuse_a: StreamReuseConfig | None = None,
    reuse_b: StreamReuseConfig | None = None,
) -> AsyncIterator[tuple[P2PService, P2PService]]:
    """`two_nodes` once both status handshakes are over, so that counts compare."""
    async with two_nodes(setup, reuse_a=reuse_a, reuse_b=reuse_b) as (a, b):
        await eventually(lambda: idle(a) and idle(b) and requests(b).sent > 0)
        yield a, b


def a_echoes(a: P2PService, b: P2PService) -> None:
    """A `settled` setup: A answers "echo"."""
    register(a, "echo", echo)


def register(
    service: P2PService,
    name: str,
    handler: Handler,
    *,
    timeout: float = 2,
    max_concurrent: int | None = None,
) -> None:
    service.register_protocol(
        name,
        handler,
        max_request_bytes=64,
        max_response_bytes=1000,
        timeout=timeout,
        max_concurrent=max_concurrent,
    )


def serve_raw(
    service: P2PService, name: str, serve: Callable[[INetStream], Awaitable[None]]
) -> None:
    """Serve `name` with `serve(stream)` instead of the service's handler: what a peer running
    other code can do. Stream failures end it quietly (they would crash the host)."""

    async def handler(stream: INetStream) -> None:
        try:
            await serve(stream)
        except (StreamError, FrameError):
            await stream.reset()

    service._host.set_stream_handler(TProtocol(protocol_id(NET, name)), handler)


def test_requests_in_a_row_share_one_stream() -> None:
    async def main() -> None:
        def setup(a: P2PService, b: P2PService) -> None:
            register(a, "echo", echo)
            register(b, "echo", echo)

        async with settled(setup) as (a, b):
            before, served_before = requests(b), requests(a).served
            for n in range(3):
                assert await b.request(a.peer_id, "echo", b"%d" % n) == b"%d" % n
            after = requests(b)
            assert (after.streams_opened - before.streams_opened) == 1
            assert (after.streams_reused - before.streams_reused) == 2
            assert after.pooled == before.pooled + 1
            assert requests(a).served == served_before + 3

    trio.run(main)


def test_concurrent_requests_take_streams_of_their_own_and_the_pool_stays_bounded() -> None:
    async def main() -> None:
        arrived = 0
        everyone = trio.Event()

        async def gate(peer: PeerId, request: bytes) -> bytes:
            nonlocal arrived
            arrived += 1
            if arrived == 6:
                everyone.set()
            await everyone.wait()  # all six are in flight at once
            return request

        def setup(a: P2PService, b: P2PService) -> None:
            register(a, "gate", gate)
            register(b, "gate", gate)

        async with settled(setup) as (a, b):
            before = requests(b)
            idle_at_a = requests(a).idle_served
            answers: list[bytes] = []

            async def ask(n: int) -> None:
                answers.append(await b.request(a.peer_id, "gate", b"%d" % n))

            async with trio.open_nursery() as nursery:
                for n in range(6):
                    nursery.start_soon(ask, n)
            assert sorted(answers) == [b"%d" % n for n in range(6)]
            after = requests(b)
            assert after.streams_opened - before.streams_opened == 6
            assert after.pooled == before.pooled + 4  # two closed: four kept per peer
            # A sees the two closed between requests and stops waiting on them.
            await eventually(lambda: requests(a).idle_served == idle_at_a + 4)
            for _ in range(6):
                await b.request(a.peer_id, "gate", b"again")
            assert requests(b).streams_opened == after.streams_opened

    trio.run(main)


def test_a_failed_or_timed_out_request_does_not_poison_the_next_one() -> None:
    async def main() -> None:
        calls: list[str] = []

        async def moody(peer: PeerId, request: bytes) -> bytes:
            calls.append(request.decode())
            if request == b"crash":
                raise RuntimeError("handler failed on purpose")
            if request == b"stall":
                await trio.sleep(5)
            return request

        def setup(a: P2PService, b: P2PService) -> None:
            register(a, "moody", moody, timeout=0.5)
            register(b, "moody", moody)

        async with settled(setup) as (a, b):
            before = requests(b)
            assert await b.request(a.peer_id, "moody", b"one") == b"one"
            with pytest.raises(RemoteError) as failed:
                await b.request(a.peer_id, "moody", b"crash")  # on the kept stream
            assert failed.value.remote_message == "internal error"
            assert await b.request(a.peer_id, "moody", b"two") == b"two"
            with pytest.raises(StreamAborted):  # A resets the kept stream after 0.5 s
                await b.request(a.peer_id, "moody", b"stall", timeout=3)
            assert await b.request(a.peer_id, "moody", b"three") == b"three"
            assert await b.request(a.peer_id, "moody", b"four") == b"four"

            assert calls == ["one", "crash", "two", "stall", "three", "four"]  # none twice
            after = requests(b)
            # A stream that carried a failure is never used again: one, two, three opened one.
            assert after.streams_opened - before.streams_opened == 3
            assert after.streams_reused - before.streams_reused == 3
            assert after.retried == before.retried
            assert requests(a).handler_errors == 1

    trio.run(main)


def test_the_servers_idle_timeout_closes_a_kept_stream_and_the_next_request_opens_one() -> None:
    async def main() -> None:
        # B keeps streams far longer than A waits on them, as a misconfigured peer would.
        quick = StreamReuseConfig(requester_idle_seconds=0.2, server_idle_seconds=0.4)
        async with settled(a_echoes, reuse_a=quick) as (a, b):
            timeouts = requests(a).idle_timeouts
            before = requests(b)
            assert await b.request(a.peer_id, "echo", b"before") == b"before"
            await eventually(lambda: requests(a).idle_timeouts > timeouts)
            await trio.sleep(0.1)  # A's close reaches B
            assert await b.request(a.peer_id, "echo", b"after") == b"after"
            # The closed stream was dropped (or, had A's close been late, retried): either way
            # the second request went on a new stream.
            assert requests(b).streams_opened - before.streams_opened == 2

    trio.run(main)


def test_a_requester_closes_its_idle_streams_before_the_server_does() -> None:
    async def main() -> None:
        quick = StreamReuseConfig(requester_idle_seconds=0.2, server_idle_seconds=5)
        async with settled(a_echoes, reuse_b=quick) as (a, b):
            await b.request(a.peer_id, "echo", b"x")
            assert requests(a).idle_served >= 1
            # B closes its kept streams (this one, its status stream) cleanly after 0.2-0.3 s;
            # A sees each end between two requests.
            await eventually(lambda: requests(a).idle_served == 0, 2)
            assert requests(a).idle_timeouts == 0

    trio.run(main)


def test_a_kept_stream_closed_before_the_answer_is_retried_once_on_a_new_stream() -> None:
    async def main() -> None:
        handled: list[bytes] = []

        async def close_after_one(stream: INetStream) -> None:
            handled.append(await read_request(stream, 64))
            await stream.write(OK_FIRST)
            # Closes at a frame boundary once the next request has arrived, reading none of
            # it: what our server does when a stream idles out or too many are waiting.
            await trio.sleep(1)
            await stream.close()

        async with settled() as (a, b):
            serve_raw(a, "closing", close_after_one)
            before = requests(b)
            assert await b.request(a.peer_id, "closing", b"1") == b"first"
            assert await b.request(a.peer_id, "closing", b"2") == b"first"  # on a new stream
            after = requests(b)
            assert after.retried - before.retried == 1
            assert after.streams_opened - before.streams_opened == 2
            assert handled == [b"1", b"2"]

    trio.run(main)


def test_a_kept_stream_reset_before_the_answer_is_not_retried() -> None:
    async def main() -> None:
        handled: list[bytes] = []

        async def reset_after_reading(stream: INetStream) -> None:
            handled.append(await read_request(stream, 64))
            await stream.write(OK_FIRST)
            handled.append(await read_request(stream, 64))
            await stream.reset()  # it may have acted on the request: resending is unsafe

        async with settled() as (a, b):
            serve_raw(a, "resetting", reset_after_reading)
            before = requests(b)
            assert await b.request(a.peer_id, "resetting", b"1") == b"first"
            with pytest.raises(StreamAborted):
                await b.request(a.peer_id, "resetting", b"2")
            assert handled == [b"1", b"2"]
            assert requests(b).retried == before.retried

    trio.run(main)


@pytest.mark.parametrize(
    ("bad_answer", "error", "detail"),
    [
        (
            encode_response(ResponseStatus.OK, b"x" * 100)[:15],
            TruncatedResponse,
            "stream ended after 10 of 100 bytes (peer closed mid-frame)",
        ),
        (
            encode_response(ResponseStatus.OK, b"x" * 2000),
            ResponseTooLarge,
            "frame of 2000 bytes exceeds the 1000-byte limit",
        ),
    ],
    ids=["truncated", "oversize"],
)
def test_a_bad_answer_on_a_kept_stream_is_typed_and_the_stream_dropped(
    bad_answer: bytes, error: type[RequestFailed], detail: str
) -> None:
    async def main() -> None:
        async def good_then_bad(stream: INetStream) -> None:
            await read_request(stream, 64)
            await stream.write(OK_FIRST)
            await read_request(stream, 64)
            await stream.write(bad_answer)
            await stream.close()

        def setup(a: P2PService, b: P2PService) -> None:
            register(b, "bad", echo)  # B's limits: answers of at most 1000 bytes

        async with settled(setup) as (a, b):
            serve_raw(a, "bad", good_then_bad)
            before = requests(b)
            assert await b.request(a.peer_id, "bad", b"1") == b"first"
            with pytest.raises(error) as caught:
                await b.request(a.peer_id, "bad", b"2")
            assert caught.value.detail == detail
            assert await b.request(a.peer_id, "bad", b"3") == b"first"  # a new stream
            after = requests(b)
            assert after.streams_opened - before.streams_opened == 2
            assert after.streams_reused - before.streams_reused == 1
            assert after.retried == before.retried

    trio.run(main)


async def open_idle_streams(
    attacker: P2PService, target: PeerId, name: str, count: int
) -> list[INetStream]:
    """Open `count` streams and send one good request on each, then leave them open."""
    streams = []
    for _ in range(count):
        stream = await attacker._host.new_stream(
            ID.from_base58(target), [TProtocol(protocol_id(NET, name))]
        )
        await stream.write(encode_request(b"hi"))
        assert await stream.read(64) == encode_response(ResponseStatus.OK, b"hi")
        streams.append(stream)
    return streams


def test_a_peers_idle_streams_are_bounded_and_hold_no_request_slot() -> None:
    async def main() -> None:
        def setup(a: P2PService, b: P2PService) -> None:
            for name in ("echo", "echo2"):
                register(a, name, echo, max_concurrent=1)

        bounds = StreamReuseConfig(pooled_per_peer=2, idle_per_peer=3, idle_total=6)
        async with settled(setup, reuse_a=bounds) as (a, b):
            waiting = requests(a).idle_served  # B's kept status stream, if still open
            streams = await open_idle_streams(b, a.peer_id, "echo", 5)
            await eventually(lambda: requests(a).idle_served == waiting + 3)
            assert requests(a).idle_over_limit == 2
            # A closed the two over its bound: they end cleanly.
            ended = 0
            for stream in streams:
                with trio.move_on_after(0.2):
                    try:
                        await stream.read(1)
                    except StreamError:
                        ended += 1
            assert ended == 2

            # Idle streams hold none of the protocol's slot (max_concurrent=1).
            assert await b.request(a.peer_id, "echo", b"legit") == b"legit"
            assert requests(a).busy == 0

            # The bound over all peers and protocols holds too.
            await open_idle_streams(b, a.peer_id, "echo2", 5)
            await eventually(lambda: requests(a).idle_served == 6)

    trio.run(main)


def test_a_peer_killed_mid_request_fails_it_typed_and_its_kept_streams_go(
    tmp_path: Path,
) -> None:
    target = P2PNode(tmp_path / "target").start()

    async def main() -> RequestFailed:
        client = P2PService(P2PConfig(network_id=target.netid), NodeKey.generate())
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            peer = await client.connect(target.address)
            await connected(client)
            # The slow protocol answers after 5 s: once to keep a stream, once to be cut off.
            assert await client.request(peer, "slow", b"x", timeout=8) == b"x"
            reused = requests(client).streams_reused
            failure: list[RequestFailed] = []

            async def slow_request() -> None:
                try:
                    await client.request(peer, "slow", b"x", timeout=8)
                except RequestFailed as error:
                    failure.append(error)

            async with trio.open_nursery() as inner:
                inner.start_soon(slow_request)
                await trio.sleep(0.5)
                await trio.to_thread.run_sync(target.kill9)
            await eventually(lambda: requests(client).pooled == 0)
            assert requests(client).streams_reused == reused + 1
            assert requests(client).retried == 0
            nursery.cancel_scope.cancel()
        return failure[0]

    try:
        failure = trio.run(main)
    finally:
        target.stop()
    # A killed peer's stream ends cleanly: the missing answer is what tells it apart.
    assert isinstance(failure, (TruncatedResponse, StreamAborted)), failure
