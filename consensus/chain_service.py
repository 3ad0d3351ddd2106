"""The chain service: the one writer of the node's chain. It owns the store, runtime and pool,
authors blocks in our slots, and tells subscribers about new heads and watched transactions."""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, NoReturn

import rlp
import trio

from chain.address import encode_address
from chain.blocks import Block, Call, Header, SignedTransaction, UnsignedTransaction, tx_hash
from chain.broadcast import Broadcast
from chain.clock import Clock
from chain.errors import (
    BlockRejection,
    FinalityConflict,
    InvalidBlock,
    InvalidTransaction,
    TxRejection,
)
from chain.importer import BlockImporter
from chain.keys import Signer
from chain.pool import DryRun, PoolEvent, TransactionPool
from chain.primitives import AccountId, BlockNumber, Hash32, Slot, TimestampMs
from chain.runtime import system
from chain.runtime.executive import BlockExecution, Runtime
from chain.runtime.framework import BlockEnv
from chain.signature import VerifiedSignatures
from chain.state import TrieState
from chain.store import ChainStore, TreeRoute
from chain.trie import NodeCache
from chain.validity import ValidTransaction
from consensus.aura import slot_at, slot_author, verify_header
from consensus.fork_choice import best_leaf, chain_key
from consensus.proposer import propose
from consensus.tx_status import TxStatus, status_is_final

log = logging.getLogger("statemesh.chain")

WATCH_BUFFER = 16
PROPOSAL_SHARE = 0.5
"""Share of a slot the author may spend executing transactions for its block."""


EQUIVOCATION_WINDOW = 4096
"""Recent (slot, author) pairs remembered to notice a second block for the same slot."""

DRY_RUN_THREADS = 1
"""Dry runs of large transactions (a client's, a peer's, or a pooled one's after a block) run off
the event loop, one at a time: under the GIL more threads would not validate faster, only take
more time from authoring and RPC, and one thread may use one trie node cache of its own."""
DRY_RUN_INLINE_BYTES = 2048
"""A dry run's cost grows with what its call carries (a manifest is parsed and checked, up to
64 KiB): a transaction this small is dry-run on the loop, where it costs less than the hop to a
worker thread (a transfer's is about 0.1 ms; the hop under load, a millisecond or more). The
same bound decides which pooled transactions the pool leaves unverified after a block."""
IMPORT_INLINE_BYTES = 4096
"""A block whose extrinsics are this small (some 20 transfers) is executed on the event loop, in
a few milliseconds: the hop to a worker thread and back under the GIL cost as much again, and
sync imports such blocks by the thousand. Larger ones run on a worker thread."""
MAX_DRY_RUNS_WAITING = 64
"""Submissions waiting for a dry run at once; more are refused (1016) instead of queued."""
DRY_RUN_CACHE_NODES = 8192
RECENT_BODIES = 16
"""Blocks whose extrinsics stay in memory after their commit (references to bytes the block held
anyway), enough for the usual re-org and the blocks finality usually catches up with."""
VERIFIED_SIGNATURES = 65_536
"""Transaction hashes remembered as carrying a valid signature (some 100 bytes each): more than
a full pool and the blocks of the last several slots."""
DRY_RUN_ATTEMPTS = 3
"""A dry run is repeated when the best block changed while it ran (it would admit what the new
state may refuse); after this many the last outcome stands and the next block revalidates it."""


class _Body(NamedTuple):
    extrinsics: tuple[bytes, ...]
    hashes: tuple[Hash32, ...]


@dataclass(frozen=True, slots=True)
class ChainStatistics:
    best_number: int
    finalized_number: int
    blocks_authored: int
    watchers: int
    dry_runs_waiting: int = 0
    unverified: int = 0
    """Pooled transactions next in line whose dry run against the best block is still to run."""


class ChainService:
    def __init__(
        self,
        *,
        store: ChainStore,
        runtime: Runtime,
        pool: TransactionPool,
        clock: Clock,
        slot_duration_ms: int,
        signer: Signer | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.pool = pool
        self.clock = clock
        self.slot_duration_ms = slot_duration_ms
        self.signer = signer
        self.new_heads: Broadcast[Header] = Broadcast()
        self.finalized_heads: Broadcast[Header] = Broadcast()
        self.imported_heads: Broadcast[Header] = Broadcast()
        """Every block stored, best or not (forks included), as it is stored."""
        self._watchers: defaultdict[Hash32, list[trio.MemorySendChannel[TxStatus]]] = defaultdict(
            list
        )
        self.blocks_authored = 0
        self.authorities: tuple[AccountId, ...] = system.authorities(store.best_state())
        self.genesis_slot: Slot = store.require_header(store.canonical_hash(0) or b"").slot
        self.importer = BlockImporter(store, runtime)
        self._import_lock = trio.Lock()
        self.verified_signatures = VerifiedSignatures(VERIFIED_SIGNATURES)
        """Transactions whose signature verified: import does not verify these again."""
        self._recent_bodies: OrderedDict[Hash32, _Body] = OrderedDict()
        """The extrinsics of the last blocks committed here and their hashes, so that the pool
        and the watchers learn of them without reading them back from the store or hashing them
        again."""
        self._slot_blocks: dict[tuple[int, bytes], Header] = {}
        self._equivocated: dict[tuple[int, bytes], None] = {}
        """The (slot, author) pairs already found equivocating, oldest first, bounded."""
        self.on_equivocation: list[Callable[[Header, Header], None]] = []
        self.on_timed: list[Callable[[str, float], None]] = []
        """Told ("import" or "authoring", seconds) after each block imported or authored."""
        """Called once per (slot, author) with the first two sealed blocks of that author for
        that slot (the evidence reporter submits them)."""
        self.on_authored: list[Callable[[Block], None]] = []
        """Called with each block we author (the network service gossips it)."""
        self.on_submitted: list[Callable[[bytes], None]] = []
        """Called with each transaction accepted from a local client."""
        self._dry_runs = trio.CapacityLimiter(DRY_RUN_THREADS)
        self._dry_run_cache = NodeCache(DRY_RUN_CACHE_NODES)
        self._dry_running: set[Hash32] = set()
        # What the pool's last `on_block` left unverified, replaced at every block: a dry run
        # against an older best block would settle nothing.
        self._unverified: dict[Hash32, ValidTransaction] = {}
        self._unverified_added = trio.Event()
        self.conflict: FinalityConflict | None = None
        """Set once a block proven final conflicts with ours; nothing is finalized after it."""
        self.conflict_found = trio.Event()
        """Set with `conflict`: the node's runner waits on it to halt the node."""

    # -- transactions -----------------------------------------------------------------------

    def next_env(self) -> BlockEnv:
        """The environment a transaction submitted now would most likely run in."""
        best = self.store.best_header
        now = max(self.clock.now_ms(), best.timestamp + 1)
        author = self.signer.public if self.signer else AccountId(b"\x00" * 32)
        return BlockEnv(BlockNumber(best.number + 1), best.hash, TimestampMs(now), author)

    def validate(self, encoded: bytes) -> ValidTransaction:
        """The pool's validator: the cheap checks against the best state; the dry run is
        `revalidate`'s. A signature verified once (by the pool, or in a block that executed) is
        not verified again: a retracted transaction coming back, or one gossiped twice."""
        known = tx_hash(encoded) in self.verified_signatures
        valid = self.runtime.precheck(self.store.best_state(), encoded, signature_checked=known)
        self.verified_signatures.add(valid.hash)
        return valid

    def next_nonce(self, account: AccountId) -> int:
        """The nonce a new transaction of `account` should carry: past the best state's and
        past any of its transactions already waiting in the pool."""
        nonce = system.account(self.store.best_state(), account).nonce
        pooled = {tx.nonce for tx in self.pool.pending() if tx.sender == account}
        while nonce in pooled:
            nonce += 1
        return nonce

    def submit_signed(self, keypair: Signer, call: Call) -> ValidTransaction:
        """Sign `call` as `keypair` with its next nonce and submit it as a local transaction;
        raises InvalidTransaction with the reason."""
        tx = UnsignedTransaction(
            self.runtime.genesis_hash, keypair.public, self.next_nonce(keypair.public), 0, call
        )
        signed = SignedTransaction(
            tx.genesis_hash, tx.sender, tx.nonce, tx.tip, call, keypair.sign(tx.signing_payload())
        )
        return self.submit(rlp.encode(signed))

    def revalidate(self, valid: ValidTransaction) -> ValidTransaction:
        """The pool's revalidator after each block: nonce, balance and dry run only."""
        return self.runtime.revalidate(self.store.best_state(), valid, self.next_env())

    def recheck(self, valid: ValidTransaction) -> ValidTransaction:
        """`revalidate` without the dry run, for the pool's large transactions after a block:
        their dry runs are `run_revalidation`'s, off the event loop."""
        return self.runtime.recheck(self.store.best_state(), valid)

    def dry_run_off_loop(self, encoded: bytes) -> bool:
        """Whether a transaction's dry run goes to the worker thread rather than the event loop:
        a large one (see DRY_RUN_INLINE_BYTES) or one whose call is heavy whatever its size (a
        proof of presence, whose VDF check chiavdf runs without the GIL)."""
        return len(encoded) > DRY_RUN_INLINE_BYTES or self.runtime.is_heavy(encoded)

    def check(self, encoded: bytes) -> ValidTransaction:
        """The pool's cheap checks alone (see `TransactionPool.check`), for a peer's large or
        heavy transaction: enough to relay it, while its dry run waits for `submit_from_client`. One
        already waiting for its dry run is refused as imported, so copies are not relayed."""
        hash_ = tx_hash(encoded)
        if hash_ in self._dry_running:
            raise InvalidTransaction(
                TxRejection.ALREADY_IMPORTED,
                f"transaction 0x{hash_.hex()} is already being validated",
            )
        return self.pool.check(encoded, self.clock.monotonic())

    def submit(self, encoded: bytes, *, local: bool = True) -> ValidTransaction:
        """Validate and pool a transaction on the event loop; raises InvalidTransaction with the
        reason. For the node's own transactions and small ones from peers; a client's and a
        peer's large ones go through `submit_from_client`, whose dry run cannot hold up the loop.
        A local one is then announced to the network; one from the network is relayed by gossip
        itself."""
        try:
            valid = self.pool.submit(encoded, self.clock.monotonic())
        finally:
            self._dispatch(self.pool.drain_events())
        self._announce(encoded, local)
        return valid

    async def submit_from_client(self, encoded: bytes, *, local: bool = True) -> ValidTransaction:
        """`submit` for a transaction from a client (or a peer's large one, with `local` False):
        the pool's cheap checks (size, decoding, signature, nonce window, bans, the sender's
        pending costs against its balance) on the event loop, then the dry run, which may take
        100 ms and more for a large manifest, on a worker thread, one at a time, so that
        authoring and RPC go on meanwhile (a small, light transaction's stays on the loop: see
        `dry_run_off_loop`)."""
        checked = self.pool.check(encoded, self.clock.monotonic())
        # A future transaction has no dry run yet (it runs once it is next in line).
        if checked.nonce == checked.account_nonce and self.dry_run_off_loop(encoded):
            outcome = await self._dry_run_off_loop(checked)
        else:
            outcome = self.pool.dry_run(checked)
        try:
            valid = self.pool.complete(checked, outcome, self.clock.monotonic())
        finally:
            self._dispatch(self.pool.drain_events())
        self._announce(encoded, local)
        return valid

    async def _dry_run_off_loop(self, checked: ValidTransaction) -> DryRun:
        if checked.hash in self._dry_running:
            raise InvalidTransaction(
                TxRejection.ALREADY_IMPORTED,
                f"transaction 0x{checked.hash.hex()} is already being validated",
            )
        if len(self._dry_running) >= MAX_DRY_RUNS_WAITING:
            raise InvalidTransaction(
                TxRejection.POOL_FULL,
                f"{len(self._dry_running)} submitted transactions are waiting for validation, "
                "the most allowed; try again shortly",
            )
        self._dry_running.add(checked.hash)
        try:
            # The turn first, then the state: a state taken before waiting would be stale.
            async with self._dry_runs:
                # Its sender's other dry runs may have failed while it waited and got it banned.
                now = self.clock.monotonic()
                banned_until = self.pool.sender_banned_until(checked.sender, now)
                if banned_until is not None:
                    raise InvalidTransaction(
                        TxRejection.TEMPORARILY_BANNED,
                        f"sender {encode_address(checked.sender)} is temporarily banned for "
                        f"another {banned_until - now:.1f} s: its transactions failed their dry "
                        "run while this one waited for its own",
                    )
                for _ in range(DRY_RUN_ATTEMPTS):
                    outcome, ran_on = await self._dry_run_in_turn(checked)
                    if self.store.best_header.hash == ran_on:
                        break
        finally:
            self._dry_running.discard(checked.hash)
        return outcome

    async def _dry_run_in_turn(self, checked: ValidTransaction) -> tuple[DryRun, Hash32]:
        """One dry run against the best state, on the worker thread; the caller holds a turn of
        `_dry_runs`. Returns the outcome and the best block it ran on."""
        best = self.store.best_header
        # State and environment are taken on the loop; the thread reads the trie through a
        # node cache of its own, and the best state's values through the store's value cache
        # (which takes a lock for each read).
        state = TrieState(
            self.store.db.trie_nodes, best.state_root, self._dry_run_cache, self.store.values
        )
        env = self.next_env()
        outcome = await trio.to_thread.run_sync(self._dry_run, state, checked, env)
        return outcome, best.hash

    def _dry_run(self, state: TrieState, checked: ValidTransaction, env: BlockEnv) -> DryRun:
        try:
            return self.runtime.revalidate(state, checked, env)
        except InvalidTransaction as err:
            return err

    async def run_revalidation(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Dry-run, off the event loop, the large transactions each block leaves unverified in
        the pool (see `DeferredDryRuns`), sharing the dry-run thread with submissions."""
        task_status.started()
        while True:
            await self._unverified_added.wait()
            self._unverified_added = trio.Event()
            await self.revalidate_unverified()

    async def revalidate_unverified(self) -> int:
        """Dry-run what the pool left unverified until nothing is left, each against the best
        block of its `on_block`; an outcome is applied only while that block is still the best
        (a newer block brings its own list). Returns how many outcomes were applied."""
        settled = 0
        while self._unverified:
            hash_, unverified = next(iter(self._unverified.items()))
            async with self._dry_runs:
                outcome, ran_on = await self._dry_run_in_turn(unverified)
            if self._unverified.get(hash_) is not unverified:
                continue  # a newer block replaced the list
            del self._unverified[hash_]
            if self.store.best_header.hash != ran_on:
                continue
            if self.pool.settle(unverified, outcome, self.clock.monotonic()):
                settled += 1
                self._dispatch(self.pool.drain_events())
        return settled

    def _announce(self, encoded: bytes, local: bool) -> None:
        if local:
            for listener in self.on_submitted:
                listener(encoded)

    async def watch(
        self, encoded: bytes
    ) -> tuple[ValidTransaction, trio.MemoryReceiveChannel[TxStatus]]:
        """Submit (as `submit_from_client`) and follow a transaction. The channel yields its
        statuses and closes after a final one; a watcher that does not keep up is dropped."""
        valid = await self.submit_from_client(encoded)
        send, receive = trio.open_memory_channel[TxStatus](WATCH_BUFFER)
        status = self.pool.status(valid.hash)
        if status is not None:
            send.send_nowait(str(status))
            self._watchers[valid.hash].append(send)
        else:
            # Already gone from the pool (e.g. evicted at once): nothing more will come.
            send.send_nowait("dropped")
            send.close()
        return valid, receive

    def _notify(self, tx: Hash32, status: TxStatus) -> None:
        senders = self._watchers.get(tx)
        if not senders:
            return
        final = status_is_final(status)
        alive = []
        for send in senders:
            try:
                send.send_nowait(status)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                send.close()
                continue
            if final:
                send.close()
            else:
                alive.append(send)
        if alive:
            self._watchers[tx] = alive
        else:
            del self._watchers[tx]

    def _dispatch(self, events: list[PoolEvent]) -> None:
        for event in events:
            if event.hash not in self._watchers:
                continue
            status: TxStatus = str(event.status)
            if event.by is not None:
                status = {"usurped": "0x" + event.by.hex()}
            self._notify(event.hash, status)

    # -- blocks -----------------------------------------------------------------------------

    async def run_authoring(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Author a block in each of our slots; empty slots are allowed."""
        if self.signer is None:
            raise RuntimeError("authoring needs a signer")
        task_status.started()
        duration = self.slot_duration_ms
        while True:
            now = self.clock.now_ms()
            next_slot = now // duration + 1
            await trio.sleep(max(0.0, (next_slot * duration - now) / 1000))
            timestamp = TimestampMs(max(self.clock.now_ms(), next_slot * duration))
            slot = slot_at(timestamp, duration)
            if slot_author(slot, self.authorities) != self.signer.public:
                continue
            await self.author_block(slot, timestamp)

    async def author_block(self, slot: Slot, timestamp: TimestampMs) -> Block | None:
        signer = self.signer
        if signer is None:
            raise RuntimeError("authoring needs a signer")
        async with self._import_lock:
            parent = self.store.best_header
            if slot < self.genesis_slot or (parent.number > 0 and slot <= parent.slot):
                return None
            candidates = list(self.pool.ready())
            rejected: list[tuple[ValidTransaction, InvalidTransaction]] = []
            deadline = self.clock.monotonic() + self.slot_duration_ms * PROPOSAL_SHARE / 1000
            started = self.clock.monotonic()

            def build() -> tuple[Block, BlockExecution]:
                return propose(
                    self.store,
                    self.runtime,
                    parent,
                    candidates,
                    slot=slot,
                    timestamp=timestamp,
                    signer=signer,
                    on_invalid=lambda tx, exc: rejected.append((tx, exc)),
                    keep_going=lambda: self.clock.monotonic() < deadline,
                )

            # Execution is CPU work: run it off the event loop so RPC keeps answering.
            block, execution = await trio.to_thread.run_sync(build)
            now = self.clock.monotonic()
            for tx, exc in rejected:
                log.info("dropped transaction 0x%s while authoring: %s", tx.hash.hex(), exc)
                self.pool.mark_invalid(tx.hash, now)
            try:
                self._commit(block, execution)
            except InvalidBlock as exc:
                # Finality moved to another fork while we were building on this one.
                log.warning("discarded our block #%d: %s", block.header.number, exc)
                return None
            # Durable before it is published, even while sync defers its fsyncs: an author that
            # lost its own block to a power cut could seal another for the same slot.
            self.store.db.flush()
        self.blocks_authored += 1
        elapsed = self.clock.monotonic() - started
        log.info(
            "authored #%d (0x%s…) with %d extrinsics in %.0f ms",
            block.header.number,
            block.hash.hex()[:12],
            len(block.extrinsics),
            elapsed * 1000,
        )
        self._timed("authoring", elapsed)
        for listener in self.on_authored:
            listener(block)
        return block

    async def import_block(self, block: Block) -> bool:
        """Check, execute and store a block from elsewhere; False if it was already known.
        Raises InvalidBlock (UNKNOWN_PARENT asks the caller to sync first)."""
        header = block.header
        async with self._import_lock:
            if self.store.header(header.hash) is not None:
                return False
            started = self.clock.monotonic()
            parent = self.store.header(header.parent_hash)
            if parent is None:
                raise InvalidBlock(
                    BlockRejection.UNKNOWN_PARENT,
                    f"parent 0x{header.parent_hash.hex()} of #{header.number} is unknown",
                )
            finalized = self.store.finalized_header
            if header.number <= finalized.number or not self.store.is_descendant(
                header.parent_hash, finalized.hash
            ):
                raise InvalidBlock(
                    BlockRejection.BELOW_FINALIZED,
                    f"#{header.number} does not extend the finalized block #{finalized.number}",
                )
            verify_header(
                header,
                parent,
                self.authorities,
                self.slot_duration_ms,
                self.clock.now_ms(),
                self.genesis_slot,
                verified=self.verified_signatures,
            )
            self._check_equivocation(header)
            execute = partial(self.importer.execute, block, verified=self.verified_signatures)
            if sum(len(e) for e in block.extrinsics) <= IMPORT_INLINE_BYTES:
                execution = execute()
            else:
                execution = await trio.to_thread.run_sync(execute)
            self._commit(block, execution)
        self._timed("import", self.clock.monotonic() - started)
        return True

    def _timed(self, kind: str, seconds: float) -> None:
        for listener in self.on_timed:
            listener(kind, seconds)

    def _check_equivocation(self, header: Header) -> None:
        """A second block of one author for one slot (`header`'s seal checked) is evidence
        against the author (the blocks stay)."""
        key = (header.slot, header.author)
        first = self._slot_blocks.get(key)
        if first is None:
            self._slot_blocks[key] = header
            while len(self._slot_blocks) > EQUIVOCATION_WINDOW:
                self._slot_blocks.pop(next(iter(self._slot_blocks)))
        elif first.hash != header.hash:
            self.note_equivocation(first, header)

    def note_equivocation(self, first: Header, second: Header) -> None:
        """Two different blocks sealed by one author for one slot (both seals checked), found in
        import or in gossip: recorded in the store and handed to `on_equivocation` once per
        (slot, author), however many more such blocks come."""
        key = (second.slot, second.author)
        if key in self._equivocated:
            return
        self._equivocated[key] = None
        while len(self._equivocated) > EQUIVOCATION_WINDOW:
            self._equivocated.pop(next(iter(self._equivocated)))
        self.store.record_equivocation(first, second)
        log.warning(
            "equivocation: %s sealed two blocks for slot %d (0x%s…, 0x%s…)",
            encode_address(second.author),
            second.slot,
            first.hash.hex()[:12],
            second.hash.hex()[:12],
        )
        for listener in self.on_equivocation:
            listener(first, second)

    def _commit(self, block: Block, execution: BlockExecution) -> None:
        """Store an executed block; it becomes best if fork choice prefers it (the longest
        chain above the finalized block, then the lowest hash)."""
        finalized = self.store.finalized_header
        if not self.store.is_descendant(block.header.parent_hash, finalized.hash):
            # Finality moved on while this block was being executed.
            raise InvalidBlock(
                BlockRejection.BELOW_FINALIZED,
                f"#{block.header.number} does not extend the finalized block #{finalized.number}",
            )
        self._slot_blocks.setdefault((block.header.slot, block.header.author), block.header)
        # Every extrinsic of an executed block carries a valid signature: if a re-org brings
        # them back to the pool, they need not be verified again.
        hashes = tuple([outcome.hash for outcome in execution.outcomes])
        for tx in hashes:
            self.verified_signatures.add(tx)
        best = self.store.best_header
        make_best = chain_key(block.header) > chain_key(best)
        instant = make_best and len(self.authorities) == 1
        old_finalized = finalized
        route = self.store.commit_block(block, execution, best=make_best, finalize=instant)
        self._recent_bodies[Hash32(block.hash)] = _Body(block.extrinsics, hashes)
        while len(self._recent_bodies) > RECENT_BODIES:
            self._recent_bodies.popitem(last=False)
        self.imported_heads.publish(block.header)
        if route is not None:
            self._after_route(route)
            self.new_heads.publish(block.header)
        if instant:
            self._after_finality(old_finalized, block.header)

    def finalize(self, block_hash: Hash32, justification: bytes | None) -> bool:
        """Make a block final (the finality gadget or a verified justification says so);
        if it is on a fork, the best chain moves onto it first. False if nothing changed.

        A block that does not descend from our finalized block raises FinalityConflict before
        anything is written, and every later call raises it again: the node must halt (see
        `conflict`), never revert a finalized block."""
        if self.conflict is not None:
            raise self.conflict
        header = self.store.header(block_hash)
        if header is None:
            return False
        old = self.store.finalized_header
        if header.number <= old.number:
            if self.store.canonical_hash(header.number) == header.hash:
                return False  # final already
            self._conflicting(old, header)
        if not self.store.is_descendant(block_hash, old.hash):
            self._conflicting(old, header)
        if self.store.canonical_hash(header.number) != header.hash:
            leaves = [
                leaf for leaf in self.store.leaves() if self.store.is_descendant(leaf, block_hash)
            ]
            self._after_route(self.store.set_best(best_leaf(self.store, leaves, block_hash)))
            self.new_heads.publish(self.store.best_header)
        self.store.finalize(block_hash, justification)
        self._after_finality(old, header)
        return True

    def _conflicting(self, finalized: Header, header: Header) -> NoReturn:
        conflict = FinalityConflict(
            (finalized.number, finalized.hash), (header.number, Hash32(header.hash))
        )
        self.conflict = conflict
        log.critical("FINALITY CONFLICT, the node halts: %s", conflict)
        self.conflict_found.set()
        raise conflict

    def _after_route(self, route: TreeRoute) -> None:
        """The best chain moved: retracted transactions go back to the pool, included ones
        leave it, watchers hear where their transaction is now."""
        now = self.clock.monotonic()
        retracted: list[bytes] = []
        for block_hash in route.retracted:
            body = self._body(block_hash)
            retracted.extend(body.extrinsics)
            self._notify_each(body.hashes, {"retracted": "0x" + block_hash.hex()})
        included: list[Hash32] = []
        for block_hash in route.enacted:
            body = self._body(block_hash)
            included.extend(body.hashes)
            self._notify_each(body.hashes, {"inBlock": "0x" + block_hash.hex()})
        if retracted:
            self.pool.retract(retracted, now)
        update = self.pool.on_block(included, now)
        self._dispatch(self.pool.drain_events())
        self._unverified = {valid.hash: valid for valid in update.unverified}
        if self._unverified:
            self._unverified_added.set()

    def _body(self, block_hash: Hash32) -> _Body:
        """A stored block's extrinsics and their hashes: from the recent ones if there, else
        from the store."""
        body = self._recent_bodies.get(block_hash)
        if body is not None:
            return body
        block = self.store.block(block_hash)
        if block is None:
            return _Body((), ())
        return _Body(block.extrinsics, tuple([tx_hash(e) for e in block.extrinsics]))

    def _notify_each(self, hashes: tuple[Hash32, ...], status: TxStatus) -> None:
        """Tell the watchers of each of `hashes`, if there are any watchers at all."""
        if self._watchers:
            for tx in hashes:
                self._notify(tx, status)

    def _after_finality(self, old: Header, new: Header) -> None:
        """Tell watchers of every transaction in the newly final blocks, then subscribers."""
        if self._watchers:
            number: int = new.number
            finalized_hashes = []
            while number > old.number:
                block_hash = self.store.canonical_hash(number)
                if block_hash is None:
                    break
                finalized_hashes.append(block_hash)
                number -= 1
            for block_hash in reversed(finalized_hashes):
                status = {"finalized": "0x" + block_hash.hex()}
                self._notify_each(self._body(block_hash).hashes, status)
        self.finalized_heads.publish(new)
        # With one authority every block is final at once: one line per block is enough.
        level = logging.DEBUG if len(self.authorities) == 1 else logging.INFO
        log.log(level, "finalized #%d (0x%s…)", new.number, new.hash.hex()[:12])

    def statistics(self) -> ChainStatistics:
        return ChainStatistics(
            best_number=self.store.best_header.number,
            finalized_number=self.store.finalized_header.number,
            blocks_authored=self.blocks_authored,
            watchers=sum(len(v) for v in self._watchers.values()),
            dry_runs_waiting=len(self._dry_running),
            unverified=len(self._unverified),
        )
