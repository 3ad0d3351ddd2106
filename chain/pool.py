"""The transaction pool: validated transactions waiting for a block, kept per sender as `ready`
(nonces contiguous from the account nonce) or `future` (waiting for a predecessor), with limits,
replacement by tip, temporary bans, revalidation after each block and status events for watchers.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from chain.blocks import tx_hash
from chain.errors import InvalidTransaction, TxRejection
from chain.primitives import AccountId, Hash32
from chain.validity import ValidTransaction

Validator = Callable[[bytes], ValidTransaction]
"""Validates encoded bytes against the current best state; raises `InvalidTransaction`."""

Revalidator = Callable[[ValidTransaction], ValidTransaction]
"""Re-checks, against a new best state, a transaction the validator accepted before. It may skip
what no block can change (decoding, signature, genesis hash), which is most of the cost of
revalidating the whole pool after every block. Raises `InvalidTransaction`."""

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
of invalid transactions, dropping the oldest ban first."""

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


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    ready_count: int
    ready_bytes: int
    future_count: int
    future_bytes: int
    banned_count: int
    """Bans not yet pruned; expired bans are pruned at every call that passes `now`."""


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

    def future_count(self) -> int:
        return len(self.txs) - (self.ready_end - self.account_nonce)


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
        revalidator: Revalidator | None = None,
    ) -> None:
        for name, value in (
            ("max_count", max_count),
            ("max_bytes", max_bytes),
            ("max_future_count", max_future_count),
            ("max_future_bytes", max_future_bytes),
            ("max_future_per_sender", max_future_per_sender),
            ("max_banned", max_banned),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if ban_seconds < 0:
            raise ValueError(f"ban_seconds must not be negative, got {ban_seconds}")
        self._validate = validator
        self._revalidate = revalidator or self._validate_again
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._max_future_count = max_future_count
        self._max_future_bytes = max_future_bytes
        self._max_future_per_sender = max_future_per_sender
        self._ban_seconds = ban_seconds
        self._max_banned = max_banned

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
        )

    def is_banned(self, tx_hash_: Hash32, now: float) -> bool:
        expiry = self._bans.get(tx_hash_)
        return expiry is not None and now < expiry

    def drain_events(self) -> list[PoolEvent]:
        """The status changes since the last drain, oldest first. The owner drains after every
        call that changes the pool, so the queue never holds more than one call's worth."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ changes

    def submit(self, encoded: bytes, now: float) -> ValidTransaction:
        """Validate and pool a transaction. A refused one raises `InvalidTransaction` and changes
        nothing but the ban list (and, if the validator's state went back, the sender's account
        nonce: its other transactions then wait as future)."""
        self._expire_bans(now)
        hash_ = tx_hash(encoded)
        expiry = self._bans.get(hash_)
        if expiry is not None and now < expiry:
            raise InvalidTransaction(
                TxRejection.TEMPORARILY_BANNED,
                f"transaction 0x{hash_.hex()} is temporarily banned for another "
                f"{expiry - now:.1f} s after being found invalid or included",
            )
        return self._import(encoded, hash_, now)

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
        already pooled or out of room, and nothing is owed to them."""
        self._expire_bans(now)
        pooled: list[ValidTransaction] = []
        for raw in encoded:
            hash_ = tx_hash(raw)
            self._bans.pop(hash_, None)
            try:
                pooled.append(self._import(raw, hash_, now))
            except InvalidTransaction:
                continue
        return pooled

    def on_block(self, included: Iterable[Hash32], now: float) -> PoolUpdate:
        """After a block is imported (and the validator sees its state): remove the included
        transactions and revalidate every other one, with the revalidator if one was given.

        All validation happens before any change, so a validator that raises anything but
        `InvalidTransaction` leaves the pool as it was."""
        self._expire_bans(now)
        included_order = list(dict.fromkeys(included))
        included_set = set(included_order)
        survivors = [e for e in self._by_hash.values() if e.vt.hash not in included_set]
        pruned = tuple(h for h in included_order if h in self._by_hash)
        outcomes: list[tuple[_Entry, ValidTransaction | InvalidTransaction]] = []
        for entry in survivors:
            try:
                outcomes.append((entry, self._revalidate(entry.vt)))
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
        valid: list[tuple[_Entry, ValidTransaction]] = []
        for entry, outcome in outcomes:
            if isinstance(outcome, InvalidTransaction):
                invalid.append(entry.vt.hash)
                self._ban(entry.vt.hash, now)
                self._emit(entry.vt.hash, PoolStatus.INVALID, str(outcome))
                continue
            valid.append((entry, outcome))
            known = accounts.get(outcome.sender, outcome.account_nonce)
            accounts[outcome.sender] = min(known, outcome.account_nonce)
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
                sender = _Sender(account_nonce, account_nonce, {})
                self._senders[vt.sender] = sender
            entry.vt = vt
            entry.alive = True
            ready = vt.nonce == sender.ready_end
            if ready:
                sender.ready_end += 1
            sender.txs[vt.nonce] = entry
            self._by_hash[vt.hash] = entry
            self._place(entry, ready)

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
        dropped = self._enforce_future_limits()
        return PoolUpdate(
            pruned=pruned,
            invalid=tuple(invalid),
            dropped=tuple(dropped),
            promoted=tuple(promoted),
            demoted=tuple(demoted),
            revalidated=len(outcomes),
        )

    # ------------------------------------------------------------------ import

    def _validate_again(self, vt: ValidTransaction) -> ValidTransaction:
        return self._validate(vt.encoded)

    def _import(self, encoded: bytes, hash_: Hash32, now: float) -> ValidTransaction:
        if hash_ in self._by_hash:
            raise InvalidTransaction(
                TxRejection.ALREADY_IMPORTED, f"transaction 0x{hash_.hex()} is already in the pool"
            )
        try:
            vt = self._validate(encoded)
        except InvalidTransaction:
            self._ban(hash_, now)
            raise

        sender = self._senders.get(vt.sender)
        if sender is not None and vt.account_nonce < sender.account_nonce:
            self._rebase(sender, vt.account_nonce)
            sender = self._senders.get(vt.sender)
        old = sender.txs.get(vt.nonce) if sender is not None else None
        if old is not None and old.vt.tip >= vt.tip:
            raise InvalidTransaction(
                TxRejection.PRIORITY_TOO_LOW,
                f"transaction 0x{old.vt.hash.hex()} with the same sender and nonce {vt.nonce} "
                f"pays tip {old.vt.tip}; a replacement must pay more than that, not {vt.tip}",
            )
        if sender is None:
            ready = vt.nonce == vt.account_nonce
        else:
            ready = vt.nonce <= sender.ready_end
            if not ready and old is None and sender.future_count() >= self._max_future_per_sender:
                raise InvalidTransaction(
                    TxRejection.POOL_FULL,
                    f"the sender already has {sender.future_count()} future transactions "
                    f"waiting in the pool, the most allowed",
                )
        size = len(encoded)
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
        self._enforce_future_limits()
        return vt

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
            sender = _Sender(vt.account_nonce, vt.account_nonce, {})
            self._senders[vt.sender] = sender
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
                return
            del bans[first]

    def _emit(
        self, hash_: Hash32, status: PoolStatus, detail: str, by: Hash32 | None = None
    ) -> None:
        self._events.append(PoolEvent(hash_, status, detail, by))
