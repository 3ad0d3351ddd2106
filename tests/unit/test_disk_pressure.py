"""Disk pressure on the engine's data root: the decision with its two water marks (a matrix), the
watch that logs once when pressure starts and once when it ends, and what a node under pressure
declares on chain: no more disk than is placed on it, so that what it holds stays and new disk
requests go elsewhere (or wait), until the pressure is over."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from chain.runtime import apps, nodes
from chain.runtime.manifest import GIB, validate_manifest
from orchestrator.disk_pressure import DiskPressureMonitor, WaterMarks, under_pressure
from orchestrator.errors import EngineFailure, EngineUnavailable
from orchestrator.image_gc import FilesystemUsage
from orchestrator.workloads import WorkloadService
from tests.factories import ALICE
from tests.unit.test_apps import CREATE, DELETE, active_chain
from tests.unit.test_presence import ChainFake
from tests.unit.test_towers import NODE_KEYS, OPERATORS, TowerChain
from vdf.presence import Capacity, PresenceService, allocated_disk_gib, under_disk_pressure

MARKS = WaterMarks(high=85, low=80)


def usage(percent_used: float, total: int = 10_000) -> FilesystemUsage:
    return FilesystemUsage(total, total - round(total * percent_used / 100))


@pytest.mark.parametrize(
    ("was", "used", "now"),
    [
        (False, 0, False),
        (False, 79.99, False),
        (False, 80, False),
        (False, 84, False),
        (False, 85, False),  # at the high mark: not above it
        (False, 85.01, True),
        (False, 100, True),
        (True, 100, True),
        (True, 85.01, True),
        (True, 85, True),
        (True, 82, True),  # between the marks: stays under pressure
        (True, 80, True),  # at the low mark: not below it
        (True, 79.99, False),
        (True, 0, False),
    ],
)
def test_pressure_starts_above_the_high_mark_and_ends_below_the_low_one(
    was: bool, used: float, now: bool
) -> None:
    assert under_pressure(was, usage(used), MARKS) is now


def test_equal_marks_have_no_band_and_an_empty_filesystem_changes_nothing() -> None:
    same = WaterMarks(high=90, low=90)
    assert under_pressure(False, usage(90.01), same) is True
    assert under_pressure(True, usage(90), same) is True
    assert under_pressure(True, usage(89.99), same) is False
    assert under_pressure(True, FilesystemUsage(0, 0), MARKS) is True
    assert under_pressure(False, FilesystemUsage(0, 0), MARKS) is False


def test_the_decision_uses_integers_of_any_size() -> None:
    """A petabyte filesystem one byte past the mark is past it."""
    total = 10**18
    exactly = FilesystemUsage(total, total - total * 85 // 100)
    assert under_pressure(False, exactly, MARKS) is False
    assert under_pressure(False, FilesystemUsage(total, exactly.available_bytes - 1), MARKS) is True


@pytest.mark.parametrize(
    ("high", "low"), [(80, 85), (0, 0), (85, 0), (101, 80), (100, 101), (-5, -10)]
)
def test_bad_water_marks_are_refused(high: int, low: int) -> None:
    with pytest.raises(ValueError, match="1 <= low <= high <= 100"):
        WaterMarks(high=high, low=low)


class Disk:
    """A filesystem whose usage the test sets, and an engine that says where its root is."""

    def __init__(self) -> None:
        self.root: Path | None = Path("/srv/docker")
        self.percent = 10.0
        self.gone = False
        self.asked = 0

    async def data_root(self) -> Path | None:
        self.asked += 1
        return self.root

    def usage(self, path: Path) -> FilesystemUsage:
        assert path == self.root
        if self.gone:
            raise FileNotFoundError(2, "No such file or directory")
        return usage(self.percent, total=100 << 20)


def test_the_watch_logs_once_when_pressure_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = Disk()
    monitor = DiskPressureMonitor(
        MARKS,
        lambda: "unix:///run/engine.sock",
        disk.data_root,
        usage=disk.usage,
        period_seconds=1.0,
    )

    async def main() -> None:
        seen = []
        for percent in (10, 50, 86, 90, 99, 84, 81, 80, 79, 84, 86, 95):
            disk.percent = percent
            await monitor.check()
            seen.append(monitor.under_pressure())
        assert seen == [False] * 2 + [True] * 6 + [False] * 2 + [True] * 2
        # The root gone: it is asked for again, and the decision is kept meanwhile.
        disk.gone = True
        await monitor.check()
        assert monitor.data_root is None and monitor.under_pressure()
        disk.gone = False
        disk.percent = 50
        await monitor.check()
        assert monitor.data_root == disk.root and not monitor.under_pressure()
        # The service looks again every period.
        disk.percent = 90
        with trio.move_on_after(1.5):
            await monitor.run()
        assert monitor.under_pressure()

    with caplog.at_level(logging.INFO, logger="statemesh.disk"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    messages = [r.getMessage() for r in caplog.records]
    started = [m for m in messages if m.startswith("disk pressure: ")]
    ended = [m for m in messages if m.startswith("disk pressure is over")]
    assert started == [
        f"disk pressure: /srv/docker is {percent}% full (above 85%): this node takes no more "
        "disk requests until it is below 80%"
        for percent in ("86.0", "86.0", "90.0")
    ]
    assert ended == [
        "disk pressure is over: /srv/docker is 79.0% full (below 80%)",
        "disk pressure is over: /srv/docker is 50.0% full (below 80%)",
    ]
    assert disk.asked == 2
    assert (
        messages.count(
            "watching the disk of the engine's data root /srv/docker: pressure above 85% used, "
            "relieved below 80%"
        )
        == 2
    )


def test_a_remote_engine_is_said_once_and_never_pressured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disk = Disk()
    monitor = DiskPressureMonitor(
        MARKS, lambda: "tcp://10.1.2.3:2375", disk.data_root, period_seconds=1.0
    )

    async def main() -> None:
        with trio.move_on_after(5):
            await monitor.run()

    with caplog.at_level(logging.INFO, logger="statemesh.disk"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [r.getMessage() for r in caplog.records] == [
        "the engine at tcp://10.1.2.3:2375 is not on this host: its disk pressure is not watched"
    ]
    assert not monitor.under_pressure()
    assert disk.asked == 0  # its data root is on another machine: never asked for


def test_an_engine_that_never_answered_has_no_data_root_and_is_not_measured() -> None:
    disk = Disk()
    disk.root = None
    monitor = DiskPressureMonitor(
        MARKS, lambda: "unix:///run/engine.sock", disk.data_root, usage=disk.usage
    )
    trio.run(monitor.check)
    trio.run(monitor.check)
    assert disk.asked == 2 and monitor.data_root is None and not monitor.under_pressure()


@pytest.mark.parametrize(
    ("allocated", "least", "declared"),
    [(0, 1, 1), (3, 1, 3), (10, 1, 10), (12, 1, 10), (0, 0, 0), (0, 20, 10)],
)
def test_under_pressure_a_node_declares_what_is_placed_within_its_class_and_capacity(
    allocated: int, least: int, declared: int
) -> None:
    capacity = Capacity(4, 4096, 10, 0)
    assert under_disk_pressure(capacity, allocated, least) == Capacity(4, 4096, declared, 0)


def disk_app(name: str, replicas: int, disk: str) -> bytes:
    data: dict[str, Any] = {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"requests": {"disk": disk}}}
            ],
        },
    }
    return validate_manifest(data).canonical_json()


def node_zero(chain: TowerChain, pressure: Callable[[], bool]) -> PresenceService:
    """The presence of node 0 (10 GB of disk, operator bob) with its disk pressure."""
    return PresenceService(
        ChainFake(chain),  # type: ignore[arg-type]
        operator=OPERATORS[0],
        identity=NODE_KEYS[0],
        node_class="cpu",
        capacity=Capacity(2, 1024, 10, 0),
        address="/ip4/127.0.0.1/tcp/1",
        disk_pressure=pressure,
    )


def test_a_node_under_disk_pressure_keeps_its_replicas_and_takes_no_new_disk() -> None:
    """Three nodes of 10 GB; node 0's disk fills while it holds a 3 GiB replica. It declares
    3 GB: the replica stays, a new app's 5 GiB replicas go to the other nodes or wait, and when
    the pressure is over the waiting one comes to node 0."""
    chain = active_chain()
    me = NODE_KEYS[0].public
    chain.send(ALICE, CREATE.call(manifest=disk_app("db", 3, "3Gi")))
    assert allocated_disk_gib(chain.state, me) == 3
    pressure = [False]
    presence = node_zero(chain, lambda: pressure[0])

    def declared_disk() -> int:
        record = nodes.get_node(chain.state, me)
        assert record is not None
        return record.disk_gb

    def holders(name: str) -> list[bytes]:
        return [e.node for e in apps.placement(chain.state, name)]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(presence._keep_registration)
            await trio.sleep(5)
            assert declared_disk() == 10
            db = holders("db")
            assert me in db
            pressure[0] = True
            await trio.sleep(2)  # no settling time: the water marks already hold it steady
            assert declared_disk() == 3
            assert holders("db") == db  # nothing moved
            chain.send(ALICE, CREATE.call(manifest=disk_app("more", 3, "5Gi")))
            more = apps.placement(chain.state, "more")
            assert me not in [e.node for e in more]
            pending = [e for e in more if not e.node]
            assert len(pending) == 1
            assert pending[0].reason == "insufficient disk on every eligible node"
            # A hostile tenant's app that asks for the node's whole disk waits too.
            chain.send(ALICE, CREATE.call(manifest=disk_app("hog", 1, f"{10 * GIB}")))
            assert holders("hog") == [b""]
            chain.send(ALICE, DELETE.call(app="hog"))
            # Pressure ends: node 0 declares its disk again and the waiting replica comes.
            pressure[0] = False
            await trio.sleep(2)
            assert declared_disk() == 10
            assert holders("db") == db
            assert [e.node for e in apps.placement(chain.state, "more")].count(me) == 1
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_under_pressure_with_nothing_placed_a_node_declares_its_class_minimum() -> None:
    chain = active_chain()
    me = NODE_KEYS[0].public
    presence = node_zero(chain, lambda: True)

    async def main() -> None:
        with trio.move_on_after(3):
            await presence._keep_registration()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    record = nodes.get_node(chain.state, me)
    assert record is not None
    assert (record.cores, record.memory_mb, record.disk_gb) == (2, 1024, 1)


def test_pressure_that_ends_before_the_next_look_is_undone_at_once() -> None:
    """Declared under pressure, then the pressure is over at the very next look: the whole disk
    is declared again then, not only after the blocks a lost transaction is waited for."""
    chain = active_chain()
    looks = iter([True])
    presence = node_zero(chain, lambda: next(looks, False))
    declared = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(presence._keep_registration)
            # Half-way between the node's looks (every second), never at the same instant.
            await trio.sleep(0.5)
            for _ in range(3):
                await trio.sleep(1)
                record = nodes.get_node(chain.state, NODE_KEYS[0].public)
                assert record is not None
                declared.append(record.disk_gb)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 1 in declared and declared[-1] == 10, declared


class Adapter:
    """The engine adapter's `data_root`, as an engine answers it (or does not)."""

    def __init__(self, root: str | EngineFailure) -> None:
        self.root = root

    async def data_root(self) -> str:
        if isinstance(self.root, EngineFailure):
            raise self.root
        return self.root


@pytest.mark.parametrize(
    ("adapter", "root"),
    [
        (None, None),  # the engine never answered
        (Adapter("/var/lib/docker"), Path("/var/lib/docker")),
        (Adapter(""), None),  # an engine that does not say
        (Adapter(EngineUnavailable("unix:///run/engine.sock", "gone")), None),
    ],
)
def test_the_data_root_is_asked_of_the_engine_through_its_adapter(
    adapter: Adapter | None, root: Path | None
) -> None:
    workloads = WorkloadService(None, b"\x01" * 32, "dev", None)  # type: ignore[arg-type]
    workloads._docker = adapter  # type: ignore[assignment]
    assert trio.run(workloads.engine_data_root) == root
