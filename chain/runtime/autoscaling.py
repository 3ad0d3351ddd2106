"""Horizontal autoscaling by CPU: Kubernetes' HorizontalPodAutoscaler algorithm as a pure function
of one metering period's measurements, the application's `autoscaling` spec and the short history
the chain keeps (recent recommendations and scaling events). Integers and fractions only: every
node reaches the same decision."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from chain.runtime.manifest import Autoscaling, ScalingPolicyType, ScalingRules, SelectPolicy

TOLERANCE = Fraction(1, 10)
"""Kubernetes' default: a measured/target ratio within 10% of 1 changes nothing."""
MAX_HISTORY = 64
"""Recommendations and scaling events kept at most (the newest): bounds the state of an app
whatever its windows and the chain's time scale."""


class ReplicaKind(enum.Enum):
    """How one replica counts in a period, as HPA sorts its pods."""

    REPORTED = "reported"
    """Ran through the period and a node reported its usage."""
    UNREADY = "unready"
    """Not yet placed, or started during the period: on a scale up it counts as using nothing,
    otherwise it is left out (HPA's not-yet-ready pods)."""
    MISSING = "missing"
    """Placed and running, yet no report names it: not zero load. On a scale up it counts as using
    nothing, on a scale down as using all it requested (HPA's missing metrics)."""


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    kind: ReplicaKind
    cpu_ms: int = 0
    """CPU time used in the period (REPORTED only)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What the chain knows of an application at the end of a metering period."""

    replicas: int
    """The current replica count."""
    samples: tuple[ReplicaSample, ...]
    """One per current replica."""
    request_cpu_ms: int
    """CPU time one replica requested over the period: its millicores * the period in ms / 1000."""


class Reason(enum.Enum):
    """Why the replica count is what the decision says (HPA's condition reasons)."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    WITHIN_TOLERANCE = "WithinTolerance"
    NO_METRICS = "NoMetrics"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    TOO_MANY_REPLICAS = "TooManyReplicas"


@dataclass(frozen=True, slots=True)
class Recommendation:
    at: int
    """Autoscaling seconds (chain time * the chain's time scale)."""
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    at: int
    change: int
    """Replicas added (positive) or removed (negative)."""


@dataclass(frozen=True, slots=True)
class History:
    recommendations: tuple[Recommendation, ...] = ()
    """Raw recommendations inside the longest stabilization window, oldest first."""
    events: tuple[ScaleEvent, ...] = ()
    """Changes made inside the longest policy period, oldest first."""


@dataclass(frozen=True, slots=True)
class Decision:
    current: int
    desired: int
    """Always within [minReplicas, maxReplicas]."""
    utilisation: int | None
    """CPU used ÷ CPU requested, in percent, over the replicas that reported; None without any."""
    recommended: int
    """What the utilisation alone asks for, before windows and policies."""
    reason: Reason
    message: str
    history: History
    """The history to keep for the next decision."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _within_tolerance(measured: int, target: int) -> bool:
    """|measured / target - 1| <= TOLERANCE, in integers."""
    return abs(measured - target) * TOLERANCE.denominator <= target * TOLERANCE.numerator


def utilisation_percent(used_cpu_ms: Sequence[int], request_cpu_ms: int) -> int:
    """Whole percent, rounded down as HPA does, of what `len(used_cpu_ms)` replicas requested."""
    return sum(used_cpu_ms) * 100 // (request_cpu_ms * len(used_cpu_ms))


def recommend(observation: Observation, target: int) -> tuple[int, int | None, Reason]:
    """HPA's replica calculator: (replicas, measured utilisation, reason). desired =
    ceil(reporting replicas * utilisation / target), nothing within the tolerance, and the
    missing and unready replicas filled in conservatively: if filling them in reverses the
    direction or lands within the tolerance, nothing changes."""
    current = observation.replicas
    request = observation.request_cpu_ms
    reported = [s.cpu_ms for s in observation.samples if s.kind is ReplicaKind.REPORTED]
    unready = sum(1 for s in observation.samples if s.kind is ReplicaKind.UNREADY)
    missing = sum(1 for s in observation.samples if s.kind is ReplicaKind.MISSING)
    if not reported or request <= 0:
        return current, None, Reason.NO_METRICS
    measured = utilisation_percent(reported, request)
    scale_up_with_unready = unready > 0 and measured > target
    if not scale_up_with_unready and missing == 0:
        if _within_tolerance(measured, target):
            return current, measured, Reason.WITHIN_TOLERANCE
        wanted = _ceil_div(measured * len(reported), target)
        return wanted, measured, Reason.SCALE_UP if wanted > current else Reason.SCALE_DOWN
    # In hundredths of a CPU ms, so that "all it requested, or the target if higher" stays exact.
    filled = [used * 100 for used in reported]
    if missing and measured < target:
        filled += [request * max(100, target)] * missing
    elif missing and measured > target:
        filled += [0] * missing
    if scale_up_with_unready:
        filled += [0] * unready
    refilled = utilisation_percent(filled, request * 100)
    if (
        _within_tolerance(refilled, target)
        or (measured < target < refilled)
        or (refilled < target < measured)
    ):
        return current, measured, Reason.WITHIN_TOLERANCE
    wanted = _ceil_div(refilled * len(filled), target)
    if (refilled < target and wanted > current) or (refilled > target and wanted < current):
        return current, measured, Reason.WITHIN_TOLERANCE
    return wanted, measured, Reason.SCALE_UP if wanted > current else Reason.SCALE_DOWN


def stabilize(
    current: int,
    recommended: int,
    recommendations: Sequence[Recommendation],
    now: int,
    spec: Autoscaling,
) -> int:
    """HPA's stabilization: scale up no further than the lowest recommendation of the scale-up
    window, down no further than the highest of the scale-down window."""
    up_cutoff = now - spec.scale_up_rules.stabilization_window_seconds
    down_cutoff = now - spec.scale_down_rules.stabilization_window_seconds
    up = down = recommended
    for r in recommendations:
        if r.at > up_cutoff:
            up = min(up, r.replicas)
        if r.at > down_cutoff:
            down = max(down, r.replicas)
    return min(max(current, up), down)


def _changes(events: Sequence[ScaleEvent], period: int, now: int) -> tuple[int, int]:
    """(added, removed) within the last `period` seconds."""
    recent = [e.change for e in events if e.at > now - period]
    return sum(c for c in recent if c > 0), -sum(c for c in recent if c < 0)


def scale_up_limit(
    current: int, events: Sequence[ScaleEvent], rules: ScalingRules, now: int
) -> int:
    """The most replicas the scale-up policies allow now (never fewer than `current`)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        added, removed = _changes(events, policy.period_seconds, now)
        start = current - added + removed
        if policy.type is ScalingPolicyType.PODS:
            proposals.append(start + policy.value)
        else:
            proposals.append(_ceil_div(start * (100 + policy.value), 100))
    pick = max if rules.select_policy is SelectPolicy.MAX else min
    return max(pick(proposals), current)


def scale_down_limit(
    current: int, events: Sequence[ScaleEvent], rules: ScalingRules, now: int
) -> int:
    """The fewest replicas the scale-down policies allow now (never more than `current`)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        added, removed = _changes(events, policy.period_seconds, now)
        start = current + removed - added
        if policy.type is ScalingPolicyType.PODS:
            proposals.append(start - policy.value)
        else:
            proposals.append(start * (100 - policy.value) // 100)
    # The policy allowing the largest change ("Max") is the one with the fewest replicas.
    pick = min if rules.select_policy is SelectPolicy.MAX else max
    return min(pick(proposals), current)


def _prune(history: History, spec: Autoscaling, now: int) -> History:
    window = max(
        spec.scale_up_rules.stabilization_window_seconds,
        spec.scale_down_rules.stabilization_window_seconds,
    )
    period = max(
        (
            p.period_seconds
            for p in (*spec.scale_up_rules.policies, *spec.scale_down_rules.policies)
        ),
        default=0,
    )
    recommendations = [r for r in history.recommendations if r.at > now - window]
    events = [e for e in history.events if e.at > now - period]
    return History(tuple(recommendations[-MAX_HISTORY:]), tuple(events[-MAX_HISTORY:]))


def decide(spec: Autoscaling, observation: Observation, history: History, now: int) -> Decision:
    """One autoscaling decision at `now` (autoscaling seconds): the replica count to run, within
    [minReplicas, maxReplicas], the utilisation measured, why, and the history to keep."""
    current = observation.replicas
    least, most = spec.min_replicas, spec.max_replicas
    target = spec.target_cpu_utilization_percentage
    recommended, measured, reason = recommend(observation, target)
    shown = "no usage reported" if measured is None else f"cpu {measured}% of {target}% target"
    if measured is None and least <= current <= most:
        # HPA acts on no metrics at all: the count stays, and no recommendation is recorded.
        message = f"{reason.value}: {shown}; {current} replicas kept"
        kept = _prune(history, spec, now)
        return Decision(current, current, None, current, reason, message, kept)
    if current > most:
        desired, reason = most, Reason.TOO_MANY_REPLICAS
    elif current < least:
        desired, reason = least, Reason.TOO_FEW_REPLICAS
    else:
        stabilized = stabilize(current, recommended, history.recommendations, now, spec)
        if stabilized > recommended:
            reason = Reason.SCALE_DOWN_STABILIZED
        elif stabilized < recommended:
            reason = Reason.SCALE_UP_STABILIZED
        desired = stabilized
        if stabilized > current:
            limit = scale_up_limit(current, history.events, spec.scale_up_rules, now)
            if stabilized > min(most, limit):
                desired = min(most, limit)
                reason = Reason.SCALE_UP_LIMIT if limit < most else Reason.TOO_MANY_REPLICAS
        elif stabilized < current:
            limit = scale_down_limit(current, history.events, spec.scale_down_rules, now)
            if stabilized < max(least, limit):
                desired = max(least, limit)
                reason = Reason.SCALE_DOWN_LIMIT if limit > least else Reason.TOO_FEW_REPLICAS
    desired = min(max(desired, least), most)
    recommendations = (*history.recommendations, Recommendation(now, recommended))
    events = history.events
    if desired != current:
        events = (*events, ScaleEvent(now, desired - current))
    kept = _prune(History(recommendations, events), spec, now)
    message = f"{reason.value}: {shown}; recommended {recommended}, {current} -> {desired}"
    return Decision(current, desired, measured, recommended, reason, message, kept)
