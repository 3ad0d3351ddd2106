"""CrashLoopBackOff timing with a fake clock: the time is passed in."""

from __future__ import annotations

import pytest

from orchestrator.backoff import Backoff, BackoffPolicy

DEFAULT = BackoffPolicy()


def test_defaults_are_the_kubelet_ones() -> None:
    assert (DEFAULT.initial_seconds, DEFAULT.factor, DEFAULT.max_seconds) == (10.0, 2.0, 300.0)
    assert DEFAULT.reset_after_seconds == 600.0


def test_restarts_wait_10_s_doubling_to_5_minutes() -> None:
    backoff: Backoff[str] = Backoff(DEFAULT)
    now = 0.0
    waits = []
    for _ in range(9):
        not_before = backoff.not_before("c")
        now = now if not_before is None else max(now, not_before)
        waits.append(backoff.record("c", now))
        now += 1.0  # the container crashes a second after each start
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300, 300]


def test_the_first_restart_is_immediate_and_the_next_waits_from_the_last_start() -> None:
    backoff: Backoff[str] = Backoff(DEFAULT)
    assert backoff.not_before("c") is None
    backoff.record("c", 100.0)
    assert backoff.not_before("c") == 110.0
    backoff.record("c", 110.0)
    assert backoff.not_before("c") == 130.0


def test_ten_minutes_of_good_running_resets() -> None:
    backoff: Backoff[str] = Backoff(DEFAULT)
    for t in (0.0, 10.0, 30.0, 70.0):
        backoff.record("c", t)
    assert backoff.delay("c") == 80.0
    assert backoff.not_before("c", good_for=599.0) == 150.0
    assert backoff.not_before("c", good_for=600.0) is None
    assert backoff.record("c", 1000.0, good_for=600.0) == 10.0


def test_keys_are_independent_and_can_be_forgotten() -> None:
    backoff: Backoff[str] = Backoff(DEFAULT)
    backoff.record("a", 0.0)
    backoff.record("a", 10.0)
    backoff.record("b", 5.0)
    assert (backoff.delay("a"), backoff.delay("b")) == (20.0, 10.0)
    backoff.forget("a")
    assert backoff.not_before("a") is None
    backoff.retain({"c"})
    assert len(backoff) == 0


def test_a_test_policy_scales_everything_down() -> None:
    fast = BackoffPolicy(initial_seconds=0.2, max_seconds=1.0, reset_after_seconds=5.0)
    backoff: Backoff[str] = Backoff(fast)
    assert [backoff.record("c", float(t)) for t in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_seconds": 0}, "back-off needs 0 < initial_seconds <= max_seconds"),
        (
            {"initial_seconds": 5, "max_seconds": 1},
            "back-off needs 0 < initial_seconds <= max_seconds",
        ),
        ({"factor": 0.5}, "back-off factor must be at least 1"),
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        BackoffPolicy(**kwargs)
    assert str(raised.value) == message
