"""The finality gadget: votes, GHOST, locks, justifications, and safety under a Byzantine
validator and arbitrary message delivery (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chain.blocks import Header
from chain.primitives import Hash32
from consensus.finality import (
    FinalityGadget,
    InvalidJustification,
    InvalidVote,
    Phase,
    encode_justification,
    quorum,
    sign_vote,
    verify_justification,
)
from wallet.keys import Keypair, dev_keypair

GENESIS_HASH = Hash32(b"\x42" * 32)
KEYS = [dev_keypair(n) for n in ("alice", "bob", "charlie", "dave")]
VALIDATORS = tuple(k.public for k in KEYS)


class Tree:
    """A block tree of bare headers."""

    def __init__(self) -> None:
        self.genesis = self._make(Hash32(b"\x00" * 32), 0, b"genesis")
        self.headers = {self.genesis.hash: self.genesis}

    @staticmethod
    def _make(parent: Hash32, number: int, tag: bytes) -> Header:
        return Header(
            parent,
            number,
            tag.ljust(32, b"\x00")[:32],
            b"\x00" * 32,
            number,
            number,
            b"\x00" * 32,
            b"",
        )

    def child(self, parent: Header, tag: bytes) -> Header:
        header = self._make(parent.hash, parent.number + 1, tag)
        self.headers[header.hash] = header
        return header

    def chain(self, parent: Header, length: int, tag: bytes) -> list[Header]:
        out = []
        for i in range(length):
            parent = self.child(parent, tag + bytes([i]))
            out.append(parent)
        return out

    def header(self, block_hash: bytes) -> Header | None:
        return self.headers.get(Hash32(block_hash))

    def is_descendant(self, block_hash: bytes, ancestor: bytes) -> bool:
        header = self.headers.get(Hash32(block_hash))
        while header is not None:
            if header.hash == ancestor:
                return True
            header = self.headers.get(header.parent_hash)
        return False


def gadgets(tree: Tree) -> list[FinalityGadget]:
    return [
        FinalityGadget(genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree, signer=k)
        for k in KEYS
    ]


def test_quorum() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 6, 7, 10)] == [1, 2, 3, 3, 4, 5, 5, 7]


def test_one_round_finalizes_the_common_head() -> None:
    tree = Tree()
    blocks = tree.chain(tree.genesis, 3, b"a")
    nodes = gadgets(tree)
    prevotes = [g.prevote(1, blocks[-1]) for g in nodes]
    for g in nodes:
        for v in prevotes:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    precommits = [g.precommit(1, tree.genesis) for g in nodes]
    assert all(p is not None and p.target_hash == blocks[-1].hash for p in precommits)
    for g in nodes:
        for v in precommits:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    final = nodes[0].finality(tree.genesis)
    assert final is not None and final.block == blocks[-1] and len(final.justification) == 4
    data = encode_justification(final)
    assert (
        verify_justification(
            data, blocks[0], genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree
        )
        == 1
    )


def test_three_of_four_are_enough_and_two_are_not() -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    nodes = gadgets(tree)
    votes = [g.prevote(1, block) for g in nodes[:3]]
    for g in nodes[:3]:
        for v in votes:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    commits = [g.precommit(1, tree.genesis) for g in nodes[:2]]
    for v in commits:
        nodes[0].on_vote(v, 1)  # type: ignore[arg-type]
    assert nodes[0].finality(tree.genesis) is None
    nodes[0].on_vote(nodes[2].precommit(1, tree.genesis), 1)  # type: ignore[arg-type]
    final = nodes[0].finality(tree.genesis)
    assert final is not None and final.block == block


def test_split_votes_finalize_the_common_ancestor() -> None:
    tree = Tree()
    base = tree.chain(tree.genesis, 2, b"a")
    left = tree.chain(base[-1], 2, b"l")
    right = tree.chain(base[-1], 1, b"r")
    nodes = gadgets(tree)
    votes = [
        nodes[0].prevote(1, left[-1]),
        nodes[1].prevote(1, left[-1]),
        nodes[2].prevote(1, right[-1]),
        nodes[3].prevote(1, right[-1]),
    ]
    for g in nodes:
        for v in votes:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    commits = [g.precommit(1, tree.genesis) for g in nodes]
    assert {c.target_hash for c in commits if c} == {base[-1].hash}


def test_bad_votes_are_refused_and_equivocation_recorded() -> None:
    tree = Tree()
    a, b = tree.child(tree.genesis, b"x"), tree.child(tree.genesis, b"y")
    node = gadgets(tree)[0]
    stranger = Keypair.from_seed(b"\x07" * 32)
    with pytest.raises(InvalidVote, match="not a validator"):
        node.on_vote(sign_vote(stranger, GENESIS_HASH, 1, Phase.PREVOTE, a), 1)
    forged = sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, a)
    with pytest.raises(InvalidVote, match="bad signature"):
        node.on_vote(type(forged)(1, Phase.PREVOTE, b.hash, 1, forged.voter, forged.signature), 1)
    with pytest.raises(InvalidVote, match="round out of range"):
        node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, 9, Phase.PREVOTE, a), 1)
    other_chain = sign_vote(KEYS[1], b"\x01" * 32, 1, Phase.PREVOTE, a)
    with pytest.raises(InvalidVote, match="bad signature"):
        node.on_vote(other_chain, 1)
    assert node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, a), 1)
    assert not node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, b), 1)
    assert len(node.equivocations) == 1


def test_justification_checks() -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    commits = [sign_vote(k, GENESIS_HASH, 3, Phase.PRECOMMIT, block) for k in KEYS]
    check = lambda data: verify_justification(  # noqa: E731
        data, block, genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree
    )
    assert check(b"".join(v.encode() for v in commits[:3])) == 3
    with pytest.raises(InvalidJustification, match="2 of 4 validators; 3 needed"):
        check(b"".join(v.encode() for v in commits[:2]))
    with pytest.raises(InvalidJustification, match="a validator appears twice"):
        check(b"".join(v.encode() for v in [commits[0], commits[0], commits[1]]))
    mixed = sign_vote(KEYS[2], GENESIS_HASH, 4, Phase.PRECOMMIT, block)
    with pytest.raises(InvalidJustification, match="one round"):
        check(b"".join(v.encode() for v in [commits[0], commits[1], mixed]))
    with pytest.raises(InvalidJustification, match="list of 145-byte votes"):
        check(b"\x00" * 10)


def deliveries(size: int) -> st.SearchStrategy[list[int]]:
    """Which pooled votes a node sees now: all of them, or any subset in any order."""
    if not size:
        return st.just([])
    return st.one_of(
        st.just(list(range(size))), st.lists(st.sampled_from(range(size)), max_size=size)
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_conflicting_finality_with_one_byzantine(data: st.DataObject) -> None:
    """Three honest validators see votes in any order and subset; the fourth votes for
    anything, twice if it likes. No two honest nodes ever finalize conflicting blocks."""
    tree = Tree()
    left = tree.chain(tree.genesis, 4, b"L")
    right = tree.chain(tree.genesis, 4, b"R")
    blocks = [tree.genesis, *left, *right]
    honest = gadgets(tree)[:3]
    byzantine = KEYS[3]
    finalized = [tree.genesis] * 3
    pool: list = []
    for round_ in range(1, 6):
        for i, g in enumerate(honest):
            head = data.draw(st.sampled_from(blocks), label=f"head r{round_} v{i}")
            if not tree.is_descendant(head.hash, finalized[i].hash):
                head = finalized[i]
            vote = g.prevote(round_, head, finalized[i])
            if vote:
                pool.append(vote)
            pool.extend(g.lock_proof(round_, finalized[i]))
        for phase in (Phase.PREVOTE, Phase.PRECOMMIT):
            for target in data.draw(st.lists(st.sampled_from(blocks), max_size=2), label="byz"):
                pool.append(sign_vote(byzantine, GENESIS_HASH, round_, phase, target))
            for i, g in enumerate(honest):
                seen = data.draw(deliveries(len(pool)), label="deliver")
                for k in seen:
                    g.on_vote(pool[k], round_)
                if phase is Phase.PREVOTE:
                    vote = g.precommit(round_, finalized[i])
                    if vote:
                        pool.append(vote)
        for i, g in enumerate(honest):
            for k in data.draw(deliveries(len(pool)), label="late"):
                g.on_vote(pool[k], round_)
            final = g.finality(finalized[i])
            if final is not None:
                finalized[i] = final.block
                event(f"finalized at height {final.block.number}")
        for a in finalized:
            for b in finalized:
                assert tree.is_descendant(a.hash, b.hash) or tree.is_descendant(b.hash, a.hash)
