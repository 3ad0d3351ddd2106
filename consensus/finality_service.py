"""The finality service: drives the gadget's rounds (one per slot, prevoting once the slot's block
is imported or by a deadline), gossips our votes, feeds it the votes of others, and finalizes
what a quorum precommitted."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from chain import codec
from chain.blocks import Header
from chain.errors import DatabaseError
from chain.keys import Signer
from chain.primitives import Hash32
from consensus.aura import slot_at
from consensus.chain_service import ChainService
from consensus.finality import (
    FinalityGadget,
    InvalidVote,
    Lock,
    Vote,
    VoteRejection,
    encode_justification,
)

log = logging.getLogger("statemesh.finality")

PREVOTE_BY = 2 / 3
"""Share of a slot by which we prevote for our best block, whatever it is then. We prevote
sooner, as soon as the slot's own block is our best: a block of a few transfers is imported
within milliseconds of its slot's start, one of a few thousand within a few hundred, and a
block not imported here by the time we prevote is finalized a round later, a slot later."""
OUTBOX = 64


class VoteVerdict:
    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


def _encode_voter_state(gadget: FinalityGadget) -> bytes:
    """Our lock and the last rounds we prevoted and precommitted in: all that the voting rules
    need across a restart. Our earlier precommits themselves are not kept, so after a restart
    no polka of a round up to the last precommit may move the lock off its branch."""
    lock = gadget.lock
    return codec.encode(
        [
            lock.block if lock else b"",
            codec.encode_uint(lock.round + 1 if lock else 0),
            codec.encode_uint(gadget.last_prevote_round + 1),
            codec.encode_uint(gadget.last_precommit_round + 1),
        ]
    )


def _decode_voter_state(data: bytes | None) -> tuple[Lock | None, tuple[int, int]]:
    if not data:
        return None, (-1, -1)
    try:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 4 or not isinstance(item[0], bytes):
            raise codec.CodecError("expected [lock block, lock round, prevote, precommit]")
        block = item[0]
        lock_round, prevote, precommit = (codec.uint(x, "round") - 1 for x in item[1:])
    except codec.CodecError as exc:
        raise DatabaseError(f"the finality voter state is corrupt: {exc}") from None
    lock = Lock(Hash32(block), lock_round) if block else None
    return lock, (prevote, precommit)


class FinalityService:
    def __init__(
        self,
        chain: ChainService,
        *,
        signer: Signer | None,
        publish: Callable[[bytes], Awaitable[None]],
    ) -> None:
        store = chain.store
        if store.genesis_hash is None:
            raise RuntimeError("the store has no genesis")
        lock, last_voted = _decode_voter_state(store.voter_state())
        self.chain = chain
        self.clock = chain.clock
        self.publish = publish
        self.gadget = FinalityGadget(
            genesis_hash=store.genesis_hash,
            validators=chain.authorities,
            tree=store,
            signer=signer,
            lock=lock,
            last_voted=last_voted,
        )
        self.on_equivocation: list[Callable[[Vote, Vote], None]] = self.gadget.on_equivocation
        """Called once per new pair of conflicting votes of one voter for one round and phase
        (the gadget keeps at most one pair each, within its round window)."""
        self._outbox_send, self._outbox = trio.open_memory_channel[bytes](OUTBOX)
        self._head_moved = trio.Event()
        """Set (and replaced) whenever the best block changes."""
        chain.new_heads.listen(self._on_new_head)
        self.votes_received = 0
        self.votes_rejected = 0

    @property
    def current_round(self) -> int:
        return slot_at(self.clock.now_ms(), self.chain.slot_duration_ms)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_votes)
            task_status.started()
            duration = self.chain.slot_duration_ms
            last_round = -1
            while True:
                now = self.clock.now_ms()
                round_ = now // duration
                deadline = round_ * duration + int(duration * PREVOTE_BY)
                if now >= deadline or round_ <= last_round:
                    round_ += 1
                    deadline += duration
                    await trio.sleep((round_ * duration - now) / 1000)
                await self._slot_block_or(round_, deadline)
                last_round = round_
                store = self.chain.store
                vote = self.gadget.prevote(round_, store.best_header, store.finalized_header)
                if vote is not None:
                    self._cast(vote)
                for proof in self.gadget.lock_proof(round_, store.finalized_header):
                    self._gossip(proof)
                self.progress()

    async def _slot_block_or(self, slot: int, deadline_ms: int) -> None:
        """Wait until our best block is of `slot` (or later), or until `deadline_ms`."""
        with trio.move_on_after(max(0, deadline_ms - self.clock.now_ms()) / 1000):
            while self.chain.store.best_header.slot < slot:
                await self._head_moved.wait()

    def _on_new_head(self, header: Header) -> None:
        moved, self._head_moved = self._head_moved, trio.Event()
        moved.set()

    async def _send_votes(self) -> None:
        async for data in self._outbox:
            await self.publish(data)

    def _cast(self, vote: Vote) -> None:
        # Persist before anyone can see the vote: after a crash we must not vote again.
        self.chain.store.save_voter_state(_encode_voter_state(self.gadget))
        self._gossip(vote)

    def _gossip(self, vote: Vote) -> None:
        try:
            self._outbox_send.send_nowait(vote.encode())
        except trio.WouldBlock:
            log.warning("vote outbox full: a vote was not gossiped")

    def on_vote(self, data: bytes) -> str:
        """A vote from the network: the verdict tells the p2p layer whether to relay it. Runs on
        the event loop, so the gadget refuses cheaply first and checks a signature only for a
        vote it has not recorded. A round outside our window is ignored, never penalized:
        an honest validator whose clock is a little ahead or behind sends such votes."""
        try:
            vote = Vote.decode(data)
            new = self.gadget.on_vote(vote, self.current_round)
        except InvalidVote as exc:
            if exc.reason is VoteRejection.WRONG_ROUND:
                return VoteVerdict.IGNORE
            self.votes_rejected += 1
            log.debug("rejected vote: %s", exc)
            return VoteVerdict.REJECT
        if not new:
            return VoteVerdict.IGNORE
        self.votes_received += 1
        self.progress()
        return VoteVerdict.ACCEPT

    def progress(self) -> None:
        """Precommit when this round's prevotes allow, and finalize what a quorum precommitted.
        Called after every new vote and every imported block."""
        store = self.chain.store
        round_ = self.current_round
        for r in (round_ - 1, round_):
            vote = self.gadget.precommit(r, store.finalized_header)
            if vote is not None:
                self._cast(vote)
        final = self.gadget.finality(store.finalized_header)
        if final is not None and self.chain.finalize(final.block.hash, encode_justification(final)):
            log.debug("round %d finalized #%d", final.round, final.block.number)

    def statistics(self) -> dict[str, Any]:
        lock = self.gadget.lock
        return {
            "round": self.current_round,
            "votesReceived": self.votes_received,
            "votesRejected": self.votes_rejected,
            "equivocations": len(self.gadget.equivocations),
            "lock": None
            if lock is None
            else {"block": "0x" + lock.block.hex(), "round": lock.round},
        }
