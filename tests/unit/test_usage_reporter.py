"""The usage reporter on a real chain database: a report carries each replica's instance and
disk, and the retained volumes of a deleted application for as long as the chain keeps them;
a replica the controller forgot keeps the instance it was last seen with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.runtime import apps
from chain.runtime.usage import UsageRecord, decode_records, report_payload
from chain.signature import verify
from orchestrator.metering import ReplicaUsage, VolumeUsage
from orchestrator.spec import Container, ReplicaKey, ReplicaSpec
from orchestrator.usage_reporter import REPORT, UsageReporter
from tests.factories import ALICE, BOB, CHARLIE
from tests.unit.test_app_retention import db
from tests.unit.test_apps import CREATE, DELETE
from tests.unit.test_apps_rpc import Chain
from tests.unit.test_towers import NODE_KEYS, registration

CHAIN = "statemesh_dev"


@dataclass
class FakeController:
    """What the reporter reads of the controller, set by the test."""

    totals: dict[ReplicaKey, ReplicaUsage] = field(default_factory=dict)
    specs: dict[ReplicaKey, ReplicaSpec] = field(default_factory=dict)
    retained: list[VolumeUsage] = field(default_factory=list)

    def usage(self) -> dict[ReplicaKey, ReplicaUsage]:
        return dict(self.totals)

    def desired_spec(self, key: ReplicaKey) -> ReplicaSpec | None:
        return self.specs.get(key)

    def retained_volume_usage(self) -> list[VolumeUsage]:
        return list(self.retained)


@dataclass
class FakeDesired:
    chain_id: str = CHAIN


@dataclass
class FakeWorkloads:
    controller: FakeController = field(default_factory=FakeController)
    desired: FakeDesired = field(default_factory=FakeDesired)


def spec(app: str, replica: int, instance: int) -> ReplicaSpec:
    container = Container(name="main", image="busybox")
    return ReplicaSpec(CHAIN, app, 1, replica, (container,), instance=instance)


def submitted(chain: Chain) -> list[list[UsageRecord]]:
    """The records of every usage report waiting in the pool, checked as signed by the node."""
    found = []
    for vt in chain.service.pool.pending():
        node_id, period, records, signature = REPORT.decode_args(vt.tx.args)
        assert node_id == NODE_KEYS[0].public
        assert verify(node_id, report_payload(node_id, period, records), signature)
        found.append(decode_records(records))
    return found


def node_chain(path: Path) -> Chain:
    """A chain where node 0 is registered, operated by charlie (who submits its reports)."""
    chain = Chain(path)
    chain.send(CHARLIE, registration(0, CHARLIE))
    return chain


def finalize(chain: Chain) -> None:
    assert chain.service.finalize(chain.service.store.best_hash, None)


def test_a_report_has_instances_disk_and_retained_volumes(tmp_path: Path) -> None:
    chain = node_chain(tmp_path / "db")
    chain.send(ALICE, CREATE.call(manifest=db()))
    workloads: Any = FakeWorkloads()
    controller = workloads.controller
    reporter = UsageReporter(chain.service, workloads, operator=CHARLIE, identity=NODE_KEYS[0])
    key = ReplicaKey(CHAIN, "db", 0)
    controller.specs[key] = spec("db", 0, 1)
    controller.totals[key] = ReplicaUsage(
        cpu_ns=3_000_000_000, peak_memory_bytes=64, uptime_ms=10_000, disk_bytes=500,
        peak_disk_bytes=800,
    )  # fmt: skip
    reporter.report(0)
    assert submitted(chain) == [[UsageRecord("db", 0, 1, 3_000, 64, 10_000, 800)]]
    # Alice deletes db: the controller forgets the replica, whose last run still counts; its
    # volume is retained. Bob creates db again, which runs here as instance 2.
    chain.send(ALICE, DELETE.call(app="db"))
    finalize(chain)
    del controller.specs[key]
    controller.totals[key] = ReplicaUsage(
        cpu_ns=4_000_000_000, peak_memory_bytes=64, uptime_ms=12_000, disk_bytes=300,
        peak_disk_bytes=800,
    )  # fmt: skip
    controller.retained = [
        VolumeUsage(CHAIN, "db", 1, 0, "data", 700),
        VolumeUsage(CHAIN, "web", 9, 0, "data", 10**9),  # no such instance on chain: not billed
    ]
    reporter.report(1)
    # The replica's last run and its retained volume are one record of instance 1.
    assert submitted(chain)[1] == [UsageRecord("db", 0, 1, 1_000, 64, 2_000, 700)]
    chain.send(BOB, CREATE.call(manifest=db()))
    finalize(chain)
    controller.specs[key] = spec("db", 0, 2)
    controller.totals[key] = ReplicaUsage(
        cpu_ns=5_000_000_000, peak_memory_bytes=64, uptime_ms=15_000, disk_bytes=10,
        peak_disk_bytes=800,
    )  # fmt: skip
    reporter.report(2)
    assert submitted(chain)[2] == [
        UsageRecord("db", 0, 1, 0, 0, 0, 700),
        UsageRecord("db", 0, 2, 1_000, 64, 3_000, 300),
    ]
    # Once the chain no longer keeps instance 1, its volume is not reported, even if this node
    # has not removed it yet.
    store = chain.service.store
    dead = apps.tombstone(store.best_state(), 1)
    assert dead is not None
    while chain.slot * 1_000 < dead.retained_until:
        chain.send(BOB, CREATE.call(manifest=db(f"x{chain.slot}")))
    finalize(chain)
    assert 1 not in apps.kept_instances(store.best_state())
    controller.totals[key] = ReplicaUsage(
        cpu_ns=6_000_000_000, peak_memory_bytes=64, uptime_ms=16_000, disk_bytes=10,
        peak_disk_bytes=800,
    )  # fmt: skip
    reporter.report(3)
    assert submitted(chain)[3] == [UsageRecord("db", 0, 2, 1_000, 64, 1_000, 10)]


def test_a_replica_of_unknown_instance_is_left_out(tmp_path: Path) -> None:
    chain = node_chain(tmp_path / "db")
    workloads: Any = FakeWorkloads()
    reporter = UsageReporter(chain.service, workloads, operator=CHARLIE, identity=NODE_KEYS[0])
    workloads.controller.totals[ReplicaKey(CHAIN, "ghost", 0)] = ReplicaUsage(uptime_ms=5)
    reporter.report(0)
    assert submitted(chain) == []


def test_a_live_applications_volume_left_on_this_node_is_billed_to_its_owner(
    tmp_path: Path,
) -> None:
    chain = node_chain(tmp_path / "db")
    chain.send(ALICE, CREATE.call(manifest=db()))
    finalize(chain)
    workloads: Any = FakeWorkloads()
    reporter = UsageReporter(chain.service, workloads, operator=CHARLIE, identity=NODE_KEYS[0])
    # Replica 3 was scaled down (or moved away): its volume is still here, and takes disk.
    workloads.controller.retained = [
        VolumeUsage(CHAIN, "db", 1, 3, "data", 4096),
        VolumeUsage(CHAIN, "other", 1, 3, "data", 10**9),  # not the name of instance 1
        VolumeUsage("another-chain", "db", 1, 3, "data", 10**9),
    ]
    reporter.report(0)
    assert submitted(chain) == [[UsageRecord("db", 3, 1, 0, 0, 0, 4096)]]
    # A replica the reporter never saw a spec of is not billed to a guessed instance.
    workloads.controller.totals[ReplicaKey(CHAIN, "db", 0)] = ReplicaUsage(
        cpu_ns=10**9, uptime_ms=1_000
    )
    reporter.report(1)
    assert submitted(chain)[1] == [UsageRecord("db", 3, 1, 0, 0, 0, 4096)]
