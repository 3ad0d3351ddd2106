"""Image garbage collection by last use, as kubelet's: the images this node pulled for apps, when
each was last used, and a periodic pass that removes the least recently used unused ones while
the engine's data root is above a high-water mark."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from chain.clock import Clock, SystemClock
from orchestrator.errors import EngineFailure

if TYPE_CHECKING:
    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus.
    from trio_typing import TaskStatus

log = logging.getLogger("statemesh.images")
_SYSTEM_CLOCK = SystemClock()


@dataclass(slots=True)
class PulledImage:
    """One image (by id) this node pulled for an app."""

    last_used: float
    """When a container of this node was last created from it, or last seen using it (the
    usage record's clock)."""
    references: set[str] = field(default_factory=set)
    """The digest references it was pulled as (`NAME@sha256:...`; the node pulls a tag as its
    digest and makes no tag): what removing it removes. A tag of the image (the operator's)
    keeps it."""


class ImageUsage:
    """The images this node pulled for apps and when each was last used.

    Kept in memory: after a restart the node knows none, so none is collected (they are left as
    if the operator's) until a replica uses it again, which pulls it again and records it."""

    def __init__(self, clock: Clock = _SYSTEM_CLOCK) -> None:
        self.clock = clock
        """Its monotonic reading dates each use."""
        self._images: dict[str, PulledImage] = {}

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._images

    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self) -> Iterator[str]:
        return iter(self._images)

    def get(self, image_id: str) -> PulledImage | None:
        return self._images.get(image_id)

    def used(self, image_id: str, reference: str | None = None) -> None:
        """A container of this node is created from `image_id`, pulled as `reference`."""
        entry = self._images.setdefault(image_id, PulledImage(self.clock.monotonic()))
        entry.last_used = self.clock.monotonic()
        if reference is not None:
            entry.references.add(reference)

    def seen_in_use(self, image_ids: Collection[str]) -> None:
        """Images that containers use now count as used now (a container restarted, or running
        for long, keeps its image recent)."""
        now = self.clock.monotonic()
        for image_id in image_ids:
            entry = self._images.get(image_id)
            if entry is not None:
                entry.last_used = now

    def forget(self, image_id: str) -> None:
        self._images.pop(image_id, None)

    def collectable(self, in_use: Collection[str], min_age_seconds: float) -> list[str]:
        """The recorded images no container uses and none used for `min_age_seconds` (an image
        just pulled for a create that has not happened yet stays), least recently used first."""
        cutoff = self.clock.monotonic() - min_age_seconds
        idle = [
            (entry.last_used, image_id)
            for image_id, entry in self._images.items()
            if image_id not in in_use and entry.last_used <= cutoff
        ]
        return [image_id for _, image_id in sorted(idle)]


@dataclass(frozen=True, slots=True)
class FilesystemUsage:
    capacity_bytes: int
    available_bytes: int
    """What an unprivileged writer may still use (`df`'s Avail)."""

    @property
    def used_percent(self) -> float:
        """As kubelet counts it: what is not available, over the capacity."""
        if self.capacity_bytes <= 0:
            return 0.0
        return 100.0 * (self.capacity_bytes - self.available_bytes) / self.capacity_bytes


def disk_usage(path: str | os.PathLike[str]) -> FilesystemUsage:
    """The usage of the filesystem that holds `path` (`OSError` if it is not on this host): what
    the image GC and the node's disk pressure both measure."""
    stats = os.statvfs(path)
    return FilesystemUsage(stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize)


@dataclass(frozen=True, slots=True)
class ImageGcPolicy:
    """Kubelet's image GC settings (`imageGCHighThresholdPercent`, ...)."""

    high_percent: float = 85.0
    """Above this use of the data root's filesystem, a pass removes images ..."""
    low_percent: float = 80.0
    """... until the use is below this."""
    period_seconds: float = 30.0
    min_age_seconds: float = 120.0
    """An image used more recently than this is never removed."""

    def __post_init__(self) -> None:
        if not 0 <= self.low_percent <= self.high_percent <= 100:
            raise ValueError(
                f"image GC marks must satisfy 0 <= low ({self.low_percent}) <= high "
                f"({self.high_percent}) <= 100"
            )


class ImageStore(Protocol):
    """What the collector needs of an engine (`DockerAdapter` is one)."""

    image_usage: ImageUsage

    async def data_root(self) -> str:
        """Where the engine keeps its images (`DockerRootDir`)."""
        ...

    async def images_in_use(self) -> set[str]:
        """The image ids of every container of the engine, in any state, anyone's."""
        ...

    async def remove_pulled_image(self, image_id: str, references: Collection[str]) -> bool:
        """Removes the image's digest `references` and, unless a tag or another reference
        keeps it, the image. True if the image is gone."""
        ...


@dataclass(slots=True)
class ImageGcStatistics:
    passes: int = 0
    removed: int = 0
    last_used_percent: float = 0.0


class ImageCollector:
    """The periodic pass. `measure` reads the data root's filesystem (a parameter so that a
    node whose engine is elsewhere, or a test, can give another)."""

    def __init__(
        self,
        store: ImageStore,
        policy: ImageGcPolicy | None = None,
        *,
        measure: Callable[[str], FilesystemUsage] = disk_usage,
    ) -> None:
        self.store = store
        self.policy = policy or ImageGcPolicy()
        self.measure = measure
        self._stats = ImageGcStatistics()
        self._unmeasurable: str | None = None

    def statistics(self) -> ImageGcStatistics:
        return dataclasses.replace(self._stats)

    async def _usage(self, root: str) -> FilesystemUsage | None:
        try:
            usage = await trio.to_thread.run_sync(self.measure, root)
        except OSError as exc:
            if self._unmeasurable != root:
                log.warning("image GC is off: cannot measure the engine's data root: %s", exc)
                self._unmeasurable = root
            return None
        self._unmeasurable = None
        self._stats.last_used_percent = usage.used_percent
        return usage

    async def collect(self) -> list[str]:
        """One pass: refreshes the last use of images in use, and above the high mark removes
        collectable images, least recently used first, until below the low mark. Returns the
        ids removed."""
        self._stats.passes += 1
        usage_record = self.store.image_usage
        in_use = await self.store.images_in_use()
        usage_record.seen_in_use(in_use)
        root = await self.store.data_root()
        usage = await self._usage(root)
        if usage is None or usage.used_percent <= self.policy.high_percent:
            return []
        removed: list[str] = []
        before = usage.used_percent
        for image_id in usage_record.collectable(in_use, self.policy.min_age_seconds):
            entry = usage_record.get(image_id)
            references = sorted(entry.references) if entry is not None else []
            try:
                gone = await self.store.remove_pulled_image(image_id, references)
            except EngineFailure as exc:
                log.info("image GC could not remove %s: %s", image_id[:19], exc.message)
                continue
            usage_record.forget(image_id)
            if gone:
                removed.append(image_id)
            usage = await self._usage(root)
            if usage is None or usage.used_percent < self.policy.low_percent:
                break
        self._stats.removed += len(removed)
        log.info(
            "image GC: the data root was %.1f%% used (high mark %.0f%%): removed %d unused "
            "image(s), now %.1f%%",
            before,
            self.policy.high_percent,
            len(removed),
            usage.used_percent if usage is not None else before,
        )
        return removed

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A pass every period until cancelled. A failed pass (the engine away) is logged and
        the next one tries again."""
        task_status.started()
        while True:
            await trio.sleep(self.policy.period_seconds)
            try:
                await self.collect()
            except EngineFailure as exc:
                log.info("image GC pass failed: %s", exc.message)
