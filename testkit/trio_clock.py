"""A `chain.clock.Clock` that reads trio's clock, so that code given a Clock runs on a test's
`trio.testing.MockClock` (time jumps when every task waits)."""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass
class TrioClock:
    """Wall-clock milliseconds `start_ms` plus trio's time; its monotonic reading is trio's."""

    start_ms: int = 0

    def now_ms(self) -> int:
        return self.start_ms + int(trio.current_time() * 1000)

    def monotonic(self) -> float:
        return trio.current_time()
