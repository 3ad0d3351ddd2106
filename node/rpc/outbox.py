"""What one WebSocket still has to write: responses and notifications in the order they were
queued, with bounds that hold whatever the client does (a client that never reads costs at most
`max_queued_bytes` of notifications plus one ending notice per subscription)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code once everything before it is written."""

    code: int
    reason: str


class Queued:
    """A notification source's count of notifications not yet written (one per subscription)."""

    __slots__ = ("queued",)

    def __init__(self) -> None:
        self.queued = 0


Item = str | Close


class Outbox:
    """The queue in front of a socket's only writer.

    - `offer` (notifications) never waits: it refuses when the subscription already has
      `per_source` notifications waiting or the queue holds `max_queued_bytes`, and the caller
      drops that subscription;
    - `put` (responses) waits while the queue is over `max_queued_bytes`, which stops the
      connection from reading further requests until its client reads (backpressure);
    - `append` (ending notices, close) always queues: one per subscription at most.
    """

    def __init__(self, max_queued_bytes: int, per_source: int) -> None:
        self._items: deque[tuple[Item, Queued | None]] = deque()
        self._bytes = 0
        self._max_bytes = max_queued_bytes
        self._per_source = per_source
        self._writer = trio.lowlevel.ParkingLot()
        self._drained = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def offer(self, text: str, source: Queued) -> str | None:
        """Queue a notification, or say why it does not fit."""
        if source.queued >= self._per_source:
            return f"{self._per_source} notifications were waiting"
        if self._bytes + len(text) > self._max_bytes:
            return f"{self._bytes} bytes of notifications were waiting on this connection"
        source.queued += 1
        self._push(text, source)
        return None

    async def put(self, text: str) -> None:
        while self._bytes > self._max_bytes:
            await self._drained.park()
        self._push(text, None)

    def append(self, item: Item) -> None:
        self._push(item, None)

    async def get(self) -> Item:
        while not self._items:
            await self._writer.park()
        item, source = self._items.popleft()
        if isinstance(item, str):
            self._bytes -= len(item)
        if source is not None:
            source.queued -= 1
        if self._drained and self._bytes <= self._max_bytes:
            self._drained.unpark_all()
        return item

    def _push(self, item: Item, source: Queued | None) -> None:
        self._items.append((item, source))
        if isinstance(item, str):
            self._bytes += len(item)
        if self._writer:
            self._writer.unpark_all()
