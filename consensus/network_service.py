"""The node on the network: gossip of blocks, transactions and finality votes (each checked
before it is relayed), block sync over request/response, and the status peers exchange.
What a peer's bad data costs it is decided here, in one place per message kind.

Only a fault that the data itself proves costs a peer its score: malformed bytes, or a fault
that signatures prove (a bad seal, a block sealed by the wrong author, a sealed block that breaks
the chain's rules). Anything that depends on our clock or on what we know yet (a block for a slot
that has not begun here, an unknown parent, a duplicate, a block below our finalized one) is
IGNOREd: it is not relayed and costs nothing, up to a per-peer budget of ignored messages
(IGNORE_BURST, refilled at IGNORE_REFILL_PER_SECOND) past which each one costs
PENALTY_IGNORED_FLOOD, so that a flood is banned while an honest peer's duplicates never are."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import rlp
import trio

from chain.blocks import Block, Header
from chain.errors import BlockRejection, InvalidBlock, InvalidTransaction, TxRejection
from chain.primitives import Hash32
from chain.wire import (
    MAX_GOSSIP_BLOCK_BYTES,
    MAX_SYNC_RESPONSE_BYTES,
    PROTOCOL_SYNC,
    TOPIC_BLOCKS,
    TOPIC_TRANSACTIONS,
    TOPIC_VOTES,
    Status,
    WireError,
    decode_block,
    decode_transactions,
    encode_transactions,
)
from consensus.aura import MAX_DRIFT_MS, check_seal, check_slot, verify_header
from consensus.chain_service import (
    EQUIVOCATION_WINDOW,
    MAX_DRY_RUNS_WAITING,
    ChainService,
)
from consensus.finality_service import FinalityService, VoteVerdict
from consensus.sync import SyncService, serve_sync
from p2p.errors import BadRequest
from p2p.gossip import GossipMessage, Verdict
from p2p.host import P2PService
from p2p.identity import PeerId

log = logging.getLogger("statemesh.network")

OUTBOX = 1024
TX_BATCH_SECONDS = 0.05
TX_BATCH_COUNT = 500
TX_BATCH_BYTES = 512 * 1024
SYNC_TIMEOUT = 30.0
PENALTY_BAD_BLOCK = 50
ACCEPTED_BLOCKS = 4
"""Gossiped blocks kept decoded between their validation and their import (each up to
MAX_GOSSIP_BLOCK_BYTES, and the decoded block as much again)."""
MAX_GOSSIPED_DRY_RUNS = MAX_DRY_RUNS_WAITING // 2
"""Peers' large and heavy transactions waiting for a dry run at once: half the queue, so that a
peer's flood leaves clients room in it. More are dropped, as gossip may drop anything."""
PENALTY_FAILED_DRY_RUN = 10
"""For each large or heavy transaction a peer published whose dry run failed here (a proof of
presence that does not verify among them). Not a REJECT: the dry run depends on our state (an
application name another transaction just took), so an honest publisher can be caught out now
and then; a peer publishing nothing else is banned after ten within seconds (the ban threshold
is -100, a point comes back per second), when each has cost a dry run of 15 to 100 ms or more
on the worker thread."""

TX_VERDICTS: dict[TxRejection, Verdict] = {
    # Wrong whatever the state: only a broken or hostile peer relays these.
    TxRejection.MALFORMED: Verdict.REJECT,
    TxRejection.OVERSIZE: Verdict.REJECT,
    TxRejection.BAD_SIGNATURE: Verdict.REJECT,
    TxRejection.WRONG_GENESIS: Verdict.REJECT,
    TxRejection.UNKNOWN_CALL: Verdict.REJECT,
    TxRejection.BAD_ARGUMENTS: Verdict.REJECT,
}
"""Every other rejection depends on our state (nonces, balances, pool) and costs nothing, but a
large or heavy transaction's failed dry run costs its publisher PENALTY_FAILED_DRY_RUN."""

BLOCK_VERDICTS: dict[BlockRejection, Verdict] = {
    BlockRejection.ALREADY_KNOWN: Verdict.IGNORE,
    BlockRejection.UNKNOWN_PARENT: Verdict.IGNORE,
    BlockRejection.BELOW_FINALIZED: Verdict.IGNORE,
    # Our clock or the author's is off, and no one can prove which: held (see FUTURE_HOLD_MS).
    BlockRejection.FUTURE_SLOT: Verdict.IGNORE,
}
"""Every other block rejection is a fault the block proves by itself: malformed, a slot that
does not match its timestamp or comes before its parent's or the genesis, the wrong author, a
bad seal, or (found when executing) bad roots or extrinsics in a block its author sealed.
A second block of one author for one slot is also IGNOREd (not relayed, not executed): the pair
is evidence against the author, handed to `ChainService.note_equivocation`."""

FUTURE_HOLD_MS = 30_000
"""A block whose slot begins at most this far ahead of our clock is held and imported when its
slot begins here (the author's clock or ours is off); one further ahead is only ignored."""
MAX_HELD_PER_AUTHOR = 4
"""Held blocks per author (each held block's seal is checked): an author cannot fill memory."""
SYNC_WAKE_SECONDS = 2.0
"""A block with an unknown parent wakes sync at most this often per forwarding peer."""
IGNORE_BURST = 500
"""Ignored messages a peer may send in a burst without cost (duplicates, blocks we cannot judge
yet, stale votes): honest relaying produces a few a second at most."""
IGNORE_REFILL_PER_SECOND = 50.0
PENALTY_IGNORED_FLOOD = 1
"""For each ignored message past the budget. Scores climb back a point a second and a peer is
banned at -100: a peer sending ignored messages faster than the refill rate plus one a second
for long is banned, one under it never."""
MAX_TRACKED_PEERS = 1024
"""Peers whose ignore budget and sync wakes are remembered (the oldest are forgotten first)."""


@dataclass(slots=True)
class IgnoreBudget:
    """A token bucket of the ignored messages a peer may send without cost."""

    tokens: float
    at: float

    def take(self, now: float) -> bool:
        """Spend one token; False when there is none left."""
        self.tokens = min(IGNORE_BURST, self.tokens + (now - self.at) * IGNORE_REFILL_PER_SECOND)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True, slots=True)
class HeldBlock:
    """A sealed block for a slot that has not begun here, waiting for it."""

    block: Block
    data: bytes
    forwarder: PeerId


@dataclass(frozen=True, slots=True)
class PeerView:
    peer_id: str
    address: str
    direction: str
    score: float
    status: Status | None


class NetworkService:
    def __init__(
        self,
        chain: ChainService,
        finality: FinalityService | None,
        p2p: P2PService,
    ) -> None:
        self.chain = chain
        self.finality = finality
        self.p2p = p2p
        self._budgets: dict[PeerId, IgnoreBudget] = {}
        self._sync_woken: dict[PeerId, float] = {}
        self._held: dict[Hash32, HeldBlock] = {}
        self._accepted_blocks: OrderedDict[bytes, Block] = OrderedDict()
        """Blocks `_check_block` decoded and accepted, by their bytes, for the importer to take
        instead of decoding them again (a few: each is taken as soon as it is delivered)."""
        self._held_added = trio.Event()
        self._first_in_slot: dict[tuple[int, bytes], Header] = {}
        """The first sealed block seen of each recent (slot, author), oldest first."""
        self.ignored_penalties = 0
        self.sync_wakes = 0
        """Times a gossiped block with an unknown parent woke sync."""
        self.sync = SyncService(chain, self)
        self._blocks = p2p.subscribe(TOPIC_BLOCKS, self._check_block)
        self._transactions = p2p.subscribe(TOPIC_TRANSACTIONS, self._check_transactions)
        self._votes = p2p.subscribe(TOPIC_VOTES, self._check_vote)
        p2p.register_protocol(
            PROTOCOL_SYNC,
            self._serve_sync,
            max_request_bytes=64,
            max_response_bytes=MAX_SYNC_RESPONSE_BYTES + 64 * 1024,
            timeout=SYNC_TIMEOUT,
        )
        self._outbox_send, self._outbox = trio.open_memory_channel[tuple[str, bytes]](OUTBOX)
        self._pending_transactions: list[bytes] = []
        self._admitting = 0
        """Peers' large transactions handed to the dry-run thread and not yet through it."""
        chain.on_authored.append(self._announce_block)
        chain.on_authored.append(self._remember_authored)
        chain.on_submitted.append(self._pending_transactions.append)
        self.dropped_outbound = 0

    def status(self) -> bytes:
        store = self.chain.store
        best, finalized = store.best_header, store.finalized_header
        genesis = store.genesis_hash
        if genesis is None:
            return b""
        return Status(genesis, best.number, best.hash, finalized.number, finalized.hash).encode()

    # -- outbound -------------------------------------------------------------------------------

    def _queue(self, topic: str, data: bytes) -> None:
        try:
            self._outbox_send.send_nowait((topic, data))
        except trio.WouldBlock:
            self.dropped_outbound += 1

    def _announce_block(self, block: Block) -> None:
        encoded = rlp.encode(block)
        if len(encoded) <= MAX_GOSSIP_BLOCK_BYTES:
            self._queue(TOPIC_BLOCKS, encoded)
        # A bigger block reaches peers through sync, which our status announces.

    async def _publish_loop(self) -> None:
        async for topic, data in self._outbox:
            try:
                await self.p2p.publish(topic, data)
            except Exception as exc:
                log.info("could not gossip on %s: %s", topic, exc)

    async def _batch_transactions(self) -> None:
        """Gossip local transactions in batches: every gossip message costs each node about a
        millisecond of CPU (signing, validation, relaying), so one per transaction would
        swamp the network under load."""
        while True:
            await trio.sleep(TX_BATCH_SECONDS)
            # Swap the contents, not the list: `chain.on_submitted` holds this list's `append`.
            pending = self._pending_transactions[:]
            self._pending_transactions.clear()
            batch: list[bytes] = []
            size = 0
            for encoded in pending:
                if batch and (len(batch) >= TX_BATCH_COUNT or size + len(encoded) > TX_BATCH_BYTES):
                    self._queue(TOPIC_TRANSACTIONS, encode_transactions(batch))
                    batch, size = [], 0
                batch.append(encoded)
                size += len(encoded)
            if batch:
                self._queue(TOPIC_TRANSACTIONS, encode_transactions(batch))

    # -- inbound --------------------------------------------------------------------------------

    def _check_block(self, peer: PeerId, data: bytes) -> Verdict:
        """Relay a block whose header is sound on top of a parent we have; the cheap checks come
        first, the seal (a signature) last."""
        try:
            block = decode_block(data)
        except WireError:
            return Verdict.REJECT
        store = self.chain.store
        header = block.header
        if store.header(header.hash) is not None or header.hash in self._held:
            return self._ignore(peer)
        finalized = store.finalized_header
        parent = store.header(header.parent_hash)
        # Below our finalized block a block is never imported, but a bad seal is still a fault
        # the block proves, so it is judged as one whose parent we lack.
        stale = header.number <= finalized.number or (
            parent is not None and not store.is_descendant(parent.hash, finalized.hash)
        )
        try:
            self._verify(header, None if stale else parent)
        except InvalidBlock as exc:
            if exc.reason is BlockRejection.FUTURE_SLOT and not stale:
                return self._hold(peer, block, data)
            if BLOCK_VERDICTS.get(exc.reason, Verdict.REJECT) is Verdict.IGNORE:
                return self._ignore(peer)
            log.info("block #%d from %s refused: %s", header.number, peer, exc)
            return Verdict.REJECT
        if stale:
            return self._ignore(peer)
        if parent is None:
            # Sealed by its slot's author: worth syncing for, but not more often than this.
            self._wake_sync(peer)
            return self._ignore(peer)
        if not self._first_block(header):
            return self._ignore(peer)
        self._accepted_blocks[data] = block
        while len(self._accepted_blocks) > ACCEPTED_BLOCKS:
            self._accepted_blocks.popitem(last=False)
        return Verdict.ACCEPT

    def _verify(self, header: Header, parent: Header | None) -> None:
        """`verify_header`, or without a parent every check that does not need it."""
        chain = self.chain
        now = chain.clock.now_ms()
        if parent is None:
            check_slot(header, None, chain.slot_duration_ms, now, chain.genesis_slot)
            check_seal(header, chain.authorities)
        else:
            verify_header(
                header,
                parent,
                chain.authorities,
                chain.slot_duration_ms,
                now,
                chain.genesis_slot,
            )

    def _hold(self, peer: PeerId, block: Block, data: bytes) -> Verdict:
        """A block for a slot that has not begun here: never the forwarder's fault (our clock
        may be the one behind). Held to import when its slot begins, if it is near and sealed
        by its slot's author; ignored either way."""
        header = block.header
        try:
            check_seal(header, self.chain.authorities)
        except InvalidBlock as exc:
            log.info("block #%d from %s refused: %s", header.number, peer, exc)
            return Verdict.REJECT
        if header.timestamp > self.chain.clock.now_ms() + FUTURE_HOLD_MS:
            return self._ignore(peer)
        held = sum(1 for h in self._held.values() if h.block.header.author == header.author)
        if held >= MAX_HELD_PER_AUTHOR:
            return self._ignore(peer)
        self._held[header.hash] = HeldBlock(block, data, peer)
        self._held_added.set()
        log.info(
            "holding block #%d (0x%s…) for slot %d, %d ms ahead of our clock",
            header.number,
            header.hash.hex()[:12],
            header.slot,
            header.timestamp - self.chain.clock.now_ms(),
        )
        return Verdict.IGNORE

    def _first_block(self, header: Header) -> bool:
        """Remember `header` (sealed, checked) as its author's block for its slot; False, and the
        pair handed over once as evidence, if the author already sealed another one."""
        key = (header.slot, header.author)
        first = self._first_in_slot.get(key)
        if first is None:
            self._first_in_slot[key] = header
            while len(self._first_in_slot) > EQUIVOCATION_WINDOW:
                self._first_in_slot.pop(next(iter(self._first_in_slot)))
            return True
        if first.hash == header.hash:
            return True
        self.chain.note_equivocation(first, header)
        return False

    def _remember_authored(self, block: Block) -> None:
        self._first_block(block.header)

    def _wake_sync(self, peer: PeerId, *, status: bool = False) -> None:
        """Wake sync for what `peer` sent, at most every SYNC_WAKE_SECONDS per peer; a `status`
        of the peer's own does not abandon a request in flight to that peer."""
        now = self.chain.clock.monotonic()
        last = self._sync_woken.get(peer)
        if last is not None and now - last < SYNC_WAKE_SECONDS:
            return
        self._sync_woken.pop(peer, None)
        self._sync_woken[peer] = now
        while len(self._sync_woken) > MAX_TRACKED_PEERS:
            self._sync_woken.pop(next(iter(self._sync_woken)))
        self.sync_wakes += 1
        self.sync.wake(by=str(peer) if status else None)

    async def _follow_statuses(self) -> None:
        """A peer whose status (at its handshake or a later exchange) says it is ahead of us
        wakes sync at once, as a block with an unknown parent does, instead of at sync's next idle
        check (a second later): a node joining the network starts downloading as soon as it
        knows whom from. Rate-limited per peer like the other wakes (a peer may send statuses as
        often as it likes); a peer's own status does not abandon a request in flight to it."""
        async for event in self.p2p.events():
            if event.status is None:
                continue
            try:
                status = Status.decode(event.status)
            except WireError:
                continue  # penalized where sync reads the statuses
            store = self.chain.store
            if status.genesis_hash == store.genesis_hash and (
                status.best_number > store.best_header.number
                or status.finalized_number > store.finalized_header.number
            ):
                self._wake_sync(event.peer_id, status=True)

    def _ignore(self, peer: PeerId) -> Verdict:
        """IGNORE, charged to `peer`'s budget of ignored messages (see the module docstring)."""
        now = self.chain.clock.monotonic()
        budget = self._budgets.pop(peer, None) or IgnoreBudget(IGNORE_BURST, now)
        self._budgets[peer] = budget  # most recently used last
        while len(self._budgets) > MAX_TRACKED_PEERS:
            self._budgets.pop(next(iter(self._budgets)))
        if not budget.take(now):
            self.ignored_penalties += 1
            self.p2p.penalize(peer, PENALTY_IGNORED_FLOOD, "flood of ignored gossip messages")
        return Verdict.IGNORE

    def _check_transactions(self, peer: PeerId, data: bytes) -> Verdict:
        """A batch is relayed if it brought anything new, and blamed if anything in it is
        wrong whatever the state (a bad signature, garbage).

        This runs on the event loop, inside libp2p's receive path: a small transaction is
        pooled here, dry run included (it costs about what its signature does), a large or
        heavy one (`ChainService.dry_run_off_loop`: a manifest, a proof of presence) only
        passes the cheap checks (decoding, signature, nonce window, fees, bans), which decide
        its relay, and is pooled once its dry run on the worker thread passes
        (`_admit_gossiped_transactions`). A relayed one that fails its dry run there costs its
        publisher, not the peers that relayed it before anyone had dry-run it."""
        try:
            batch = decode_transactions(data)
        except WireError:
            return Verdict.REJECT
        verdict = Verdict.IGNORE
        for encoded in batch:
            try:
                if self.chain.dry_run_off_loop(encoded):
                    self.chain.check(encoded)
                else:
                    self.chain.submit(encoded, local=False)
            except InvalidTransaction as exc:
                if TX_VERDICTS.get(exc.reason, Verdict.IGNORE) is Verdict.REJECT:
                    return Verdict.REJECT
                continue
            verdict = Verdict.ACCEPT
        return verdict if verdict is Verdict.ACCEPT else self._ignore(peer)

    def _check_vote(self, peer: PeerId, data: bytes) -> Verdict:
        if self.finality is None:
            return self._ignore(peer)
        verdict = self.finality.on_vote(data)
        if verdict == VoteVerdict.ACCEPT:
            return Verdict.ACCEPT
        return Verdict.REJECT if verdict == VoteVerdict.REJECT else self._ignore(peer)

    async def _import_gossiped_blocks(self) -> None:
        async for message in self._blocks:
            await self._import_gossiped(message)

    async def _import_gossiped(self, message: GossipMessage) -> None:
        block = self._accepted_blocks.pop(message.data, None)
        if block is None:
            try:
                block = decode_block(message.data)
            except WireError:
                return
        await self._import(block, message.origin)

    async def _import(self, block: Block, origin: PeerId) -> bool:
        """Import a block from the network; a fault the block proves costs `origin` (its
        publisher, who signed the message). True if it was new."""
        try:
            imported = await self.chain.import_block(block)
        except InvalidBlock as exc:
            if BLOCK_VERDICTS.get(exc.reason, Verdict.REJECT) is Verdict.REJECT:
                self.p2p.penalize(origin, PENALTY_BAD_BLOCK, f"bad block: {exc}")
            elif exc.reason is BlockRejection.UNKNOWN_PARENT:
                self.sync.wake()
            return False
        if self.finality is not None:
            self.finality.progress()
        return imported

    def due_blocks(self) -> list[HeldBlock]:
        """Take the held blocks whose slot has begun (within MAX_DRIFT_MS), oldest slot first."""
        now = self.chain.clock.now_ms()
        due = sorted(
            (h for h in self._held.values() if h.block.header.timestamp <= now + MAX_DRIFT_MS),
            key=lambda h: (h.block.header.slot, h.block.header.number),
        )
        for held in due:
            del self._held[held.block.hash]
        return due

    async def import_held(self) -> int:
        """Import the held blocks whose slot has begun, and relay those that were new: peers
        with our clock held them as well. Returns how many were imported."""
        imported = 0
        for held in self.due_blocks():
            header = held.block.header
            if not self._first_block(header):
                continue
            # The forwarder is charged nothing: it relayed a block we could not judge then.
            if await self._import(held.block, held.forwarder):
                imported += 1
                self._queue(TOPIC_BLOCKS, held.data)
        return imported

    async def _release_held(self) -> None:
        """Import each held block when its slot begins here."""
        while True:
            if not self._held:
                await self._held_added.wait()
            self._held_added = trio.Event()
            if not self._held:
                continue
            first = min(h.block.header.timestamp for h in self._held.values())
            delay = (first - MAX_DRIFT_MS - self.chain.clock.now_ms()) / 1000
            with trio.move_on_after(max(0.0, delay)):
                await self._held_added.wait()  # an earlier one may arrive meanwhile
            await self.import_held()

    async def _admit_gossiped_transactions(self) -> None:
        """Pool the large and heavy transactions of the batches `_check_transactions` let
        through, each after its dry run on the worker thread (the others are pooled already),
        at most MAX_GOSSIPED_DRY_RUNS at once."""
        async with trio.open_nursery() as nursery:
            async for message in self._transactions:
                try:
                    batch = decode_transactions(message.data)
                except WireError:
                    continue
                for encoded in batch:
                    if not self.chain.dry_run_off_loop(encoded):
                        continue
                    if self._admitting >= MAX_GOSSIPED_DRY_RUNS:
                        break
                    self._admitting += 1
                    nursery.start_soon(self._admit_gossiped, message.origin, encoded)

    async def _admit_gossiped(self, origin: PeerId, encoded: bytes) -> None:
        try:
            await self.chain.submit_from_client(encoded, local=False)
        except InvalidTransaction as exc:
            if exc.reason is TxRejection.CALL_FAILED:
                self.p2p.penalize(origin, PENALTY_FAILED_DRY_RUN, f"transaction failed: {exc}")
        finally:
            self._admitting -= 1

    async def _drain(self, channel: trio.MemoryReceiveChannel[GossipMessage]) -> None:
        # Votes are fully handled by their validator; nothing left to do.
        async for _ in channel:
            pass

    async def _serve_sync(self, peer: PeerId, request: bytes) -> bytes:
        try:
            return serve_sync(self.chain.store, request)
        except WireError as exc:
            # BadRequest penalizes the asker and tells it why, without tearing anything down.
            raise BadRequest(str(exc)) from None

    # -- what sync needs --------------------------------------------------------------------------

    def statuses(self) -> list[tuple[str, Status]]:
        out = []
        genesis = self.chain.store.genesis_hash
        for peer in self.p2p.peers():
            if not peer.status:
                continue
            try:
                status = Status.decode(peer.status)
            except WireError:
                self.p2p.penalize(peer.peer_id, 20, "bad status")
                continue
            if status.genesis_hash != genesis:
                self.p2p.penalize(peer.peer_id, 100, "another chain")
                continue
            out.append((str(peer.peer_id), status))
        return out

    async def request_sync(self, peer: str, request: bytes) -> bytes:
        return await self.p2p.request(PeerId(peer), PROTOCOL_SYNC, request, timeout=SYNC_TIMEOUT)

    def penalize(self, peer: str, amount: int, reason: str) -> None:
        self.p2p.penalize(PeerId(peer), amount, reason)

    def peer_views(self) -> list[PeerView]:
        views = []
        for peer in self.p2p.peers():
            try:
                status = Status.decode(peer.status) if peer.status else None
            except WireError:
                status = None
            views.append(
                PeerView(str(peer.peer_id), peer.address, peer.direction, peer.score, status)
            )
        return views

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(self.p2p.run)
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self._batch_transactions)
            nursery.start_soon(self._import_gossiped_blocks)
            nursery.start_soon(self._release_held)
            nursery.start_soon(self._admit_gossiped_transactions)
            nursery.start_soon(self._drain, self._votes)
            nursery.start_soon(self._follow_statuses)
            await nursery.start(self.sync.run)
            task_status.started(address)
