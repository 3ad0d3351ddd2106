"""Waiting inside a trio test for something another task or process does on its own time."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def eventually(
    predicate: Callable[[], bool], seconds: float = 5.0, every: float = 0.02
) -> None:
    """Return once `predicate()` holds, asking every `every` seconds; fail the test after
    `seconds`."""
    for _ in range(max(1, round(seconds / every))):
        if predicate():
            return
        await trio.sleep(every)
    if not predicate():
        raise AssertionError(f"not within {seconds:g} s")
