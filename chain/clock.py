"""The one clock seam. Services are handed a `Clock` and never read the system clock
themselves, so that tests can drive time and a node's notion of it has one source.

- `now_ms()`: wall-clock milliseconds since 1970, for what is compared across nodes (slots,
  timestamps, expiries written on chain or signed).
- `monotonic()`: seconds that never go back, for what is measured on this node only (rates,
  ban lengths, ages, deadlines checked by comparison).

Timeouts and back-offs that wait with `trio.sleep` or a cancel scope read trio's clock instead,
so that one clock both schedules and measures them (tests drive it with trio's mock clock).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told: both readings advance together."""

    def __init__(self, now_ms: int = 0, monotonic: float = 0.0) -> None:
        self._now_ms = now_ms
        self._monotonic = monotonic

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._monotonic += seconds
        self._now_ms += round(seconds * 1000)

    def set_ms(self, now_ms: int) -> None:
        """Set the wall reading (a test of skew); the monotonic reading does not move."""
        self._now_ms = now_ms
