"""Usage reports: at the end of each metering period the node sums what its replicas used in it
(from the orchestrator's meter), signs the report with its node key, and its operator submits
it as `usage.report`. Billing settles from these reports."""

from __future__ import annotations

import logging
from typing import Any

import trio

from chain.errors import InvalidTransaction
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from consensus.clock import Clock
from node.chain_service import ChainService
from node.workloads import WorkloadService
from orchestrator.metering import ReplicaUsage
from orchestrator.spec import ReplicaKey
from wallet.keys import Keypair

log = logging.getLogger("statemesh.usage")

(REPORT,) = Usage().calls()
SETTLE_MS = 2_000
"""Wait this long past a period's end, so that its last block's timestamp is past it."""


def usage_records(
    now: dict[ReplicaKey, ReplicaUsage], before: dict[ReplicaKey, ReplicaUsage]
) -> list[UsageRecord]:
    """What each replica used since `before` (the meter's totals only grow); idle ones are left
    out. Records are in (app, replica) order so equal usage gives equal reports."""
    records = []
    for key in sorted(now, key=lambda k: (k.app, k.replica)):
        total, previous = now[key], before.get(key, ReplicaUsage())
        uptime = total.uptime_ms - previous.uptime_ms
        cpu_ms = (total.cpu_ns - previous.cpu_ns) // 1_000_000
        if uptime <= 0 and cpu_ms <= 0:
            continue
        records.append(
            UsageRecord(
                key.app, key.replica, max(cpu_ms, 0), total.peak_memory_bytes, max(uptime, 0)
            )
        )
    return records


class UsageReporter:
    def __init__(
        self,
        chain: ChainService,
        workloads: WorkloadService,
        *,
        operator: Keypair,
        identity: Keypair,
        clock: Clock,
    ) -> None:
        self.chain = chain
        self.workloads = workloads
        self.operator = operator
        self.identity = identity
        self.clock = clock
        self.reports = 0
        self._last: dict[ReplicaKey, ReplicaUsage] = {}

    @property
    def period_ms(self) -> int:
        return self.chain.runtime.config.metering_period_seconds * 1000

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = self.clock.now_ms()
            period = now // self.period_ms
            await trio.sleep(((period + 1) * self.period_ms + SETTLE_MS - now) / 1000)
            self.report(period)

    def report(self, period: int) -> None:
        controller = self.workloads.controller
        if controller is None:
            return
        totals = controller.usage()
        records = usage_records(totals, self._last)
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
