"""The feeds behind Substrate's head subscriptions: `chain_subscribeNewHeads` (each new best
header), `chain_subscribeFinalizedHeads` (each finalized header) and `chain_subscribeAllHeads`
(each imported header, forks included). Each starts with the current best (or finalized) header,
then follows the chain without a gap or a repeat."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from chain.blocks import Header
from chain.store import ChainStore
from node.rpc.feeds import Feed

logger = logging.getLogger(__name__)


class HeadFeeds:
    """Turns the chain's events into the three feeds' sequences.

    The chain tells us the new best header when the best chain moves, which is one block at a
    time while blocks are imported, but may be a jump when finality moves the best chain onto
    a longer fork; and the newly finalized header, which may be several blocks above the last.
    The feeds fill those gaps from the store: the new-heads feed sends every block between the
    last best and the new one when the new one extends it, and only the new best after a
    re-org (as Substrate does: the blocks of the fork were imported earlier, not as best); the
    finalized feed sends every finalized block in order.
    """

    def __init__(self, store: ChainStore, encode: Callable[[Header], str]) -> None:
        self._store = store
        self._best: Header = store.best_header
        self._finalized: Header = store.finalized_header
        self.best: Feed[Header] = Feed(encode, current=lambda: self._best)
        self.finalized: Feed[Header] = Feed(encode, current=lambda: self._finalized)
        self.imported: Feed[Header] = Feed(encode, current=lambda: self._best)
        """Substrate's all-heads subscription also starts with the best header."""

    def on_best(self, header: Header) -> None:
        previous, self._best = self._best, header
        if len(self.best) == 0:
            return  # nobody listens: only the current header matters to the next subscriber
        for each in self._best_steps(previous, header):
            self.best.publish(each)

    def on_finalized(self, header: Header) -> None:
        previous = self._finalized
        if header.number <= previous.number:
            return  # finality never goes back; nothing new to tell
        self._finalized = header
        if len(self.finalized) == 0:
            return
        for number in range(previous.number + 1, header.number):
            below = self._canonical(number)
            if below is not None:
                self.finalized.publish(below)
        self.finalized.publish(header)

    def on_imported(self, header: Header) -> None:
        self.imported.publish(header)

    def _best_steps(self, previous: Header, header: Header) -> Iterator[Header]:
        if header.hash == previous.hash:
            return
        extends = header.number > previous.number and (
            self._store.canonical_hash(previous.number) == previous.hash
        )
        if extends:
            # `header` is best, so the canonical chain below it is the one it extends.
            for number in range(previous.number + 1, header.number):
                below = self._canonical(number)
                if below is not None:
                    yield below
        yield header

    def _canonical(self, number: int) -> Header | None:
        """The canonical header at `number`, below the best one: always stored (a block is
        stored with its ancestors); None only if the store says otherwise, which is logged
        rather than raised, because this runs inside the chain's block import."""
        block_hash = self._store.canonical_hash(number)
        header = None if block_hash is None else self._store.header(block_hash)
        if header is None:
            logger.error("head subscriptions: no canonical block #%d below the best", number)
        return header
