"""Fork choice: the longest chain that contains the last finalized block; among equally long
chains, the lowest block hash, so every node picks the same head from the same blocks. Also the
read-only view of the block tree that fork choice and the finality gadget walk."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from chain.blocks import Header
from chain.primitives import Hash32


class BlockTree(Protocol):
    """The blocks a node knows, by hash (the chain store is one)."""

    def header(self, block_hash: bytes) -> Header | None: ...

    def is_descendant(self, block_hash: bytes, ancestor: bytes) -> bool: ...


def chain_key(header: Header) -> tuple[int, bytes]:
    """The order of fork choice: the greater key is the better head. A higher number wins, then
    the lower hash (its bytes inverted, so that the lower hash is the greater key): every node
    decides the same from the same blocks. Also the finality gadget's tie-break among blocks
    with equal support."""
    return header.number, bytes(255 - b for b in header.hash)


def best_leaf(tree: BlockTree, leaves: Iterable[Hash32], finalized: Hash32) -> Hash32:
    """The head of the best chain among `leaves`; `finalized` itself when no leaf descends
    from it (re-orgs below the finalized block never happen)."""
    best: tuple[tuple[int, bytes], Hash32] | None = None
    for leaf in leaves:
        header = tree.header(leaf)
        if header is None or not tree.is_descendant(leaf, finalized):
            continue
        key = chain_key(header)
        if best is None or key > best[0]:
            best = key, leaf
    if best is None:
        return finalized
    return best[1]
