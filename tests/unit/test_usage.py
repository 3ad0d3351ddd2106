"""Usage reports: the runtime keeps a node's signed report once per finished period; the node
reports what each replica used since its last report."""

from __future__ import annotations

from dataclasses import replace

from chain.runtime import usage
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from node.usage_reporter import usage_records
from orchestrator.metering import ReplicaUsage
from orchestrator.spec import ReplicaKey
from tests.factories import BOB, CHARLIE
from tests.unit.test_towers import NODE_KEYS, TowerChain, tower_spec

(REPORT,) = Usage().calls()
RECORDS = encode_records([UsageRecord("web", 0, 1_500, 32 * 2**20, 60_000)])


def chain() -> TowerChain:
    spec = tower_spec()
    c = TowerChain(replace(spec, runtime=replace(spec.runtime, metering_period_seconds=1)))
    c.register(0)  # node 0, operator bob
    return c


def report(period: int, records: bytes = RECORDS, signer=NODE_KEYS[0]):  # type: ignore[no-untyped-def]
    node_id = NODE_KEYS[0].public
    return REPORT.call(
        node_id=node_id, period=period, records=records,
        node_signature=signer.sign(report_payload(node_id, period, records)),
    )  # fmt: skip


def test_a_report_is_kept_once_per_finished_period() -> None:
    c = chain()
    c.send(BOB, report(0))
    (record,) = usage.get_report(c.state, NODE_KEYS[0].public, 0) or []
    assert (record.app, record.cpu_ms, record.uptime_ms) == ("web", 1_500, 60_000)
    assert c.refuse(BOB, report(0)) == "usage.AlreadyReported: period 0 is already reported"
    assert c.refuse(BOB, report(99)).startswith("usage.PeriodNotOver: period 99 is not over")
    assert (
        c.refuse(CHARLIE, report(1)) == "usage.NotOperator: usage of a node comes from its operator"
    )
    assert c.refuse(BOB, report(1, signer=NODE_KEYS[1])) == (
        "usage.BadNodeSignature: the report is not signed by the node"
    )
    assert c.refuse(BOB, report(1, records=b"\xc1\x01")).startswith("usage.BadRecords")


def test_records_are_what_each_replica_used_since_the_last_report() -> None:
    a, b = ReplicaKey("c", "web", 0), ReplicaKey("c", "api", 1)
    before = {a: ReplicaUsage(cpu_ns=2_000_000_000, uptime_ms=10_000)}
    now = {
        a: ReplicaUsage(cpu_ns=3_500_000_000, peak_memory_bytes=7, uptime_ms=20_000),
        b: ReplicaUsage(cpu_ns=0, uptime_ms=0),
    }
    assert usage_records(now, before) == [UsageRecord("web", 0, 1_500, 7, 10_000)]
