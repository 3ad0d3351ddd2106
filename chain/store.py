"""Block storage and indexes over the node's database: headers, bodies, the canonical chain,
events, the transaction index and the best / finalized pointers. A block and everything it
implies is committed in one atomic write batch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import rlp

from chain import codec
from chain import db as keys
from chain.blocks import Block, Header, tx_hash
from chain.db import Database
from chain.errors import DatabaseError, UnknownBlock
from chain.genesis import Genesis
from chain.primitives import Hash32
from chain.runtime.executive import BlockExecution
from chain.runtime.framework import Event
from chain.state import TrieState, ValueCache
from chain.trie import NodeCache

HEADERS = b"h"
_BEST = keys.META + b"best"
_FINALIZED = keys.META + b"finalized"
_GENESIS = keys.META + b"genesis"
_LEAVES = keys.META + b"leaves"
_VOTER = keys.META + b"voter"
JUSTIFICATIONS = b"j"
EQUIVOCATIONS = b"q"
REPORTS = b"r"
"""Equivocation reports the node has yet to see recorded on chain, by offence."""
_HEADER_CACHE_SIZE = 4096
_EVENTS_CACHE_SIZE = 16
"""Blocks whose decoded events are remembered."""


@dataclass(frozen=True, slots=True)
class TreeRoute:
    retracted: tuple[Hash32, ...]
    """Blocks leaving the canonical chain, highest first."""
    enacted: tuple[Hash32, ...]
    """Blocks joining the canonical chain, lowest first."""
    common: Hash32


def _number_key(number: int) -> bytes:
    return keys.CANONICAL + number.to_bytes(8, "big")


class ChainStore:
    def __init__(self, db: Database, *, node_cache: NodeCache | None = None) -> None:
        self.db = db
        self.node_cache = node_cache or NodeCache()
        self.values = ValueCache()
        """The best block's state values; `state_at` and `best_state` read through it."""
        self._headers: OrderedDict[Hash32, Header] = OrderedDict()
        self._events: OrderedDict[Hash32, tuple[Event, ...]] = OrderedDict()
        self.genesis_hash: Hash32 | None = self._get_hash(_GENESIS)
        self.best_hash: Hash32 | None = self._get_hash(_BEST)
        self.finalized_hash: Hash32 | None = self._get_hash(_FINALIZED)
        best = None if self.best_hash is None else self.header(self.best_hash)
        if best is not None:
            self.values.reset(best.state_root)

    def _get_hash(self, key: bytes) -> Hash32 | None:
        value = self.db.get(key)
        return None if value is None else Hash32(value)

    # -- set-up -----------------------------------------------------------------------------

    def initialize(self, genesis: Genesis) -> None:
        """Write the genesis block into an empty database, or check that the database holds
        this chain."""
        if self.genesis_hash is not None:
            if self.genesis_hash != genesis.hash:
                raise DatabaseError(
                    f"the database at {self.db.path} holds the chain with genesis "
                    f"0x{self.genesis_hash.hex()}, not 0x{genesis.hash.hex()}; use another "
                    "--base-path or `statemesh purge-chain`"
                )
            return
        with self.db.batch() as batch:
            for node_hash, node in genesis.commit.nodes.items():
                batch.put(keys.TRIE_NODES + node_hash, node)
            self._put_block(batch, genesis.block, [])
            batch.put(_number_key(0), genesis.hash)
            batch.put(_GENESIS, genesis.hash)
            batch.put(_BEST, genesis.hash)
            batch.put(_FINALIZED, genesis.hash)
            batch.put(_LEAVES, genesis.hash)
        self.genesis_hash = self.best_hash = self.finalized_hash = genesis.hash
        self.values.reset(genesis.block.header.state_root)

    # -- reads ------------------------------------------------------------------------------

    def header(self, block_hash: bytes) -> Header | None:
        cached = self._headers.get(Hash32(block_hash))
        if cached is not None:
            return cached
        data = self.db.get(HEADERS + block_hash)
        if data is None:
            return None
        header: Header = rlp.decode(data, sedes=Header)
        self._remember(header)
        return header

    def require_header(self, block_hash: bytes) -> Header:
        header = self.header(block_hash)
        if header is None:
            raise UnknownBlock(f"no block 0x{block_hash.hex()}")
        return header

    def block(self, block_hash: bytes) -> Block | None:
        header = self.header(block_hash)
        if header is None:
            return None
        return Block(header, tuple(self._extrinsics(block_hash)))

    def canonical_hash(self, number: int) -> Hash32 | None:
        if number < 0:
            return None
        return self._get_hash(_number_key(number))

    @property
    def best_header(self) -> Header:
        if self.best_hash is None:
            raise DatabaseError("the database has no chain yet")
        return self.require_header(self.best_hash)

    @property
    def finalized_header(self) -> Header:
        if self.finalized_hash is None:
            raise DatabaseError("the database has no chain yet")
        return self.require_header(self.finalized_hash)

    def events(self, block_hash: bytes) -> list[Event] | None:
        """The events of a stored block (None for a block not stored). The last blocks asked
        are remembered decoded: a client polling its transaction's status asks for the same
        block again and again, and a block of a thousand transfers holds thousands of events."""
        cached = self._events.get(Hash32(block_hash))
        if cached is not None:
            return list(cached)
        data = self.db.get(keys.EVENTS + block_hash)
        if data is None:
            return None if self.header(block_hash) is None else []
        events = tuple(Event.decode(item) for item in rlp.decode(data))
        self._events[Hash32(block_hash)] = events
        if len(self._events) > _EVENTS_CACHE_SIZE:
            self._events.popitem(last=False)
        return list(events)

    def tx_location(self, tx_hash: bytes) -> tuple[Hash32, int] | None:
        data = self.db.get(keys.TX_INDEX + tx_hash)
        if data is None:
            return None
        block_hash, index = rlp.decode(data)
        return Hash32(block_hash), int.from_bytes(index, "big")

    def state_at(self, block_hash: bytes) -> TrieState:
        header = self.require_header(block_hash)
        return TrieState(self.db.trie_nodes, header.state_root, self.node_cache, self.values)

    def best_state(self) -> TrieState:
        return self.state_at(self.best_header.hash)

    def justification(self, block_hash: bytes) -> bytes | None:
        """The finality proof stored with a finalized block, if finality was reached on it."""
        return self.db.get(JUSTIFICATIONS + block_hash)

    def leaves(self) -> list[Hash32]:
        data = self.db.get(_LEAVES) or b""
        return [Hash32(data[i : i + 32]) for i in range(0, len(data), 32)]

    # -- the block tree -----------------------------------------------------------------------

    def ancestor_at(self, block_hash: bytes, number: int) -> Hash32 | None:
        """The ancestor of `block_hash` at height `number` (itself at its own height)."""
        header = self.header(block_hash)
        if header is None or number > header.number or number < 0:
            return None
        canonical = self.canonical_hash(header.number)
        if canonical == header.hash:
            # On the canonical chain the index answers at once.
            return self.canonical_hash(number)
        while header.number > number:
            header = self.require_header(header.parent_hash)
        return Hash32(header.hash)

    def is_descendant(self, block_hash: bytes, ancestor: bytes) -> bool:
        """Whether `block_hash` is `ancestor` or one of its descendants."""
        ancestor_header = self.header(ancestor)
        if ancestor_header is None:
            return False
        return self.ancestor_at(block_hash, ancestor_header.number) == ancestor_header.hash

    def tree_route(self, old: bytes, new: bytes) -> TreeRoute:
        """The blocks to retract (from `old` down, exclusive of the common ancestor) and to
        enact (up to `new`) when the best chain moves from `old` to `new`."""
        a, b = self.require_header(old), self.require_header(new)
        retracted: list[Hash32] = []
        enacted: list[Hash32] = []
        while a.number > b.number:
            retracted.append(a.hash)
            a = self.require_header(a.parent_hash)
        while b.number > a.number:
            enacted.append(b.hash)
            b = self.require_header(b.parent_hash)
        while a.hash != b.hash:
            retracted.append(a.hash)
            enacted.append(b.hash)
            a = self.require_header(a.parent_hash)
            b = self.require_header(b.parent_hash)
        enacted.reverse()
        return TreeRoute(tuple(retracted), tuple(enacted), Hash32(a.hash))

    # -- writes ---------------------------------------------------------------------------------

    def commit_block(
        self,
        block: Block,
        execution: BlockExecution,
        *,
        best: bool = True,
        finalize: bool = False,
        justification: bytes | None = None,
    ) -> TreeRoute | None:
        """Store an executed block with its state, events and indexes in one atomic, durable
        write. With `best`, it becomes the head of the canonical chain (a re-org if it is not
        on the current best chain: the route is returned so the pool can re-inject what was
        retracted); with `finalize` it is also final."""
        header = block.header
        block_hash = header.hash
        if self.header(header.parent_hash) is None:
            raise DatabaseError(f"parent 0x{header.parent_hash.hex()} is not stored")
        if finalize and not best:
            raise DatabaseError("a finalized block must also be the best block")
        leaves = [leaf for leaf in self.leaves() if leaf != header.parent_hash]
        leaves.append(block_hash)
        # The route walk reads the new header before the batch lands: cache it now, and forget
        # it again if the write fails so that no reader sees a block that was never stored.
        self._remember(header)
        route = None
        try:
            with self.db.batch() as batch:
                for node_hash, node in execution.commit.nodes.items():
                    batch.put(keys.TRIE_NODES + node_hash, node)
                self._put_block(batch, block, execution.events)
                batch.put(_LEAVES, b"".join(leaves))
                if best:
                    hashes = [outcome.hash for outcome in execution.outcomes]
                    route = self._move_best(batch, block_hash, hashes)
                if finalize:
                    self._put_finalized(batch, block_hash, justification)
        except BaseException:
            self._headers.pop(block_hash, None)
            raise
        if best:
            self.best_hash = block_hash
            self.values.advance(execution.base, execution.commit.root, execution.changes)
        if finalize:
            self.finalized_hash = block_hash
        return route

    def set_best(self, block_hash: bytes) -> TreeRoute:
        """Make a stored block the head of the canonical chain (fork choice moved)."""
        with self.db.batch() as batch:
            route = self._move_best(batch, block_hash, None)
        self.best_hash = Hash32(block_hash)
        self.values.reset(self.require_header(block_hash).state_root)
        return route

    def finalize(self, block_hash: bytes, justification: bytes | None = None) -> None:
        """Mark a block of the canonical chain final (with its finality proof, if any). Forks
        that do not contain it are dropped from the leaves: they can never become best."""
        header = self.require_header(block_hash)
        if self.canonical_hash(header.number) != header.hash:
            raise DatabaseError(f"block 0x{block_hash.hex()} is not on the best chain")
        if self.finalized_hash is not None and not self.is_descendant(
            block_hash, self.finalized_hash
        ):
            raise DatabaseError(f"block 0x{block_hash.hex()} does not descend from the finalized")
        with self.db.batch() as batch:
            self._put_finalized(batch, block_hash, justification)
            leaves = [leaf for leaf in self.leaves() if self.is_descendant(leaf, block_hash)]
            batch.put(_LEAVES, b"".join(leaves))
        self.finalized_hash = Hash32(block_hash)

    def voter_state(self) -> bytes | None:
        """The finality voter's own state (its lock and last rounds), kept across restarts so
        that it never votes twice in a round nor forgets what it is locked on."""
        return self.db.get(_VOTER)

    def save_voter_state(self, data: bytes) -> None:
        self.db.put(_VOTER, data)

    def record_equivocation(self, first: Header, second: Header) -> None:
        """Keep the evidence of two blocks by one author for one slot."""
        key = EQUIVOCATIONS + first.slot.to_bytes(8, "big") + first.author
        self.db.put(key, codec.encode([rlp.encode(first), rlp.encode(second)]))

    def equivocations(self) -> list[tuple[Header, Header]]:
        found = []
        for _, value in self.db.iterate(EQUIVOCATIONS):
            first, second = codec.decode(value)  # type: ignore[misc]
            found.append((rlp.decode(first, sedes=Header), rlp.decode(second, sedes=Header)))
        return found

    def save_report(self, offence: bytes, report: bytes) -> None:
        self.db.put(REPORTS + offence, report)

    def delete_report(self, offence: bytes) -> None:
        with self.db.batch() as batch:
            batch.delete(REPORTS + offence)

    def reports(self) -> list[tuple[bytes, bytes]]:
        """The saved reports, as (offence, report), in offence order."""
        return [(key[len(REPORTS) :], value) for key, value in self.db.iterate(REPORTS)]

    def _put_finalized(
        self, batch: keys.WriteBatch, block_hash: bytes, justification: bytes | None
    ) -> None:
        batch.put(_FINALIZED, block_hash)
        if justification is not None:
            batch.put(JUSTIFICATIONS + block_hash, justification)

    def _move_best(
        self, batch: keys.WriteBatch, block_hash: bytes, new_hashes: Sequence[Hash32] | None
    ) -> TreeRoute:
        """Point the canonical index at `block_hash`'s chain. `new_hashes` are the transaction
        hashes of `block_hash` when it is being stored in this batch (its execution's outcomes
        hold them), so that its body is neither read back nor hashed again."""
        old = self.best_hash
        if old is None:
            raise DatabaseError("the database has no chain yet")
        route = self.tree_route(old, block_hash)
        for retracted in route.retracted:
            header = self.require_header(retracted)
            batch.delete(_number_key(header.number))
            for encoded in self._extrinsics(retracted):
                batch.delete(keys.TX_INDEX + tx_hash(encoded))
        for enacted in route.enacted:
            header = self.require_header(enacted)
            batch.put(_number_key(header.number), enacted)
            hashes = (
                new_hashes
                if new_hashes is not None and enacted == block_hash
                else [tx_hash(encoded) for encoded in self._extrinsics(enacted)]
            )
            for index, hash in enumerate(hashes):
                batch.put(keys.TX_INDEX + hash, codec.encode([enacted, codec.encode_uint(index)]))
        batch.put(_BEST, block_hash)
        return route

    def _extrinsics(self, block_hash: bytes) -> list[bytes]:
        """A stored body, read by the strict reader (written by `codec.encode`): for thousands of
        extrinsics a tenth of `rlp.decode`'s time with sedes."""
        body = self.db.get(keys.BLOCKS + block_hash)
        if not body:
            return []
        try:
            extrinsics = codec.decode(body)
        except codec.CodecError as exc:
            raise DatabaseError(
                f"the body of block 0x{block_hash.hex()} is corrupt: {exc}"
            ) from None
        if not isinstance(extrinsics, list) or not all(isinstance(e, bytes) for e in extrinsics):
            raise DatabaseError(
                f"the body of block 0x{block_hash.hex()} is not a list of extrinsics"
            )
        return extrinsics  # type: ignore[return-value]

    def _put_block(self, batch: keys.WriteBatch, block: Block, events: Sequence[Event]) -> None:
        block_hash = block.hash
        batch.put(HEADERS + block_hash, rlp.encode(block.header))
        batch.put(keys.BLOCKS + block_hash, codec.encode(list(block.extrinsics)))
        if events:
            payload = b"".join([event.encoded() for event in events])
            batch.put(keys.EVENTS + block_hash, codec.encode_list_payload(payload))

    def _remember(self, header: Header) -> None:
        self._headers[header.hash] = header
        if len(self._headers) > _HEADER_CACHE_SIZE:
            self._headers.popitem(last=False)
