"""The transaction pool: validated transactions waiting for a block, kept per sender as `ready`
(nonces contiguous from the account nonce) or `future` (waiting for a predecessor), with limits,
replacement by tip, each sender's pending costs held within its balance, temporary bans of
transactions and of senders whose dry runs keep failing, revalidation after each block and status
events for watchers.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from chain.address import encode_address
from chain.blocks import tx_hash
from chain.errors import InvalidTransaction, TxRejection
from chain.primitives import AccountId, Hash32
from chain.validity import ValidTransaction

log = logging.getLogger("statemesh.pool")

Validator = Callable[[bytes], ValidTransaction]
"""Validates encoded bytes against the current best state; raises `InvalidTransaction`. With a
revalidator it need only do the cheap checks (size, decoding, signature, nonce window, fee against
the balance): the revalidator then does the dry run, after the pool's own cheap checks."""

Revalidator = Callable[[ValidTransaction], ValidTransaction]
"""Re-checks, against the current best state, a transaction the validator accepted: the nonce,
the balance and, for the transaction next in line, a dry run of its call. It skips what no block
can change (decoding, signature, genesis hash), which is most of the cost of revalidating the
whole pool after every block. Raises `InvalidTransaction`."""

DryRun = ValidTransaction | InvalidTransaction
"""What the revalidator made of a checked transaction: the transaction it passed or why not."""


@dataclass(frozen=True, slots=True)
class DeferredDryRuns:
    """How `on_block` leaves the dry runs of large transactions to its owner, who runs them off
    the event loop and hands each outcome to `settle`: revalidating the whole pool happens on
    the loop after every block, and one large call's dry run there may take 100 ms and more."""

    recheck: Revalidator
    """The revalidator without the dry run (nonce and balance only)."""
    above_bytes: int
    """Transactions longer than this are rechecked; the others are revalidated in full."""


MIB = 1024 * 1024

# Substrate's defaults: 8192 ready transactions / 20 MiB, 512 future / 1 MiB. Here the first pair
# bounds the whole pool (ready and future together) and the second the future part of it, so a
# transaction changing side never breaks a limit on the total.
DEFAULT_MAX_COUNT = 8192
DEFAULT_MAX_BYTES = 20 * MIB
DEFAULT_MAX_FUTURE_COUNT = 512
DEFAULT_MAX_FUTURE_BYTES = 1 * MIB
DEFAULT_MAX_FUTURE_PER_SENDER = 64
"""One sender cannot fill the future queue with nonces far ahead of its account."""
DEFAULT_BAN_SECONDS = 30.0
DEFAULT_MAX_BANNED = 65_536
"""Bans are 32-byte hashes expiring after `ban_seconds`; the cap only bounds memory under a flood
of invalid transactions, dropping the oldest ban first. Sender bans and strikes share the cap."""
DEFAULT_SENDER_STRIKES = 3
"""Failed dry runs, of distinct transactions, within `strike_seconds` that get a sender banned.
A dry run is the costly check (a large manifest is parsed and checked), and a refused transaction
pays nothing: without a ban one funded account could keep a node busy validating."""
DEFAULT_STRIKE_SECONDS = 60.0
DEFAULT_SENDER_BAN_SECONDS = 60.0

# Heaps keep stale items (removed or moved entries) until they surface; they are rebuilt when stale
# items outnumber live ones by this factor, which keeps every operation O(log n) amortised.
_HEAP_SLACK = 2
_HEAP_MIN_REBUILD = 64


class PoolStatus(enum.StrEnum):
    """Extrinsic statuses the pool produces (Substrate's names); `inBlock` and `finalized` are
    the block importer's to report."""

    FUTURE = "future"
    READY = "ready"
    INVALID = "invalid"
    DROPPED = "dropped"
    USURPED = "usurped"


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """One change of one transaction's status, in the order the changes happened."""

    hash: Hash32
    status: PoolStatus
    detail: str
    """Why, for logs and for the person who sent it; empty when the status says it all."""
    by: Hash32 | None = None
    """For `usurped`: the hash of the transaction that replaced this one."""


@dataclass(frozen=True, slots=True)
class PoolUpdate:
    """What `on_block` did; every change is also queued as a `PoolEvent`."""

    pruned: tuple[Hash32, ...]
    """Included in the block and removed from the pool (no event: the block says `inBlock`)."""
    invalid: tuple[Hash32, ...]
    """Rejected by the validator against the new state, removed and banned."""
    dropped: tuple[Hash32, ...]
    """Removed because the future queue overflowed once transactions were demoted."""
    promoted: tuple[Hash32, ...]
    """Moved from future to ready."""
    demoted: tuple[Hash32, ...]
    """Moved from ready to future."""
    revalidated: int
    """How many transactions were run through the validator."""
    unverified: tuple[ValidTransaction, ...] = ()
    """Next in line but rechecked without their dry run (see `DeferredDryRuns`): the owner
    dry-runs each against the same state and hands the outcome to `settle`."""


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    ready_count: int
    ready_bytes: int
    future_count: int
    future_bytes: int
    banned_count: int
    """Bans not yet pruned; expired bans are pruned at every call that passes `now`."""
    banned_senders: int = 0
    """Senders banned for failed dry runs, not yet pruned."""


@dataclass(slots=True, eq=False)
class _Entry:
    """A pooled transaction. Mutable on purpose: it moves between ready and future as its
    predecessors come and go, and each move gives it a new `gen` that invalidates the heap item
    it had before."""

    vt: ValidTransaction
    seq: int
    """Arrival order: breaks ties between equal tips."""
    size: int
    ready: bool = False
    gen: int = 0
    alive: bool = True


@dataclass(slots=True, eq=False)
class _Sender:
    """One sender's transactions. Invariant: every pooled nonce is >= `account_nonce`, and the
    nonces in [account_nonce, ready_end) are exactly the sender's ready ones."""

    account_nonce: int
    ready_end: int
    txs: dict[int, _Entry]
    balance: int
    """The free balance of the latest (re)validation: all pooled costs together stay within it."""

    def future_count(self) -> int:
        return len(self.txs) - (self.ready_end - self.account_nonce)

    def pending_cost(self) -> int:
        return sum(entry.vt.cost for entry in self.txs.values())


# (tip, -seq, gen, entry): the lowest tip first and, among equal tips, the latest arrival, which is
# the one `ready()` would take last. `gen` is unique, so entries are never compared.
_EvictionItem = tuple[int, int, int, _Entry]


class TransactionPool:
    """Synchronous and deterministic: the caller passes `now` (monotonic seconds) wherever bans
    are involved, and drains status events with `drain_events()` after each call.

    Between blocks each sender's account nonce is the one its transactions were last
    (re)validated with. A submission validated against an older state (a retracted fork being
    re-injected) lowers it, and the sender's transactions wait as future until the gap is filled;
    `on_block` resets it to the new state's."""

    def __init__(
        self,
        validator: Validator,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_future_count: int = DEFAULT_MAX_FUTURE_COUNT,
        max_future_bytes: int = DEFAULT_MAX_FUTURE_BYTES,
        max_future_per_sender: int = DEFAULT_MAX_FUTURE_PER_SENDER,
        ban_seconds: float = DEFAULT_BAN_SECONDS,
        max_banned: int = DEFAULT_MAX_BANNED,
        sender_strikes: int = DEFAULT_SENDER_STRIKES,
        strike_seconds: float = DEFAULT_STRIKE_SECONDS,
        sender_ban_seconds: float = DEFAULT_SENDER_BAN_SECONDS,
        revalidator: Revalidator | None = None,
        deferred: DeferredDryRuns | None = None,
    ) -> None:
        for name, value in (
            ("max_count", max_count),
            ("max_bytes", max_bytes),
            ("max_future_count", max_future_count),
            ("max_future_bytes", max_future_bytes),
            ("max_future_per_sender", max_future_per_sender),
            ("max_banned", max_banned),
            ("sender_strikes", sender_strikes),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name, seconds in (
            ("ban_seconds", ban_seconds),
            ("strike_seconds", strike_seconds),
            ("sender_ban_seconds", sender_ban_seconds),
        ):
            if seconds < 0:
                raise ValueError(f"{name} must not be negative, got {seconds}")
        self._validate = validator
        self._revalidate = revalidator or self._validate_again
        # Without a revalidator the validator is the whole validation: nothing is left to run.
        self._dry_run_with = revalidator
        self._deferred = deferred
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._max_future_count = max_future_count
        self._max_future_bytes = max_future_bytes
        self._max_future_per_sender = max_future_per_sender
        self._ban_seconds = ban_seconds
        self._max_banned = max_banned
        self._sender_strikes = sender_strikes
        self._strike_seconds = strike_seconds
        self._sender_ban_seconds = sender_ban_seconds

        self._by_hash: dict[Hash32, _Entry] = {}
        self._senders: dict[AccountId, _Sender] = {}
        self._ready_heap: list[_EvictionItem] = []
        self._future_heap: list[_EvictionItem] = []
        self._ready_count = 0
        self._ready_bytes = 0
        self._future_count = 0
        self._future_bytes = 0
        self._seq = 0
        self._gen = 0
        # Insertion order is expiry order because `now` is monotonic and a re-ban moves to the end.
        self._bans: OrderedDict[Hash32, float] = OrderedDict()
        # Every sender ban lasts as long, so insertion order is expiry order here too.
        self._sender_bans: OrderedDict[AccountId, float] = OrderedDict()
        self._strikes: OrderedDict[AccountId, list[float]] = OrderedDict()
        # Transactions that already counted against their sender: replaying a failed transaction
        # (its ban over, or by another peer) must not get its sender banned.
        self._struck: OrderedDict[Hash32, None] = OrderedDict()
        self._events: list[PoolEvent] = []

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash_: object) -> bool:
        return tx_hash_ in self._by_hash

    def status(self, tx_hash_: Hash32) -> PoolStatus | None:
        entry = self._by_hash.get(tx_hash_)
        if entry is None:
            return None
        return PoolStatus.READY if entry.ready else PoolStatus.FUTURE

    def ready(self) -> Iterator[ValidTransaction]:
        """Ready transactions in the order a block author takes them: the highest tip first
        (equal tips by arrival), each sender's nonces in order. The author may stop at any point;
        a transaction it reports with `mark_invalid` meanwhile takes its successors out of the
        remaining iteration."""
        heads: list[tuple[int, int, _Entry]] = []
        for sender in self._senders.values():
            if sender.ready_end > sender.account_nonce:
                head = sender.txs[sender.account_nonce]
                heads.append((-head.vt.tip, head.seq, head))
        heapq.heapify(heads)
        while heads:
            _, _, entry = heapq.heappop(heads)
            if not (entry.alive and entry.ready):
                continue
            yield entry.vt
            queue = self._senders.get(entry.vt.sender)
            if queue is None:
                continue
            successor = queue.txs.get(entry.vt.nonce + 1)
            if successor is not None and successor.ready:
                heapq.heappush(heads, (-successor.vt.tip, successor.seq, successor))

    def pending(self) -> list[ValidTransaction]:
        """Every pooled transaction: the ready ones in `ready()` order, then the future ones in
        arrival order."""
        future = sorted((e for e in self._by_hash.values() if not e.ready), key=lambda e: e.seq)
        return [*self.ready(), *(entry.vt for entry in future)]

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            ready_count=self._ready_count,
            ready_bytes=self._ready_bytes,
            future_count=self._future_count,
            future_bytes=self._future_bytes,
            banned_count=len(self._bans),
            banned_senders=len(self._sender_bans),
        )

    def is_banned(self, tx_hash_: Hash32, now: float) -> bool:
        expiry = self._bans.get(tx_hash_)
        return expiry is not None and now < expiry

    def sender_banned_until(self, sender: AccountId, now: float) -> float | None:
        """When the ban of `sender` ends (in `now`'s clock), or None if it is not banned."""
        expiry = self._sender_bans.get(sender)
        return expiry if expiry is not None and now < expiry else None

    def pending_cost(self, sender: AccountId) -> int:
        """What the pooled transactions of `sender` take from its balance together."""
        queue = self._senders.get(sender)
        return 0 if queue is None else queue.pending_cost()

    def drain_events(self) -> list[PoolEvent]:
        """The status changes since the last drain, oldest first. The owner drains after every
        call that changes the pool, so the queue never holds more than one call's worth."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ changes

    def submit(self, encoded: bytes, now: float) -> ValidTransaction:
        """Validate and pool a transaction: `check`, the dry run, then `complete`. A refused one
        raises `InvalidTransaction` and changes nothing but the bans (and, if the validator's state
        went back, the sender's account nonce: its other transactions then wait as future)."""
        checked = self.check(encoded, now)
        return self.complete(checked, self.dry_run(checked), now)

    def check(self, encoded: bytes, now: float) -> ValidTransaction:
        """The cheap half of a submission, in order of cost: the hash's ban and presence, the
        validator's cheap checks (decoding, signature, nonce window, fee), then, for the signed
        sender only, its ban, its room in the future queue and whether its balance covers its
        pending transactions and this one. Changes nothing but the ban of an invalid hash.

        What passes still needs its dry run (`dry_run`, which a caller may run on another thread
        because it reads nothing of the pool) and `complete`."""
        self._expire_bans(now)
        hash_ = tx_hash(encoded)
        self._refuse_banned(hash_, now)
        if hash_ in self._by_hash:
            raise InvalidTransaction(
                TxRejection.ALREADY_IMPORTED, f"transaction 0x{hash_.hex()} is already in the pool"
            )
        try:
            vt = self._validate(encoded)
        except InvalidTransaction:
            self._ban(hash_, now)
            raise
        # The signature is checked now: a sender ban only ever refuses the banned key's own.
        self._refuse_banned_sender(vt.sender, now)
        sender = self._senders.get(vt.sender)
        if sender is not None and vt.account_nonce == sender.account_nonce:
            # Else the state moved since the sender's last revalidation; `complete` decides.
            self._check_room(vt, sender)
        return vt

    def dry_run(self, checked: ValidTransaction) -> DryRun:
        """The costly half: the revalidator on a checked transaction. Reads the chain's state
        through the revalidator and nothing of the pool, so it may run on another thread."""
        if self._dry_run_with is None or checked.nonce != checked.account_nonce:
            # A transaction waiting for a predecessor is dry-run once it is next in line, at
            # the revalidation after that block: until then the validator's checks stand.
            return checked
        try:
            return self._dry_run_with(checked)
        except InvalidTransaction as err:
            return err

    def complete(self, checked: ValidTransaction, outcome: DryRun, now: float) -> ValidTransaction:
        """Finish a submission once its dry run is known. A failed dry run bans the transaction
        and counts against its sender (`sender_strikes` distinct failures within
        `strike_seconds` ban the sender); a passed one is pooled if it still fits: the pool may
        have changed while the dry run ran."""
        self._expire_bans(now)
        if isinstance(outcome, InvalidTransaction):
            self._ban(checked.hash, now)
            if outcome.reason is TxRejection.CALL_FAILED:
                self._strike(checked.sender, checked.hash, outcome, now)
            raise outcome
        self._refuse_banned(outcome.hash, now)
        self._refuse_banned_sender(outcome.sender, now)
        if outcome.hash in self._by_hash:
            raise InvalidTransaction(
                TxRejection.ALREADY_IMPORTED,
                f"transaction 0x{outcome.hash.hex()} is already in the pool",
            )
        return self._admit(outcome)

    def mark_invalid(self, tx_hash_: Hash32, now: float) -> bool:
        """A transaction that failed while a block was built: remove and ban it; its successors
        wait as future. Returns whether it was pooled."""
        self._expire_bans(now)
        self._ban(tx_hash_, now)
        entry = self._by_hash.get(tx_hash_)
        if entry is None:
            return False
        self._remove(entry, PoolStatus.INVALID, "failed while a block was being built")
        self._enforce_future_limits()
        return True

    def retract(self, encoded: Iterable[bytes], now: float) -> list[ValidTransaction]:
        """Re-inject the transactions of blocks that left the best chain, ignoring (and lifting)
        their bans. Returns the ones pooled again; the others are invalid on the new best chain,
        already pooled or out of room, and nothing is owed to them.

        With `DeferredDryRuns`, a large one is pooled on the validator's checks alone: the
        `on_block` that follows every re-org leaves its dry run to the owner."""
        self._expire_bans(now)
        pooled: list[ValidTransaction] = []
        for raw in encoded:
            hash_ = tx_hash(raw)
            self._bans.pop(hash_, None)
            if hash_ in self._by_hash:
                continue
            # Invalid ones are banned as at submission, but count against no sender: a re-org is
            # nobody's fault.
            deferred = self._deferred is not None and len(raw) > self._deferred.above_bytes
            try:
                checked = self._validate(raw)
                outcome = checked if deferred else self.dry_run(checked)
            except InvalidTransaction as err:
                outcome = err
            if isinstance(outcome, InvalidTransaction):
                self._ban(hash_, now)
                continue
            try:
                pooled.append(self._admit(outcome))
            except InvalidTransaction:
                continue
        return pooled

    def on_block(self, included: Iterable[Hash32], now: float) -> PoolUpdate:
        """After a block is imported (and the validator sees its state): remove the included
        transactions and revalidate every other one, with the revalidator if one was given; with
        `DeferredDryRuns`, a large one is only rechecked, and if it is next in line its dry run
        is left to the owner (`PoolUpdate.unverified`, then `settle`).

        All validation happens before any change, so a validator that raises anything but
        `InvalidTransaction` leaves the pool as it was."""
        self._expire_bans(now)
        included_order = list(dict.fromkeys(included))
        included_set = set(included_order)
        survivors = [e for e in self._by_hash.values() if e.vt.hash not in included_set]
        pruned = tuple(h for h in included_order if h in self._by_hash)
        outcomes: list[tuple[_Entry, ValidTransaction | InvalidTransaction]] = []
        rechecked: set[Hash32] = set()
        deferred = self._deferred
        for entry in survivors:
            revalidate = self._revalidate
            if deferred is not None and entry.size > deferred.above_bytes:
                revalidate = deferred.recheck
                rechecked.add(entry.vt.hash)
            try:
                outcomes.append((entry, revalidate(entry.vt)))
            except InvalidTransaction as err:
                outcomes.append((entry, err))

        # Included transactions are banned so that peers gossiping them back cost no validation.
        for hash_ in included_order:
            self._ban(hash_, now)
        was_ready = {entry.vt.hash: entry.ready for entry in survivors}
        for entry in self._by_hash.values():
            entry.alive = False
        self._clear()

        invalid: list[Hash32] = []
        accounts: dict[AccountId, int] = {}
        balances: dict[AccountId, int] = {}
        valid: list[tuple[_Entry, ValidTransaction]] = []
        for entry, outcome in outcomes:
            if isinstance(outcome, InvalidTransaction):
                invalid.append(entry.vt.hash)
                self._ban(entry.vt.hash, now)
                if outcome.reason is TxRejection.CALL_FAILED:
                    self._strike(entry.vt.sender, entry.vt.hash, outcome, now)
                self._emit(entry.vt.hash, PoolStatus.INVALID, str(outcome))
                continue
            valid.append((entry, outcome))
            known = accounts.get(outcome.sender, outcome.account_nonce)
            accounts[outcome.sender] = min(known, outcome.account_nonce)
            balances[outcome.sender] = min(
                balances.get(outcome.sender, outcome.balance), outcome.balance
            )
        valid.sort(key=lambda pair: (pair[1].sender, pair[1].nonce))
        for entry, vt in valid:
            account_nonce = accounts[vt.sender]
            if vt.nonce < account_nonce:
                # Only a validator that contradicts itself gets here; treat the tx as stale.
                invalid.append(vt.hash)
                self._ban(vt.hash, now)
                self._emit(
                    vt.hash,
                    PoolStatus.INVALID,
                    f"{TxRejection.STALE_NONCE.value}: nonce {vt.nonce} is below the account "
                    f"nonce {account_nonce}",
                )
                continue
            sender = self._senders.get(vt.sender)
            if sender is None:
                sender = _Sender(account_nonce, account_nonce, {}, balances[vt.sender])
                self._senders[vt.sender] = sender
            entry.vt = vt
            entry.alive = True
            ready = vt.nonce == sender.ready_end
            if ready:
                sender.ready_end += 1
            sender.txs[vt.nonce] = entry
            self._by_hash[vt.hash] = entry
            self._place(entry, ready)

        # A block can lower a balance by more than it took from the pool (a fee paid elsewhere, a
        # transfer out): the latest nonces go until the rest is paid for.
        over_budget: list[Hash32] = []
        for account in list(self._senders):
            over_budget.extend(self._enforce_budget(account))

        promoted: list[Hash32] = []
        demoted: list[Hash32] = []
        for entry, _ in sorted(valid, key=lambda pair: pair[0].seq):
            before = was_ready[entry.vt.hash]
            if not entry.alive or entry.ready == before:
                continue
            if entry.ready:
                promoted.append(entry.vt.hash)
                self._emit(entry.vt.hash, PoolStatus.READY, "")
            else:
                demoted.append(entry.vt.hash)
                self._emit(entry.vt.hash, PoolStatus.FUTURE, self._waits_for(entry))
        dropped = over_budget + self._enforce_future_limits()
        unverified = tuple(
            entry.vt
            for entry, _ in valid
            if entry.alive and entry.vt.hash in rechecked and self._is_next(entry)
        )
        return PoolUpdate(
            pruned=pruned,
            invalid=tuple(invalid),
            dropped=tuple(dropped),
            promoted=tuple(promoted),
            demoted=tuple(demoted),
            revalidated=len(outcomes),
            unverified=unverified,
        )

    def settle(self, unverified: ValidTransaction, outcome: DryRun, now: float) -> bool:
        """Apply the dry run of a transaction `on_block` left unverified. The owner runs it
        against the state of that block and hands it over only while that block is still the
        best: the outcome then says what `on_block` would have said. A failed one goes as at
        `on_block` (removed, banned, counted against its sender; its successors wait as
        future); a passed one may cost more than its last dry run, and the sender's latest
        nonces give way if its balance no longer covers them. Returns False, changing nothing,
        when the transaction has left the pool or is not the one next in line any more."""
        self._expire_bans(now)
        entry = self._by_hash.get(unverified.hash)
        if (
            entry is None
            or entry.vt.account_nonce != unverified.account_nonce
            or not self._is_next(entry)
        ):
            return False
        if isinstance(outcome, InvalidTransaction):
            self._ban(unverified.hash, now)
            if outcome.reason is TxRejection.CALL_FAILED:
                self._strike(unverified.sender, unverified.hash, outcome, now)
            self._remove(entry, PoolStatus.INVALID, str(outcome))
            self._enforce_future_limits()
            return True
        entry.vt = outcome
        self._senders[outcome.sender].balance = outcome.balance
        self._enforce_budget(outcome.sender)
        return True

    def _is_next(self, entry: _Entry) -> bool:
        """Whether a pooled entry is its sender's next nonce, the one a dry run is for."""
        sender = self._senders[entry.vt.sender]
        return entry.ready and entry.vt.nonce == sender.account_nonce

    # ------------------------------------------------------------------ import

    def _validate_again(self, vt: ValidTransaction) -> ValidTransaction:
        return self._validate(vt.encoded)

    def _admit(self, vt: ValidTransaction) -> ValidTransaction:
        """Pool a transaction that passed validation and its dry run, or refuse it (no bans:
        what is refused here is about the pool, not the transaction)."""
        sender = self._senders.get(vt.sender)
        if sender is not None and vt.account_nonce < sender.account_nonce:
            self._rebase(sender, vt.account_nonce)
            sender = self._senders.get(vt.sender)
        old = sender.txs.get(vt.nonce) if sender is not None else None
        self._check_room(vt, sender)
        if sender is None:
            ready = vt.nonce == vt.account_nonce
        else:
            ready = vt.nonce <= sender.ready_end
        size = len(vt.encoded)
        victims = self._plan_evictions(vt, size, ready, old)

        for victim in victims:
            self._remove(
                victim, PoolStatus.DROPPED, f"evicted by 0x{vt.hash.hex()}: the pool is full"
            )
        self._seq += 1
        if old is not None:
            self._replace(old, vt, self._seq, size)
        else:
            self._insert(vt, self._seq, size)
        self._enforce_budget(vt.sender)
        self._enforce_future_limits()
        return vt

    def _check_room(self, vt: ValidTransaction, sender: _Sender | None) -> None:
        """What the sender's own pooled transactions allow: a replacement must pay a higher tip,
        the sender's future queue has a limit, and its balance must cover its pending
        transactions up to this one and this one."""
        if sender is None:
            return
        old = sender.txs.get(vt.nonce)
        if old is not None and old.vt.tip >= vt.tip:
            raise InvalidTransaction(
                TxRejection.PRIORITY_TOO_LOW,
                f"transaction 0x{old.vt.hash.hex()} with the same sender and nonce {vt.nonce} "
                f"pays tip {old.vt.tip}; a replacement must pay more than that, not {vt.tip}",
            )
        ready = vt.nonce <= sender.ready_end
        if not ready and old is None and sender.future_count() >= self._max_future_per_sender:
            raise InvalidTransaction(
                TxRejection.POOL_FULL,
                f"the sender already has {sender.future_count()} future transactions "
                f"waiting in the pool, the most allowed",
            )
        # The ones before it are paid first in a block; later ones give way (`_enforce_budget`).
        before = [
            entry.vt.cost
            for nonce, entry in sender.txs.items()
            if vt.account_nonce <= nonce < vt.nonce
        ]
        spent = sum(before)
        if spent + vt.cost > vt.balance:
            moved = vt.cost - vt.fee - vt.tip
            parts = f"fee {vt.fee}, tip {vt.tip}" + (
                f", {moved} moved by its call" if moved else ""
            )
            raise InvalidTransaction(
                TxRejection.CANNOT_PAY_FEES,
                f"Inability to pay some fees: the sender's {len(before)} pending transactions "
                f"already spend {spent} of its free balance {vt.balance}, and this one needs "
                f"{vt.cost} ({parts})",
            )

    def _enforce_budget(self, account: AccountId) -> list[Hash32]:
        """Drop the sender's latest nonces until its pooled costs fit its balance (the newest
        validation's, which `_admit` or `on_block` just recorded). Dropping from the top never
        leaves a remaining transaction waiting for a dropped one."""
        sender = self._senders.get(account)
        if sender is None:
            return []
        balance = sender.balance
        total = sender.pending_cost()
        dropped: list[Hash32] = []
        while total > balance and sender.txs:
            top = sender.txs[max(sender.txs)]
            total -= top.vt.cost
            dropped.append(top.vt.hash)
            self._remove(
                top,
                PoolStatus.DROPPED,
                f"Inability to pay some fees: the sender's pending transactions would spend "
                f"{total + top.vt.cost} of its free balance {balance}",
            )
        return dropped

    def _plan_evictions(
        self, vt: ValidTransaction, size: int, ready: bool, old: _Entry | None
    ) -> list[_Entry]:
        """The transactions to evict so that `vt` fits, or POOL_FULL. A transaction ranks by
        (ready, tip): every future one below every ready one. Only one ranking strictly below
        `vt` may go, never one `vt` replaces or waits for; nothing changes if room cannot be made.
        """
        added_count = 0 if old is not None else 1
        added_bytes = size - (old.size if old is not None else 0)
        need_count = self._ready_count + self._future_count + added_count - self._max_count
        need_bytes = self._ready_bytes + self._future_bytes + added_bytes - self._max_bytes
        limit = self._max_bytes if ready else min(self._max_bytes, self._max_future_bytes)
        if size > limit:
            raise InvalidTransaction(
                TxRejection.POOL_FULL,
                f"the transaction is {size} bytes, more than the pool holds ({limit} bytes)",
            )
        if not ready:
            need_count = max(need_count, self._future_count + added_count - self._max_future_count)
            need_bytes = max(need_bytes, self._future_bytes + added_bytes - self._max_future_bytes)
        if need_count <= 0 and need_bytes <= 0:
            return []
        heaps = [self._future_heap, self._ready_heap] if ready else [self._future_heap]
        victims: list[_Entry] = []
        kept: list[tuple[list[_EvictionItem], _EvictionItem]] = []
        for heap in heaps:
            while (need_count > 0 or need_bytes > 0) and heap:
                item = heapq.heappop(heap)
                tip, _, gen, entry = item
                if not entry.alive or entry.gen != gen:
                    continue  # stale: the entry moved or left
                kept.append((heap, item))
                if entry.ready == ready and tip >= vt.tip:
                    break  # the heap is ordered by tip: nothing further ranks below vt
                if entry is old or (entry.vt.sender == vt.sender and entry.vt.nonce < vt.nonce):
                    continue
                kept.pop()
                victims.append(entry)
                need_count -= 1
                need_bytes -= entry.size
        for heap, item in kept:
            heapq.heappush(heap, item)
        if need_count <= 0 and need_bytes <= 0:
            return victims
        for victim in victims:
            heap = self._ready_heap if victim.ready else self._future_heap
            heapq.heappush(heap, (victim.vt.tip, -victim.seq, victim.gen, victim))
        side = "" if ready else "future part of the "
        raise InvalidTransaction(
            TxRejection.POOL_FULL,
            f"the {side}pool is full ({self._ready_count + self._future_count} transactions, "
            f"{self._ready_bytes + self._future_bytes} bytes) and holds nothing of lower priority "
            f"than this transaction ({size} bytes, tip {vt.tip}) to make room",
        )

    # ------------------------------------------------------------------ structure

    def _insert(self, vt: ValidTransaction, seq: int, size: int) -> None:
        sender = self._senders.get(vt.sender)
        if sender is None:
            sender = _Sender(vt.account_nonce, vt.account_nonce, {}, vt.balance)
            self._senders[vt.sender] = sender
        sender.balance = vt.balance
        entry = _Entry(vt, seq, size)
        sender.txs[vt.nonce] = entry
        self._by_hash[vt.hash] = entry
        if vt.nonce == sender.ready_end:
            self._place(entry, True)
            self._emit(vt.hash, PoolStatus.READY, "")
            sender.ready_end += 1
            self._promote(sender)
        else:
            self._place(entry, False)
            self._emit(vt.hash, PoolStatus.FUTURE, self._waits_for(entry))

    def _replace(self, old: _Entry, vt: ValidTransaction, seq: int, size: int) -> None:
        """Swap in place: same sender and nonce, so the successors keep their side."""
        sender = self._senders[vt.sender]
        sender.balance = vt.balance
        entry = _Entry(vt, seq, size)
        sender.txs[vt.nonce] = entry
        del self._by_hash[old.vt.hash]
        self._by_hash[vt.hash] = entry
        self._unplace(old)
        self._place(entry, old.ready)
        self._emit(old.vt.hash, PoolStatus.USURPED, f"replaced by 0x{vt.hash.hex()}", vt.hash)
        if entry.ready:
            self._emit(vt.hash, PoolStatus.READY, "")
        else:
            self._emit(vt.hash, PoolStatus.FUTURE, self._waits_for(entry))

    def _remove(self, entry: _Entry, status: PoolStatus, detail: str) -> None:
        """Remove one transaction; if it was ready, its successors lose their predecessor and
        wait as future."""
        vt = entry.vt
        sender = self._senders[vt.sender]
        del sender.txs[vt.nonce]
        del self._by_hash[vt.hash]
        self._unplace(entry)
        self._emit(vt.hash, status, detail)
        if entry.ready:
            ready_end, sender.ready_end = sender.ready_end, vt.nonce
            for nonce in range(vt.nonce + 1, ready_end):
                self._move(sender.txs[nonce], False)
        if not sender.txs:
            del self._senders[vt.sender]

    def _promote(self, sender: _Sender) -> None:
        while (entry := sender.txs.get(sender.ready_end)) is not None:
            self._move(entry, True)
            sender.ready_end += 1

    def _rebase(self, sender: _Sender, account_nonce: int) -> None:
        """Lower a sender's account nonce (the best chain went back): all its pooled nonces are
        above the new one, so all of them now wait as future."""
        demoted = range(sender.account_nonce, sender.ready_end)
        sender.account_nonce = sender.ready_end = account_nonce
        for nonce in demoted:
            self._move(sender.txs[nonce], False)
        self._enforce_future_limits()

    def _enforce_future_limits(self) -> list[Hash32]:
        """Demotions can overflow the future queue; its lowest-ranked transactions go."""
        dropped: list[Hash32] = []
        while (
            self._future_count > self._max_future_count
            or self._future_bytes > self._max_future_bytes
        ):
            _, _, gen, entry = heapq.heappop(self._future_heap)
            if not entry.alive or entry.gen != gen:
                continue
            dropped.append(entry.vt.hash)
            self._remove(entry, PoolStatus.DROPPED, "the future queue is full")
        return dropped

    def _place(self, entry: _Entry, ready: bool) -> None:
        """Count a new entry on one side and make it an eviction candidate there."""
        entry.ready = ready
        if ready:
            self._ready_count += 1
            self._ready_bytes += entry.size
        else:
            self._future_count += 1
            self._future_bytes += entry.size
        self._gen += 1
        entry.gen = self._gen
        heap = self._ready_heap if ready else self._future_heap
        heapq.heappush(heap, (entry.vt.tip, -entry.seq, entry.gen, entry))
        live = self._ready_count if ready else self._future_count
        if len(heap) > _HEAP_SLACK * live + _HEAP_MIN_REBUILD:
            heap[:] = [item for item in heap if item[3].alive and item[3].gen == item[2]]
            heapq.heapify(heap)

    def _unplace(self, entry: _Entry) -> None:
        entry.alive = False
        if entry.ready:
            self._ready_count -= 1
            self._ready_bytes -= entry.size
        else:
            self._future_count -= 1
            self._future_bytes -= entry.size

    def _move(self, entry: _Entry, ready: bool) -> None:
        self._unplace(entry)
        entry.alive = True
        self._place(entry, ready)
        if ready:
            self._emit(entry.vt.hash, PoolStatus.READY, "")
        else:
            self._emit(entry.vt.hash, PoolStatus.FUTURE, self._waits_for(entry))

    def _clear(self) -> None:
        self._by_hash = {}
        self._senders = {}
        self._ready_heap = []
        self._future_heap = []
        self._ready_count = self._ready_bytes = 0
        self._future_count = self._future_bytes = 0

    def _waits_for(self, entry: _Entry) -> str:
        sender = self._senders[entry.vt.sender]
        return f"waits for nonce {sender.ready_end}"

    # ------------------------------------------------------------------ bans and events

    def _refuse_banned(self, hash_: Hash32, now: float) -> None:
        expiry = self._bans.get(hash_)
        if expiry is not None and now < expiry:
            raise InvalidTransaction(
                TxRejection.TEMPORARILY_BANNED,
                f"transaction 0x{hash_.hex()} is temporarily banned for another "
                f"{expiry - now:.1f} s after being found invalid or included",
            )

    def _refuse_banned_sender(self, sender: AccountId, now: float) -> None:
        expiry = self._sender_bans.get(sender)
        if expiry is not None and now < expiry:
            raise InvalidTransaction(
                TxRejection.TEMPORARILY_BANNED,
                f"sender {encode_address(sender)} is temporarily banned for another "
                f"{expiry - now:.1f} s: {self._sender_strikes} of its transactions failed their "
                f"dry run within {self._strike_seconds:g} s",
            )

    def _strike(
        self, sender: AccountId, hash_: Hash32, error: InvalidTransaction, now: float
    ) -> None:
        """Count a failed dry run of `hash_` (signed by `sender`) once, ever (while remembered);
        ban the sender at `sender_strikes` within `strike_seconds`."""
        if hash_ in self._struck:
            return
        log.info(
            "transaction 0x%s of 0x%s failed its dry run: %s",
            hash_.hex(),
            sender.hex(),
            error,
        )
        self._struck[hash_] = None
        if len(self._struck) > self._max_banned:
            self._struck.popitem(last=False)
        since = now - self._strike_seconds
        strikes = [at for at in self._strikes.pop(sender, []) if at > since]
        strikes.append(now)
        if len(strikes) < self._sender_strikes:
            self._strikes[sender] = strikes
            if len(self._strikes) > self._max_banned:
                self._strikes.popitem(last=False)
            return
        self._sender_bans[sender] = now + self._sender_ban_seconds
        log.warning(
            "sender 0x%s banned for %g s: %d of its transactions failed their dry run within %g s",
            sender.hex(), self._sender_ban_seconds, len(strikes), self._strike_seconds,
        )  # fmt: skip
        self._sender_bans.move_to_end(sender)
        if len(self._sender_bans) > self._max_banned:
            self._sender_bans.popitem(last=False)

    def _ban(self, hash_: Hash32, now: float) -> None:
        self._bans[hash_] = now + self._ban_seconds
        self._bans.move_to_end(hash_)
        if len(self._bans) > self._max_banned:
            self._bans.popitem(last=False)

    def _expire_bans(self, now: float) -> None:
        bans = self._bans
        while bans:
            first = next(iter(bans))
            if bans[first] > now:
                break
            del bans[first]
        sender_bans = self._sender_bans
        while sender_bans:
            oldest = next(iter(sender_bans))
            if sender_bans[oldest] > now:
                break
            del sender_bans[oldest]

    def _emit(
        self, hash_: Hash32, status: PoolStatus, detail: str, by: Hash32 | None = None
    ) -> None:
        self._events.append(PoolEvent(hash_, status, detail, by))
