"""TEMPORARY stand-in for the split justification checks of consensus.finality."""

from __future__ import annotations

from consensus.finality import (
    VOTE_LENGTH,
    BlockTree,
    InvalidJustification,
    InvalidVote,
    Phase,
    Vote,
    check_vote,
    quorum,
)


class UnknownVoteTarget(InvalidJustification):
    pass


def check_justification_structure(data: bytes, validators: tuple[bytes, ...]) -> tuple[Vote, ...]:
    if not data or len(data) % VOTE_LENGTH or len(data) > VOTE_LENGTH * len(validators):
        raise InvalidJustification("bad size")
    votes = []
    for i in range(0, len(data), VOTE_LENGTH):
        try:
            vote = Vote.decode(data[i : i + VOTE_LENGTH])
        except InvalidVote as exc:
            raise InvalidJustification(str(exc)) from None
        if vote.voter not in validators:
            raise InvalidJustification("not a validator")
        votes.append(vote)
    if len({v.round for v in votes}) != 1 or any(v.phase is not Phase.PRECOMMIT for v in votes):
        raise InvalidJustification("votes must be precommits of one round")
    if len({v.voter for v in votes}) != len(votes):
        raise InvalidJustification("a validator appears twice")
    if len(votes) < quorum(len(validators)):
        raise InvalidJustification("no quorum")
    return tuple(votes)


def check_justification_ancestry(votes: tuple[Vote, ...], block: object, tree: BlockTree) -> None:
    for vote in votes:
        if tree.header(vote.target_hash) is None:
            raise UnknownVoteTarget("unknown target")
        if not tree.is_descendant(vote.target_hash, block.hash):  # type: ignore[attr-defined]
            raise InvalidJustification("does not descend")


def check_justification_signatures(votes: tuple[Vote, ...], genesis_hash: bytes) -> None:
    for vote in votes:
        try:
            check_vote(vote, genesis_hash, (vote.voter,))
        except InvalidVote as exc:
            raise InvalidJustification(str(exc)) from None
