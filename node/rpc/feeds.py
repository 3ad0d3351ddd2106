"""Feeds: a source whose items are encoded once and handed to every subscription synchronously,
for subscriptions that thousands of clients hold at once (new heads): the fan-out of one item
costs one encoding plus a string join per subscriber, and no task switch."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawJson:
    """A JSON value already encoded; a notification splices its text in as it is."""

    text: str


Listener = Callable[[RawJson], None]


class Feed(Generic[T]):
    """Publishes each item, encoded by `encode` (to JSON text), to every attached listener.

    Listeners run synchronously inside `publish` and must not block; one that cannot keep up
    detaches itself (a subscription that is told and dropped)."""

    def __init__(self, encode: Callable[[T], str]) -> None:
        self._encode = encode
        self._listeners: dict[int, Listener] = {}
        self._keys = itertools.count()

    def __len__(self) -> int:
        return len(self._listeners)

    def attach(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; the returned function removes it (idempotent)."""
        key = next(self._keys)
        self._listeners[key] = listener

        def detach() -> None:
            self._listeners.pop(key, None)

        return detach

    def publish(self, item: T) -> None:
        if not self._listeners:
            return
        encoded = RawJson(self._encode(item))
        # A copy: listeners detach themselves (or others) while being called.
        for listener in list(self._listeners.values()):
            listener(encoded)
