"""The chain service: the one writer of the node's chain. It owns the store, runtime and pool,
authors blocks in our slots, and tells subscribers about new heads and watched transactions."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import trio

from chain.blocks import Block, Header
from chain.errors import InvalidTransaction
from chain.pool import PoolEvent, TransactionPool
from chain.primitives import AccountId, BlockNumber, Hash32, Slot, TimestampMs
from chain.runtime import system
from chain.runtime.executive import BlockExecution, Runtime
from chain.runtime.framework import BlockEnv
from chain.store import ChainStore
from chain.validity import ValidTransaction
from consensus.aura import Signer, slot_at, slot_author
from consensus.clock import Clock
from consensus.proposer import propose
from node.broadcast import Broadcast

log = logging.getLogger("statemesh.chain")

TxStatus = str | dict[str, str]
"""A watched transaction's status as JSON-RPC shows it: "future", "ready", "invalid",
"dropped", or {"inBlock" | "finalized" | "usurped": "0x<hash>"}."""

FINAL_STATUSES = frozenset({"finalized", "usurped", "dropped", "invalid"})
WATCH_BUFFER = 16
PROPOSAL_SHARE = 0.5
"""Share of a slot the author may spend executing transactions for its block."""


def status_is_final(status: TxStatus) -> bool:
    key = status if isinstance(status, str) else next(iter(status))
    return key in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class ChainStatistics:
    best_number: int
    finalized_number: int
    blocks_authored: int
    watchers: int


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
        self._watchers: defaultdict[Hash32, list[trio.MemorySendChannel[TxStatus]]] = defaultdict(
            list
        )
        self.blocks_authored = 0
        self.authorities: tuple[AccountId, ...] = system.authorities(store.best_state())

    # -- transactions -----------------------------------------------------------------------

    def next_env(self) -> BlockEnv:
        """The environment a transaction submitted now would most likely run in."""
        best = self.store.best_header
        now = max(self.clock.now_ms(), best.timestamp + 1)
        author = self.signer.public if self.signer else AccountId(b"\x00" * 32)
        return BlockEnv(BlockNumber(best.number + 1), best.hash, TimestampMs(now), author)

    def validate(self, encoded: bytes) -> ValidTransaction:
        """The pool's validator: checks against the best state."""
        return self.runtime.validate_transaction(self.store.best_state(), encoded, self.next_env())

    def revalidate(self, valid: ValidTransaction) -> ValidTransaction:
        """The pool's revalidator after each block: nonce, balance and dry run only."""
        return self.runtime.revalidate(self.store.best_state(), valid, self.next_env())

    def submit(self, encoded: bytes) -> ValidTransaction:
        """Validate and pool a transaction; raises InvalidTransaction with the reason."""
        try:
            valid = self.pool.submit(encoded, time.monotonic())
        finally:
            self._dispatch(self.pool.drain_events())
        return valid

    def watch(self, encoded: bytes) -> tuple[ValidTransaction, trio.MemoryReceiveChannel[TxStatus]]:
        """Submit and follow a transaction. The channel yields its statuses and closes after a
        final one; a watcher that does not keep up is dropped."""
        send, receive = trio.open_memory_channel[TxStatus](WATCH_BUFFER)
        valid = self.submit(encoded)
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
        parent = self.store.best_header
        if parent.number > 0 and slot <= parent.slot:
            return None
        candidates = list(self.pool.ready())
        rejected: list[tuple[ValidTransaction, InvalidTransaction]] = []
        deadline = time.monotonic() + self.slot_duration_ms * PROPOSAL_SHARE / 1000
        started = time.monotonic()

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
                keep_going=lambda: time.monotonic() < deadline,
            )

        # Execution is CPU work: run it off the event loop so RPC keeps answering meanwhile.
        block, execution = await trio.to_thread.run_sync(build)
        now = time.monotonic()
        for tx, exc in rejected:
            log.info("dropped transaction 0x%s while authoring: %s", tx.hash.hex(), exc)
            self.pool.mark_invalid(tx.hash, now)
        self.store.commit_block(block, execution, finalize=len(self.authorities) == 1)
        self.blocks_authored += 1
        self._after_import(block, execution, finalized=len(self.authorities) == 1)
        log.info(
            "authored #%d (0x%s…) with %d extrinsics in %.0f ms",
            block.header.number,
            block.hash.hex()[:12],
            len(block.extrinsics),
            (time.monotonic() - started) * 1000,
        )
        return block

    def _after_import(self, block: Block, execution: BlockExecution, *, finalized: bool) -> None:
        block_hash = "0x" + block.hash.hex()
        included = [outcome.hash for outcome in execution.outcomes]
        self.pool.on_block(included, time.monotonic())
        self._dispatch(self.pool.drain_events())
        for tx in included:
            if tx in self._watchers:
                self._notify(tx, {"inBlock": block_hash})
                if finalized:
                    self._notify(tx, {"finalized": block_hash})
        self.new_heads.publish(block.header)
        if finalized:
            self.finalized_heads.publish(block.header)

    def statistics(self) -> ChainStatistics:
        return ChainStatistics(
            best_number=self.store.best_header.number,
            finalized_number=self.store.finalized_header.number,
            blocks_authored=self.blocks_authored,
            watchers=sum(len(v) for v in self._watchers.values()),
        )
