"""Following the logs of this node's containers, over the in-memory engine and a real
controller, under trio's mock clock: tails, new lines, restarts, the end of a replica, closing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing

import pytest
import trio
import trio.testing

from orchestrator.controller import Controller, ControllerConfig
from orchestrator.labels import ContainerKey
from orchestrator.logs import LogFollow, LogLine, LogsEnded, TooManyFollows, WorkloadLogs
from orchestrator.spec import ReplicaSpec
from testkit.trio_clock import TrioClock
from tests.unit.orchestrator.builders import NODE, InMemoryDesired, container, replica
from tests.unit.orchestrator.fake_engine import FakeEngine, FakeFirewall, no_rootfs

SCRIPT = "echo one; echo two; sleep 5; echo three; sleep 1000"
SPEC = replica(containers=(container(args=("sh", "-c", SCRIPT)),))
KEY = ContainerKey(SPEC.key, "main")

Scenario = Callable[[WorkloadLogs, FakeEngine, InMemoryDesired], Awaitable[None]]


def scenario(test: Scenario, *specs: ReplicaSpec, max_follows: int = 4) -> None:
    async def main() -> None:
        engine = FakeEngine()
        desired = InMemoryDesired(*specs)
        config = ControllerConfig(node=NODE, resync_seconds=5.0, metering_seconds=5.0)
        controller = Controller(
            engine,
            desired,
            config,
            firewall=FakeFirewall(),
            sandbox_rootfs=no_rootfs,
            clock=TrioClock(),
        )
        logs = WorkloadLogs(engine, controller, clock=TrioClock(), max_follows=max_follows)
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            await nursery.start(logs.run)
            while not (controller.status().get(SPEC.key) and controller.status()[SPEC.key].running):
                await controller.changed()
            with trio.fail_after(3600):
                await test(logs, engine, desired)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def texts(batch: list[LogLine]) -> list[str]:
    assert {line.container for line in batch} == {KEY}
    return [line.text for line in batch]


async def lines(follow: LogFollow, count: int) -> list[str]:
    """The next `count` lines, in however many batches they come."""
    seen: list[str] = []
    while len(seen) < count:
        seen += texts(await follow.__anext__())
    assert len(seen) == count
    return seen


def test_a_follow_starts_with_the_tail_then_passes_new_lines_on() -> None:
    async def test(logs: WorkloadLogs, engine: FakeEngine, desired: InMemoryDesired) -> None:
        async with aclosing(logs.follow([KEY], tail=1)) as follow:
            assert texts(await follow.__anext__()) == ["two"]
            before = trio.current_time()
            assert texts(await follow.__anext__()) == ["three"]
            assert trio.current_time() - before == pytest.approx(5, abs=0.1)
            (cid,) = [c.id for c in engine.with_labels({})]
            engine.write_log(cid, "four", "five")
            assert await lines(follow, 2) == ["four", "five"]

    scenario(test, SPEC)


def test_tail_none_is_everything_and_zero_is_only_new_lines() -> None:
    async def test(logs: WorkloadLogs, engine: FakeEngine, desired: InMemoryDesired) -> None:
        async with aclosing(logs.follow([KEY], tail=None)) as follow:
            assert await lines(follow, 2) == ["one", "two"]
        async with aclosing(logs.follow([KEY], tail=0)) as follow:
            assert texts(await follow.__anext__()) == ["three"]

    scenario(test, SPEC)


def test_a_follow_goes_on_across_a_restart_without_repeating_lines() -> None:
    async def test(logs: WorkloadLogs, engine: FakeEngine, desired: InMemoryDesired) -> None:
        async with aclosing(logs.follow([KEY], tail=0)) as follow:
            (cid,) = [c.id for c in engine.with_labels({})]
            await trio.testing.wait_all_tasks_blocked()  # the follow waits for new lines
            engine.write_log(cid, "last words")
            assert await lines(follow, 1) == ["last words"]
            await trio.sleep(1)
            engine.exit(cid, 1)
            # The controller restarts the container (after its back-off): a new run, a new script.
            assert await lines(follow, 3) == ["one", "two", "three"]
            assert engine.containers[cid].starts == 2

    scenario(test, SPEC)


def test_a_follow_ends_when_its_replica_leaves_the_node() -> None:
    async def test(logs: WorkloadLogs, engine: FakeEngine, desired: InMemoryDesired) -> None:
        async with aclosing(logs.follow([KEY], tail=0)) as follow:
            desired.specs = []
            with pytest.raises(LogsEnded) as ended:
                while True:
                    await follow.__anext__()
            assert str(ended.value) == "no followed container runs on this node any more"
        await trio.testing.wait_all_tasks_blocked()
        assert logs.follows == 0

    scenario(test, SPEC)


def test_closing_a_follow_releases_it_and_its_engine_streams() -> None:
    async def test(logs: WorkloadLogs, engine: FakeEngine, desired: InMemoryDesired) -> None:
        follow = logs.follow([KEY], tail=0)
        assert logs.follows == 1
        await trio.sleep(1)  # the engine stream is open and waits for a line
        await follow.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert logs.follows == 0
        assert engine._log_written.statistics().tasks_waiting == 0
        with pytest.raises(StopAsyncIteration):
            await follow.__anext__()

    scenario(test, SPEC)


def test_follows_are_limited() -> None:
    async def test(logs: WorkloadLogs, engine: FakeEngine, desired: InMemoryDesired) -> None:
        async with aclosing(logs.follow([KEY], tail=0)):
            with pytest.raises(TooManyFollows) as refused:
                logs.follow([KEY], tail=0)
            assert str(refused.value) == (
                "too many log follows: this node already serves 1, the limit"
            )
        with pytest.raises(ValueError, match="tail must not be negative, got -1"):
            logs.follow([KEY], tail=-1)

    scenario(test, SPEC, max_follows=1)
