"""Usage reports: at the end of each metering period the node sums what its replicas used in it
(from the orchestrator's meter), signs the report with its node key, and its operator submits
it as `usage.report`. Billing settles from these reports."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import trio

from chain.errors import InvalidTransaction
from chain.keys import Keypair
from chain.ledger import Ledger
from chain.runtime import apps
from chain.runtime.apps import KeptInstance
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from orchestrator.metering import ReplicaUsage, VolumeUsage
from orchestrator.spec import ReplicaKey
from orchestrator.workloads import WorkloadService

log = logging.getLogger("statemesh.usage")

(REPORT,) = Usage().calls()
SETTLE_MS = 2_000
"""Wait this long past a period's end, so that its last block's timestamp is past it."""


def replica_records(
    now: Mapping[ReplicaKey, ReplicaUsage],
    before: Mapping[ReplicaKey, ReplicaUsage],
    instances: Mapping[ReplicaKey, int],
) -> list[UsageRecord]:
    """What each replica used since `before` (the meter's totals only grow); idle ones are left
    out, and so are replicas whose application instance is not known (`instances`)."""
    records = []
    for key, total in now.items():
        previous = before.get(key, ReplicaUsage())
        uptime = total.uptime_ms - previous.uptime_ms
        cpu_ms = (total.cpu_ns - previous.cpu_ns) // 1_000_000
        if uptime <= 0 and cpu_ms <= 0:
            continue
        instance = instances.get(key)
        if instance is None:
            log.warning("usage of %s left out: its application instance is not known", key)
            continue
        # The meter keeps a replica's highest measurement ever: a higher one than at the last
        # report was reached in this period; else the period's peak is at least what it held
        # at its start and at its end.
        if total.peak_disk_bytes > previous.peak_disk_bytes:
            disk = total.peak_disk_bytes
        else:
            disk = max(total.disk_bytes, previous.disk_bytes)
        records.append(
            UsageRecord(
                key.app, key.replica, instance, max(cpu_ms, 0), total.peak_memory_bytes,
                max(uptime, 0), disk,
            )
        )  # fmt: skip
    return records


def retained_records(
    volumes: list[VolumeUsage], kept: Mapping[int, KeptInstance], chain_id: str
) -> list[UsageRecord]:
    """The disk that persistent volumes take on this node without a replica here using them: a
    deleted application's, for as long as the chain retains its instance, and a live one's whose
    replica moved away or was scaled down, for as long as the node keeps it (`kept`: the
    instances the chain keeps). One record per replica of such an instance."""
    sizes: dict[tuple[str, int, int], int] = {}
    for v in volumes:
        held = kept.get(v.instance)
        if v.chain != chain_id or held is None or held.name != v.app:
            continue
        key = (v.app, v.replica, v.instance)
        sizes[key] = sizes.get(key, 0) + v.bytes
    return [
        UsageRecord(app, replica, instance, 0, 0, 0, size)
        for (app, replica, instance), size in sizes.items()
    ]


def usage_records(*parts: list[UsageRecord]) -> list[UsageRecord]:
    """One record per (app, replica, instance), in that order so that equal usage gives equal
    reports: a deleted replica still stopping in the period and its retained volumes are one
    record, with the larger of their disk figures."""
    merged: dict[tuple[str, int, int], UsageRecord] = {}
    for record in (r for part in parts for r in part):
        key = record.order()
        held = merged.get(key)
        if held is not None:
            record = replace(held, disk_bytes=max(held.disk_bytes, record.disk_bytes))
        merged[key] = record
    return [merged[key] for key in sorted(merged)]


class UsageReporter:
    def __init__(
        self,
        chain: Ledger,
        workloads: WorkloadService,
        *,
        operator: Keypair,
        identity: Keypair,
    ) -> None:
        self.chain = chain
        self.workloads = workloads
        self.operator = operator
        self.identity = identity
        self.reports = 0
        self._last: dict[ReplicaKey, ReplicaUsage] = {}
        self._instances: dict[ReplicaKey, int] = {}
        """The application instance of each replica the meter knows, as last seen."""

    def _instances_of(self, totals: Mapping[ReplicaKey, ReplicaUsage]) -> dict[ReplicaKey, int]:
        """The instance of each metered replica: from its spec while the controller has it,
        else as last seen. Never guessed: a replica of unknown instance is not billed."""
        controller = self.workloads.controller
        for key in totals:
            spec = None if controller is None else controller.desired_spec(key)
            if spec is not None and spec.instance > 0:
                self._instances[key] = spec.instance
        # Forget replicas the meter no longer has, so the map does not grow with history.
        self._instances = {k: i for k, i in self._instances.items() if k in totals}
        return self._instances

    @property
    def period_ms(self) -> int:
        return self.chain.runtime.config.metering_period_seconds * 1000

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = self.chain.clock.now_ms()
            period = now // self.period_ms
            await trio.sleep(((period + 1) * self.period_ms + SETTLE_MS - now) / 1000)
            self.report(period)

    def report(self, period: int) -> None:
        controller = self.workloads.controller
        if controller is None:
            return
        totals = controller.usage()
        store = self.chain.store
        kept = apps.kept_instances(store.state_at(store.finalized_header.hash))
        instances = self._instances_of(totals)
        records = usage_records(
            replica_records(totals, self._last, instances),
            retained_records(
                controller.retained_volume_usage(), kept, self.workloads.desired.chain_id
            ),
        )
        self._last = totals
        if not records:
            return
        encoded = encode_records(records)
        node_id = self.identity.public
        signature = self.identity.sign(report_payload(node_id, period, encoded))
        call = REPORT.call(
            node_id=node_id, period=period, records=encoded, node_signature=signature
        )
        try:
            self.chain.submit_signed(self.operator, call)
        except InvalidTransaction as exc:
            log.warning("usage report for period %d refused: %s", period, exc)
            return
        self.reports += 1
        log.info("reported usage of %d replica(s) for period %d", len(records), period)
