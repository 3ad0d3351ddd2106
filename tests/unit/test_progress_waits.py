"""The chain-progress waits of the integration tests, against a scripted chain: a budget counted
in blocks, a stall caught, and a node that does not answer yet is no progress; and
`NodeProcess.wait_for`, whose timeout runs at the chain's pace."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from testkit import nodes
from testkit.nodes import NodeProcess
from testkit.progress import wait_blocks, wait_finalized


@dataclass
class ScriptedNode(NodeProcess):
    """Its best number grows by `step` at each reading; None readings do not answer."""

    heights: list[int | None] = field(default_factory=list)

    def best_number(self) -> int:
        height = self.heights.pop(0) if len(self.heights) > 1 else self.heights[0]
        if height is None:
            raise httpx.ConnectError("not yet")
        return height

    def finalized_number(self) -> int:
        return self.best_number()

    def log(self) -> str:
        return "the node's log"


def node(*heights: int | None) -> ScriptedNode:
    return ScriptedNode(Path("n"), port=1, p2p_port=1, ingress_port=1, dns_port=1,
                        prometheus_port=1, heights=list(heights))  # fmt: skip


def test_the_value_is_returned_as_soon_as_the_condition_holds() -> None:
    answers = iter([0, 0, "done"])
    assert wait_blocks(node(5, 6, 7), lambda: next(answers), blocks=3, what="x") == "done"


def test_a_budget_of_blocks_spent_fails_with_what_and_the_heights() -> None:
    expected = r"the thing: not reached within 3 blocks \(#5 to #8\)"
    with pytest.raises(AssertionError, match=expected):
        wait_blocks(node(5, 6, 7, 8, 9), lambda: False, blocks=3, what="the thing")


def test_a_stalled_chain_fails_even_without_a_budget() -> None:
    with pytest.raises(AssertionError, match=r"no new finalized blocks for 0 s \(at #4\)"):
        wait_blocks(node(4), lambda: False, blocks=None, what="x", finalized=True,
                    stall_seconds=0.3)  # fmt: skip


def test_a_node_that_does_not_answer_yet_counts_from_its_first_answer() -> None:
    with pytest.raises(AssertionError, match=r"within 2 blocks \(#10 to #12\)"):
        wait_blocks(node(None, None, 10, 11, 12), lambda: False, blocks=2, what="x")


def test_wait_finalized_returns_once_the_number_is_final() -> None:
    scripted = node(1, 2, 3, 4)
    wait_finalized(scripted, 3)
    assert scripted.heights == [4]


@dataclass
class HeaderNode(NodeProcess):
    """Answers `chain_getHeader` with a best block that grows by one at each reading, in slots
    of `slot_ms`; `frozen` keeps it where it is."""

    slot_ms: int = 1000
    number: int = 0
    frozen: bool = False
    readings: int = 0

    def call(self, method: str, *params: object) -> dict[str, object]:
        assert method == "chain_getHeader"
        self.readings += 1
        if not self.frozen:
            self.number += 1
        slot = 1_700_000_000 + self.number
        return {"number": hex(self.number), "slot": slot, "timestamp": slot * self.slot_ms}

    def log(self) -> str:
        return ""


def header_node(**fields: object) -> HeaderNode:
    return HeaderNode(Path("n"), port=1, p2p_port=1, ingress_port=1, dns_port=1,
                      prometheus_port=1, **fields)  # type: ignore[arg-type]  # fmt: skip


def test_wait_for_runs_out_with_its_seconds_when_the_chain_keeps_pace() -> None:
    node = header_node(slot_ms=1000)  # 0.2 s hold a fifth of a block: spent at once
    started = time.monotonic()
    with pytest.raises(AssertionError, match="timed out waiting for x"):
        node.wait_for(lambda: False, timeout=0.2, what="x")
    assert 0.2 <= time.monotonic() - started < 2


def test_wait_for_waits_for_a_chain_that_falls_behind_its_slots() -> None:
    # 0.5 s hold 50 blocks of 10 ms; this chain makes one per reading (one per 0.1 s poll).
    node = header_node(slot_ms=10)
    started = time.monotonic()
    assert node.wait_for(lambda: node.number >= 12 and "late", timeout=0.5) == "late"
    assert time.monotonic() - started > 0.5  # past its seconds, within its blocks
    with pytest.raises(AssertionError, match="timed out"):
        node.wait_for(lambda: False, timeout=0.3)
    assert node.number >= 12 + 30


def test_wait_for_ends_on_a_stalled_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes, "STALL_SECONDS", 0.5)
    node = header_node(slot_ms=10, frozen=True)
    started = time.monotonic()
    with pytest.raises(AssertionError, match="timed out waiting for y"):
        node.wait_for(lambda: False, timeout=0.2, what="y")
    assert 0.5 <= time.monotonic() - started < 3
