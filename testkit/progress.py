"""Waits measured in the chain's own progress rather than in seconds: on a loaded machine blocks
come later, and a wait that counts blocks waits as long as the chain needs, while a chain that
stops is still caught."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

from testkit.nodes import NodeProcess, RpcFailure

T = TypeVar("T")

STALL_SECONDS = 60.0
"""How long a chain may go without a new block before a wait gives up: many slots even on a
loaded 2-core machine, and still a bound when the chain has stopped for good."""

POLL_SECONDS = 0.1


def chain_height(node: NodeProcess, *, finalized: bool = False) -> int | None:
    """The node's best (or finalized) block number, or None while it does not answer."""
    try:
        return node.finalized_number() if finalized else node.best_number()
    except (httpx.HTTPError, RpcFailure, ValueError, KeyError, TypeError):
        return None


def wait_blocks(
    node: NodeProcess,
    predicate: Callable[[], T],
    *,
    blocks: int | None,
    what: str,
    finalized: bool = False,
    stall_seconds: float = STALL_SECONDS,
) -> T:
    """Wait until `predicate()` is truthy and return its value. Fail if `node`'s best chain (its
    finalized chain with `finalized`) grew by `blocks` blocks first, which is the condition's
    budget in chain progress (None: no budget, only for a condition that the chain's progress
    brings about by itself, such as finality), or if it did not grow at all for
    `stall_seconds`."""
    start = chain_height(node, finalized=finalized)
    last_height, last_change = start, time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        height = chain_height(node, finalized=finalized)
        now = time.monotonic()
        if height is not None and height != last_height:
            last_height, last_change = height, now
            if start is None:
                start = height
        kind = "finalized blocks" if finalized else "blocks"
        if (
            blocks is not None
            and start is not None
            and height is not None
            and height - start >= blocks
        ):
            raise AssertionError(
                f"{what}: not reached within {blocks} {kind} (#{start} to #{height})\n"
                f"{node.log()[-3000:]}"
            )
        if now - last_change > stall_seconds:
            raise AssertionError(
                f"{what}: not reached, and no new {kind} for {stall_seconds:.0f} s (at "
                f"#{last_height})\n{node.log()[-3000:]}"
            )
        time.sleep(POLL_SECONDS)


def wait_finalized(
    node: NodeProcess, number: int, *, what: str = "", stall_seconds: float = STALL_SECONDS
) -> None:
    """Wait until `node` has finalized block `number`, for as long as its finality moves on:
    fail once it has not moved for `stall_seconds`."""

    def reached() -> bool:
        height = chain_height(node, finalized=True)
        return height is not None and height >= number

    wait_blocks(
        node,
        reached,
        blocks=None,
        what=what or f"#{number} finalized on {node.base_path.name}",
        finalized=True,
        stall_seconds=stall_seconds,
    )
