"""Container logs: the Docker adapter's line splitting, and the in-memory engine's logs (what a
script writes when, following across writes and stops) under trio's mock clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing

import pytest
import trio
import trio.testing

from orchestrator.docker_engine import LineSplitter
from orchestrator.engine import CreateRequest
from orchestrator.spec import EnforcedResources
from tests.unit.orchestrator.fake_engine import FakeEngine, script_lines

# -- LineSplitter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "lines", "rest"),
    [
        ([b"one\n"], [b"one"], []),
        ([b"one\ntwo\n"], [b"one", b"two"], []),
        ([b"on", b"e\ntw", b"o\n"], [b"one", b"two"], []),
        ([b"one\n\nthree"], [b"one", b""], [b"three"]),
        ([b""], [], []),
        ([b"x" * 10 + b"yz"], [b"x" * 4, b"x" * 4], [b"xxyz"]),
    ],
)
def test_line_splitter(chunks: list[bytes], lines: list[bytes], rest: list[bytes]) -> None:
    splitter = LineSplitter(max_partial_bytes=4 if len(b"".join(chunks)) > 10 else 1024)
    found = [line for chunk in chunks for line in splitter.feed(chunk)]
    assert (found, splitter.flush(), splitter.flush()) == (lines, rest, [])


# -- the in-memory engine -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "written"),
    [
        (("echo", "hello", "world"), [(0.0, b"hello world")]),
        (
            ("sh", "-c", "echo a; sleep 2; echo 'b  c' && sleep 1.5; echo d"),
            [(0.0, b"a"), (2.0, b"b  c"), (3.5, b"d")],
        ),
        (("sh", "-c", "exec httpd -f"), []),
        (("sleep", "1000"), []),
    ],
)
def test_script_lines(argv: tuple[str, ...], written: list[tuple[float, bytes]]) -> None:
    assert script_lines(argv) == written


def run(test: Callable[[FakeEngine, str], Awaitable[None]], script: str) -> None:
    async def main() -> None:
        engine = FakeEngine()
        request = CreateRequest(
            "c", "img:1", (), ("sh", "-c", script), (), {"test": "logs"}, EnforcedResources()
        )
        cid = await engine.create(request)
        await engine.start(cid)
        with trio.fail_after(3600):
            await test(engine, cid)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_script_writes_its_lines_at_the_times_its_sleeps_say() -> None:
    async def test(engine: FakeEngine, cid: str) -> None:
        assert await engine.logs(cid) == b"one\n"
        await trio.sleep(10)
        assert await engine.logs(cid) == b"one\ntwo\n"
        await trio.sleep(1)
        engine.write_log(cid, "by hand")
        assert await engine.logs(cid, tail=1) == b"by hand\n"
        assert await engine.logs(cid, since=trio.current_time()) == b"by hand\n"

    run(test, "echo one; sleep 10; echo two; sleep 1000")


def test_a_follow_waits_for_lines_and_ends_when_the_container_stops() -> None:
    async def test(engine: FakeEngine, cid: str) -> None:
        seen: list[tuple[float, bytes]] = []
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                async with aclosing(engine.follow_logs(cid)) as lines:
                    async for line in lines:
                        seen.append((trio.current_time(), line))

            nursery.start_soon(follow)
            await trio.sleep(3)
            engine.write_log(cid, "by hand")
            await trio.sleep(10)
            await engine.stop(cid, 1.0)
        assert seen == [(0.0, b"one"), (3.0, b"by hand"), (5.0, b"two")]

    run(test, "echo one; sleep 5; echo two; sleep 10; echo never; sleep 1000")


def test_a_stopped_container_writes_nothing_more() -> None:
    async def test(engine: FakeEngine, cid: str) -> None:
        engine.exit(cid, 0)
        await trio.sleep(100)
        assert await engine.logs(cid) == b"one\n"
        async with aclosing(engine.follow_logs(cid)) as lines:
            assert [line async for line in lines] == [b"one"]

    run(test, "echo one; sleep 5; echo two")
