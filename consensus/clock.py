"""The slot clock: wall-clock milliseconds, injectable so tests and consensus code never read the
system clock themselves."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000
