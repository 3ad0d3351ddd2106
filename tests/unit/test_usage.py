"""Usage reports: the runtime keeps a node's signed report once per finished period; the node
reports what each replica used since its last report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chain import codec
from chain.runtime import usage
from chain.runtime.apps import KeptInstance
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from orchestrator.metering import ReplicaUsage, VolumeUsage
from orchestrator.spec import ReplicaKey
from orchestrator.usage_reporter import replica_records, retained_records, usage_records
from tests.factories import ALICE, BOB, CHARLIE
from tests.unit.test_towers import NODE_KEYS, TowerChain, tower_spec

(REPORT,) = Usage().calls()
RECORDS = encode_records([UsageRecord("web", 0, 1, 1_500, 32 * 2**20, 60_000, 5 * 2**20)])


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
    assert record == UsageRecord("web", 0, 1, 1_500, 32 * 2**20, 60_000, 5 * 2**20)
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
    a, b, c = ReplicaKey("c", "web", 0), ReplicaKey("c", "api", 1), ReplicaKey("c", "db", 0)
    before = {
        a: ReplicaUsage(cpu_ns=2_000_000_000, uptime_ms=10_000, disk_bytes=50, peak_disk_bytes=90),
        c: ReplicaUsage(uptime_ms=1, disk_bytes=10, peak_disk_bytes=10),
    }
    now = {
        a: ReplicaUsage(
            cpu_ns=3_500_000_000, peak_memory_bytes=7, uptime_ms=20_000, disk_bytes=40,
            peak_disk_bytes=90,
        ),
        b: ReplicaUsage(cpu_ns=0, uptime_ms=0, disk_bytes=1_000, peak_disk_bytes=1_000),
        c: ReplicaUsage(uptime_ms=2, disk_bytes=20, peak_disk_bytes=30),
    }  # fmt: skip
    instances = {a: 4, b: 5, c: 6}
    # web: no new peak, so at least what it held at the start of the period (50); api: idle;
    # db: a new peak in this period.
    assert usage_records(replica_records(now, before, instances)) == [
        UsageRecord("db", 0, 6, 0, 0, 1, 30),
        UsageRecord("web", 0, 4, 1_500, 7, 10_000, 50),
    ]
    # A replica whose instance is not known is left out rather than billed to a guess.
    assert replica_records(now, before, {c: 6}) == [UsageRecord("db", 0, 6, 0, 0, 1, 30)]


def test_retained_volumes_are_reported_while_the_chain_keeps_their_instance() -> None:
    until = 10**6
    kept = {
        3: KeptInstance("db", ALICE.public, until),  # deleted, retained
        4: KeptInstance("db", BOB.public, None),  # alive
    }
    volumes = [
        VolumeUsage("c", "db", 3, 0, "data", 100),
        VolumeUsage("c", "db", 3, 0, "logs", 20),
        VolumeUsage("c", "db", 3, 1, "data", 7),
        VolumeUsage("c", "db", 4, 0, "data", 1_000),  # a live instance's, its replica moved away
        VolumeUsage("c", "db", 2, 0, "data", 1_000),  # retention over
        VolumeUsage("other", "db", 3, 0, "data", 1_000),  # another chain's
        VolumeUsage("c", "web", 3, 0, "data", 1_000),  # not the name the chain kept it for
    ]
    assert retained_records(volumes, kept, "c") == [
        UsageRecord("db", 0, 3, 0, 0, 0, 120),
        UsageRecord("db", 1, 3, 0, 0, 0, 7),
        UsageRecord("db", 0, 4, 0, 0, 0, 1_000),
    ]
    # A deleted replica still stopping in the period and its retained volumes: one record.
    stopping = UsageRecord("db", 0, 3, 900, 64, 4_000, 100)
    merged = usage_records([stopping], retained_records(volumes, kept, "c"))
    assert merged == [
        replace(stopping, disk_bytes=120),
        UsageRecord("db", 0, 4, 0, 0, 0, 1_000),
        UsageRecord("db", 1, 3, 0, 0, 0, 7),
    ]
    assert usage.decode_records(encode_records(merged)) == merged


def fields(**changes: codec.RlpItem) -> codec.RlpItem:
    names = ("app", "replica", "instance", "cpu", "memory", "uptime", "disk")
    values = dict(zip(names, UsageRecord("web", 0, 1, 1, 1, 1, 1).encode(), strict=True))
    values.update(changes)
    return list(values.values())


BIG = (2**64).to_bytes(9, "big")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (b"\x01", "usage records are a list"),
        ([[b"web"]], "usage record 0 is not [app, replica, instance, cpu ms"),
        ([[*fields(), b""]], "usage record 0 is not [app, replica, instance, cpu ms"),
        ([b"web"], "usage record 0 is not [app, replica, instance, cpu ms"),
        ([fields(app=[b"web"])], "usage record 0: an app name is 1 to 63 bytes"),
        ([fields(app=b"")], "usage record 0: an app name is 1 to 63 bytes"),
        ([fields(app=b"x" * 64)], "usage record 0: an app name is 1 to 63 bytes"),
        ([fields(app=b"\xff\xfe")], "usage record 0: the app name is not UTF-8"),
        ([fields(replica=[b""])], "usage record 0: replica must be an integer, got a list"),
        ([fields(replica=(1000).to_bytes(2, "big"))], "usage record 0: replica 1000 is past 999"),
        ([fields(replica=b"\xff" * 4000)], "usage record 0: replica is above 18446744073709551615"),
        ([fields(instance=b"")], "usage record 0: instances start at 1"),
        ([fields(instance=BIG)], "usage record 0: instance is above 18446744073709551615"),
        ([fields(cpu=BIG)], "usage record 0: cpu ms is above 18446744073709551615"),
        ([fields(memory=BIG)], "usage record 0: peak memory bytes is above 1844674407370955161"),
        ([fields(uptime=BIG)], "usage record 0: uptime ms is above 18446744073709551615"),
        ([fields(disk=b"\xff" * 30_000)], "usage record 0: disk bytes is above 1844674407370"),
        ([fields(disk=b"\x00\x01")], "usage record 0: disk bytes has a leading zero byte"),
        ([fields(), fields()], "usage record 1 is not after the one before it"),
        ([fields(app=b"x"), fields(app=b"a")], "usage record 1 is not after the one before it"),
        ([fields(instance=b"\x02"), fields()], "usage record 1 is not after the one before it"),
    ],
)
def test_hostile_records_are_refused(records: codec.RlpItem, message: str) -> None:
    data = records if isinstance(records, bytes) else codec.encode(records)
    with pytest.raises(codec.CodecError) as info:
        usage.decode_records(data)
    assert str(info.value).startswith(message)


def test_a_report_of_hostile_records_changes_nothing() -> None:
    c = chain()
    records = codec.encode([fields(), fields()])
    assert c.refuse(BOB, report(0, records=records)) == (
        "usage.BadRecords: usage record 1 is not after the one before it"
        " (by app, replica, instance)"
    )
    assert usage.get_report(c.state, NODE_KEYS[0].public, 0) is None
    # The largest amounts are accepted, and given back whole.
    top = UsageRecord("w" * 63, 999, usage.MAX_AMOUNT, *[usage.MAX_AMOUNT] * 4)
    c.send(BOB, report(0, records=encode_records([top])))
    assert usage.get_report(c.state, NODE_KEYS[0].public, 0) == [top]
