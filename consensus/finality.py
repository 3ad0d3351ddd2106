"""The finality gadget: validators prevote and precommit on blocks in rounds (one round per
slot); a block is final when more than 2/3 of the validators precommitted it or a descendant
in one round. The signed precommits are its justification, which any node can check.

Why this design (Tendermint's locking applied to a chain, GRANDPA-style votes on blocks):
block production (Aura) never waits for finality, votes name a block and count for all its
ancestors, and one round finalizes any number of blocks. A polka of round r for block P is a
quorum (more than 2/3) of round-r prevotes for P or its descendants, P the highest such block.

The rules of an honest validator:
- Precommit in round r only after seeing a polka of round r, for its block P, and never
  after having prevoted in a later round. The lock follows: it moves to P, unless P is an
  ancestor of the lock, which then stays.
- Prevote in round r our best head if it extends our lock, else the locked block. Before
  that, polkas of earlier rounds move the lock (`follow_polkas`): to a descendant of it
  from any round, or off its branch to a conflicting P from a round later than the lock's
  and only if P descends from every block we precommitted in that round or later.
- While our lock is stale (above the finalized block, older than the last round), gossip
  its polka again (`lock_proof`): who missed it can then follow it.

Safety (no two conflicting blocks final) with f faulty among n > 3f: the quorum q = n - f
exceeds 2f. Let F be final in round r: q validators precommitted descendants of F in r; the
honest ones among them, at least q - f = n - 2f, form S. Consider the first moment an S
member's lock, after its precommit in r, stops descending from F. Until then every S member
prevotes descendants of F in every round after r (it prevotes there only after its precommit
of r). Moving to a descendant keeps the lock above F. Moving off the branch needs a polka of
some round r' for a block P not above the lock: if r' <= r, P must descend from the member's
precommit of r, hence from F; if r' > r and P conflicted with F, P's q voters would be
disjoint from S (whose round-r' prevotes are all above F), and q + n - 2f = 2n - 3f > n;
P does not conflict with F and is not below the lock, so it is above F.
So that moment never comes, no polka after round r is for a block conflicting with F, no
honest validator precommits one, and q precommits for a conflicting block (which need an
honest one) exist in no round after r; in round r itself two such quorums would share an
honest voter that precommits once. Hence nothing conflicting with F is ever final.

Liveness: once the honest validators (more than 2/3) see each other's votes within a round,
stale locks' polkas are gossiped again, every later polka moves a lock on a losing fork to
the winning one, and the validators prevote one branch; tests/unit/test_finality_liveness.py
checks this over random delays, losses and reorderings before stabilization.

Everything here is pure: the service passes in the block tree, the round and our best head."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chain.blocks import Header
from chain.errors import Rejection
from chain.keys import Signer
from chain.primitives import AccountId, Hash32
from chain.signature import verify
from chain.votes import PRECOMMIT, PREVOTE, VOTE_LENGTH, vote_payload
from chain.votes import VOTE_DOMAIN as VOTE_DOMAIN
from consensus.errors import ConsensusError
from consensus.fork_choice import BlockTree as BlockTree
from consensus.fork_choice import chain_key

ROUND_WINDOW = 64
"""Rounds whose votes are kept; older votes can no longer change anything we need."""
FUTURE_ROUNDS = 2
"""How far ahead of our clock a vote's round may be (clocks differ a little)."""


class Phase(enum.IntEnum):
    PREVOTE = PREVOTE
    PRECOMMIT = PRECOMMIT


class VoteRejection(enum.Enum):
    MALFORMED = "malformed"
    NOT_A_VALIDATOR = "not a validator"
    BAD_SIGNATURE = "bad signature"
    WRONG_ROUND = "round out of range"


class InvalidVote(Rejection[VoteRejection], ConsensusError):
    """A vote refused before it is counted; its text is "<reason>: <message>"."""


class InvalidJustification(ConsensusError):
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
        return vote_payload(genesis_hash, round_, phase, target_hash, target_number)

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
    return max(winners, key=chain_key)


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
        self._precommits_forgotten_until = self.last_precommit_round
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

    def prevote(self, round_: int, best: Header, finalized: Header | None = None) -> Vote | None:
        """Our prevote for `round_`: the best head if it extends our lock, else the lock. With
        `finalized`, the quorums of prevotes (polkas) of earlier rounds that we have seen first
        move the lock (`follow_polkas`): that is what lets a validator locked on a fork that
        lost come back, and lets every validator rally behind the latest polka."""
        if self.signer is None or round_ <= self.last_prevote_round:
            return None
        if finalized is not None:
            self.follow_polkas(round_, finalized)
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
        """Our precommit for `round_` once a quorum prevoted: the prevotes' GHOST, and the lock
        follows it (unless it is an ancestor of our lock, which then stays). Never after we
        prevoted in a later round: our prevotes must follow from our precommits."""
        if self.signer is None or round_ <= self.last_precommit_round:
            return None
        if round_ < self.last_prevote_round:
            return None
        votes = self.rounds.get(round_)
        if votes is None or len(votes.prevotes) < self.threshold:
            return None
        target = ghost(votes.prevotes.values(), self.tree, finalized, self.threshold)
        if target is None:
            return None
        self._move_lock(target, round_, from_precommit=True)
        self.last_precommit_round = round_
        vote = sign_vote(self.signer, self.genesis_hash, round_, Phase.PRECOMMIT, target)
        self._record(vote)
        return vote

    def follow_polkas(self, before: int, finalized: Header) -> None:
        """Let the polkas of rounds before `before` move our lock: to a descendant of it
        whatever their round (always safe: the lock only gets more specific), or off its
        branch when the polka is later than the lock and above all we precommitted since
        (`_may_leave_for`). A polka for an ancestor of the lock leaves it where it is."""
        for round_ in sorted(self.rounds):
            if round_ >= before:
                break
            votes = self.rounds[round_]
            if len(votes.prevotes) < self.threshold:
                continue
            polka = ghost(votes.prevotes.values(), self.tree, finalized, self.threshold)
            if polka is None:
                continue
            self._move_lock(polka, round_, from_precommit=False)

    def _may_leave_for(self, block: Header, round_: int) -> bool:
        """Whether a polka of `round_` for `block` may move our lock off its branch: only if
        `block` descends from every block we precommitted in `round_` or later (a block we
        helped finalize is below each of those). Our precommits before a restart are not
        known, so polkas of those rounds never qualify."""
        if round_ <= self._precommits_forgotten_until:
            return False
        for r, votes in self.rounds.items():
            ours = votes.precommits.get(self.signer.public) if self.signer else None
            if r >= round_ and ours is not None:
                if not self.tree.is_descendant(block.hash, ours.target_hash):
                    return False
        return True

    def lock_proof(self, round_: int, finalized: Header) -> tuple[Vote, ...]:
        """The prevotes that justify our lock (a quorum of its round for the locked block or
        its descendants) when the lock is stale: above `finalized` yet older than the last
        round. Gossiped again each round while so, for the validators that missed them:
        without them a validator locked on one fork could wait forever for the others to
        move. While finality advances, locks are fresh and nothing is sent again."""
        lock = self.lock
        if lock is None or lock.round >= round_ - 1:
            return ()
        locked = self.tree.header(lock.block)
        votes = self.rounds.get(lock.round)
        if locked is None or votes is None or locked.number <= finalized.number:
            return ()
        proof = tuple(
            v for v in votes.prevotes.values() if self.tree.is_descendant(v.target_hash, lock.block)
        )
        return proof if len(proof) >= self.threshold else ()

    def _move_lock(self, block: Header, round_: int, *, from_precommit: bool) -> None:
        """Our own precommit of `round_` (the latest round we precommitted) may always take
        the lock off its branch; an earlier round's polka only as `_may_leave_for` says."""
        lock = self.lock
        if lock is None or (
            block.hash != lock.block and self.tree.is_descendant(block.hash, lock.block)
        ):
            self.lock = Lock(block.hash, round_)
        elif block.hash == lock.block:
            lock.round = max(lock.round, round_)
        elif self.tree.is_descendant(lock.block, block.hash):
            return
        elif from_precommit or (round_ > lock.round and self._may_leave_for(block, round_)):
            self.lock = Lock(block.hash, round_)

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
