"""The finality gadget: validators prevote and precommit on blocks in rounds (one round per
slot); a block is final when more than 2/3 of the validators precommitted it or a descendant
in one round. The signed precommits are its justification, which any node can check.

Why this design (Tendermint's locking applied to a chain, GRANDPA-style votes on blocks):
block production (Aura) never waits for finality, votes name a block and count for all its
ancestors, and one round finalizes any number of blocks. Safety rests on quorum intersection
plus a lock: a validator that precommitted G in round r prevotes only descendants of G
afterwards, unless a later round shows more than 2/3 prevotes for a conflicting block. So
once a block is final, no conflicting block can gather a quorum of prevotes in a later round,
and none can be finalized while fewer than 1/3 of the validators are faulty.

Everything here is pure: the service passes in the block tree, the round and our best head."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from chain.blocks import Header
from chain.primitives import AccountId, Hash32
from chain.signature import verify
from consensus.aura import Signer

VOTE_DOMAIN = b"statemesh/vote/v1"
VOTE_LENGTH = 8 + 1 + 32 + 8 + 32 + 64
ROUND_WINDOW = 64
"""Rounds whose votes are kept; older votes can no longer change anything we need."""
FUTURE_ROUNDS = 2
"""How far ahead of our clock a vote's round may be (clocks differ a little)."""


class Phase(enum.IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


class VoteRejection(enum.Enum):
    MALFORMED = "malformed"
    NOT_A_VALIDATOR = "not a validator"
    BAD_SIGNATURE = "bad signature"
    WRONG_ROUND = "round out of range"


class InvalidVote(Exception):
    def __init__(self, reason: VoteRejection, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


class InvalidJustification(Exception):
    """A finality proof that does not prove what it claims."""


class UnknownVoteTarget(InvalidJustification):
    """A precommit names a block above the justified one that this node does not have yet:
    not a fault by itself, the proof can be checked again once that block is imported."""

    def __init__(self, target: Hash32, number: int) -> None:
        super().__init__(f"a precommit for unknown block #{number} 0x{target.hex()}")
        self.target = target
        self.number = number


def quorum(validators: int) -> int:
    """The smallest count that is more than 2/3 of `validators`."""
    return validators - (validators - 1) // 3


@dataclass(frozen=True, slots=True)
class Vote:
    round: int
    phase: Phase
    target_hash: Hash32
    target_number: int
    voter: AccountId
    signature: bytes = field(repr=False)

    @staticmethod
    def payload(
        genesis_hash: bytes, round_: int, phase: Phase, target_hash: bytes, target_number: int
    ) -> bytes:
        return (
            VOTE_DOMAIN
            + genesis_hash
            + round_.to_bytes(8, "big")
            + bytes([phase])
            + target_hash
            + target_number.to_bytes(8, "big")
        )

    def encode(self) -> bytes:
        return (
            self.round.to_bytes(8, "big")
            + bytes([self.phase])
            + self.target_hash
            + self.target_number.to_bytes(8, "big")
            + self.voter
            + self.signature
        )

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        if len(data) != VOTE_LENGTH:
            raise InvalidVote(
                VoteRejection.MALFORMED, f"a vote is {VOTE_LENGTH} bytes, got {len(data)}"
            )
        if data[8] not in (Phase.PREVOTE, Phase.PRECOMMIT):
            raise InvalidVote(VoteRejection.MALFORMED, f"unknown vote phase {data[8]}")
        return cls(
            round=int.from_bytes(data[0:8], "big"),
            phase=Phase(data[8]),
            target_hash=Hash32(data[9:41]),
            target_number=int.from_bytes(data[41:49], "big"),
            voter=AccountId(data[49:81]),
            signature=data[81:145],
        )


def sign_vote(
    signer: Signer, genesis_hash: bytes, round_: int, phase: Phase, target: Header
) -> Vote:
    payload = Vote.payload(genesis_hash, round_, phase, target.hash, target.number)
    return Vote(round_, phase, target.hash, target.number, signer.public, signer.sign(payload))


def check_vote(vote: Vote, genesis_hash: bytes, validators: tuple[AccountId, ...]) -> None:
    if vote.voter not in validators:
        raise InvalidVote(VoteRejection.NOT_A_VALIDATOR, f"0x{vote.voter.hex()} is not a validator")
    payload = Vote.payload(
        genesis_hash, vote.round, vote.phase, vote.target_hash, vote.target_number
    )
    if not verify(vote.voter, payload, vote.signature):
        raise InvalidVote(VoteRejection.BAD_SIGNATURE, "the vote is not signed by its voter")


class BlockTree(Protocol):
    def header(self, block_hash: bytes) -> Header | None: ...

    def is_descendant(self, block_hash: bytes, ancestor: bytes) -> bool: ...


def ghost(votes: Iterable[Vote], tree: BlockTree, base: Header, threshold: int) -> Header | None:
    """The highest block at or above `base` that at least `threshold` distinct voters voted for
    (a vote for a block counts for all its ancestors). Votes for unknown blocks, or for blocks
    not descending from `base`, count for nothing here."""
    support: dict[Hash32, set[AccountId]] = {}
    headers: dict[Hash32, Header] = {}
    for vote in votes:
        header = tree.header(vote.target_hash)
        if header is None or header.number < base.number:
            continue
        walked = []
        while header.number > base.number:
            walked.append(header)
            parent = tree.header(header.parent_hash)
            if parent is None:
                break
            header = parent
        if header.hash != base.hash:
            continue
        walked.append(header)
        for h in walked:
            headers[h.hash] = h
            support.setdefault(h.hash, set()).add(vote.voter)
    winners = [headers[h] for h, voters in support.items() if len(voters) >= threshold]
    if not winners:
        return None
    return max(winners, key=lambda h: (h.number, bytes(255 - b for b in h.hash)))


@dataclass(slots=True)
class Lock:
    block: Hash32
    round: int


@dataclass(frozen=True, slots=True)
class Finality:
    block: Header
    round: int
    justification: tuple[Vote, ...]


@dataclass(slots=True)
class RoundVotes:
    prevotes: dict[AccountId, Vote] = field(default_factory=dict)
    precommits: dict[AccountId, Vote] = field(default_factory=dict)


EquivocationKey = tuple[int, Phase, AccountId]
"""(round, phase, voter): at most one pair of conflicting votes is kept for each."""


class FinalityGadget:
    """Votes received, our lock, and the decisions that follow from them."""

    def __init__(
        self,
        *,
        genesis_hash: Hash32,
        validators: tuple[AccountId, ...],
        tree: BlockTree,
        signer: Signer | None = None,
        lock: Lock | None = None,
        last_voted: tuple[int, int] = (-1, -1),
    ) -> None:
        self.genesis_hash = genesis_hash
        self.validators = validators
        self.threshold = quorum(len(validators))
        self.tree = tree
        self.signer = signer if signer is not None and signer.public in validators else None
        self.lock = lock
        self.last_prevote_round, self.last_precommit_round = last_voted
        self._members = frozenset(validators)
        self.rounds: dict[int, RoundVotes] = {}
        self.equivocations: dict[EquivocationKey, tuple[Vote, Vote]] = {}
        """Conflicting votes within the round window, the first of each pair counted."""
        self.on_equivocation: list[Callable[[Vote, Vote], None]] = []
        """Called once for each new pair in `equivocations`."""

    # -- votes in -------------------------------------------------------------------------------

    def on_vote(self, vote: Vote, current_round: int) -> bool:
        """Record a vote; True when it is new. Raises InvalidVote for a vote that must be
        rejected (its sender penalized) and WRONG_ROUND for an old or far-future round (not a
        fault: clocks differ). Cheap refusals come first and a vote whose content is already
        recorded is dropped before its signature is checked, so a flood of copies costs no
        signature check. A second, different vote of one voter for one round and phase is
        checked and kept once as evidence (the first stays counted)."""
        if vote.voter not in self._members:
            # Whatever its round: only validators vote, so this sender is at fault.
            raise InvalidVote(
                VoteRejection.NOT_A_VALIDATOR, f"0x{vote.voter.hex()} is not a validator"
            )
        if vote.round > current_round + FUTURE_ROUNDS or vote.round < current_round - ROUND_WINDOW:
            raise InvalidVote(
                VoteRejection.WRONG_ROUND, f"round {vote.round} while we are in {current_round}"
            )
        votes = self.rounds.get(vote.round)
        known = None
        if votes is not None:
            table = votes.prevotes if vote.phase is Phase.PREVOTE else votes.precommits
            known = table.get(vote.voter)
        if known is not None:
            if (known.target_hash, known.target_number) == (vote.target_hash, vote.target_number):
                return False
            key = (vote.round, vote.phase, vote.voter)
            if key in self.equivocations:
                return False
            check_vote(vote, self.genesis_hash, self.validators)
            self.equivocations[key] = (known, vote)
            for listener in self.on_equivocation:
                listener(known, vote)
            return False
        check_vote(vote, self.genesis_hash, self.validators)
        self._record(vote)
        self._forget_old(current_round)
        return True

    def _record(self, vote: Vote) -> None:
        votes = self.rounds.setdefault(vote.round, RoundVotes())
        table = votes.prevotes if vote.phase is Phase.PREVOTE else votes.precommits
        table.setdefault(vote.voter, vote)

    def _forget_old(self, current_round: int) -> None:
        oldest = current_round - ROUND_WINDOW
        for old in [r for r in self.rounds if r < oldest]:
            del self.rounds[old]
        for key in [k for k in self.equivocations if k[0] < oldest]:
            del self.equivocations[key]

    # -- our votes ------------------------------------------------------------------------------

    def prevote(self, round_: int, best: Header) -> Vote | None:
        """Our prevote for `round_`: the best head if it extends our lock, else the lock."""
        if self.signer is None or round_ <= self.last_prevote_round:
            return None
        target = best
        if self.lock is not None and not self.tree.is_descendant(best.hash, self.lock.block):
            locked = self.tree.header(self.lock.block)
            if locked is None:
                return None
            target = locked
        self.last_prevote_round = round_
        vote = sign_vote(self.signer, self.genesis_hash, round_, Phase.PREVOTE, target)
        self._record(vote)
        return vote

    def precommit(self, round_: int, finalized: Header) -> Vote | None:
        """Our precommit for `round_` once a quorum prevoted: the prevotes' GHOST. Moves the
        lock forward, or to a conflicting block that this (later) round's quorum prevoted."""
        if self.signer is None or round_ <= self.last_precommit_round:
            return None
        votes = self.rounds.get(round_)
        if votes is None or len(votes.prevotes) < self.threshold:
            return None
        target = ghost(votes.prevotes.values(), self.tree, finalized, self.threshold)
        if target is None:
            return None
        lock = self.lock
        if lock is None or self.tree.is_descendant(target.hash, lock.block):
            self.lock = Lock(target.hash, round_)
        elif not self.tree.is_descendant(lock.block, target.hash) and round_ > lock.round:
            self.lock = Lock(target.hash, round_)
        self.last_precommit_round = round_
        vote = sign_vote(self.signer, self.genesis_hash, round_, Phase.PRECOMMIT, target)
        self._record(vote)
        return vote

    # -- decisions --------------------------------------------------------------------------------

    def finality(self, finalized: Header) -> Finality | None:
        """The highest block above `finalized` that a quorum precommitted in some round."""
        best: Finality | None = None
        for round_, votes in self.rounds.items():
            if len(votes.precommits) < self.threshold:
                continue
            target = ghost(votes.precommits.values(), self.tree, finalized, self.threshold)
            if target is None or target.number <= finalized.number:
                continue
            if best is None or target.number > best.block.number:
                proof = tuple(
                    v
                    for v in votes.precommits.values()
                    if self.tree.is_descendant(v.target_hash, target.hash)
                )
                best = Finality(target, round_, proof)
        return best


def encode_justification(finality: Finality) -> bytes:
    return b"".join(v.encode() for v in finality.justification)


def check_justification_structure(
    data: bytes, validators: tuple[AccountId, ...]
) -> tuple[Vote, ...]:
    """The cheap checks of a justification, in the order of their cost: its size (at most one
    vote per validator, refused before anything is decoded), then each vote's form, voter and
    phase, one round, distinct voters, and a quorum by count. No signature, no block tree."""
    if not data or len(data) % VOTE_LENGTH:
        raise InvalidJustification(f"a justification is a list of {VOTE_LENGTH}-byte votes")
    count = len(data) // VOTE_LENGTH
    if count > len(validators):
        raise InvalidJustification(f"{count} votes for {len(validators)} validators")
    members = set(validators)
    votes: list[Vote] = []
    for i in range(count):
        try:
            vote = Vote.decode(data[i * VOTE_LENGTH : (i + 1) * VOTE_LENGTH])
        except InvalidVote as exc:
            raise InvalidJustification(f"vote {i}: {exc}") from None
        if vote.voter not in members:
            raise InvalidJustification(f"vote {i}: 0x{vote.voter.hex()} is not a validator")
        votes.append(vote)
    if len({v.round for v in votes}) != 1 or any(v.phase is not Phase.PRECOMMIT for v in votes):
        raise InvalidJustification("votes must be precommits of one round")
    voters = {v.voter for v in votes}
    if len(voters) != len(votes):
        raise InvalidJustification("a validator appears twice")
    needed = quorum(len(validators))
    if len(voters) < needed:
        raise InvalidJustification(
            f"{len(voters)} of {len(validators)} validators; {needed} needed"
        )
    return tuple(votes)


def check_justification_ancestry(votes: Iterable[Vote], block: Header, tree: BlockTree) -> None:
    """Each precommit must be for `block` or a descendant of it. A target this tree does not
    know yet, numbered above `block`, raises UnknownVoteTarget (check again once the blocks
    above `block` are imported); a target that cannot descend from `block` raises
    InvalidJustification."""
    for vote in votes:
        target = tree.header(vote.target_hash)
        if target is None:
            if vote.target_number > block.number:
                raise UnknownVoteTarget(vote.target_hash, vote.target_number)
            raise InvalidJustification(
                f"a precommit for #{vote.target_number} 0x{vote.target_hash.hex()} cannot "
                f"descend from #{block.number}"
            )
        if target.number != vote.target_number:
            raise InvalidJustification(
                f"a precommit names #{vote.target_number} for block #{target.number}"
            )
        if not tree.is_descendant(vote.target_hash, block.hash):
            raise InvalidJustification(
                f"a precommit for 0x{vote.target_hash.hex()} does not descend from the block"
            )


def check_justification_signatures(votes: Iterable[Vote], genesis_hash: bytes) -> None:
    """The costly step, last: every vote signed by its voter for this chain. Pure and
    thread-safe, so a caller may run it off its event loop."""
    for i, vote in enumerate(votes):
        payload = Vote.payload(
            genesis_hash, vote.round, vote.phase, vote.target_hash, vote.target_number
        )
        if not verify(vote.voter, payload, vote.signature):
            raise InvalidJustification(f"vote {i}: the vote is not signed by its voter")


def verify_justification(
    data: bytes,
    block: Header,
    *,
    genesis_hash: bytes,
    validators: tuple[AccountId, ...],
    tree: BlockTree,
) -> int:
    """Check that `data` proves `block` final: precommits of one round by more than 2/3 of
    the validators, each for `block` or a descendant this node knows. Returns the round.
    Raises UnknownVoteTarget (an InvalidJustification) while a precommit's target is unknown."""
    votes = check_justification_structure(data, validators)
    check_justification_ancestry(votes, block, tree)
    check_justification_signatures(votes, genesis_hash)
    return votes[0].round
