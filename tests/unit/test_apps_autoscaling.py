"""Autoscaling on chain: at each metering period the `apps` module scales an autoscaled
application by the usage its nodes reported, with a `Scaled` event saying why; hand scaling is
refused; a missing report is not zero load; a node that runs no copy of a replica cannot make it
look busy; nothing ever leaves [minReplicas, maxReplicas]."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chain.runtime import app_scaling, apps, usage
from chain.runtime.apps import Apps
from chain.runtime.autoscaling import Reason
from chain.runtime.manifest import validate_manifest
from chain.runtime.nodes import NodeStatus
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from tests.factories import ALICE, BOB
from tests.unit.test_apps import WEB
from tests.unit.test_towers import EPOCH, NODE_KEYS, OPERATORS, TowerChain, tower_spec

(CREATE, UPDATE, SCALE, DELETE, *_) = Apps().calls()
(REPORT,) = Usage().calls()
PERIOD_MS = 10_000
REQUEST_MS = 100 * PERIOD_MS // 1000
"""What one replica of `web` (100m) requests over a period, in CPU ms."""


def autoscaled(
    replicas: int = 2, least: int = 2, most: int = 6, target: int = 60, **scaling: Any
) -> bytes:
    data = WEB.to_json()
    data["spec"]["replicas"] = replicas
    data["spec"]["autoscaling"] = {
        "minReplicas": least,
        "maxReplicas": most,
        "targetCPUUtilizationPercentage": target,
        **scaling,
    }
    return validate_manifest(data).canonical_json()


def scaling_chain(**config: int) -> TowerChain:
    """Three active cpu nodes; 10 s metering periods; autoscaling time 10 times chain time (the
    default 300 s scale-down window lasts 30 s, three periods); `config` changes the runtime's
    configuration further."""
    spec = tower_spec(active=4)
    changes = {"metering_period_seconds": 10, "autoscaling_time_scale": 10, **config}
    runtime = replace(spec.runtime, **changes)
    chain = TowerChain(replace(spec, runtime=runtime))
    for i in range(3):
        chain.register(i, cores=4)
    chain.execute([])
    for i in range(3):
        chain.prove(i)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert [chain.status(i) for i in range(3)] == [NodeStatus.ACTIVE] * 3
    return chain


def run_to(chain: TowerChain, timestamp_ms: int) -> list[Any]:
    """Blocks until the last one executed is at `timestamp_ms` or later (the nodes prove once an
    epoch, to stay active); their events."""
    events = []
    proved = -1
    while 1_000 * chain.number < timestamp_ms:
        epoch = chain.number // EPOCH
        if epoch != proved and chain.number % EPOCH < EPOCH - 3:
            for i in range(3):
                events += chain.send(OPERATORS[i], chain.proof_call(i)).events  # type: ignore[attr-defined]
            proved = epoch
        else:
            events += chain.execute([]).events
    return events


def report(
    chain: TowerChain, period: int, percent: dict[int, int], uptime: int = PERIOD_MS
) -> None:
    """Once `period` is over, every node reports, for each replica it holds, `percent[replica]`
    of its request."""
    run_to(chain, (period + 1) * PERIOD_MS)
    for i in range(3):
        node_id = NODE_KEYS[i].public
        held = sorted(e.index for e in apps.placement(chain.state, "web") if e.node == node_id)
        instance = apps.get_app(chain.state, "web").instance  # type: ignore[union-attr]
        records = [
            UsageRecord("web", r, instance, REQUEST_MS * percent[r] // 100, 2**20, uptime)
            for r in held
            if r in percent
        ]
        if not records:
            continue
        data = encode_records(records)
        call = REPORT.call(
            node_id=node_id,
            period=period,
            records=data,
            node_signature=NODE_KEYS[i].sign(report_payload(node_id, period, data)),
        )
        chain.send(OPERATORS[i], call)


def replicas(chain: TowerChain) -> int:
    record = apps.get_app(chain.state, "web")
    assert record is not None
    return record.replicas


def scaled(events: list[Any]) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events if e.module == "apps" and e.name == "Scaled"]


def decide_period(chain: TowerChain, period: int) -> list[dict[str, Any]]:
    """Run to the block that decides `period` (half-way through the next one)."""
    return scaled(run_to(chain, (period + 1) * PERIOD_MS + PERIOD_MS // 2))


def first_full_period(chain: TowerChain) -> int:
    return 1_000 * chain.number // PERIOD_MS + 1


def test_scales_up_under_load_and_down_after_the_window() -> None:
    chain = scaling_chain()
    chain.send(ALICE, CREATE.call(manifest=autoscaled()))
    p = first_full_period(chain)
    run_to(chain, (p + 1) * PERIOD_MS)
    report(chain, p, {0: 120, 1: 120})
    (event,) = decide_period(chain, p)
    # 120% against 60%: twice the replicas.
    assert (event["from"], event["to"], event["utilisation"]) == (2, 4, 120)
    assert str(event["reason"]).startswith("ScaleUp: cpu 120% of 60% target")
    assert replicas(chain) == 4 and len([e for e in apps.placement(chain.state, "web")]) == 4
    # The two new replicas started during p + 1: not yet ready, they count as idle.
    report(chain, p + 1, {0: 150, 1: 150, 2: 40, 3: 40})
    (event,) = decide_period(chain, p + 1)
    assert (event["from"], event["to"]) == (4, 5)
    report(chain, p + 2, {r: 150 for r in range(5)})
    (event,) = decide_period(chain, p + 2)
    assert (event["from"], event["to"]) == (5, 6)
    assert str(event["reason"]).startswith(Reason.TOO_MANY_REPLICAS.value)
    # Idle: the scale-down window (300 s, 30 s of chain time here) keeps the count for a while.
    for q in range(p + 3, p + 5):
        report(chain, q, {r: 5 for r in range(6)})
        assert decide_period(chain, q) == []
        assert replicas(chain) == 6
    state = app_scaling.get_state(chain.state, "web")
    assert state is not None and state.utilisation == 5
    assert state.reason.startswith(Reason.SCALE_DOWN_STABILIZED.value)
    report(chain, p + 5, {r: 5 for r in range(6)})
    (event,) = decide_period(chain, p + 5)
    assert (event["from"], event["to"], event["utilisation"]) == (6, 2, 5)
    assert str(event["reason"]).startswith(Reason.TOO_FEW_REPLICAS.value)
    state = app_scaling.get_state(chain.state, "web")
    assert state is not None
    assert [(d.from_replicas, d.to_replicas) for d in state.decisions] == [
        (2, 4), (4, 5), (5, 6), (6, 2),
    ]  # fmt: skip


def test_a_missing_report_is_not_zero_load() -> None:
    chain = scaling_chain()
    chain.send(ALICE, CREATE.call(manifest=autoscaled(replicas=4, least=1)))
    p = first_full_period(chain)
    # Nobody reports: nothing is known, nothing changes.
    assert decide_period(chain, p) == []
    state = app_scaling.get_state(chain.state, "web")
    assert state is not None and state.utilisation is None
    assert state.reason.startswith(Reason.NO_METRICS.value)
    # Two idle replicas report, two do not: those count as using all they asked for, which
    # keeps the count (2 * 10% + 2 * 100% = 55% is within 10% of 60%).
    report(chain, p + 1, {0: 10, 1: 10})
    assert decide_period(chain, p + 1) == [] and replicas(chain) == 4


def test_a_node_that_runs_no_copy_cannot_make_a_replica_look_busy() -> None:
    chain = scaling_chain()
    chain.send(ALICE, CREATE.call(manifest=autoscaled()))
    p = first_full_period(chain)
    run_to(chain, (p + 1) * PERIOD_MS)
    holders = {e.index: e.node for e in apps.placement(chain.state, "web")}
    stranger = next(i for i in range(3) if NODE_KEYS[i].public not in holders.values())
    instance = apps.get_app(chain.state, "web").instance  # type: ignore[union-attr]
    node_id = NODE_KEYS[stranger].public
    data = encode_records(
        [UsageRecord("web", r, instance, 2**64 - 1, 1, PERIOD_MS) for r in range(2)]
    )
    chain.send(
        OPERATORS[stranger],
        REPORT.call(
            node_id=node_id,
            period=p,
            records=data,
            node_signature=NODE_KEYS[stranger].sign(report_payload(node_id, p, data)),
        ),
    )
    assert decide_period(chain, p) == [] and replicas(chain) == 2


def test_absurd_cpu_from_the_holders_stops_at_max() -> None:
    chain = scaling_chain()
    chain.send(ALICE, CREATE.call(manifest=autoscaled(replicas=4, least=1, most=5)))
    p = first_full_period(chain)
    run_to(chain, (p + 1) * PERIOD_MS)
    huge = (2**64 - 1) * 100 // REQUEST_MS
    report(chain, p, dict.fromkeys(range(4), huge))
    (event,) = decide_period(chain, p)
    assert (event["from"], event["to"]) == (4, 5)
    assert replicas(chain) == 5


def test_scaling_by_hand_is_refused_and_the_autoscaler_follows_updates() -> None:
    chain = scaling_chain()
    chain.send(ALICE, CREATE.call(manifest=autoscaled()))
    assert chain.refuse(ALICE, SCALE.call(app="web", replicas=3)) == (
        "apps.Autoscaled: 'web' is autoscaled (2 to 6 replicas at 60% CPU): the autoscaler owns"
        " its replica count; change minReplicas and maxReplicas with an update, or remove"
        " autoscaling from its manifest to scale it by hand"
    )
    # Another tenant can neither scale nor update it.
    assert chain.refuse(BOB, SCALE.call(app="web", replicas=3)).startswith("apps.NotOwner")
    assert chain.refuse(BOB, UPDATE.call(manifest=autoscaled(most=9))).startswith("apps.NotOwner")
    # An update moves the range; the count is kept within it.
    chain.send(ALICE, UPDATE.call(manifest=autoscaled(replicas=3, least=3, most=8)))
    assert replicas(chain) == 3
    state = app_scaling.get_state(chain.state, "web")
    assert state is not None and (state.spec.min_replicas, state.spec.max_replicas) == (3, 8)
    # Without autoscaling, the app is scaled by hand again.
    data = WEB.to_json()
    data["spec"]["replicas"] = 3
    chain.send(ALICE, UPDATE.call(manifest=validate_manifest(data).canonical_json()))
    assert app_scaling.get_state(chain.state, "web") is None
    assert app_scaling.autoscaled_names(chain.state) == []
    chain.send(ALICE, SCALE.call(app="web", replicas=1))
    assert replicas(chain) == 1


def test_deleting_forgets_the_autoscaler() -> None:
    chain = scaling_chain()
    chain.send(ALICE, CREATE.call(manifest=autoscaled()))
    assert app_scaling.autoscaled_names(chain.state) == ["web"]
    chain.send(ALICE, DELETE.call(app="web"))
    assert app_scaling.get_state(chain.state, "web") is None
    assert app_scaling.autoscaled_names(chain.state) == []


def test_the_record_round_trips() -> None:
    chain = scaling_chain()
    behavior = {
        "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min"},
        }
    }
    chain.send(ALICE, CREATE.call(manifest=autoscaled(**behavior)))
    p = first_full_period(chain)
    run_to(chain, (p + 1) * PERIOD_MS)
    report(chain, p, {0: 120, 1: 120})
    (event,) = decide_period(chain, p)
    assert (event["from"], event["to"]) == (2, 3)
    assert str(event["reason"]).startswith(Reason.SCALE_UP_LIMIT.value)
    state = app_scaling.get_state(chain.state, "web")
    assert state is not None
    assert app_scaling.AutoscaleState.decode(state.encode()) == state
    assert state.history.events and state.history.recommendations


def test_no_autoscaled_app_leaves_usage_state_alone() -> None:
    chain = scaling_chain()
    run_to(chain, 5 * PERIOD_MS)
    assert chain.state.get(usage.DECIDED_PERIOD_KEY) is None
