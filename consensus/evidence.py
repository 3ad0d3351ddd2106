"""Equivocation evidence: what the finality gadget and block import caught, reported to the chain
as `offences` transactions (which tx gossip spreads), kept in the node's database until the chain
records the offence, and never sent twice while a report of the same offence may still land."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import rlp
import trio

from chain import codec
from chain.address import encode_address
from chain.blocks import Call, Header
from chain.errors import InvalidTransaction, TxRejection
from chain.keys import Signer
from chain.ledger import Ledger
from chain.primitives import Hash32
from chain.runtime import offences
from chain.runtime.offences import OffenceKey, OffenceKind, Offences
from consensus.finality import Vote

log = logging.getLogger("statemesh.evidence")

MAX_PENDING = 256
"""Offences waiting to be recorded at once. Each is one (kind, offender, round or slot), so a
validator that equivocates in every round fills this only as fast as rounds pass; past it, new
evidence is dropped (and counted) until the chain records what is waiting."""
RESUBMIT_AFTER_BLOCKS = 8
"""A report that left the pool without its offence being recorded is sent again after this many
blocks (a pool may drop anything); while it is pooled, never."""
SYNCED_WITHIN_SLOTS = 64
"""Reports wait while our best block is further than this behind the clock's slot: a node still
syncing may be looking at a chain that records the offence in a block it has yet to import, and
a report the network's pools refuse as already recorded counts against the payer there."""
_VOTES, _BLOCKS = Offences().calls()
_CALLS = {OffenceKind.VOTE: _VOTES, OffenceKind.BLOCK: _BLOCKS}
_KINDS = {(c.module.encode(), c.name.encode()): kind for kind, c in _CALLS.items()}
_RETRY = frozenset(
    {
        TxRejection.CANNOT_PAY_FEES,
        TxRejection.FUTURE_NONCE,
        TxRejection.STALE_NONCE,
        TxRejection.TEMPORARILY_BANNED,
        TxRejection.PRIORITY_TOO_LOW,
        TxRejection.POOL_FULL,
    }
)
"""Refusals that say nothing about the evidence: the report waits for the next block."""


@dataclass(frozen=True, slots=True)
class Report:
    offence: OffenceKey
    first: bytes
    second: bytes
    """The encoded votes or headers, as the `offences` call takes them."""

    def call(self) -> Call:
        return _CALLS[self.offence.kind].call(first=self.first, second=self.second)

    def encode(self) -> bytes:
        return codec.encode([bytes([self.offence.kind]), self.first, self.second])

    @classmethod
    def decode(cls, data: bytes) -> Report:
        """Raises ValueError (or CodecError) for bytes that are not a report of an offence."""
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 3:
            raise codec.CodecError("a report has 3 fields")
        kind, first, second = item
        if not all(isinstance(x, bytes) for x in item):
            raise codec.CodecError("a report's fields are bytes")
        return report(OffenceKind(codec.uint(kind, "kind")), first, second)  # type: ignore[arg-type]


def report(kind: OffenceKind, first: bytes, second: bytes) -> Report:
    """A report of two encoded votes or headers; raises ValueError unless they make the shape of
    an offence (the runtime's own check, so a report this node sends is never garbage)."""
    if kind is OffenceKind.VOTE:
        key = offences.vote_evidence(first, second)[0]
    else:
        key = offences.block_evidence(first, second)[0]
    return Report(key, first, second)


@dataclass(frozen=True, slots=True)
class EvidenceStatistics:
    pending: int
    submitted: int
    recorded: int
    dropped: int


class EvidenceReporter:
    """Subscribe `on_votes` to the finality service's and `on_blocks` to the chain service's
    equivocation listeners; `run` submits what they caught, paid by `payer`."""

    def __init__(self, chain: Ledger, payer: Signer, *, max_pending: int = MAX_PENDING) -> None:
        self.chain = chain
        self.payer = payer
        self.max_pending = max_pending
        self._pending: dict[OffenceKey, Report] = {}
        self._sent: dict[OffenceKey, tuple[Hash32, int]] = {}
        """Reports sent by this process: their transaction and the best block number then."""
        self._wake = trio.Event()
        self.submitted = self.recorded = self.dropped = 0
        for key, data in chain.store.reports():
            try:
                saved = Report.decode(data)
            except (ValueError, codec.CodecError):
                log.warning("dropped an unreadable saved report 0x%s", key.hex())
                chain.store.delete_report(key)
                continue
            self._pending[saved.offence] = saved
        chain.new_heads.listen(lambda _: self._wake.set())

    # -- evidence in ----------------------------------------------------------------------------

    def on_votes(self, first: Vote, second: Vote) -> None:
        self._add(OffenceKind.VOTE, first.encode(), second.encode())

    def on_blocks(self, first: Header, second: Header) -> None:
        self._add(OffenceKind.BLOCK, rlp.encode(first), rlp.encode(second))

    def _add(self, kind: OffenceKind, first: bytes, second: bytes) -> None:
        try:
            new = report(kind, first, second)
        except ValueError as exc:
            log.warning("not reporting a %s equivocation: %s", kind.name.lower(), exc)
            return
        if new.offence in self._pending:
            return
        if offences.get_offence(self.chain.store.best_state(), new.offence) is not None:
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending[new.offence] = new
        self.chain.store.save_report(new.offence.encode(), new.encode())
        log.warning("%s: reporting it to the chain", _describe(new.offence))
        self._wake.set()

    # -- reports out ----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = trio.Event()
            self.step()
            await self._wake.wait()

    def step(self) -> None:
        """Forget what the best chain records; send what is neither recorded nor in flight,
        once our best block is near the clock's slot."""
        state = self.chain.store.best_state()
        best_header = self.chain.store.best_header
        best = best_header.number
        now_slot = self.chain.clock.now_ms() // self.chain.slot_duration_ms
        synced = now_slot - best_header.slot <= SYNCED_WITHIN_SLOTS
        pooled = self._pooled() if synced and self._pending else set()
        for key, pending in list(self._pending.items()):
            if offences.get_offence(state, key) is not None:
                self._forget(key)
                self.recorded += 1
                continue
            if not synced or (key in pooled and key not in self._sent):
                # Behind, or another node's report of it is on its way already.
                continue
            sent = self._sent.get(key)
            if sent is not None and (
                sent[0] in self.chain.pool or best < sent[1] + RESUBMIT_AFTER_BLOCKS
            ):
                continue
            try:
                valid = self.chain.submit_signed(self.payer, pending.call())
            except InvalidTransaction as exc:
                if exc.reason in _RETRY:
                    log.info("report of %s waits: %s", _describe(key), exc)
                    continue
                # The chain refuses the evidence itself (another report was recorded meanwhile,
                # or the offender is no authority): sending it again would not change that.
                log.warning("report of %s refused: %s", _describe(key), exc)
                self._forget(key)
                continue
            self._sent[key] = (valid.hash, best)
            self.submitted += 1

    def _pooled(self) -> set[OffenceKey]:
        """The offences that reports in our pool (ours or gossiped) would record."""
        found = set()
        for valid in self.chain.pool.pending():
            tx = valid.tx
            kind = _KINDS.get((tx.module, tx.function))
            if kind is None:
                continue
            try:
                first, second = _CALLS[kind].decode_args(tx.args)
            except InvalidTransaction:
                continue
            found.add(report(kind, first, second).offence)
        return found

    def _forget(self, key: OffenceKey) -> None:
        del self._pending[key]
        self._sent.pop(key, None)
        self.chain.store.delete_report(key.encode())

    def statistics(self) -> EvidenceStatistics:
        return EvidenceStatistics(len(self._pending), self.submitted, self.recorded, self.dropped)


def _describe(key: OffenceKey) -> str:
    at = "round" if key.kind is OffenceKind.VOTE else "slot"
    who = encode_address(key.offender)
    return f"the {key.kind.name.lower()} equivocation of {who} at {at} {key.at}"
