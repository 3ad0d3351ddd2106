"""The `usage` module: what each node's replicas consumed, reported once per metering period
(an hour by default) and signed by the node's own key, kept for billing to settle."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chain import codec
from chain.primitives import AccountId
from chain.runtime import app_scaling, apps, billing, nodes
from chain.runtime.app_scaling import AutoscalePass, ReplicaUsage, autoscaled_names
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.signature import verify
from chain.state import Overlay, StateReader, storage_key

NAME = "usage"
REPORT_DOMAIN = b"statemesh/usage-report/v1"
MAX_RECORDS_BYTES = 64 * 1024
_REPORT = storage_key(NAME, "report")
DECIDED_PERIOD_KEY = storage_key(NAME, "decidedPeriod")
"""The last metering period whose reports the autoscaler read."""


class UsageError(enum.Enum):
    UNKNOWN_NODE = "UnknownNode"
    NOT_OPERATOR = "NotOperator"
    BAD_NODE_SIGNATURE = "BadNodeSignature"
    BAD_RECORDS = "BadRecords"
    PERIOD_NOT_OVER = "PeriodNotOver"
    ALREADY_REPORTED = "AlreadyReported"
    NOT_PLACED = "NotPlaced"
    OUTSIDE_ASSIGNMENT = "OutsideAssignment"
    ABOVE_RESERVATION = "AboveReservation"
    REPORTING_CLOSED = "ReportingClosed"


MAX_AMOUNT = 2**64 - 1
"""The largest quantity a record may carry (milliseconds, bytes)."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One replica's consumption during one period on one node, or the disk that the retained
    volumes of a deleted application's replica took (no CPU, memory or uptime then)."""

    app: str
    replica: int
    instance: int
    """The application instance (`apps`): whose usage it is, even once the name is reused."""
    cpu_ms: int
    """CPU time used, in milliseconds."""
    peak_memory_bytes: int
    uptime_ms: int
    """Container running time, summed over the replica's containers."""
    disk_bytes: int = 0
    """The most disk the replica held in the period: its containers' writable layers and its
    volumes; for a deleted application, its retained volumes."""

    def order(self) -> tuple[str, int, int]:
        return (self.app, self.replica, self.instance)

    def encode(self) -> list[codec.RlpItem]:
        u = codec.encode_uint
        return [
            self.app.encode(), u(self.replica), u(self.instance), u(self.cpu_ms),
            u(self.peak_memory_bytes), u(self.uptime_ms), u(self.disk_bytes),
        ]  # fmt: skip


_FIELDS = ("replica", "instance", "cpu ms", "peak memory bytes", "uptime ms", "disk bytes")


def encode_records(records: list[UsageRecord]) -> bytes:
    return codec.encode([r.encode() for r in records])


def decode_records(data: bytes) -> list[UsageRecord]:
    """Records in strictly increasing (app, replica, instance) order, so that a replica is
    counted once per report; every quantity within MAX_AMOUNT."""
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError("usage records are a list")
    out: list[UsageRecord] = []
    for i, entry in enumerate(item):
        record = _decode_record(i, entry)
        if out and out[-1].order() >= record.order():
            raise codec.CodecError(
                f"usage record {i} is not after the one before it (by app, replica, instance)"
            )
        out.append(record)
    return out


def _decode_record(i: int, entry: codec.RlpItem) -> UsageRecord:
    where = f"usage record {i}"
    if not isinstance(entry, list) or len(entry) != 7:
        raise codec.CodecError(
            f"{where} is not [app, replica, instance, cpu ms, peak memory bytes, uptime ms,"
            " disk bytes]"
        )
    raw_app = entry[0]
    if not isinstance(raw_app, bytes) or not 1 <= len(raw_app) <= apps.MAX_NAME_BYTES:
        raise codec.CodecError(f"{where}: an app name is 1 to {apps.MAX_NAME_BYTES} bytes")
    try:
        app = raw_app.decode()
    except UnicodeDecodeError:
        raise codec.CodecError(f"{where}: the app name is not UTF-8") from None
    replica, instance, *amounts = (
        codec.uint(x, f"{where}: {what}") for x, what in zip(entry[1:], _FIELDS, strict=True)
    )
    # Bounded before any is shown: a number of thousands of digits is not even printable.
    for what, value in zip(_FIELDS, [replica, instance, *amounts], strict=True):
        if value > MAX_AMOUNT:
            raise codec.CodecError(f"{where}: {what} is above {MAX_AMOUNT}")
    if replica >= apps.MAX_REPLICAS:
        raise codec.CodecError(f"{where}: replica {replica} is past {apps.MAX_REPLICAS - 1}")
    if instance < 1:
        raise codec.CodecError(f"{where}: instances start at 1")
    cpu_ms, memory, uptime_ms, disk = amounts
    return UsageRecord(app, replica, instance, cpu_ms, memory, uptime_ms, disk)


def report_payload(node_id: bytes, period: int, records: bytes) -> bytes:
    """What the node key signs: the report cannot be moved to another node or period."""
    return REPORT_DOMAIN + node_id + period.to_bytes(8, "big") + records


def report_key(node_id: bytes, period: int) -> bytes:
    return _REPORT + node_id + period.to_bytes(8, "big")


def get_report(state: StateReader, node_id: bytes, period: int) -> list[UsageRecord] | None:
    data = state.get(report_key(node_id, period))
    return None if data is None else decode_records(data)


def due_period(timestamp_ms: int, period_seconds: int) -> int:
    """The period whose reports the autoscaler reads at `timestamp_ms`: the one before the
    current, once half of the current has passed (time for nodes to report it)."""
    period_ms = period_seconds * 1000
    return (timestamp_ms - period_ms // 2) // period_ms - 1


def _decided(state: StateReader) -> int:
    raw = state.get(DECIDED_PERIOD_KEY)
    return -1 if raw is None else int.from_bytes(raw, "big")


def _awaits_decision(state: StateReader, run: AutoscalePass | None, period: int, app: str) -> bool:
    """Whether the autoscaler is still to decide `app` for `period`: a later report is useless."""
    if run is not None and run.period == period:
        return app > run.after
    return period > _decided(state)


def index_by_app(state: Overlay, node_id: bytes, period: int, records: list[UsageRecord]) -> None:
    """Keep the records of autoscaled applications under each application, so that deciding one
    reads its own records rather than every node's report."""
    run = app_scaling.get_pass(state)
    by_app: dict[str, list[ReplicaUsage]] = {}
    for r in records:
        if r.app in by_app or (
            app_scaling.is_autoscaled(state, r.app) and _awaits_decision(state, run, period, r.app)
        ):
            by_app.setdefault(r.app, []).append(
                ReplicaUsage(node_id, r.replica, r.instance, r.cpu_ms, r.uptime_ms)
            )
    for app, kept in by_app.items():
        app_scaling.add_usage(state, app, period, kept)


class Usage(Module):
    name = NAME

    def on_initialize(self, ctx: Context) -> None:
        self.autoscale(ctx)

    def autoscale(self, ctx: Context) -> None:
        """Once per metering period, the apps module scales the autoscaled applications by the
        reports of the period before (`due_period`), a bounded share of them per block. A pass
        still going on when the next period falls due goes on to its end first; the pass that
        begins after it reads the period due then (any period between is skipped)."""
        state = ctx.state
        run = app_scaling.get_pass(state)
        if run is None:
            period = due_period(ctx.env.timestamp, ctx.config.metering_period_seconds)
            if period < 0 or _decided(state) >= period:
                return
            if not autoscaled_names(state):
                return
            state.put(DECIDED_PERIOD_KEY, period.to_bytes(8, "big"))
            run = AutoscalePass(period, ctx.env.timestamp, "", scaled=False)
        apps.autoscale(ctx, run)

    def calls(self) -> list[CallDef]:
        return [
            CallDef(
                NAME,
                "report",
                (
                    Arg("node_id", ArgKind.ACCOUNT),
                    Arg("period", ArgKind.U64),
                    Arg("records", ArgKind.BYTES, max_length=MAX_RECORDS_BYTES),
                    Arg("node_signature", ArgKind.BYTES, max_length=64),
                ),
                self.report,
                "A node's signed usage report for a finished metering period.",
            )
        ]

    def report(
        self,
        ctx: Context,
        sender: AccountId,
        node_id: AccountId,
        period: int,
        records: bytes,
        node_signature: bytes,
    ) -> None:
        state = ctx.state
        record = nodes.get_node(state, node_id)
        if record is None:
            raise self.fail(UsageError.UNKNOWN_NODE, f"node 0x{node_id.hex()} is not registered")
        if record.operator != sender:
            raise self.fail(UsageError.NOT_OPERATOR, "usage of a node comes from its operator")
        if not verify(node_id, report_payload(node_id, period, records), node_signature):
            raise self.fail(UsageError.BAD_NODE_SIGNATURE, "the report is not signed by the node")
        try:
            decoded = decode_records(records)
        except codec.CodecError as exc:
            raise self.fail(UsageError.BAD_RECORDS, str(exc)) from None
        current = ctx.env.timestamp // (ctx.config.metering_period_seconds * 1000)
        if period >= current:
            raise self.fail(
                UsageError.PERIOD_NOT_OVER, f"period {period} is not over (now {current})"
            )
        if state.get(report_key(node_id, period)) is not None:
            raise self.outdated(UsageError.ALREADY_REPORTED, f"period {period} is already reported")
        charges = self.charges(ctx, node_id, record, period, decoded)
        state.put(report_key(node_id, period), records)
        index_by_app(state, node_id, period, decoded)
        for wallet, by_instance in sorted(charges.items()):
            billing.add_charges(state, period, wallet, by_instance)
        ctx.emit(
            NAME, "UsageReported", node=AccountRef(node_id), period=period, replicas=len(decoded)
        )

    def charges(
        self,
        ctx: Context,
        node_id: AccountId,
        node: nodes.NodeRecord,
        period: int,
        records: list[UsageRecord],
    ) -> dict[AccountId, dict[int, list[billing.LineItem]]]:
        """The charges a report makes, by paying wallet and instance; refuses the whole report
        if any record of a billed application is not one the chain placed on this node in the
        period, or is above what the replica reserved (records of applications without a
        wallet are kept for the autoscaler and charge nothing)."""
        state = ctx.state
        out: dict[AccountId, dict[int, list[billing.LineItem]]] = {}
        price = billing.prices(state, ctx.config.billing, node.node_class)
        for r in records:
            wallet = billing.wallet_of(state, r.instance)
            if wallet is None:
                continue
            priced = billing.price_record(
                state, ctx.config, node=node_id, operator=node.operator, price=price,
                period=period, now_ms=ctx.env.timestamp,
                replica=r.replica, instance=r.instance, cpu_ms=r.cpu_ms,
                peak_memory_bytes=r.peak_memory_bytes, disk_bytes=r.disk_bytes,
                uptime_ms=r.uptime_ms,
            )  # fmt: skip
            if isinstance(priced, billing.Refusal):
                # A period invoiced while the report waited in the pool is the chain moving
                # on, not the node lying: outdated, not held against the operator.
                late = priced.reason is billing.ChargeRefused.REPORTING_CLOSED
                raise (self.outdated if late else self.fail)(
                    UsageError(priced.reason.value), f"{r.app} {priced.message}"
                ) from None
            if priced is not None:
                out.setdefault(wallet, {}).setdefault(r.instance, []).append(priced)
        return out
