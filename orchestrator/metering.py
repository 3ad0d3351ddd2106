"""What each replica used on this node: CPU time, memory and uptime, accumulated locally from
the engine's counters. The engine resets a container's CPU counter on every start, so each run
is tracked on its own and folded into the replica's total when it ends."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from chain.clock import Clock
from orchestrator.engine import ContainerEngine
from orchestrator.errors import EngineFailure
from orchestrator.spec import ReplicaKey

log = logging.getLogger("statemesh.orchestrator.metering")


@dataclass(frozen=True, slots=True)
class ReplicaUsage:
    """Totals for one replica over every run of its containers on this node."""

    cpu_ns: int = 0
    memory_bytes: int = 0
    """At the last sample, summed over the replica's running containers."""
    peak_memory_bytes: int = 0
    uptime_ms: int = 0
    """Summed over containers: a replica of two containers accrues two seconds per second."""
    samples: int = 0
    disk_bytes: int = 0
    """At the last disk measurement: the writable layers of its containers and its volumes."""
    peak_disk_bytes: int = 0

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ns / 1e9

    @property
    def uptime_seconds(self) -> float:
        return self.uptime_ms / 1000


@dataclass(frozen=True, slots=True)
class VolumeUsage:
    """A persistent volume this node keeps for an application instance it does not run here
    (deleted and within its retention period, or moved away): it still takes disk."""

    chain: str
    app: str
    instance: int
    replica: int
    volume: str
    bytes: int


@dataclass(frozen=True, slots=True)
class MeterTarget:
    """A running container to sample."""

    replica: ReplicaKey
    container_id: str
    started_at: float
    """Unix seconds: tells one run of the container from the next."""


@dataclass(slots=True)
class _Run:
    replica: ReplicaKey
    started_at: float
    cpu_ns: int = 0
    memory_bytes: int = 0
    seen_until: float = 0.0


@dataclass(slots=True)
class _Totals:
    cpu_ns: int = 0
    uptime_ms: int = 0
    peak_memory_bytes: int = 0
    samples: int = 0
    disk_bytes: int = 0
    peak_disk_bytes: int = 0
    runs: dict[str, _Run] = field(default_factory=dict)
    """The current run of each container, by container id."""


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


class Meter:
    """Accumulates samples and run ends per replica. Reporting a run's end twice is harmless."""

    def __init__(self) -> None:
        self._totals: dict[ReplicaKey, _Totals] = {}
        self._ended: dict[str, float] = {}

    def record_sample(
        self,
        target: MeterTarget,
        *,
        sampled_at: float,
        cpu_ns: int,
        memory_bytes: int,
    ) -> None:
        if self._ended.get(target.container_id) == target.started_at:
            return  # read just before the run ended, which is already counted whole
        totals = self._totals.setdefault(target.replica, _Totals())
        run = totals.runs.get(target.container_id)
        if run is not None and run.started_at != target.started_at:
            self._fold(totals, target.container_id, run, run.seen_until)
            run = None
        if run is None:
            run = totals.runs[target.container_id] = _Run(target.replica, target.started_at)
        run.cpu_ns = max(run.cpu_ns, cpu_ns)
        run.memory_bytes = memory_bytes
        run.seen_until = max(run.seen_until, sampled_at)
        totals.samples += 1
        current = sum(r.memory_bytes for r in totals.runs.values())
        totals.peak_memory_bytes = max(totals.peak_memory_bytes, current)

    def record_exit(
        self, replica: ReplicaKey, container_id: str, started_at: float, finished_at: float
    ) -> None:
        """A run ended: its whole duration counts, even if it was never sampled."""
        if self._ended.get(container_id) == started_at:
            return
        self._ended[container_id] = started_at
        totals = self._totals.setdefault(replica, _Totals())
        run = totals.runs.get(container_id)
        if run is None or run.started_at != started_at:
            if run is not None:
                self._fold(totals, container_id, run, run.seen_until)
            run = _Run(replica, started_at)
        self._fold(totals, container_id, run, finished_at)

    def record_disk(self, replica: ReplicaKey, disk_bytes: int) -> None:
        """A disk measurement of the replica: its containers' writable layers and volumes."""
        totals = self._totals.setdefault(replica, _Totals())
        totals.disk_bytes = disk_bytes
        totals.peak_disk_bytes = max(totals.peak_disk_bytes, disk_bytes)

    def forget_container(self, container_id: str) -> None:
        """The container was removed: keep its totals, drop what tracked its runs."""
        self._ended.pop(container_id, None)
        for totals in self._totals.values():
            run = totals.runs.get(container_id)
            if run is not None:
                self._fold(totals, container_id, run, run.seen_until)

    def _fold(self, totals: _Totals, container_id: str, run: _Run, ended_at: float) -> None:
        totals.cpu_ns += run.cpu_ns
        totals.uptime_ms += _ms(ended_at - run.started_at)
        totals.runs.pop(container_id, None)

    def usage(self, replica: ReplicaKey) -> ReplicaUsage:
        totals = self._totals.get(replica)
        if totals is None:
            return ReplicaUsage()
        runs = totals.runs.values()
        return ReplicaUsage(
            cpu_ns=totals.cpu_ns + sum(r.cpu_ns for r in runs),
            memory_bytes=sum(r.memory_bytes for r in runs),
            peak_memory_bytes=totals.peak_memory_bytes,
            uptime_ms=totals.uptime_ms + sum(_ms(r.seen_until - r.started_at) for r in runs),
            samples=totals.samples,
            disk_bytes=totals.disk_bytes,
            peak_disk_bytes=totals.peak_disk_bytes,
        )

    def replicas(self) -> list[ReplicaKey]:
        return sorted(self._totals)


async def sample(
    engine: ContainerEngine,
    meter: Meter,
    targets: Iterable[MeterTarget],
    *,
    clock: Clock,
    limiter: trio.CapacityLimiter,
) -> int:
    """Reads the counters of every target into the meter; returns how many were read.

    A container that stopped in the meantime is skipped: its end is reported by the controller."""
    read = 0

    async def one(target: MeterTarget) -> None:
        nonlocal read
        async with limiter:
            try:
                stats = await engine.stats(target.container_id)
            except EngineFailure as e:
                log.debug("no sample of %s: %s", target.container_id[:12], e)
                return
        meter.record_sample(
            target,
            sampled_at=clock.now_ms() / 1000,
            cpu_ns=stats.cpu_ns,
            memory_bytes=stats.memory_bytes,
        )
        read += 1

    async with trio.open_nursery() as nursery:
        for target in targets:
            nursery.start_soon(one, target)
    return read
