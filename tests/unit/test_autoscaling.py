"""The autoscaling decision, against Kubernetes' documented HPA behaviour: the ratio and its
tolerance, missing and not-yet-ready replicas, stabilization windows, rate policies, and that it
never leaves [minReplicas, maxReplicas]."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.runtime.autoscaling import (
    Decision,
    History,
    Observation,
    Reason,
    Recommendation,
    ReplicaKind,
    ReplicaSample,
    ScaleEvent,
    decide,
    recommend,
)
from chain.runtime.manifest import (
    Autoscaling,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
)

REQUEST = 100_000
"""CPU ms one replica requests over a period (100 millicores over 1000 s)."""
NOW = 10_000
NO_HISTORY = History()
R, U, M = ReplicaKind.REPORTED, ReplicaKind.UNREADY, ReplicaKind.MISSING


def at(percent: int) -> ReplicaSample:
    return ReplicaSample(R, REQUEST * percent // 100)


def observe(*samples: ReplicaSample) -> Observation:
    return Observation(len(samples), samples, REQUEST)


def spec(
    least: int = 1,
    most: int = 10,
    target: int = 60,
    up: ScalingRules | None = None,
    down: ScalingRules | None = None,
) -> Autoscaling:
    return Autoscaling(least, most, target, up, down)


def run(
    observation: Observation,
    scaling: Autoscaling | None = None,
    history: History = NO_HISTORY,
    now: int = NOW,
) -> Decision:
    return decide(scaling if scaling is not None else spec(), observation, history, now)


# -- the ratio and the tolerance -------------------------------------------------------------


@pytest.mark.parametrize(
    ("percents", "target", "wanted", "reason"),
    [
        # "200m against a target of 100m: the replicas double"; "50m: they halve".
        ([120] * 4, 60, 8, Reason.SCALE_UP),
        ([30] * 4, 60, 2, Reason.SCALE_DOWN),
        # Within 10% of the target nothing changes, on either side.
        ([65] * 4, 60, 4, Reason.WITHIN_TOLERANCE),
        ([55] * 4, 60, 4, Reason.WITHIN_TOLERANCE),
        ([66] * 4, 60, 4, Reason.WITHIN_TOLERANCE),  # exactly 1.1: still within
        ([67] * 4, 60, 5, Reason.SCALE_UP),  # ceil(4 * 67 / 60) = ceil(4.47)
        ([53] * 4, 60, 4, Reason.SCALE_DOWN),  # ceil(4 * 53 / 60) = ceil(3.53)
        # Utilisation is over all reporting replicas together.
        ([100, 20], 60, 2, Reason.WITHIN_TOLERANCE),
        ([100, 100, 10, 10], 45, 5, Reason.SCALE_UP),
    ],
)
def test_ratio_and_tolerance(percents: list[int], target: int, wanted: int, reason: Reason) -> None:
    replicas, _, why = recommend(observe(*(at(p) for p in percents)), target)
    assert (replicas, why) == (wanted, reason)


def test_utilisation_is_cpu_used_over_cpu_requested_rounded_down() -> None:
    samples = (ReplicaSample(R, 61_999), ReplicaSample(R, 60_000))
    assert recommend(observe(*samples), 60)[1] == 60


# -- missing and not-yet-ready replicas ------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "wanted"),
    [
        # Scale up: a missing replica counts as using nothing. 3 * 120% + 0 = 90% over 4.
        ((at(120), at(120), at(120), ReplicaSample(M)), 6),
        # Filling in reverses the direction (2 * 100% + 2 * 0 = 50% < 60%): nothing changes.
        ((at(100), at(100), ReplicaSample(M), ReplicaSample(M)), 4),
        # Scale down: a missing replica counts as using all it requested. 3 * 10% + 100% = 32%.
        ((at(10), at(10), at(10), ReplicaSample(M)), 3),
        # Filling in reverses the direction (2 * 30% + 2 * 100% = 65% > 60%): nothing changes.
        ((at(30), at(30), ReplicaSample(M), ReplicaSample(M)), 4),
        # Scale up with not-yet-ready replicas: they count as using nothing (240% over 4 = 60%).
        ((at(120), at(120), ReplicaSample(U), ReplicaSample(U)), 4),
        # ... 2 * 150% over 3 = 100%: ceil(3 * 100 / 60) = 5.
        ((at(150), at(150), ReplicaSample(U)), 5),
        # Scale down: not-yet-ready replicas are left out. ceil(2 * 15 / 60) = 1.
        ((at(15), at(15), ReplicaSample(U), ReplicaSample(U)), 1),
    ],
)
def test_missing_and_unready_replicas(samples: tuple[ReplicaSample, ...], wanted: int) -> None:
    assert recommend(observe(*samples), 60)[0] == wanted


def test_no_reports_is_not_zero_load() -> None:
    decision = run(observe(ReplicaSample(M), ReplicaSample(M), ReplicaSample(U)))
    assert (decision.desired, decision.utilisation, decision.reason) == (3, None, Reason.NO_METRICS)
    assert decision.history == History()


# -- stabilization windows -------------------------------------------------------------------


def test_scale_down_waits_for_the_window() -> None:
    idle = observe(*[at(6)] * 8)
    busy = History((Recommendation(NOW - 200, 8),))
    held = run(idle, history=busy)
    assert (held.recommended, held.desired, held.reason) == (1, 8, Reason.SCALE_DOWN_STABILIZED)
    # The default window is 300 s: a recommendation 300 s old no longer holds it.
    old = History((Recommendation(NOW - 300, 8),))
    assert run(idle, history=old).desired == 1
    # The highest recommendation of the window wins.
    mixed = History((Recommendation(NOW - 250, 6), Recommendation(NOW - 100, 3)))
    assert run(idle, history=mixed).desired == 6


def test_scale_up_window() -> None:
    rules = ScalingRules(60, SelectPolicy.MAX, (ScalingPolicy(ScalingPolicyType.PERCENT, 900, 15),))
    busy = observe(*[at(120)] * 2)
    low = History((Recommendation(NOW - 30, 3),))
    held = run(busy, spec(up=rules), history=low)
    assert (held.desired, held.reason) == (3, Reason.SCALE_UP_STABILIZED)
    assert run(busy, spec(up=rules), history=History((Recommendation(NOW - 60, 3),))).desired == 4


def test_the_recommendation_is_kept_and_old_ones_pruned() -> None:
    history = History((Recommendation(NOW - 400, 9), Recommendation(NOW - 10, 4)))
    decision = run(observe(*[at(60)] * 4), history=history)
    assert decision.history.recommendations == (
        Recommendation(NOW - 10, 4),
        Recommendation(NOW, 4),
    )


# -- rate policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "percent", "wanted", "reason"),
    [
        # Default: 4 replicas or 100% per 15 s, whichever is more.
        (2, 600, 6, Reason.SCALE_UP_LIMIT),  # 2 + 4 beats 2 * 2
        (10, 600, 20, Reason.SCALE_UP_LIMIT),  # 10 * 2 beats 10 + 4
        (10, 600, 20, Reason.SCALE_UP_LIMIT),
        (3, 120, 6, Reason.SCALE_UP),
    ],
)
def test_default_scale_up_policies(current: int, percent: int, wanted: int, reason: Reason) -> None:
    decision = run(observe(*[at(percent)] * current), spec(most=100))
    assert (decision.desired, decision.reason) == (wanted, reason)


def test_scale_up_counts_what_the_period_already_added() -> None:
    # 2 replicas became 6 five seconds ago: the period started at 2, so 6 is the limit.
    added = History(events=(ScaleEvent(NOW - 5, 4),))
    decision = run(observe(*[at(600)] * 6), spec(most=100), history=added)
    assert (decision.desired, decision.reason) == (6, Reason.SCALE_UP_LIMIT)
    # Fifteen seconds later the period has passed.
    assert run(observe(*[at(600)] * 6), spec(most=100), added, NOW + 10).desired == 12


def test_select_policy_min_and_disabled() -> None:
    both = (
        ScalingPolicy(ScalingPolicyType.PODS, 1, 60),
        ScalingPolicy(ScalingPolicyType.PERCENT, 50, 60),
    )
    slow = ScalingRules(0, SelectPolicy.MIN, both)
    assert run(observe(*[at(600)] * 4), spec(most=100, up=slow)).desired == 5
    fast = ScalingRules(0, SelectPolicy.MAX, both)
    assert run(observe(*[at(600)] * 4), spec(most=100, up=fast)).desired == 6
    off = ScalingRules(0, SelectPolicy.DISABLED, both)
    idle = run(observe(*[at(1)] * 8), spec(down=off))
    assert (idle.desired, idle.reason) == (8, Reason.SCALE_DOWN_LIMIT)


def test_scale_down_policy() -> None:
    one_a_minute = ScalingRules(
        0, SelectPolicy.MAX, (ScalingPolicy(ScalingPolicyType.PODS, 1, 60),)
    )
    idle = observe(*[at(1)] * 5)
    decision = run(idle, spec(down=one_a_minute))
    assert (decision.desired, decision.reason) == (4, Reason.SCALE_DOWN_LIMIT)
    assert decision.history.events == (ScaleEvent(NOW, -1),)
    later = run(observe(*[at(1)] * 4), spec(down=one_a_minute), decision.history, NOW + 30)
    assert later.desired == 4
    assert (
        run(observe(*[at(1)] * 4), spec(down=one_a_minute), decision.history, NOW + 60).desired == 3
    )


# -- bounds ----------------------------------------------------------------------------------


def test_absurd_cpu_stops_at_max() -> None:
    absurd = observe(*[ReplicaSample(R, 2**64 - 1)] * 10)
    decision = run(
        absurd,
        spec(
            most=12,
            up=ScalingRules(
                0, SelectPolicy.MAX, (ScalingPolicy(ScalingPolicyType.PERCENT, 1000, 15),)
            ),
        ),
    )
    assert (decision.desired, decision.reason) == (12, Reason.TOO_MANY_REPLICAS)


def test_outside_the_range_comes_back_to_it() -> None:
    assert run(observe(*[at(60)] * 12), spec(most=10)).desired == 10
    below = run(observe(at(60)), spec(least=3))
    assert (below.desired, below.reason) == (3, Reason.TOO_FEW_REPLICAS)


samples = st.builds(ReplicaSample, st.sampled_from(list(ReplicaKind)), st.integers(0, 2**64 - 1))
policies = st.builds(
    ScalingPolicy,
    st.sampled_from(list(ScalingPolicyType)),
    st.integers(1, 1000),
    st.integers(1, 1800),
)
rules = st.builds(
    ScalingRules,
    st.integers(0, 3600),
    st.sampled_from(list(SelectPolicy)),
    st.lists(policies, min_size=1, max_size=3).map(tuple),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Autoscaling, Observation, History]:
    least = draw(st.integers(1, 20))
    most = draw(st.integers(least, 40))
    scaling = Autoscaling(
        least, most, draw(st.integers(1, 100)), draw(st.none() | rules), draw(st.none() | rules)
    )
    current = draw(st.integers(0, 50))
    observed = tuple(draw(st.lists(samples, min_size=current, max_size=current)))
    history = History(
        tuple(draw(st.lists(st.builds(Recommendation, st.integers(0, NOW), st.integers(0, 60))))),
        tuple(draw(st.lists(st.builds(ScaleEvent, st.integers(0, NOW), st.integers(-40, 40))))),
    )
    return scaling, Observation(current, observed, draw(st.integers(0, 10**9))), history


@settings(max_examples=400, deadline=None)
@given(cases())
def test_never_leaves_the_range(case: tuple[Autoscaling, Observation, History]) -> None:
    scaling, observation, history = case
    decision = decide(scaling, observation, history, NOW)
    assert scaling.min_replicas <= decision.desired <= scaling.max_replicas
    assert len(decision.history.recommendations) <= 64
    assert decide(scaling, observation, history, NOW) == decision


@settings(max_examples=200, deadline=None)
@given(cases())
def test_within_tolerance_never_moves_inside_the_range(
    case: tuple[Autoscaling, Observation, History],
) -> None:
    scaling, observation, _ = case
    target = scaling.target_cpu_utilization_percentage
    n = observation.replicas
    if not scaling.min_replicas <= n <= scaling.max_replicas or n == 0:
        return
    steady = Observation(n, tuple([ReplicaSample(R, REQUEST * target // 100)] * n), REQUEST)
    assert decide(scaling, steady, History(), NOW).desired == n
