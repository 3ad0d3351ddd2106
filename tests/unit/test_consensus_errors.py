"""Consensus has one error root, `ConsensusError`, apart from the ledger's and the node's."""

from __future__ import annotations

import consensus
from chain.errors import ChainError, Rejection
from consensus.errors import ConsensusError
from consensus.finality import InvalidJustification, InvalidVote, UnknownVoteTarget, VoteRejection
from node.errors import NodeError
from tests.unit.test_error_roots import _exceptions


def test_every_exception_consensus_defines_derives_from_its_root() -> None:
    exceptions = _exceptions(consensus)
    assert {InvalidVote, InvalidJustification, UnknownVoteTarget} <= set(exceptions)
    outside = [cls for cls in exceptions if not issubclass(cls, ConsensusError)]
    assert outside == []


def test_the_consensus_root_is_neither_the_ledgers_nor_the_nodes() -> None:
    assert not issubclass(ConsensusError, ChainError) and not issubclass(ConsensusError, NodeError)


def test_a_refused_vote_is_a_consensus_rejection_with_its_text_unchanged() -> None:
    error = InvalidVote(VoteRejection.WRONG_ROUND, "round 9 > 7")
    assert isinstance(error, Rejection) and isinstance(error, ConsensusError)
    assert str(error) == "round out of range: round 9 > 7"
    assert error.args == ("round out of range: round 9 > 7",)
