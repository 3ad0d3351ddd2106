"""Fork choice: the longest chain that contains the last finalized block; among equally long
chains, the lowest block hash, so every node picks the same head from the same blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from chain.blocks import Header
from chain.primitives import Hash32


class BlockTree(Protocol):
    def header(self, block_hash: bytes) -> Header | None: ...

    def is_descendant(self, block_hash: bytes, ancestor: bytes) -> bool: ...


def best_leaf(tree: BlockTree, leaves: Iterable[Hash32], finalized: Hash32) -> Hash32:
    """The head of the best chain among `leaves`; `finalized` itself when no leaf descends
    from it (re-orgs below the finalized block never happen)."""
    best: tuple[int, bytes] | None = None
    for leaf in leaves:
        header = tree.header(leaf)
        if header is None or not tree.is_descendant(leaf, finalized):
            continue
        key = (header.number, bytes(255 - b for b in leaf))
        if best is None or key > best:
            best = key
    if best is None:
        return finalized
    return Hash32(bytes(255 - b for b in best[1]))
