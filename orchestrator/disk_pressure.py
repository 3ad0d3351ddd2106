"""Disk pressure, as the kubelet's DiskPressure condition: whether the filesystem of the container
engine's data root is too full to take more disk requests. It starts above a high-water mark and
ends only below a lower one, so that usage hovering at one mark does not flap it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from orchestrator.engine_connection import resolve_docker_host
from orchestrator.image_gc import FilesystemUsage, disk_usage

log = logging.getLogger("statemesh.disk")

CHECK_SECONDS = 2.0
"""How often the data root's filesystem is looked at: one statvfs, cheap enough to do often, so
that pressure is seen within seconds of a burst of writes."""
DEFAULT_HIGH_WATER_PERCENT = 85
DEFAULT_LOW_WATER_PERCENT = 80


@dataclass(frozen=True, slots=True)
class WaterMarks:
    """Percent of the filesystem in use: pressure above `high`, relief below `low`."""

    high: int = DEFAULT_HIGH_WATER_PERCENT
    low: int = DEFAULT_LOW_WATER_PERCENT

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 100:
            raise ValueError(
                f"disk water marks must satisfy 1 <= low <= high <= 100 (percent), "
                f"not low {self.low} and high {self.high}"
            )


def under_pressure(was: bool, usage: FilesystemUsage, marks: WaterMarks) -> bool:
    """Whether the filesystem is under pressure now, given whether it was: above the high mark it
    is, below the low mark it is not, in between (or at a mark) it stays as it was. Used is what
    is not available to unprivileged writers, as kubelet counts it. Integers throughout: no
    rounding decides it."""
    total = usage.capacity_bytes
    if total <= 0:
        return was
    used = (total - usage.available_bytes) * 100
    if used > marks.high * total:
        return True
    if used < marks.low * total:
        return False
    return was


class DiskPressureMonitor:
    """Watches the filesystem of the engine's data root (the node runs on the engine's host) and
    tells whether it is under pressure. Logs once when pressure starts and once when it ends.
    The filesystem is measured as the image GC measures it (`disk_usage`)."""

    def __init__(
        self,
        marks: WaterMarks,
        docker_host: Callable[[], str | None],
        data_root: Callable[[], Awaitable[Path | None]],
        *,
        usage: Callable[[Path], FilesystemUsage] = disk_usage,
        period_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.marks = marks
        self.docker_host = docker_host
        """The engine's address: read at each look, as a dev node learns it once its private
        engine has started. An engine reached over the network is not watched: its data root
        is on another machine."""
        self._find_root = data_root
        """Where the engine keeps images, containers and volumes, as the engine says through
        its adapter (`WorkloadService.engine_data_root`); None while it does not answer."""
        self._usage = usage
        self.period_seconds = period_seconds
        self.data_root: Path | None = None
        self.last: FilesystemUsage | None = None
        self.pressure = False
        self._remote = False

    def under_pressure(self) -> bool:
        return self.pressure

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.check()
            await trio.sleep(self.period_seconds)

    async def check(self) -> None:
        """One look: find the data root if it is not known yet, then measure its filesystem."""
        if self.data_root is None:
            host = resolve_docker_host(self.docker_host())
            if not host.startswith("unix://"):
                if not self._remote:
                    log.info(
                        "the engine at %s is not on this host: its disk pressure is not watched",
                        host,
                    )
                    self._remote = True
                return
            root = await self._find_root()
            if root is None:
                return
            self._remote = False
            self.data_root = root
            log.info(
                "watching the disk of the engine's data root %s: pressure above %d%% used, "
                "relieved below %d%%",
                root,
                self.marks.high,
                self.marks.low,
            )
        try:
            usage = await trio.to_thread.run_sync(self._usage, self.data_root)
        except OSError as exc:
            # Gone (an engine moved or restarted elsewhere): ask the engine again next time,
            # and keep the last decision meanwhile.
            log.warning("cannot measure the disk of %s: %s", self.data_root, exc.strerror)
            self.data_root = None
            return
        self.last = usage
        now = under_pressure(self.pressure, usage, self.marks)
        if now and not self.pressure:
            log.warning(
                "disk pressure: %s is %.1f%% full (above %d%%): this node takes no more disk "
                "requests until it is below %d%%",
                self.data_root,
                usage.used_percent,
                self.marks.high,
                self.marks.low,
            )
        elif self.pressure and not now:
            log.info(
                "disk pressure is over: %s is %.1f%% full (below %d%%)",
                self.data_root,
                usage.used_percent,
                self.marks.low,
            )
        self.pressure = now
