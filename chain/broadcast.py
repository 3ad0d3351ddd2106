"""Fan-out of chain notifications (new heads, finalized heads) to any number of subscribers, each
through its own bounded channel: a subscriber that falls behind is dropped, never buffered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Broadcast(Generic[T]):
    def __init__(self, buffer: int = 256) -> None:
        self._buffer = buffer
        self._senders: list[trio.MemorySendChannel[T]] = []
        self._listeners: list[Callable[[T], None]] = []
        self.dropped = 0

    def listen(self, listener: Callable[[T], None]) -> None:
        """Call `listener` with each item as it is published, for as long as this broadcast
        lives: for fan-outs of their own that must not block (the RPC feeds)."""
        self._listeners.append(listener)

    def subscribe(self) -> trio.MemoryReceiveChannel[T]:
        send, receive = trio.open_memory_channel[T](self._buffer)
        self._senders.append(send)
        return receive

    def publish(self, item: T) -> None:
        for listener in self._listeners:
            listener(item)
        alive = []
        for send in self._senders:
            try:
                send.send_nowait(item)
            except trio.WouldBlock:
                # Too slow: closing its channel ends the subscriber's iteration.
                send.close()
                self.dropped += 1
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue
            alive.append(send)
        self._senders = alive

    def __len__(self) -> int:
        return len(self._senders)
