"""Peer scores: penalties add up, recovery is in whole points, bans start and expire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.bootnodes import backoff_delays
from p2p.config import ScoringConfig
from p2p.identity import PeerId
from p2p.scoring import PeerScores, PenaltyOutcome

PEER = PeerId("12D3KooWpeer")
OTHER = PeerId("12D3KooWother")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scores(clock: FakeClock, **overrides: float) -> PeerScores:
    return PeerScores(ScoringConfig(**overrides), clock)  # type: ignore[arg-type]


def test_five_rejects_in_a_burst_ban_a_peer_for_the_ban_period() -> None:
    clock = FakeClock()
    ledger = scores(clock)
    outcomes = []
    for _ in range(5):
        outcomes.append(ledger.penalize(PEER, 20))
        clock.now += 0.1  # a burst: well under a second between penalties
    assert outcomes == [
        PenaltyOutcome(-20, False),
        PenaltyOutcome(-40, False),
        PenaltyOutcome(-60, False),
        PenaltyOutcome(-80, False),
        PenaltyOutcome(0, True),
    ]
    assert ledger.is_banned(PEER) and not ledger.is_banned(OTHER)
    assert ledger.ban_remaining(PEER) == pytest.approx(59.9)  # banned 0.1 s ago
    assert ledger.banned() == [PEER]
    assert (ledger.penalties, ledger.bans) == (5, 1)


def test_penalties_during_a_ban_change_nothing() -> None:
    clock = FakeClock()
    ledger = scores(clock)
    ledger.penalize(PEER, 100)
    assert ledger.penalize(PEER, 100) == PenaltyOutcome(0, False)
    assert ledger.bans == 1
    clock.now += 60
    assert ledger.expire() == [PEER]
    assert not ledger.is_banned(PEER)
    assert ledger.score(PEER) == 0


def test_scores_recover_one_whole_point_per_second_keeping_fractions() -> None:
    clock = FakeClock()
    ledger = scores(clock)
    ledger.penalize(PEER, 10)
    clock.now += 0.6
    assert ledger.score(PEER) == -10
    ledger.penalize(PEER, 0)  # must not throw away the 0.6 s already earned
    clock.now += 0.6
    assert ledger.score(PEER) == -9
    clock.now += 100
    assert ledger.score(PEER) == 0
    ledger.expire()
    assert ledger.score(PEER) == 0


def test_no_recovery_when_the_rate_is_zero() -> None:
    clock = FakeClock()
    ledger = scores(clock, recovery_per_second=0)
    ledger.penalize(PEER, 30)
    clock.now += 1e6
    assert ledger.score(PEER) == -30


def test_a_negative_penalty_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"^a penalty is >= 0 points, got -1$"):
        scores(FakeClock()).penalize(PEER, -1)


@given(
    st.lists(
        st.tuples(st.floats(0, 150), st.floats(0, 5)),  # (penalty, seconds after it)
        max_size=40,
    )
)
def test_a_score_is_never_positive_and_never_rests_at_or_below_the_threshold(
    steps: list[tuple[float, float]],
) -> None:
    clock = FakeClock()
    ledger = scores(clock)
    for penalty, pause in steps:
        outcome = ledger.penalize(PEER, penalty)
        assert outcome.score <= 0
        assert outcome.banned or outcome.score > -100 or ledger.is_banned(PEER)
        assert ledger.score(PEER) > -100
        clock.now += pause


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = backoff_delays(0.5, 10.0)
    assert [next(delays) for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
