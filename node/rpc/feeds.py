"""Feeds: a source whose items are encoded once and handed to every subscription synchronously,
for subscriptions that thousands of clients hold at once (new heads): the fan-out of one item
costs one encoding plus a string join per subscriber, and no task switch. A feed may have a
current item, which a listener receives first, as it attaches (Substrate's head subscriptions
start with the current head)."""

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
    detaches itself (a subscription that is told and dropped). With `current`, a listener is
    first called with the current item, inside `attach`: as nothing is published between that
    call and the listener joining, it misses nothing and sees nothing twice, provided `current`
    answers the last item published (or, before any, the state they continue)."""

    def __init__(
        self, encode: Callable[[T], str], *, current: Callable[[], T] | None = None
    ) -> None:
        self._encode = encode
        self._current = current
        self._listeners: dict[int, Listener] = {}
        self._keys = itertools.count()
        self._last_encoded: tuple[T, RawJson] | None = None
        """The last item encoded and its encoding: a thousand subscribers that attach at once
        get the current item for one encoding."""

    def __len__(self) -> int:
        return len(self._listeners)

    def attach(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with the current item (if the feed has one), then add it; the
        returned function removes it (idempotent)."""
        if self._current is not None:
            listener(self._encoded(self._current()))
        key = next(self._keys)
        self._listeners[key] = listener

        def detach() -> None:
            self._listeners.pop(key, None)

        return detach

    def publish(self, item: T) -> None:
        if not self._listeners:
            return
        encoded = self._encoded(item)
        # A copy: listeners detach themselves (or others) while being called.
        for listener in list(self._listeners.values()):
            listener(encoded)

    def _encoded(self, item: T) -> RawJson:
        cached = self._last_encoded
        if cached is not None and cached[0] is item:
            return cached[1]
        encoded = RawJson(self._encode(item))
        self._last_encoded = (item, encoded)
        return encoded
