"""What the chain keeps of each autoscaled application (its autoscaling spec, the last decision,
the history that HPA's windows and policies read, the last changes and their reasons, its usage
as reported), the pass in progress, and how a period's usage becomes the observation decided on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chain import codec
from chain.runtime.autoscaling import (
    History,
    Observation,
    Recommendation,
    ReplicaKind,
    ReplicaSample,
    ScaleEvent,
)
from chain.runtime.manifest import (
    Autoscaling,
    ScalingPolicy,
    ScalingPolicyType,
    ScalingRules,
    SelectPolicy,
)
from chain.state import Overlay, StateReader, storage_key

MODULE = "apps"
"""The records live under the `apps` module's prefix: the module that owns the replica count."""
_STATE = storage_key(MODULE, "autoscale")
_USAGE = storage_key(MODULE, "usage")
PASS_KEY = storage_key(MODULE, "autoscalePass")
"""The pass of a metering period in progress, if one is."""
AUTOSCALED_KEY = storage_key(MODULE, "autoscaled")
"""The names of the autoscaled applications, sorted: the pass of a period reads only these."""
MAX_DECISIONS = 10
"""Changes of the replica count kept per application, newest last."""


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """One change of an application's replica count by the autoscaler."""

    period: int
    """The metering period whose usage decided it."""
    from_replicas: int
    to_replicas: int
    utilisation: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReplicaUsage:
    """One usage record of a metering period, as the autoscaler reads it."""

    node: bytes
    replica: int
    instance: int
    cpu_ms: int
    uptime_ms: int


@dataclass(frozen=True, slots=True)
class AutoscalePass:
    """The autoscaling pass of one metering period, spread over blocks: each decides the next
    autoscaled applications in name order, until every one has been decided once."""

    period: int
    """The metering period whose usage the pass reads."""
    started_ms: int
    """The timestamp of the block that began the pass: every application of the pass is decided
    as of this time, as a pass in one block would decide them."""
    after: str
    """The last application decided; empty before the first."""
    scaled: bool
    """Some replica count changed: the applications are placed again once the pass ends."""

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [u(self.period), u(self.started_ms), self.after.encode(), u(int(self.scaled))]
        )

    @classmethod
    def decode(cls, data: bytes) -> AutoscalePass:
        fields = _list(codec.decode(data))
        if len(fields) != 4:
            raise codec.CodecError("an autoscaling pass has 4 fields")
        period, started, after, scaled = fields
        return cls(
            codec.uint(period, "period"),
            codec.uint(started, "started"),
            _text(after, "after"),
            codec.uint(scaled, "scaled") != 0,
        )


@dataclass(frozen=True, slots=True)
class AutoscaleState:
    spec: Autoscaling
    containers: int
    """Containers per replica: a replica that ran through the period has this many periods of
    uptime."""
    desired: int
    """The replica count the last decision asked for."""
    utilisation: int | None
    """Measured at the last decision; None before any, or when no replica reported."""
    reason: str
    """Why the last decision decided what it did."""
    last_period: int | None
    """The metering period of the last decision."""
    grown_at: int | None
    """The period during which the last scale up was decided: its new replicas were not running
    through that period."""
    grown_from: int
    """The replica count before that scale up: replicas from this index on are the new ones."""
    history: History
    decisions: tuple[ScalingDecision, ...]

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [
                _spec_item(self.spec),
                u(self.containers),
                u(self.desired),
                _optional(self.utilisation),
                self.reason.encode(),
                _optional(self.last_period),
                _optional(self.grown_at),
                u(self.grown_from),
                [[u(r.at), u(r.replicas)] for r in self.history.recommendations],
                [[u(e.at), u(abs(e.change)), u(int(e.change < 0))] for e in self.history.events],
                [
                    [
                        u(d.period),
                        u(d.from_replicas),
                        u(d.to_replicas),
                        _optional(d.utilisation),
                        d.reason.encode(),
                    ]
                    for d in self.decisions
                ],
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> AutoscaleState:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 11:
            raise codec.CodecError("an autoscale record has 11 fields")
        spec, containers, desired, util, reason, last, grown, grown_from, recs, events, made = item
        return cls(
            _spec_from(spec),
            codec.uint(containers, "containers"),
            codec.uint(desired, "desired"),
            _optional_from(util, "utilisation"),
            _text(reason, "reason"),
            _optional_from(last, "last period"),
            _optional_from(grown, "grown at"),
            codec.uint(grown_from, "grown from"),
            History(
                tuple(Recommendation(*_uint_list(r, 2, "recommendation")) for r in _list(recs)),
                tuple(_event(e) for e in _list(events)),
            ),
            tuple(_decision(d) for d in _list(made)),
        )


def _optional(value: int | None) -> codec.RlpItem:
    return [] if value is None else [codec.encode_uint(value)]


def _optional_from(item: codec.RlpItem, what: str) -> int | None:
    if not isinstance(item, list) or len(item) > 1:
        raise codec.CodecError(f"{what} is an optional integer")
    return codec.uint(item[0], what) if item else None


def _list(item: codec.RlpItem) -> list[codec.RlpItem]:
    if not isinstance(item, list):
        raise codec.CodecError("expected a list")
    return item


def _uint_list(item: codec.RlpItem, size: int, what: str) -> list[int]:
    values = _list(item)
    if len(values) != size:
        raise codec.CodecError(f"{what} has {size} fields")
    return [codec.uint(v, what) for v in values]


def _text(item: codec.RlpItem, what: str) -> str:
    if not isinstance(item, bytes):
        raise codec.CodecError(f"{what} is text")
    return item.decode(errors="replace")


def _event(item: codec.RlpItem) -> ScaleEvent:
    at, size, negative = _uint_list(item, 3, "scale event")
    return ScaleEvent(at, -size if negative else size)


def _decision(item: codec.RlpItem) -> ScalingDecision:
    fields = _list(item)
    if len(fields) != 5:
        raise codec.CodecError("a scaling decision has 5 fields")
    period, start, end, util, reason = fields
    return ScalingDecision(
        codec.uint(period, "period"),
        codec.uint(start, "from"),
        codec.uint(end, "to"),
        _optional_from(util, "utilisation"),
        _text(reason, "reason"),
    )


def _rules_item(rules: ScalingRules | None) -> codec.RlpItem:
    u = codec.encode_uint
    if rules is None:
        return []
    return [
        u(rules.stabilization_window_seconds),
        rules.select_policy.value.encode(),
        [[p.type.value.encode(), u(p.value), u(p.period_seconds)] for p in rules.policies],
    ]


def _rules_from(item: codec.RlpItem) -> ScalingRules | None:
    fields = _list(item)
    if not fields:
        return None
    if len(fields) != 3:
        raise codec.CodecError("scaling rules have 3 fields")
    window, select, policies = fields
    out = []
    for p in _list(policies):
        kind, value, period = _list(p) if len(_list(p)) == 3 else ([b""] * 3)
        try:
            out.append(
                ScalingPolicy(
                    ScalingPolicyType(_text(kind, "policy type")),
                    codec.uint(value, "policy value"),
                    codec.uint(period, "policy period"),
                )
            )
        except ValueError:
            raise codec.CodecError("malformed scaling policy") from None
    try:
        selected = SelectPolicy(_text(select, "select policy"))
    except ValueError:
        raise codec.CodecError("malformed select policy") from None
    return ScalingRules(codec.uint(window, "window"), selected, tuple(out))


def _spec_item(spec: Autoscaling) -> codec.RlpItem:
    u = codec.encode_uint
    return [
        u(spec.min_replicas),
        u(spec.max_replicas),
        u(spec.target_cpu_utilization_percentage),
        _rules_item(spec.scale_up),
        _rules_item(spec.scale_down),
    ]


def _spec_from(item: codec.RlpItem) -> Autoscaling:
    fields = _list(item)
    if len(fields) != 5:
        raise codec.CodecError("an autoscaling spec has 5 fields")
    least, most, target, up, down = fields
    return Autoscaling(
        codec.uint(least, "minReplicas"),
        codec.uint(most, "maxReplicas"),
        codec.uint(target, "target"),
        _rules_from(up),
        _rules_from(down),
    )


# -- storage ----------------------------------------------------------------------------------


def get_state(state: StateReader, name: str) -> AutoscaleState | None:
    data = state.get(_STATE + name.encode())
    return None if data is None else AutoscaleState.decode(data)


def put_state(state: Overlay, name: str, record: AutoscaleState) -> None:
    state.put(_STATE + name.encode(), record.encode())


def autoscaled_names(state: StateReader) -> list[str]:
    data = state.get(AUTOSCALED_KEY)
    if not data:
        return []
    return [_text(x, "autoscaled name") for x in _list(codec.decode(data))]


def _set_autoscaled(state: Overlay, names: Iterable[str]) -> None:
    ordered = sorted(set(names))
    if ordered:
        state.put(AUTOSCALED_KEY, codec.encode([n.encode() for n in ordered]))
    else:
        state.delete(AUTOSCALED_KEY)


def is_autoscaled(state: StateReader, name: str) -> bool:
    return state.get(_STATE + name.encode()) is not None


def get_pass(state: StateReader) -> AutoscalePass | None:
    data = state.get(PASS_KEY)
    return None if data is None else AutoscalePass.decode(data)


def put_pass(state: Overlay, run: AutoscalePass | None) -> None:
    if run is None:
        state.delete(PASS_KEY)
    else:
        state.put(PASS_KEY, run.encode())


def add_usage(state: Overlay, name: str, period: int, records: Iterable[ReplicaUsage]) -> None:
    """Keep `records` of `period` under application `name`, for its decision to read alone."""
    kept = _usage_items(state, name)
    u = codec.encode_uint
    kept += [
        [u(period), r.node, u(r.replica), u(r.instance), u(r.cpu_ms), u(r.uptime_ms)]
        for r in records
    ]
    state.put(_USAGE + name.encode(), codec.encode(kept))


def take_usage(state: Overlay, name: str, period: int) -> list[ReplicaUsage]:
    """The records of `period` kept for `name`; those of `period` and earlier are dropped (a
    period skipped by a pass that ran late is not decided later), later ones kept."""
    used: list[ReplicaUsage] = []
    later: list[codec.RlpItem] = []
    for item in _usage_items(state, name):
        fields = _list(item)
        if len(fields) != 6 or not isinstance(fields[1], bytes):
            raise codec.CodecError("a kept usage record has 6 fields")
        at = codec.uint(fields[0], "period")
        if at > period:
            later.append(item)
        elif at == period:
            replica, instance, cpu_ms, uptime_ms = (codec.uint(x, "usage") for x in fields[2:])
            used.append(ReplicaUsage(fields[1], replica, instance, cpu_ms, uptime_ms))
    if later:
        state.put(_USAGE + name.encode(), codec.encode(later))
    else:
        state.delete(_USAGE + name.encode())
    return used


def _usage_items(state: StateReader, name: str) -> list[codec.RlpItem]:
    data = state.get(_USAGE + name.encode())
    return [] if data is None else _list(codec.decode(data))


def start(state: Overlay, name: str, record: AutoscaleState) -> None:
    """Store `name`'s record and count it among the autoscaled applications."""
    names = autoscaled_names(state)
    if name not in names:
        _set_autoscaled(state, [*names, name])
    put_state(state, name, record)


def stop(state: Overlay, name: str) -> None:
    """Forget `name`'s autoscaling (its manifest no longer asks for it, or it is deleted)."""
    if state.get(_STATE + name.encode()) is None:
        return
    state.delete(_STATE + name.encode())
    state.delete(_USAGE + name.encode())
    _set_autoscaled(state, [n for n in autoscaled_names(state) if n != name])


# -- observation ------------------------------------------------------------------------------


def observe(
    replicas: int,
    holders: dict[int, set[bytes]],
    usage: Sequence[ReplicaUsage],
    record: AutoscaleState,
    instance: int,
    period: int,
    period_ms: int,
    cpu_millicores: int,
) -> Observation:
    """The observation of `period` for an application running `replicas` replicas, `holders`
    giving the nodes that hold a copy of each. Only the holders' reports count: a node that runs
    no copy of a replica cannot make it look busy. A replica counts as ready when its copies ran,
    together, at least half the period (per container) and it was not added during the period."""
    cpu: dict[int, int] = {}
    uptime: dict[int, int] = {}
    for r in usage:
        if r.instance == instance and r.node in holders.get(r.replica, ()):
            cpu[r.replica] = cpu.get(r.replica, 0) + r.cpu_ms
            uptime[r.replica] = uptime.get(r.replica, 0) + r.uptime_ms
    samples = []
    half = record.containers * period_ms // 2
    for index in range(replicas):
        new = (
            record.grown_at is not None and record.grown_at >= period and index >= record.grown_from
        )
        if not holders.get(index) or new:
            samples.append(ReplicaSample(ReplicaKind.UNREADY))
        elif index not in cpu:
            samples.append(ReplicaSample(ReplicaKind.MISSING))
        elif uptime[index] < half:
            samples.append(ReplicaSample(ReplicaKind.UNREADY))
        else:
            samples.append(ReplicaSample(ReplicaKind.REPORTED, cpu[index]))
    return Observation(replicas, tuple(samples), cpu_millicores * period_ms // 1000)
