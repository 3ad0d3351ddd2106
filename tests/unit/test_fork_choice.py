"""Fork choice: one key orders heads for the chain service, `best_leaf` and the finality
gadget's GHOST tie-break, so all three pick the same block from the same blocks."""

from __future__ import annotations

from chain.primitives import Hash32
from consensus.finality import Phase, Vote, ghost
from consensus.fork_choice import best_leaf, chain_key
from tests.unit.test_finality import KEYS, Tree


def test_a_higher_block_wins_then_the_lower_hash() -> None:
    tree = Tree()
    short = tree.chain(tree.genesis, 2, b"s")[-1]
    forks = [tree.chain(tree.genesis, 3, tag)[-1] for tag in (b"a", b"b", b"c", b"d")]
    lowest = min(forks, key=lambda h: h.hash)
    assert all(chain_key(fork) > chain_key(short) for fork in forks)
    assert max(forks, key=chain_key) is lowest
    assert max([short, *forks], key=chain_key) is lowest


def test_best_leaf_keeps_the_finalized_chain_and_breaks_ties_by_the_lower_hash() -> None:
    tree = Tree()
    base = tree.chain(tree.genesis, 2, b"f")[-1]
    kept = [tree.chain(base, 2, tag)[-1] for tag in (b"x", b"y", b"z")]
    outside = tree.chain(tree.genesis, 9, b"o")[-1]
    unknown = Hash32(b"\x01" * 32)
    leaves = [outside.hash, unknown, *(h.hash for h in kept)]
    assert best_leaf(tree, leaves, base.hash) == min(h.hash for h in kept)
    assert best_leaf(tree, [outside.hash, unknown], base.hash) == base.hash
    assert best_leaf(tree, [], base.hash) == base.hash


def test_ghost_breaks_a_tie_in_support_as_fork_choice_does() -> None:
    tree = Tree()
    heads = [tree.chain(tree.genesis, 2, tag)[-1] for tag in (b"p", b"q", b"r")]
    votes = [
        Vote(1, Phase.PREVOTE, head.hash, head.number, key.public, b"\x00" * 64)
        for head in heads
        for key in KEYS[:3]
    ]
    chosen = ghost(votes, tree, tree.genesis, threshold=3)
    assert chosen is not None
    assert chosen.hash == best_leaf(tree, [h.hash for h in heads], tree.genesis.hash)
    assert chosen.hash == min(h.hash for h in heads)
