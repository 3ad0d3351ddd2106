"""Exponential back-off per key, as the kubelet does it for CrashLoopBackOff and ImagePullBackOff.

Pure bookkeeping: the caller passes the time in, so tests drive it with any clock."""

from __future__ import annotations

from collections.abc import Container, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delays of `initial_seconds`, multiplied by `factor` up to `max_seconds`."""

    initial_seconds: float = 10.0
    factor: float = 2.0
    max_seconds: float = 300.0
    reset_after_seconds: float = 600.0
    """A run at least this long forgets the earlier failures."""

    def __post_init__(self) -> None:
        if self.initial_seconds <= 0 or self.max_seconds < self.initial_seconds:
            raise ValueError("back-off needs 0 < initial_seconds <= max_seconds")
        if self.factor < 1:
            raise ValueError("back-off factor must be at least 1")


@dataclass(frozen=True, slots=True)
class _Entry:
    delay: float
    """The wait after `since` before the next attempt."""
    since: float
    """When the last attempt was made."""


class Backoff(Generic[K]):
    """When the next attempt for a key may be made.

    For restarts, record each restart as an attempt: the first restart after a crash is
    immediate, the next waits `initial_seconds` after it, then twice that, and so on. For
    failed operations (a missing image), record each failure: the first retry already waits."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self._entries: dict[K, _Entry] = {}

    def not_before(self, key: K, *, good_for: float = 0.0) -> float | None:
        """The earliest time of the next attempt, or None if it may happen now.

        `good_for` is how long the last run lasted; a long enough run resets the back-off."""
        entry = self._entries.get(key)
        if entry is None or good_for >= self.policy.reset_after_seconds:
            return None
        return entry.since + entry.delay

    def record(self, key: K, now: float, *, good_for: float = 0.0) -> float:
        """Records an attempt (or failure) at `now`; returns the wait before the next one."""
        entry = self._entries.get(key)
        if entry is None or good_for >= self.policy.reset_after_seconds:
            delay = self.policy.initial_seconds
        else:
            delay = min(entry.delay * self.policy.factor, self.policy.max_seconds)
        self._entries[key] = _Entry(delay=delay, since=now)
        return delay

    def delay(self, key: K) -> float:
        """The current wait after the last attempt (0 when there is none)."""
        entry = self._entries.get(key)
        return 0.0 if entry is None else entry.delay

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def retain(self, keys: Container[K]) -> None:
        """Forgets every key not in `keys`, so the table stays as small as the desired set."""
        for key in [k for k in self._entries if k not in keys]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
