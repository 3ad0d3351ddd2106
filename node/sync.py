"""Block sync: a node behind its peers downloads their best chain in batches over
request/response, imports every block, and applies the finality proofs that come with them.
Also the responder side. Gossip is best effort; this is what makes every node catch up."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import rlp
import trio

from chain.errors import BlockRejection, InvalidBlock
from chain.store import ChainStore
from consensus.finality import InvalidJustification, verify_justification
from node.chain_service import ChainService
from node.wire import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_RESPONSE_BYTES,
    Status,
    SyncItem,
    SyncRequest,
    WireError,
    decode_block,
    decode_sync_response,
    encode_sync_response,
)
from p2p.errors import RequestFailed

log = logging.getLogger("statemesh.sync")

PROGRESS_EVERY = 2.0
IDLE_CHECK = 1.0
PENALTY_BAD_DATA = 50


class SyncPeers(Protocol):
    """What sync needs of the network."""

    def statuses(self) -> list[tuple[str, Status]]: ...

    async def request_sync(self, peer: str, request: bytes) -> bytes: ...

    def penalize(self, peer: str, amount: int, reason: str) -> None: ...


@dataclass(slots=True)
class SyncStatistics:
    syncing: bool = False
    target: int = 0
    imported: int = 0
    blocks_per_second: float = 0.0


def serve_sync(store: ChainStore, request: bytes) -> bytes:
    """Answer a sync request from our best chain: blocks from `start`, each with its
    finality proof if it has one, within the count and size limits."""
    wanted = SyncRequest.decode(request)
    items: list[SyncItem] = []
    size = 0
    for number in range(wanted.start, wanted.start + min(wanted.count, MAX_SYNC_BLOCKS)):
        block_hash = store.canonical_hash(number)
        if block_hash is None:
            break
        block = store.block(block_hash)
        if block is None:
            break
        item = SyncItem(rlp.encode(block), store.justification(block_hash) or b"")
        size += len(item.block) + len(item.justification) + 16
        if items and size > MAX_SYNC_RESPONSE_BYTES:
            break
        items.append(item)
    return encode_sync_response(items)


class SyncService:
    def __init__(self, chain: ChainService, peers: SyncPeers) -> None:
        self.chain = chain
        self.peers = peers
        self.stats = SyncStatistics()
        self._wake_send, self._wake = trio.open_memory_channel[None](1)

    def wake(self) -> None:
        """Look for work now (a block with an unknown parent arrived, a peer moved ahead)."""
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(IDLE_CHECK):
                await self._wake.receive()
            await self.sync_once()

    async def sync_once(self) -> None:
        store = self.chain.store
        best = store.best_header
        ahead = [(peer, s) for peer, s in self.peers.statuses() if s.best_number > best.number]
        if not ahead:
            self.stats.syncing = False
            return
        peer, status = max(ahead, key=lambda p: p[1].best_number)
        self.stats.syncing, self.stats.target = True, status.best_number
        start = best.number + 1
        began = last_report = time.monotonic()
        imported = 0
        while store.best_header.number < status.best_number:
            try:
                with trio.fail_after(30):
                    raw = await self.peers.request_sync(
                        peer, SyncRequest(start, MAX_SYNC_BLOCKS).encode()
                    )
                items = decode_sync_response(raw)
            except WireError as exc:
                self.peers.penalize(peer, PENALTY_BAD_DATA, f"bad sync response: {exc}")
                break
            except (trio.TooSlowError, RequestFailed) as exc:
                log.info("sync from %s stopped: %s", peer, exc)
                break
            if not items:
                break
            outcome = await self._import_batch(peer, items)
            if outcome == "fork" and start > store.finalized_header.number + 1:
                # Our best chain is not theirs: download from above the finalized block.
                start = store.finalized_header.number + 1
                continue
            if outcome is None or isinstance(outcome, str):
                break
            imported += outcome
            start += len(items)
            now = time.monotonic()
            self.stats.imported += outcome
            self.stats.blocks_per_second = imported / max(now - began, 1e-6)
            if now - last_report >= PROGRESS_EVERY:
                last_report = now
                log.info(
                    "syncing #%d of #%d (%.0f blocks/s)",
                    store.best_header.number,
                    status.best_number,
                    self.stats.blocks_per_second,
                )
        if imported:
            log.info(
                "synced %d blocks to #%d (%.0f blocks/s)",
                imported,
                store.best_header.number,
                imported / max(time.monotonic() - began, 1e-6),
            )
        self.stats.syncing = store.best_header.number < status.best_number

    async def _import_batch(self, peer: str, items: list[SyncItem]) -> int | str | None:
        """Import a downloaded batch in order; returns how many were new, "fork" when the first
        block does not attach to anything we have, None when the peer sent something bad."""
        imported = 0
        for index, item in enumerate(items):
            try:
                block = decode_block(item.block)
            except WireError as exc:
                self.peers.penalize(peer, PENALTY_BAD_DATA, str(exc))
                return None
            try:
                if await self.chain.import_block(block):
                    imported += 1
            except InvalidBlock as exc:
                if exc.reason is BlockRejection.UNKNOWN_PARENT and index == 0:
                    return "fork"
                if exc.reason is BlockRejection.BELOW_FINALIZED:
                    continue
                self.peers.penalize(peer, PENALTY_BAD_DATA, f"sync block: {exc}")
                return None
            if item.justification:
                self._apply_justification(peer, block.hash, item.justification)
        return imported

    def _apply_justification(self, peer: str, block_hash: bytes, data: bytes) -> None:
        store = self.chain.store
        header = store.header(block_hash)
        if header is None or header.number <= store.finalized_header.number:
            return
        try:
            verify_justification(
                data,
                header,
                genesis_hash=store.genesis_hash or b"",
                validators=self.chain.authorities,
                tree=store,
            )
        except InvalidJustification as exc:
            self.peers.penalize(peer, PENALTY_BAD_DATA, f"bad justification: {exc}")
            return
        self.chain.finalize(header.hash, data)
