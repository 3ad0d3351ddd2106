"""Image GC by last use: which recorded images a pass removes, in which order, and when it stops;
over an in-memory image store and a filesystem whose use follows what the store holds."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import pytest
import trio

from orchestrator.image_gc import FilesystemUsage, ImageCollector, ImageGcPolicy, ImageUsage


class Clock:
    """Monotonic seconds set by the test (the wall reading follows them)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def now_ms(self) -> int:
        return round(self.now * 1000)


@dataclass
class FakeStore:
    """Images by id with their size on a 1000-byte disk, `base` of it used by other things."""

    image_usage: ImageUsage
    sizes: dict[str, int] = field(default_factory=dict)
    in_use: set[str] = field(default_factory=set)
    base: int = 500
    removed: list[str] = field(default_factory=list)

    async def data_root(self) -> str:
        return "/fake"

    async def images_in_use(self) -> set[str]:
        return set(self.in_use)

    async def remove_pulled_image(self, image_id: str, references: Collection[str]) -> bool:
        assert image_id not in self.in_use
        self.sizes.pop(image_id)
        self.removed.append(image_id)
        return True

    def measure(self, path: str) -> FilesystemUsage:
        used = self.base + sum(self.sizes.values())
        return FilesystemUsage(capacity_bytes=1000, available_bytes=1000 - used)


def store_with(clock: Clock, *images: tuple[str, int, float]) -> FakeStore:
    """Images (id, size, last used) recorded as pulled, and present."""
    usage = ImageUsage(clock)
    store = FakeStore(usage)
    for image_id, size, used_at in images:
        clock.now = used_at
        usage.used(image_id, f"{image_id}:1")
        store.sizes[image_id] = size
    clock.now = 10_000.0
    return store


def collect(store: FakeStore, policy: ImageGcPolicy) -> list[str]:
    collector = ImageCollector(store, policy, measure=store.measure)
    return trio.run(collector.collect)


def test_below_the_high_mark_nothing_is_removed() -> None:
    clock = Clock()
    store = store_with(clock, ("a", 100, 1.0), ("b", 100, 2.0))  # 70 % used
    assert collect(store, ImageGcPolicy(high_percent=75, low_percent=60)) == []


def test_above_the_high_mark_the_least_recently_used_go_first_until_below_the_low_mark() -> None:
    clock = Clock()
    store = store_with(clock, ("new", 100, 30.0), ("old", 100, 10.0), ("mid", 100, 20.0))
    # 80 % used; below 65 % needs two images gone: the two used longest ago.
    assert collect(store, ImageGcPolicy(high_percent=75, low_percent=65)) == ["old", "mid"]
    assert set(store.sizes) == {"new"}


def test_images_in_use_recent_ones_and_unrecorded_ones_stay() -> None:
    clock = Clock()
    store = store_with(clock, ("used", 100, 1.0), ("fresh", 100, 9_950.0), ("idle", 50, 2.0))
    store.sizes["operators"] = 100  # present, never pulled for an app
    store.in_use = {"used"}
    # 85 % used and the low mark out of reach: only what may go goes.
    assert collect(store, ImageGcPolicy(high_percent=50, low_percent=10)) == ["idle"]
    assert set(store.sizes) == {"used", "fresh", "operators"}
    # The image in use counts as used now: it is the most recent.
    entry = store.image_usage.get("used")
    assert entry is not None and entry.last_used == clock.now


def test_marks_must_be_ordered() -> None:
    with pytest.raises(ValueError) as raised:
        ImageGcPolicy(high_percent=70, low_percent=80)
    assert str(raised.value) == "image GC marks must satisfy 0 <= low (80) <= high (70) <= 100"
