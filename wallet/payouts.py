"""Payouts of platform wallets: for each wallet of which this node is a committee member, the
member whose turn it is pays the wallet's open finalized invoices, oldest first, with a
FROST-signed `billing.pay` (every member checks it against its own finalized state first), and
tries again with back-off until the invoice is paid."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import rlp
import trio

from chain import codec
from chain.blocks import UnsignedTransaction
from chain.errors import InvalidTransaction
from chain.primitives import AccountId, Hash32
from chain.runtime import billing, system, wallets
from chain.state import StateReader
from wallet.errors import WalletError
from wallet.member import WalletLedger, follow_finalized, payout_transaction
from wallet.messages import RequestKind

log = logging.getLogger("statemesh.wallet")

FALLOVER_SECONDS = 10.0
"""The second member in an invoice's order starts paying it this long after this node first
saw it open and final, the third twice as long, and so on: one member down delays payments
by this much and changes nothing else (at most; see `fallover_for`)."""
RETRY_SECONDS = 2.0
"""After a failed payout (too few members answered, the transaction refused or dropped), the
same member tries again this much later, doubling up to MAX_RETRY_SECONDS; at once when the
wallet's balance grew since (an owner funding a wallet that could not pay)."""
MAX_RETRY_SECONDS = 30.0
SCAN_AT_START = 10_000
"""Invoices looked at when the service starts (the newest), to find this node's wallets. A
wallet whose invoices are all older is found at its next invoice, which brings the older open
ones with it (`open_invoices`)."""


class WalletCannotPay(WalletError):
    """The wallet holds less than the invoice in the best chain: no signing round is started
    (a payout failing the pool's dry run again and again gets the wallet banned from the pool)."""


class PayoutSigner(Protocol):
    """The committee side a payout needs: `wallet.committee.WalletService` is one."""

    @property
    def node_id(self) -> AccountId: ...

    async def sign_and_submit(
        self,
        record: wallets.WalletRecord,
        unsigned: UnsignedTransaction,
        kind: RequestKind,
        commit_items: tuple[codec.RlpItem, ...],
    ) -> Hash32: ...


def coordinators(invoice_id: int, committee: Sequence[AccountId]) -> tuple[AccountId, ...]:
    """The order in which the members of a wallet's committee take on one invoice: starting at
    member invoice_id mod n, in committee order. Every member derives the same order."""
    start = invoice_id % len(committee)
    return tuple(committee[start:]) + tuple(committee[:start])


def turn_of(
    node_id: AccountId, invoice_id: int, committee: Sequence[AccountId], fallover: float
) -> float:
    """How long after the invoice is seen open this member may start paying it."""
    return coordinators(invoice_id, committee).index(node_id) * fallover


def fallover_for(grace_seconds: int, committee_size: int) -> float:
    """The fall-over delay of a chain: FALLOVER_SECONDS, or less when the grace period is short
    (a dev chain's), so that every member's turn comes before an unpaid invoice suspends."""
    return min(FALLOVER_SECONDS, grace_seconds / (committee_size + 1))


def retry_delay(failures: int, base: float, ceiling: float) -> float:
    return float(min(base * 2 ** min(failures - 1, 16), ceiling))


class Payouts:
    """Follows the finalized chain and pays the invoices of this node's wallets when it is this
    node's turn. One payout in flight per wallet (its nonces are sequential), so never two for
    one invoice from this node; another member's overlapping one is refused by the runtime."""

    __slots__ = (
        "_attempts",
        "_cursor",
        "_fallover",
        "_funds_at_failure",
        "_in_flight",
        "_ledger",
        "_max_retry",
        "_mine",
        "_next_try",
        "_retry",
        "_seen_at",
        "_signer",
        "outcomes",
    )

    def __init__(
        self,
        signer: PayoutSigner,
        ledger: WalletLedger,
        *,
        fallover: float = FALLOVER_SECONDS,
        retry: float = RETRY_SECONDS,
        max_retry: float = MAX_RETRY_SECONDS,
    ) -> None:
        self._signer = signer
        self._ledger = ledger
        self._fallover = fallover
        self._retry = retry
        self._max_retry = max_retry
        self._cursor: int | None = None
        """The next invoice id to look at for this node's wallets."""
        self._mine: set[AccountId] = set()
        """Wallets of which this node is a committee member and that were ever invoiced."""
        self._seen_at: dict[int, float] = {}
        """Open invoice -> when (trio time) this node first saw it open and final."""
        self._attempts: Counter[int] = Counter()
        self._next_try: dict[int, float] = {}
        self._in_flight: set[AccountId] = set()
        self._funds_at_failure: dict[AccountId, int] = {}
        """Wallet -> its finalized free balance when its last payout failed."""
        self.outcomes: Counter[str] = Counter()
        """Payouts this node coordinated, by outcome: paid, failed."""

    def __repr__(self) -> str:
        return f"Payouts(0x{self._signer.node_id.hex()})"

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await follow_finalized(self._ledger, self.on_finalized, task_status)

    def on_finalized(self, nursery: trio.Nursery) -> None:
        state = self._ledger.finalized_state()
        self._discover(state)
        now = trio.current_time()
        open_ids: set[int] = set()
        for wallet in sorted(self._mine):
            record = wallets.get_wallet(state, wallet)
            if record is None or self._signer.node_id not in record.committee:
                continue
            invoices = billing.open_invoices(state, wallet)
            open_ids.update(i.id for i in invoices)
            if self._funded_since_failure(state, wallet):
                for invoice in invoices:
                    self._next_try.pop(invoice.id, None)
            if wallet in self._in_flight:
                continue
            best = self._ledger.state()
            for invoice in invoices:
                in_best = billing.invoice(best, invoice.id)
                if in_best is not None and in_best.paid:
                    break  # another member's payout is in the best chain: wait for finality
                seen = self._seen_at.setdefault(invoice.id, now)
                turn = turn_of(self._signer.node_id, invoice.id, record.committee, self._fallover)
                due = max(seen + turn, self._next_try.get(invoice.id, now))
                if now >= due:
                    self._in_flight.add(wallet)
                    nursery.start_soon(self._pay, record, invoice)
                break  # oldest first: the next one waits for this one
        for gone in [i for i in self._seen_at if i not in open_ids]:
            del self._seen_at[gone]
            self._next_try.pop(gone, None)
            self._attempts.pop(gone, None)

    def _funded_since_failure(self, state: StateReader, wallet: AccountId) -> bool:
        before = self._funds_at_failure.get(wallet)
        if before is None or system.account(state, wallet).free <= before:
            return False
        del self._funds_at_failure[wallet]
        return True

    def _discover(self, state: StateReader) -> None:
        end = billing.next_invoice_id(state)
        if self._cursor is None:
            self._cursor = max(0, end - SCAN_AT_START)
        for invoice_id in range(self._cursor, end):
            invoice = billing.invoice(state, invoice_id)
            if invoice is None or invoice.wallet in self._mine:
                continue
            record = wallets.get_wallet(state, invoice.wallet)
            if record is not None and self._signer.node_id in record.committee:
                self._mine.add(invoice.wallet)
        self._cursor = max(self._cursor, end)

    async def _pay(self, record: wallets.WalletRecord, invoice: billing.Invoice) -> None:
        try:
            try:
                tx_hash = await self.pay(record, invoice)
                paid = await self._see_paid(invoice, tx_hash)
            except (WalletError, InvalidTransaction) as error:
                log.warning("payout of invoice %d failed: %s", invoice.id, error)
                paid = False
            if paid:
                self.outcomes["paid"] += 1
                return
            self.outcomes["failed"] += 1
            wallet = invoice.wallet
            free = system.account(self._ledger.finalized_state(), wallet).free
            self._funds_at_failure[wallet] = free
            self._attempts[invoice.id] += 1
            self._next_try[invoice.id] = trio.current_time() + retry_delay(
                self._attempts[invoice.id], self._retry, self._max_retry
            )
        finally:
            self._in_flight.discard(invoice.wallet)

    async def pay(self, record: wallets.WalletRecord, invoice: billing.Invoice) -> Hash32:
        """One signing round of the invoice's payout at the wallet's next nonce, submitted."""
        free = system.account(self._ledger.state(), invoice.wallet).free
        if free < invoice.total:
            raise WalletCannotPay(
                f"invoice {invoice.id} is {invoice.total}, wallet 0x{invoice.wallet.hex()} holds "
                f"{free}"
            )
        nonce = self._ledger.next_nonce(invoice.wallet)
        if nonce != system.account(self._ledger.state(), invoice.wallet).nonce:
            # Its balance after the pooled transaction is not known here: a payout checked
            # against the best block could fail the pool's dry run after it.
            raise WalletCannotPay(
                f"invoice {invoice.id}: wallet 0x{invoice.wallet.hex()} has a transaction in "
                "the pool; paying after it is in a block"
            )
        unsigned = payout_transaction(self._ledger.genesis_hash, invoice, nonce)
        tx_hash = await self._signer.sign_and_submit(
            record, unsigned, RequestKind.SIGN_PAYOUT, (rlp.encode(unsigned),)
        )
        log.info(
            "invoice %d of wallet 0x%s (period %d, %d to %d operators) paid by 0x%s",
            invoice.id, invoice.wallet.hex(), invoice.period, invoice.total, len(invoice.lines),
            tx_hash.hex(),
        )  # fmt: skip
        return tx_hash

    async def _see_paid(self, invoice: billing.Invoice, tx_hash: Hash32) -> bool:
        """Waits until the finalized chain has the invoice paid (True), or the payout left the
        pool with the invoice still open in the best chain (False: dropped or refused)."""
        while True:  # a subscriber that fell behind is dropped: it subscribes again
            async with self._ledger.finalized_heads() as heads:
                verdict = self._settled(invoice.id, tx_hash)
                if verdict is not None:
                    return verdict
                async for _ in heads:
                    verdict = self._settled(invoice.id, tx_hash)
                    if verdict is not None:
                        return verdict

    def _settled(self, invoice_id: int, tx_hash: Hash32) -> bool | None:
        final = billing.invoice(self._ledger.finalized_state(), invoice_id)
        if final is not None and final.paid:
            return True
        best = billing.invoice(self._ledger.state(), invoice_id)
        if best is not None and best.paid:
            return None  # in the best chain, not final yet
        return None if self._ledger.in_pool(tx_hash) else False
