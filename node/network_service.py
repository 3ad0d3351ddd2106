"""The node on the network: gossip of blocks, transactions and finality votes (each checked
before it is relayed), block sync over request/response, and the status peers exchange.
What a peer's bad data costs it is decided here, in one place per message kind."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import rlp
import trio

from chain.blocks import Block
from chain.errors import BlockRejection, InvalidBlock, InvalidTransaction, TxRejection
from consensus.aura import verify_header
from node.chain_service import DRY_RUN_INLINE_BYTES, MAX_DRY_RUNS_WAITING, ChainService
from node.finality_service import FinalityService, VoteVerdict
from node.sync import SyncService, serve_sync
from node.wire import (
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
MAX_GOSSIPED_DRY_RUNS = MAX_DRY_RUNS_WAITING // 2
"""Peers' large transactions waiting for a dry run at once: half the queue, so that a peer's flood
leaves clients room in it. More are dropped, as gossip may drop anything."""
PENALTY_FAILED_DRY_RUN = 10
"""For each large transaction a peer published whose dry run failed here. Not a REJECT: the dry
run depends on our state (an application name another transaction just took), so an honest
publisher can be caught out now and then; a peer publishing nothing else is banned after ten
within seconds (the ban threshold is -100, a point comes back per second), when each has cost
a dry run of 100 ms or more on the worker thread."""

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
large transaction's failed dry run costs its publisher PENALTY_FAILED_DRY_RUN."""

BLOCK_VERDICTS: dict[BlockRejection, Verdict] = {
    BlockRejection.ALREADY_KNOWN: Verdict.IGNORE,
    BlockRejection.UNKNOWN_PARENT: Verdict.IGNORE,
    BlockRejection.BELOW_FINALIZED: Verdict.IGNORE,
}
"""Every other block rejection (bad seal, wrong author, bad roots, ...) is the sender's fault.
A block for a future slot is refused by `verify_header` as BAD_SLOT and also blamed: honest
nodes only publish blocks for slots that have begun (clocks may differ by MAX_DRIFT_MS)."""


@dataclass(frozen=True, slots=True)
class PeerView:
    peer_id: str
    address: str
    direction: str
    score: float
    status: Status | None


class NetworkService:
    def __init__(
        self, chain: ChainService, finality: FinalityService | None, p2p: P2PService
    ) -> None:
        self.chain = chain
        self.finality = finality
        self.p2p = p2p
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
        try:
            block = decode_block(data)
        except WireError:
            return Verdict.REJECT
        store = self.chain.store
        header = block.header
        if store.header(header.hash) is not None:
            return Verdict.IGNORE
        parent = store.header(header.parent_hash)
        if parent is None:
            self.sync.wake()
            return Verdict.IGNORE
        try:
            verify_header(
                header,
                parent,
                self.chain.authorities,
                self.chain.slot_duration_ms,
                self.chain.clock.now_ms(),
                self.chain.genesis_slot,
            )
        except InvalidBlock as exc:
            log.info("block #%d from %s refused: %s", header.number, peer, exc)
            return BLOCK_VERDICTS.get(exc.reason, Verdict.REJECT)
        return Verdict.ACCEPT

    def _check_transactions(self, peer: PeerId, data: bytes) -> Verdict:
        """A batch is relayed if it brought anything new, and blamed if anything in it is
        wrong whatever the state (a bad signature, garbage).

        This runs on the event loop, inside libp2p's receive path: a small transaction is
        pooled here, dry run included (it costs about what its signature does), a large one
        only passes the cheap checks (decoding, signature, nonce window, fees, bans), which
        decide its relay, and is pooled once its dry run on the worker thread passes
        (`_admit_gossiped_transactions`). A relayed one that fails its dry run there costs its
        publisher, not the peers that relayed it before anyone had dry-run it."""
        try:
            batch = decode_transactions(data)
        except WireError:
            return Verdict.REJECT
        verdict = Verdict.IGNORE
        for encoded in batch:
            try:
                if len(encoded) > DRY_RUN_INLINE_BYTES:
                    self.chain.check(encoded)
                else:
                    self.chain.submit(encoded, local=False)
            except InvalidTransaction as exc:
                if TX_VERDICTS.get(exc.reason, Verdict.IGNORE) is Verdict.REJECT:
                    return Verdict.REJECT
                continue
            verdict = Verdict.ACCEPT
        return verdict

    def _check_vote(self, peer: PeerId, data: bytes) -> Verdict:
        if self.finality is None:
            return Verdict.IGNORE
        verdict = self.finality.on_vote(data)
        if verdict == VoteVerdict.ACCEPT:
            return Verdict.ACCEPT
        return Verdict.REJECT if verdict == VoteVerdict.REJECT else Verdict.IGNORE

    async def _import_gossiped_blocks(self) -> None:
        async for message in self._blocks:
            await self._import_gossiped(message)

    async def _import_gossiped(self, message: GossipMessage) -> None:
        try:
            block = decode_block(message.data)
            await self.chain.import_block(block)
        except WireError:
            return
        except InvalidBlock as exc:
            if BLOCK_VERDICTS.get(exc.reason, Verdict.REJECT) is Verdict.REJECT:
                self.p2p.penalize(message.origin, PENALTY_BAD_BLOCK, f"bad block: {exc}")
            elif exc.reason is BlockRejection.UNKNOWN_PARENT:
                self.sync.wake()
            return
        if self.finality is not None:
            self.finality.progress()

    async def _admit_gossiped_transactions(self) -> None:
        """Pool the large transactions of the batches `_check_transactions` let through, each
        after its dry run on the worker thread (the small ones are pooled already), at most
        MAX_GOSSIPED_DRY_RUNS at once."""
        async with trio.open_nursery() as nursery:
            async for message in self._transactions:
                try:
                    batch = decode_transactions(message.data)
                except WireError:
                    continue
                for encoded in batch:
                    if len(encoded) <= DRY_RUN_INLINE_BYTES:
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
            nursery.start_soon(self._admit_gossiped_transactions)
            nursery.start_soon(self._drain, self._votes)
            await nursery.start(self.sync.run)
            task_status.started(address)
