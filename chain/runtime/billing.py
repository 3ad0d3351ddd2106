"""The `billing` module: prices per node class, the invoices each paying wallet owes for a
metering period, their payment by the wallet to the operators, and the arrears that suspend and
then delete the applications of a wallet that does not pay.

When things happen, for metering period p (length P, block time t):
- while t < (p + 1)·P + max(P, 10 s), nodes report p (`usage.report`): the records of billed
  applications become charges, owed by the application's wallet to the node's operator;
- at the first block past that time (`issue_time`) the invoices of p are issued, one per
  wallet that owes anything; later reports of p are refused;
- an invoice still open at issue_time(p) + grace suspends the wallet's applications; paying
  every invoice past its grace resumes them; an application suspended for the deletion period
  is deleted.
Invoices are derived from reports in blocks only, so a re-org derives them again from the
reports of the new branch; a payout closes its invoice once (`InvoiceClosed` after)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chain import codec
from chain.primitives import AccountId
from chain.runtime import system
from chain.runtime.config import NODE_CLASSES, BillingConfig, Prices, RuntimeConfig
from chain.runtime.framework import (
    AccountRef,
    Arg,
    ArgKind,
    CallDef,
    Context,
    Module,
    get_uints,
    put_uints,
)
from chain.state import Overlay, StateReader, storage_key

NAME = "billing"
HOUR_MS = 3_600_000
GIB = 2**30
MAX_PAYEES = 1024
"""Operators one invoice pays at most: a payout transaction lists them all."""
PAYEE_BYTES = 52
"""An encoded (operator, amount) pair is at most this long."""
MAX_EARNINGS_KEPT = 720
"""Periods of earnings kept per operator (a month of hourly periods)."""
MAX_ITEMS_KEPT = 720
"""Periods of line items kept per application instance."""
STOP_GRACE_MS = 60_000
"""How long after the chain removes a replica from a node the node may still be running it
(finality of the removal, then the containers' stop timeout)."""
MAX_CONTAINERS = 8
"""A replica has at most this many containers (the manifest schema's bound), and its uptime is
summed over them: at most this many times its assigned time."""

GENESIS_KEY = storage_key(NAME, "genesis")
"""The genesis billing parameters (JSON): the genesis hash covers them."""
_PRICE = storage_key(NAME, "price")
_INVOICE = storage_key(NAME, "invoice")
_NEXT_INVOICE = storage_key(NAME, "nextInvoice")
_OPEN = storage_key(NAME, "open")
"""Wallet -> ids of its open invoices, ascending (oldest first)."""
_INVOICE_OF = storage_key(NAME, "invoiceOf")
"""Wallet ‖ period -> the id of the wallet's invoice of that period."""
_OWED = storage_key(NAME, "owed")
"""Period ‖ wallet -> the operators the wallet owes anything for the period (32 bytes each, in
the order first owed); period ‖ wallet ‖ operator -> how much (16 bytes). Raw ids, not a
list to decode: each report adds to them."""
_OWING = storage_key(NAME, "owing")
"""Period -> the wallets that owe anything for it (32 bytes each, in the order first owing)."""
_UNISSUED = storage_key(NAME, "unissued")
"""Periods with charges whose invoices are not issued yet, ascending."""
_GRACE_CURSOR = storage_key(NAME, "graceCursor")
"""The lowest invoice id whose grace period has not been checked."""
_ITEMS = storage_key(NAME, "items")
"""Instance ‖ period -> the ids of the nodes that reported it (32 bytes each, in report order);
instance ‖ period ‖ node -> [line item...]: what each replica was charged on that node."""
_EARNINGS = storage_key(NAME, "earnings")
"""Operator -> [[period, amount]...] paid to it, ascending by period."""
_WALLET_OF = storage_key(NAME, "walletOf")
"""Application instance -> the wallet that pays for it."""
_APPS_OF = storage_key(NAME, "appsOf")
"""Wallet -> the names of the live applications it pays for."""
_SUSPENDED = storage_key(NAME, "suspended")
"""Application name -> when (block timestamp, ms) it was suspended."""
SUSPENDED_INDEX_KEY = storage_key(NAME, "suspendedIndex")
"""The names of the suspended applications, ascending."""
RESUMED_KEY = storage_key(NAME, "resumed")
"""Set when a payment resumed applications in this block: `apps` places them at its end."""
_ASSIGNED = storage_key(NAME, "assigned")
"""Node ‖ instance ‖ replica -> when the chain had the replica placed on the node (recent)."""


class BillingError(enum.Enum):
    UNKNOWN_INVOICE = "UnknownInvoice"
    NOT_INVOICE_WALLET = "NotInvoiceWallet"
    INVOICE_CLOSED = "InvoiceClosed"
    PAYOUT_MISMATCH = "PayoutMismatch"
    BAD_PAYEES = "BadPayees"
    INSUFFICIENT_FUNDS = "InsufficientFunds"
    NOT_SUDO = "NotSudo"
    UNKNOWN_CLASS = "UnknownClass"


# -- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoice:
    """What one wallet owes the operators for one metering period."""

    id: int
    """Invoices are numbered from 0 in the order they are issued (by period, then wallet)."""
    wallet: AccountId
    """The platform wallet (its group key) that owes it and alone may pay it."""
    period: int
    lines: tuple[tuple[AccountId, int], ...]
    """Operator -> amount, ascending by operator, every amount above 0."""
    total: int
    """The sum of the lines."""
    paid: bool

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [
                u(self.id), self.wallet, u(self.period),
                [[operator, u(amount)] for operator, amount in self.lines],
                u(self.total), u(1 if self.paid else 0),
            ]
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Invoice:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 6:
            raise codec.CodecError("an invoice has 6 fields")
        id_, wallet, period, lines, total, paid = item
        return cls(
            codec.uint(id_, "invoice id"),
            AccountId(codec.fixed(wallet, 32, "wallet")),
            codec.uint(period, "period"),
            decode_payees(lines),
            codec.uint(total, "total"),
            codec.uint(paid, "paid") == 1,
        )


def encode_payees(payees: Sequence[tuple[bytes, int]]) -> bytes:
    """The `payees` argument of `billing.pay`: [[operator, amount]...]."""
    return codec.encode([[who, codec.encode_uint(amount)] for who, amount in payees])


def decode_payees(item: codec.RlpItem) -> tuple[tuple[AccountId, int], ...]:
    """(operator, amount) pairs, strictly ascending by operator, amounts above 0."""
    if not isinstance(item, list):
        raise codec.CodecError("payees are a list of [operator, amount]")
    out: list[tuple[AccountId, int]] = []
    for i, entry in enumerate(item):
        if not isinstance(entry, list) or len(entry) != 2:
            raise codec.CodecError(f"payee {i} is not [operator, amount]")
        who = AccountId(codec.fixed(entry[0], 32, f"payee {i}"))
        amount = codec.uint(entry[1], f"payee {i} amount")
        if amount == 0 or amount >= 2**128:
            raise codec.CodecError(f"payee {i}: an amount is 1 to 2^128 - 1")
        if out and out[-1][0] >= who:
            raise codec.CodecError(f"payee {i} is not after the one before it")
        out.append((who, amount))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class LineItem:
    """One replica's charge for one period, as `statemesh billing show` prints it."""

    replica: int
    node: AccountId
    operator: AccountId
    cpu_ms: int
    peak_memory_bytes: int
    disk_bytes: int
    uptime_ms: int
    assigned_ms: int
    """How long the chain had the replica placed on the node in the period."""
    gpu_ms: int
    """GPUs reserved times milliseconds assigned."""
    amount: int

    def encode(self) -> list[codec.RlpItem]:
        u = codec.encode_uint
        return [
            u(self.replica), self.node, self.operator, u(self.cpu_ms),
            u(self.peak_memory_bytes), u(self.disk_bytes), u(self.uptime_ms),
            u(self.assigned_ms), u(self.gpu_ms), u(self.amount),
        ]  # fmt: skip

    @classmethod
    def decode(cls, item: codec.RlpItem) -> LineItem:
        if not isinstance(item, list) or len(item) != 10:
            raise codec.CodecError("a line item has 10 fields")
        replica, node, operator, *rest = item
        amounts = [codec.uint(x, "line item") for x in rest]
        return cls(
            codec.uint(replica, "replica"),
            AccountId(codec.fixed(node, 32, "node")),
            AccountId(codec.fixed(operator, 32, "operator")),
            *amounts,
        )


def encode_prices(prices: Prices) -> bytes:
    u = codec.encode_uint
    return codec.encode(
        [
            u(prices.cpu_millicore_hour), u(prices.memory_gib_hour), u(prices.disk_gib_hour),
            u(prices.gpu_hour), u(prices.replica_hour_minimum),
        ]
    )  # fmt: skip


def decode_prices(data: bytes) -> Prices:
    item = codec.decode(data)
    if not isinstance(item, list) or len(item) != 5:
        raise codec.CodecError("prices are 5 amounts")
    return Prices(*(codec.uint(x, "price") for x in item))


# -- readers -------------------------------------------------------------------------------------


MIN_REPORT_WINDOW_MS = 10_000
"""Reports of a period are accepted for at least this long after it ends, however short the
periods (a node reports 2 s after the end, and its transaction needs a block or two)."""


def issue_time(period: int, period_seconds: int) -> int:
    """The block timestamp (ms) from which period `period`'s invoices are issued: its reports
    are accepted for one whole period after it ends, and at least MIN_REPORT_WINDOW_MS."""
    period_ms = period_seconds * 1000
    return (period + 1) * period_ms + max(period_ms, MIN_REPORT_WINDOW_MS)


def grace_end(period: int, config: RuntimeConfig) -> int:
    """The block timestamp (ms) from which an unpaid invoice of `period` suspends."""
    return issue_time(period, config.metering_period_seconds) + config.billing.grace_seconds * 1000


def prices(state: StateReader, config: BillingConfig, node_class: str) -> Prices:
    """The prices on nodes of `node_class`: the last ones the sudo account set, else genesis'."""
    data = state.get(_PRICE + node_class.encode())
    if data is not None:
        return decode_prices(data)
    return config.prices.get(node_class, Prices())


def invoice(state: StateReader, invoice_id: int) -> Invoice | None:
    data = state.get(_INVOICE + invoice_id.to_bytes(8, "big"))
    return None if data is None else Invoice.decode(data)


def next_invoice_id(state: StateReader) -> int:
    data = state.get(_NEXT_INVOICE)
    return 0 if data is None else codec.uint(data, "next invoice")


def open_invoice_ids(state: StateReader, wallet: bytes) -> list[int]:
    return get_uints(state, _OPEN + wallet, "open invoice")


def open_invoices(state: StateReader, wallet: bytes) -> list[Invoice]:
    """The wallet's unpaid invoices, oldest first."""
    found = []
    for invoice_id in open_invoice_ids(state, wallet):
        known = invoice(state, invoice_id)
        if known is not None:
            found.append(known)
    return found


def first_late_invoice(
    state: StateReader, config: RuntimeConfig, wallet: bytes, now_ms: int
) -> Invoice | None:
    """The wallet's oldest invoice unpaid past its grace period at `now_ms` (the wallet is in
    arrears), or None."""
    for known in open_invoices(state, wallet):
        if grace_end(known.period, config) <= now_ms:
            return known
    return None


def invoice_of(state: StateReader, wallet: bytes, period: int) -> Invoice | None:
    """The wallet's invoice for `period`, once issued."""
    data = state.get(_INVOICE_OF + wallet + period.to_bytes(8, "big"))
    return None if data is None else invoice(state, int.from_bytes(data, "big"))


def wallet_of(state: StateReader, instance: int) -> AccountId | None:
    """The wallet that pays for an application instance; None: the application is not billed."""
    data = state.get(_WALLET_OF + instance.to_bytes(8, "big"))
    return None if data is None else AccountId(data)


def _names(data: bytes | None) -> list[str]:
    if not data:
        return []
    item = codec.decode(data)
    if not isinstance(item, list) or not all(isinstance(x, bytes) for x in item):
        raise codec.CodecError("a list of names")
    return [x.decode() for x in item]  # type: ignore[union-attr]


def _put_names(state: Overlay, key: bytes, names: Sequence[str]) -> None:
    if names:
        state.put(key, codec.encode([n.encode() for n in sorted(set(names))]))
    else:
        state.delete(key)


def apps_paid_by(state: StateReader, wallet: bytes) -> list[str]:
    return _names(state.get(_APPS_OF + wallet))


def suspended_since(state: StateReader, name: str) -> int | None:
    """When (block timestamp, ms) the application was suspended; None if it is not."""
    data = state.get(_SUSPENDED + name.encode())
    return None if data is None else int.from_bytes(data, "big")


def suspended_names(state: StateReader) -> list[str]:
    return _names(state.get(SUSPENDED_INDEX_KEY))


def _items_key(instance: int, period: int) -> bytes:
    return _ITEMS + instance.to_bytes(8, "big") + period.to_bytes(8, "big")


def period_items(state: StateReader, instance: int, period: int) -> list[LineItem]:
    """What each replica of an application instance was charged for one period, by replica."""
    key = _items_key(instance, period)
    holders = state.get(key) or b""
    out = []
    for at in range(0, len(holders), 32):
        data = state.get(key + holders[at : at + 32])
        item = codec.decode(data) if data is not None else []
        if not isinstance(item, list):
            raise codec.CodecError("line items are a list")
        out += [LineItem.decode(x) for x in item]
    out.sort(key=_item_order)
    return out


def line_items(
    state: StateReader, instance: int, newest: int, count: int
) -> list[tuple[int, list[LineItem]]]:
    """(period, line items) of an application instance, newest first, for the periods that
    have any among the `count` periods up to `newest` (at most MAX_ITEMS_KEPT are kept)."""
    out = []
    for period in range(newest, max(newest - min(count, MAX_ITEMS_KEPT), -1), -1):
        items = period_items(state, instance, period)
        if items:
            out.append((period, items))
    return out


def earnings(state: StateReader, operator: bytes) -> list[tuple[int, int]]:
    """(period, amount paid) to an operator, oldest first (the last MAX_EARNINGS_KEPT)."""
    data = state.get(_EARNINGS + operator)
    if data is None:
        return []
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError("earnings are a list")
    out = []
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 2:
            raise codec.CodecError("earnings of a period are [period, amount]")
        out.append((codec.uint(entry[0], "period"), codec.uint(entry[1], "amount")))
    return out


def _ids(data: bytes | None) -> list[AccountId]:
    data = data or b""
    return [AccountId(data[at : at + 32]) for at in range(0, len(data), 32)]


def owed(state: StateReader, period: int, wallet: bytes) -> dict[AccountId, int]:
    """What `wallet` owes each operator so far for `period` (before its invoice is issued)."""
    key = _OWED + period.to_bytes(8, "big") + wallet
    out = {}
    for operator in _ids(state.get(key)):
        amount = state.get(key + operator)
        out[operator] = 0 if amount is None else int.from_bytes(amount, "big")
    return out


# -- charging ------------------------------------------------------------------------------------


def charge(
    price: Prices,
    *,
    cpu_ms: int,
    peak_memory_bytes: int,
    disk_bytes: int,
    gpu_ms: int,
    assigned_ms: int,
) -> int:
    """The amount one replica owes for a period: CPU time used, peak memory and disk held and
    GPUs reserved (`gpu_ms`: GPUs times ms assigned), at least the replica-hour minimum for the
    time assigned. One exact fraction, floored once: cpu_ms CPU milliseconds are cpu_ms·1000
    millicore-ms."""
    numerator = (
        cpu_ms * 1000 * price.cpu_millicore_hour * GIB
        + peak_memory_bytes * assigned_ms * price.memory_gib_hour
        + disk_bytes * assigned_ms * price.disk_gib_hour
        + gpu_ms * price.gpu_hour * GIB
    )
    used = numerator // (GIB * HOUR_MS)
    return max(used, price.replica_hour_minimum * assigned_ms // HOUR_MS)


def _period_key(period: int) -> bytes:
    return period.to_bytes(8, "big")


def add_charges(
    state: Overlay,
    period: int,
    wallet: AccountId,
    items_by_instance: Mapping[int, Sequence[LineItem]],
) -> None:
    """Owe the items' amounts, from `wallet` to their operators, for `period`; keep the items
    for each instance's statement (those of MAX_ITEMS_KEPT periods before go)."""
    key = _OWED + _period_key(period) + wallet
    operators = state.get(key)
    due: dict[AccountId, int] = {}
    for items in items_by_instance.values():
        for item in items:
            if item.amount:
                due[item.operator] = due.get(item.operator, 0) + item.amount
    added = b""
    for operator, amount in sorted(due.items()):
        known = state.get(key + operator)
        if known is None:
            added += operator
        total = amount + (0 if known is None else int.from_bytes(known, "big"))
        state.put(key + operator, total.to_bytes(16, "big"))
    if added:
        state.put(key, (operators or b"") + added)
    if added and operators is None:
        owing_key = _OWING + _period_key(period)
        state.put(owing_key, (state.get(owing_key) or b"") + wallet)
        unissued = get_uints(state, _UNISSUED, "unissued period")
        if period not in unissued:
            put_uints(state, _UNISSUED, sorted([*unissued, period]))
    for instance, items in items_by_instance.items():
        # One node's items under (instance, period, node), and the nodes under (instance,
        # period): a report writes its own, never re-reads the other nodes'.
        key = _items_key(instance, period)
        holders = state.get(key) or b""
        for node in sorted({i.node for i in items}):
            mine: list[codec.RlpItem] = [i.encode() for i in items if i.node == node]
            state.put(key + node, codec.encode(mine))
            holders += node
        state.put(key, holders)
        if period >= MAX_ITEMS_KEPT:
            _forget_items(state, instance, period - MAX_ITEMS_KEPT)


def _forget_items(state: Overlay, instance: int, period: int) -> None:
    key = _items_key(instance, period)
    holders = state.get(key)
    if holders is None:
        return
    for at in range(0, len(holders), 32):
        state.delete(key + holders[at : at + 32])
    state.delete(key)


def _item_order(item: LineItem) -> tuple[int, bytes]:
    return (item.replica, item.node)


# -- assignments ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assignment:
    """A stretch of time the chain had one replica of a billed instance placed on one node."""

    start_ms: int
    end_ms: int
    """0 while it lasts."""
    cpu_millicores: int
    memory_mib: int
    disk_gib: int
    gpus: int
    """What the replica reserved then."""

    def overlap(self, lo: int, hi: int, now_ms: int) -> int:
        """Milliseconds of [lo, hi) it covers, counting an open one up to `now_ms`."""
        end = self.end_ms or now_ms
        return max(0, min(end, hi) - max(self.start_ms, lo))

    def encode(self) -> list[codec.RlpItem]:
        u = codec.encode_uint
        return [
            u(self.start_ms), u(self.end_ms), u(self.cpu_millicores), u(self.memory_mib),
            u(self.disk_gib), u(self.gpus),
        ]  # fmt: skip


def _assigned_key(node: bytes, instance: int, replica: int) -> bytes:
    return _ASSIGNED + node + instance.to_bytes(8, "big") + replica.to_bytes(4, "big")


def assignments(state: StateReader, node: bytes, instance: int, replica: int) -> list[Assignment]:
    """The recent stretches (the last few periods) replica `replica` of `instance` was placed on
    `node`, oldest first."""
    data = state.get(_assigned_key(node, instance, replica))
    if data is None:
        return []
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError("assignments are a list")
    out = []
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 6:
            raise codec.CodecError("an assignment has 6 fields")
        out.append(Assignment(*(codec.uint(x, "assignment") for x in entry)))
    return out


def note_assignment(
    state: Overlay,
    node: bytes,
    instance: int,
    replica: int,
    *,
    now_ms: int,
    period_seconds: int,
    reserved: tuple[int, int, int, int] | None,
) -> None:
    """A replica of a billed instance starts (`reserved`: what it reserves) or stops (None)
    being placed on `node` at `now_ms`. Stretches that ended before the oldest period still
    open to reports are dropped."""
    key = _assigned_key(node, instance, replica)
    kept = assignments(state, node, instance, replica)
    if kept and kept[-1].end_ms == 0:
        last = kept[-1]
        kept[-1] = Assignment(last.start_ms, now_ms, *_reserved_of(last))
    if reserved is not None:
        kept.append(Assignment(now_ms, 0, *reserved))
    # A report may still come for the period before the current one, and show a replica
    # stopping up to STOP_GRACE_MS after its stretch ended.
    horizon = (now_ms // (period_seconds * 1000) - 2) * period_seconds * 1000 - STOP_GRACE_MS
    kept = [a for a in kept if a.end_ms == 0 or a.end_ms > horizon]
    if kept:
        state.put(key, codec.encode([a.encode() for a in kept]))
    else:
        state.delete(key)


def _reserved_of(a: Assignment) -> tuple[int, int, int, int]:
    return (a.cpu_millicores, a.memory_mib, a.disk_gib, a.gpus)


class ChargeRefused(enum.Enum):
    """Why a usage record of a billed application cannot become a charge."""

    NOT_PLACED = "NotPlaced"
    OUTSIDE_ASSIGNMENT = "OutsideAssignment"
    ABOVE_RESERVATION = "AboveReservation"
    REPORTING_CLOSED = "ReportingClosed"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: ChargeRefused
    message: str


def price_record(
    state: StateReader,
    config: RuntimeConfig,
    *,
    node: bytes,
    operator: AccountId,
    price: Prices,
    period: int,
    now_ms: int,
    replica: int,
    instance: int,
    cpu_ms: int,
    peak_memory_bytes: int,
    disk_bytes: int,
    uptime_ms: int,
) -> LineItem | Refusal | None:
    """The charge of one usage record of a billed instance for period `period`, reported by
    `node` at `now_ms` (`price`: the prices of its class). None when it is the disk of volumes
    kept after the replica left the node (no CPU, memory or uptime), or the replica was only
    stopping there in the period (`STOP_GRACE_MS`) or placed just after it (the genesis
    measuring slack): accepted, not charged. A Refusal when the chain did not place that
    replica there in the period, or the record is above what the replica may use for the time
    it was placed."""
    period_ms = config.metering_period_seconds * 1000
    due = issue_time(period, config.metering_period_seconds)
    if now_ms >= due:
        return Refusal(
            ChargeRefused.REPORTING_CLOSED,
            f"period {period} is invoiced: its reports were due before {due} ms",
        )
    where = f"replica {replica} of instance {instance}"
    stretches = assignments(state, node, instance, replica)
    # Kept volumes only (no CPU, memory or uptime): the node holds them wherever the replica
    # runs now; not charged unless it ran here in the period.
    volumes_only = cpu_ms == peak_memory_bytes == uptime_ms == 0
    if not stretches:
        if volumes_only:
            return None
        return Refusal(ChargeRefused.NOT_PLACED, f"{where} is not placed on this node")
    lo, hi = period * period_ms, (period + 1) * period_ms
    slack = config.billing.measure_slack_seconds * 1000
    assigned = 0
    window = 0
    cpu_cap = cpu_placed = gpu_ms = memory_cap = disk_cap = most_cpu = 0
    for a in stretches:
        ms = a.overlap(lo, hi, now_ms)
        # The node may run the replica a little after the chain removed it (finality, the
        # containers' stop timeout): usage in that time is accepted, and not charged.
        running = Assignment(a.start_ms, a.end_ms and a.end_ms + STOP_GRACE_MS, *_reserved_of(a))
        # ... and a node's meter may count in a period what ran up to `slack` after it.
        may_run = running.overlap(lo, hi + slack, now_ms)
        if may_run:
            assigned += ms
            window += may_run
            cpu_cap += a.cpu_millicores * may_run
            cpu_placed += a.cpu_millicores * ms
            most_cpu = max(most_cpu, a.cpu_millicores)
            gpu_ms += a.gpus * ms
            memory_cap = max(memory_cap, a.memory_mib * 2**20)
            disk_cap = max(disk_cap, a.disk_gib * GIB)
    if not window and volumes_only:
        return None
    if not window:
        return Refusal(
            ChargeRefused.OUTSIDE_ASSIGNMENT,
            f"{where} was not placed on this node in period {period}",
        )
    # A node measures between its samples, not exactly over the period: time-based usage may
    # run `slack` past the window before it is refused, and is charged up to the time placed.
    for what, used, cap in (
        ("CPU millicore-ms", cpu_ms * 1000, cpu_cap + most_cpu * slack),
        ("peak memory bytes", peak_memory_bytes, memory_cap),
        ("disk bytes", disk_bytes, disk_cap),
        ("uptime ms", uptime_ms, (window + slack) * MAX_CONTAINERS),
    ):
        if used > cap:
            return Refusal(
                ChargeRefused.ABOVE_RESERVATION,
                f"{where}: {what} {used} is above what it may use placed {window} ms ({cap})",
            )
    if not assigned:
        return None
    amount = charge(
        price,
        cpu_ms=min(cpu_ms, cpu_placed // 1000),
        peak_memory_bytes=peak_memory_bytes,
        disk_bytes=disk_bytes,
        gpu_ms=gpu_ms,
        assigned_ms=assigned,
    )
    return LineItem(
        replica, AccountId(node), operator, cpu_ms, peak_memory_bytes, disk_bytes, uptime_ms,
        assigned, gpu_ms, amount,
    )  # fmt: skip


# -- paying wallets of applications ----------------------------------------------------------


def set_wallet(state: Overlay, name: str, instance: int, wallet: AccountId) -> None:
    state.put(_WALLET_OF + instance.to_bytes(8, "big"), wallet)
    _put_names(state, _APPS_OF + wallet, [*apps_paid_by(state, wallet), name])


def forget_app(state: Overlay, name: str, instance: int) -> None:
    """An application is deleted: its wallet stops paying for it (invoices already owed stay),
    and it is no longer suspended."""
    wallet = wallet_of(state, instance)
    if wallet is not None:
        _put_names(state, _APPS_OF + wallet, [n for n in apps_paid_by(state, wallet) if n != name])
    if suspended_since(state, name) is not None:
        state.delete(_SUSPENDED + name.encode())
        _put_names(state, SUSPENDED_INDEX_KEY, [n for n in suspended_names(state) if n != name])


def mark_suspended(state: Overlay, name: str, since_ms: int) -> None:
    state.put(_SUSPENDED + name.encode(), since_ms.to_bytes(8, "big"))
    _put_names(state, SUSPENDED_INDEX_KEY, [*suspended_names(state), name])


def clear_suspended(state: Overlay, name: str) -> None:
    state.delete(_SUSPENDED + name.encode())
    _put_names(state, SUSPENDED_INDEX_KEY, [n for n in suspended_names(state) if n != name])


# -- issuing -------------------------------------------------------------------------------------


def issue_due(ctx: Context) -> list[Invoice]:
    """Issues the invoices of every period whose reporting window closed by this block: one per
    wallet that owes anything, in wallet order."""
    state = ctx.state
    period_seconds = ctx.config.metering_period_seconds
    unissued = get_uints(state, _UNISSUED, "unissued period")
    issued: list[Invoice] = []
    while unissued and issue_time(unissued[0], period_seconds) <= ctx.env.timestamp:
        period = unissued.pop(0)
        owing_key = _OWING + _period_key(period)
        for wallet in sorted(_ids(state.get(owing_key))):
            owed_key = _OWED + _period_key(period) + wallet
            lines = tuple(sorted(owed(state, period, wallet).items()))
            for operator, _ in lines:
                state.delete(owed_key + operator)
            state.delete(owed_key)
            if not lines:
                continue
            made = Invoice(
                next_invoice_id(state), wallet, period, lines, sum(a for _, a in lines), False
            )
            _store_invoice(state, made)
            state.put(_NEXT_INVOICE, codec.encode_uint(made.id + 1))
            # Fixed width: an empty value (the RLP of 0) would read as absent.
            state.put(_INVOICE_OF + wallet + _period_key(period), made.id.to_bytes(8, "big"))
            put_uints(state, _OPEN + wallet, [*open_invoice_ids(state, wallet), made.id])
            ctx.emit(
                NAME, "InvoiceIssued", invoice=made.id, wallet=AccountRef(wallet), period=period,
                total=made.total, operators=len(lines),
            )  # fmt: skip
            issued.append(made)
        state.delete(owing_key)
    put_uints(state, _UNISSUED, unissued)
    return issued


def _store_invoice(state: Overlay, made: Invoice) -> None:
    state.put(_INVOICE + made.id.to_bytes(8, "big"), made.encode())


def overdue(state: StateReader, wallet: bytes, config: RuntimeConfig, now_ms: int) -> bool:
    """Whether any open invoice of the wallet is past its grace period."""
    return any(now_ms >= grace_end(i.period, config) for i in open_invoices(state, wallet))


def grace_cursor(state: StateReader) -> int:
    data = state.get(_GRACE_CURSOR)
    return 0 if data is None else codec.uint(data, "grace cursor")


def advance_grace(state: Overlay, config: RuntimeConfig, now_ms: int) -> list[Invoice]:
    """The invoices whose grace period ended by `now_ms` unpaid, checked once each in id order
    (which is period order, so grace ends in the same order)."""
    cursor = grace_cursor(state)
    end = next_invoice_id(state)
    late: list[Invoice] = []
    while cursor < end:
        known = invoice(state, cursor)
        if known is not None and now_ms < grace_end(known.period, config):
            break
        if known is not None and not known.paid:
            late.append(known)
        cursor += 1
    state.put(_GRACE_CURSOR, codec.encode_uint(cursor))
    return late


def record_earnings(state: Overlay, operator: AccountId, period: int, amount: int) -> None:
    kept = earnings(state, operator)
    if kept and kept[-1][0] == period:
        kept[-1] = (period, kept[-1][1] + amount)
    else:
        kept.append((period, amount))
        kept.sort()
    state.put(
        _EARNINGS + operator,
        codec.encode(
            [[codec.encode_uint(p), codec.encode_uint(a)] for p, a in kept[-MAX_EARNINGS_KEPT:]]
        ),
    )


# -- the module ----------------------------------------------------------------------------------


def _check_payees_shape(invoice_id: int, payees: bytes) -> None:
    try:
        decoded = decode_payees(codec.decode(payees))
    except codec.CodecError as exc:
        raise ValueError(str(exc)) from None
    if len(decoded) > MAX_PAYEES:
        raise ValueError(f"at most {MAX_PAYEES} payees")


class Billing(Module):
    """Prices, payouts and arrears. Charges are made by `usage.report` (see `usage`) and
    invoices issued at the start of a block (`on_initialize`); suspension of applications and
    their deletion are done by `apps`, which reads this module's state."""

    name = NAME

    def calls(self) -> list[CallDef]:
        return [
            CallDef(
                NAME,
                "pay",
                (
                    Arg("invoice", ArgKind.U64),
                    Arg("payees", ArgKind.BYTES, max_length=4 + PAYEE_BYTES * MAX_PAYEES),
                ),
                self.pay,
                "Pay an open invoice from its wallet: the payees must equal its lines exactly.",
                check_shape=_check_payees_shape,
            ),
            CallDef(
                NAME,
                "set_prices",
                (
                    Arg("node_class", ArgKind.BYTES, max_length=16),
                    Arg("cpu_millicore_hour", ArgKind.BALANCE),
                    Arg("memory_gib_hour", ArgKind.BALANCE),
                    Arg("disk_gib_hour", ArgKind.BALANCE),
                    Arg("gpu_hour", ArgKind.BALANCE),
                    Arg("replica_hour_minimum", ArgKind.BALANCE),
                ),
                self.set_prices,
                "Set the prices of a node class (the sudo account only).",
            ),
        ]

    def pay(self, ctx: Context, sender: AccountId, invoice_id: int, payees_raw: bytes) -> None:
        state = ctx.state
        known = invoice(state, invoice_id)
        if known is None:
            raise self.fail(BillingError.UNKNOWN_INVOICE, f"no invoice {invoice_id}")
        if sender != known.wallet:
            raise self.fail(
                BillingError.NOT_INVOICE_WALLET,
                f"invoice {invoice_id} is paid by wallet 0x{known.wallet.hex()} only",
            )
        if known.paid:
            raise self.outdated(
                BillingError.INVOICE_CLOSED, f"invoice {invoice_id} is already paid"
            )
        try:
            payees = decode_payees(codec.decode(payees_raw))
        except codec.CodecError as exc:
            raise self.fail(BillingError.BAD_PAYEES, str(exc)) from None
        if payees != known.lines:
            raise self.fail(
                BillingError.PAYOUT_MISMATCH,
                f"the payees differ from invoice {invoice_id}'s lines ({len(known.lines)} "
                f"operators, {known.total} in total)",
            )
        source = system.account(state, sender)
        if source.free < known.total:
            raise self.unaffordable(
                BillingError.INSUFFICIENT_FUNDS,
                f"invoice {invoice_id} is {known.total}, the wallet holds {source.free}",
            )
        system.put_account(
            state, sender, system.AccountInfo(source.nonce, source.free - known.total)
        )
        for operator, amount in known.lines:
            target = system.account(state, operator)
            system.put_account(
                state, operator, system.AccountInfo(target.nonce, target.free + amount)
            )
            record_earnings(state, operator, known.period, amount)
        _store_invoice(
            state, Invoice(known.id, known.wallet, known.period, known.lines, known.total, True)
        )
        put_uints(
            state, _OPEN + sender, [i for i in open_invoice_ids(state, sender) if i != invoice_id]
        )
        ctx.emit(
            NAME, "InvoicePaid", invoice=invoice_id, wallet=AccountRef(sender),
            period=known.period, total=known.total,
        )  # fmt: skip
        if not overdue(state, sender, ctx.config, ctx.env.timestamp):
            for name in apps_paid_by(state, sender):
                if suspended_since(state, name) is not None:
                    clear_suspended(state, name)
                    state.put(RESUMED_KEY, b"\x01")
                    ctx.emit(NAME, "AppResumed", app=name, wallet=AccountRef(sender))

    def set_prices(
        self,
        ctx: Context,
        sender: AccountId,
        raw_class: bytes,
        cpu: int,
        memory: int,
        disk: int,
        gpu: int,
        minimum: int,
    ) -> None:
        sudo = ctx.config.billing.sudo
        if not sudo or sender != sudo:
            raise self.fail(BillingError.NOT_SUDO, "prices are set by the sudo account only")
        node_class = raw_class.decode(errors="replace")
        if node_class not in NODE_CLASSES:
            raise self.fail(
                BillingError.UNKNOWN_CLASS, f"node classes are {', '.join(NODE_CLASSES)}"
            )
        ctx.state.put(
            _PRICE + node_class.encode(), encode_prices(Prices(cpu, memory, disk, gpu, minimum))
        )
        ctx.emit(
            NAME, "PricesSet", node_class=node_class, cpu_millicore_hour=cpu,
            memory_gib_hour=memory, disk_gib_hour=disk, gpu_hour=gpu, replica_hour_minimum=minimum,
        )  # fmt: skip

    def on_initialize(self, ctx: Context) -> None:
        issue_due(ctx)
