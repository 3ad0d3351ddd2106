"""Publish backpressure bookkeeping: busy peers are waited for, hung ones given up on and,
once overdue, reported for disconnection."""

from __future__ import annotations

from p2p.backpressure import QueueWatch


def queues(**lengths: int) -> dict[str, list[None]]:
    return {peer: [None] * length for peer, length in lengths.items()}


def test_only_peers_over_the_high_water_mark_are_busy() -> None:
    watch: QueueWatch[str] = QueueWatch(high_water=16, stall_timeout=10)
    assert watch.busy(queues(a=16, b=17, c=0)) == ["b"]


def test_a_peer_given_up_on_is_not_waited_for_until_it_drains() -> None:
    watch: QueueWatch[str] = QueueWatch(high_water=16, stall_timeout=10)
    watch.give_up_on(["b"])
    assert watch.busy(queues(a=20, b=20)) == ["a"]
    assert watch.stalled == 1
    watch.overdue(queues(a=20, b=3), now=0.0)  # b drained: waited for again next time
    assert watch.busy(queues(a=20, b=20)) == ["a", "b"]
    assert watch.stalled == 0


def test_a_peer_is_overdue_after_staying_over_the_mark_for_the_stall_timeout() -> None:
    watch: QueueWatch[str] = QueueWatch(high_water=16, stall_timeout=10)
    assert watch.overdue(queues(a=30, b=30), now=100.0) == []
    assert watch.overdue(queues(a=30, b=2), now=105.0) == []  # b recovered
    assert watch.overdue(queues(a=30, b=30), now=109.9) == []
    assert watch.overdue(queues(a=30, b=30), now=110.0) == ["a"]
    assert watch.overdue(queues(b=30), now=119.8) == []  # a left; b over again since 109.9
    assert watch.overdue(queues(b=30), now=119.9) == ["b"]


def test_nothing_is_busy_or_overdue_without_peers() -> None:
    watch: QueueWatch[str] = QueueWatch(high_water=16, stall_timeout=10)
    assert watch.busy({}) == []
    assert watch.overdue({}, now=0.0) == []
