"""The autoscaling pass of a metering period spread over blocks: a cursor in state, at most
`autoscaling_apps_per_block` applications decided per block in name order, every application
once per period; a pass that outlasts its period finishes first and the latest due period
follows; usage kept by application; the same blocks give the same state root everywhere, and a
block that fails leaves nothing of the pass behind."""

from __future__ import annotations

import pytest

from chain.errors import InvalidBlock
from chain.runtime import app_scaling, apps, towers, usage
from chain.runtime.app_scaling import AutoscalePass
from chain.runtime.manifest import validate_manifest
from chain.runtime.usage import UsageRecord, encode_records, report_payload
from chain.state import storage_key
from tests.factories import ALICE
from tests.unit.test_apps import WEB
from tests.unit.test_apps_autoscaling import (
    CREATE,
    PERIOD_MS,
    REPORT,
    first_full_period,
    scaling_chain,
)
from tests.unit.test_towers import EPOCH, NODE_KEYS, OPERATORS, TowerChain

NAMES = ("api", "cache", "db", "queue", "worker")
"""Created in another order than their names': the pass goes by name."""


def manifest(name: str) -> bytes:
    data = WEB.to_json()
    data["metadata"]["name"] = name
    data["spec"]["replicas"] = 2
    del data["spec"]["ingress"]
    data["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 6,
        "targetCPUUtilizationPercentage": 60,
    }
    return validate_manifest(data).canonical_json()


def chain_with_apps(per_block: int, period_seconds: int = 10) -> TowerChain:
    chain = scaling_chain(
        autoscaling_apps_per_block=per_block, metering_period_seconds=period_seconds
    )
    for name in reversed(NAMES):
        chain.send(ALICE, CREATE.call(manifest=manifest(name)))
    return chain


def step(chain: TowerChain) -> None:
    """One block; once in each epoch it carries the three nodes' proofs, to keep them active."""
    last = towers.get_tower(chain.state, NODE_KEYS[0].public).last_proof_block
    epoch = chain.number // EPOCH
    if last // EPOCH == epoch or chain.number % EPOCH >= EPOCH - 3:
        chain.execute([])
        return
    proofs = []
    for i in range(3):
        nonce = chain.nonces.get(OPERATORS[i].public, 0)
        proofs.append(chain.sign(OPERATORS[i], chain.proof_call(i), nonce=nonce))
        chain.nonces[OPERATORS[i].public] = nonce + 1
    chain.execute(proofs)


def last_periods(chain: TowerChain) -> dict[str, int | None]:
    out = {}
    for name in NAMES:
        known = app_scaling.get_state(chain.state, name)
        assert known is not None
        out[name] = known.last_period
    return out


def decided_by_the_next_block(chain: TowerChain) -> dict[str, int]:
    """Steps one block; the applications it decided, with the period each was decided for."""
    before = last_periods(chain)
    step(chain)
    after = last_periods(chain)
    return {n: p for n, p in after.items() if p != before[n] and p is not None}


def kept_usage(chain: TowerChain, name: str) -> bytes | None:
    return chain.state.get(storage_key("apps", "usage") + name.encode())


def send_report(chain: TowerChain, node: int, period: int, cpu_ms: dict[str, int]) -> None:
    """Node `node`'s report of `period`: `cpu_ms[app]` for each replica it holds of `app`."""
    node_id = NODE_KEYS[node].public
    records = []
    for app, used in sorted(cpu_ms.items()):
        instance = apps.get_app(chain.state, app).instance  # type: ignore[union-attr]
        held = sorted(e.index for e in apps.placement(chain.state, app) if e.node == node_id)
        records += [UsageRecord(app, r, instance, used, 2**20, 10**6) for r in held]
    data = encode_records(records)
    call = REPORT.call(
        node_id=node_id,
        period=period,
        records=data,
        node_signature=NODE_KEYS[node].sign(report_payload(node_id, period, data)),
    )
    chain.send(OPERATORS[node], call)


def run_to_block(chain: TowerChain, number: int) -> None:
    while chain.number < number:
        step(chain)


def test_the_pass_goes_over_the_blocks_by_name_a_bounded_number_a_block() -> None:
    chain = chain_with_apps(per_block=2)
    p = first_full_period(chain)
    due_block = ((p + 1) * PERIOD_MS + PERIOD_MS // 2) // 1_000
    run_to_block(chain, due_block - 1)
    assert app_scaling.get_pass(chain.state) is None
    assert all(q is None or q < p for q in last_periods(chain).values())
    started_ms = 1_000 * due_block
    assert decided_by_the_next_block(chain) == {"api": p, "cache": p}
    assert app_scaling.get_pass(chain.state) == AutoscalePass(p, started_ms, "cache", False)
    assert decided_by_the_next_block(chain) == {"db": p, "queue": p}
    assert app_scaling.get_pass(chain.state) == AutoscalePass(p, started_ms, "queue", False)
    assert decided_by_the_next_block(chain) == {"worker": p}
    assert app_scaling.get_pass(chain.state) is None
    # Each once a period: nothing more until the next one falls due.
    for _ in range(PERIOD_MS // 1_000 - 3):
        assert decided_by_the_next_block(chain) == {}
    assert decided_by_the_next_block(chain) == {"api": p + 1, "cache": p + 1}


def test_a_pass_longer_than_its_period_finishes_then_the_latest_due_period_follows() -> None:
    """Two-second periods, one application a block: a pass of five blocks outlasts two periods.
    It goes on deciding its own period to the end; the next pass reads the period due when it
    begins, and the period in between is never decided (usage reported for it is dropped)."""
    chain = chain_with_apps(per_block=1, period_seconds=2)
    while app_scaling.get_pass(chain.state) is None:
        step(chain)
    while app_scaling.get_pass(chain.state) is not None:
        step(chain)
    # The next block begins a pass, of the period due then.
    decided = decided_by_the_next_block(chain)
    first = usage.due_period(1_000 * chain.number, 2)
    assert decided == {"api": first}
    order = ["api"]
    reported = False
    while app_scaling.get_pass(chain.state) is not None:
        before = last_periods(chain)
        if not reported and 1_000 * (chain.number + 1) // 2_000 > first + 1:
            # A report of the next period, kept for `api` while that period is still to come.
            holder = next(
                i
                for i in range(3)
                if any(e.node == NODE_KEYS[i].public for e in apps.placement(chain.state, "api"))
            )
            send_report(chain, holder, first + 1, {"api": 1_000})
            assert kept_usage(chain, "api") is not None
            reported = True
        else:
            step(chain)
        after = last_periods(chain)
        decided = {n: q for n, q in after.items() if q != before[n] and q is not None}
        assert list(decided.values()) == [first] * len(decided) and len(decided) <= 1
        order += list(decided)
    assert reported and order == list(NAMES)
    # The pass ran past the end of the next period: the next pass skips it.
    assert usage.due_period(1_000 * chain.number, 2) >= first + 2
    assert decided_by_the_next_block(chain) == {"api": usage.due_period(1_000 * chain.number, 2)}
    assert kept_usage(chain, "api") is None


def scripted_blocks(chain: TowerChain, *, fail: bool) -> list[bytes]:
    """Usage of `api` and `db` at 120% of their request, then the blocks to the end of the next
    period; the state root after each. With `fail`, a block that fails to import (an invalid
    extrinsic) is tried in the middle of the pass, and changes nothing."""
    roots = []
    p = first_full_period(chain)
    run_to_block(chain, (p + 1) * PERIOD_MS // 1_000)
    for node in range(3):
        send_report(chain, node, p, {"api": 1_200, "db": 1_200})
        roots.append(chain.root)
    while chain.number < (p + 3) * PERIOD_MS // 1_000:
        run = app_scaling.get_pass(chain.state)
        if fail and run is not None and run.period == p:
            before = chain.root
            with pytest.raises(InvalidBlock):
                chain.execute([b"\x00not a transaction"])
            assert chain.root == before
            assert app_scaling.get_pass(chain.state) == run
            fail = False
        step(chain)
        roots.append(chain.root)
    return roots


def test_the_same_blocks_give_the_same_state_root_and_a_failed_block_leaves_nothing() -> None:
    one = chain_with_apps(per_block=2)
    two = chain_with_apps(per_block=2)
    assert one.root == two.root
    roots = scripted_blocks(one, fail=False)
    assert scripted_blocks(two, fail=True) == roots
    scaled = {n: apps.get_app(one.state, n).replicas for n in NAMES}  # type: ignore[union-attr]
    assert scaled["api"] == scaled["db"] == 4


def test_usage_is_kept_by_application_only_while_it_may_still_be_decided() -> None:
    chain = chain_with_apps(per_block=2)
    plain = WEB.to_json()
    plain["metadata"]["name"] = "plain"
    del plain["spec"]["ingress"]
    chain.send(ALICE, CREATE.call(manifest=validate_manifest(plain).canonical_json()))
    p = first_full_period(chain)
    run_to_block(chain, (p + 1) * PERIOD_MS // 1_000)
    holder = next(
        i
        for i in range(3)
        if any(e.node == NODE_KEYS[i].public for e in apps.placement(chain.state, "api"))
    )
    send_report(chain, holder, p, {"api": 500, "plain": 500})
    assert kept_usage(chain, "api") is not None
    assert kept_usage(chain, "plain") is None  # not autoscaled
    run_to_block(chain, ((p + 1) * PERIOD_MS + PERIOD_MS // 2) // 1_000)
    known = app_scaling.get_state(chain.state, "api")
    assert known is not None and known.last_period == p and known.utilisation == 50
    assert kept_usage(chain, "api") is None  # read once, by the decision
    # A period already decided: a late report of it is stored, and not kept for the autoscaler.
    send_report(chain, holder, p - 1, {"api": 500})
    assert chain.state.get(usage.report_key(NODE_KEYS[holder].public, p - 1)) is not None
    assert kept_usage(chain, "api") is None
