"""Block storage and indexes over the node's database: headers, bodies, the canonical chain,
events, the transaction index and the best / finalized pointers. A block and everything it
implies is committed in one atomic write batch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import rlp
from rlp.sedes import CountableList, binary

from chain import codec
from chain import db as keys
from chain.blocks import Block, Header
from chain.db import Database
from chain.errors import DatabaseError, UnknownBlock
from chain.genesis import Genesis
from chain.primitives import BlockNumber, Hash32
from chain.runtime.executive import BlockExecution
from chain.runtime.framework import Event
from chain.state import TrieState
from chain.trie import NodeCache

HEADERS = b"h"
_BEST = keys.META + b"best"
_FINALIZED = keys.META + b"finalized"
_GENESIS = keys.META + b"genesis"
_HEADER_CACHE_SIZE = 4096
_extrinsics_sedes = CountableList(binary)


def _number_key(number: int) -> bytes:
    return keys.CANONICAL + number.to_bytes(8, "big")


class ChainStore:
    def __init__(self, db: Database, *, node_cache: NodeCache | None = None) -> None:
        self.db = db
        self.node_cache = node_cache or NodeCache()
        self._headers: OrderedDict[Hash32, Header] = OrderedDict()
        self.genesis_hash: Hash32 | None = self._get_hash(_GENESIS)
        self.best_hash: Hash32 | None = self._get_hash(_BEST)
        self.finalized_hash: Hash32 | None = self._get_hash(_FINALIZED)

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
        self.genesis_hash = self.best_hash = self.finalized_hash = genesis.hash

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
        body = self.db.get(keys.BLOCKS + block_hash)
        extrinsics = rlp.decode(body, sedes=_extrinsics_sedes) if body else ()
        return Block(header, tuple(extrinsics))

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
        data = self.db.get(keys.EVENTS + block_hash)
        if data is None:
            return None if self.header(block_hash) is None else []
        return [Event.decode(item) for item in rlp.decode(data)]

    def tx_location(self, tx_hash: bytes) -> tuple[Hash32, int] | None:
        data = self.db.get(keys.TX_INDEX + tx_hash)
        if data is None:
            return None
        block_hash, index = rlp.decode(data)
        return Hash32(block_hash), int.from_bytes(index, "big")

    def state_at(self, block_hash: bytes) -> TrieState:
        header = self.require_header(block_hash)
        return TrieState(self.db.trie_nodes, header.state_root, self.node_cache)

    def best_state(self) -> TrieState:
        return TrieState(self.db.trie_nodes, self.best_header.state_root, self.node_cache)

    # -- writes -----------------------------------------------------------------------------

    def commit_block(self, block: Block, execution: BlockExecution, *, finalize: bool) -> None:
        """Store a block that extends the best chain, with its state, events and indexes, as
        the new best (and, if `finalize`, finalized) block: one atomic, durable write."""
        header = block.header
        block_hash = header.hash
        if header.parent_hash != self.best_hash:
            raise DatabaseError("commit_block extends the best block only")
        with self.db.batch() as batch:
            for node_hash, node in execution.commit.nodes.items():
                batch.put(keys.TRIE_NODES + node_hash, node)
            self._put_block(batch, block, execution.events)
            for index, outcome in enumerate(execution.outcomes):
                batch.put(
                    keys.TX_INDEX + outcome.hash,
                    codec.encode([block_hash, codec.encode_uint(index)]),
                )
            batch.put(_number_key(header.number), block_hash)
            batch.put(_BEST, block_hash)
            if finalize:
                batch.put(_FINALIZED, block_hash)
        self.best_hash = block_hash
        if finalize:
            self.finalized_hash = block_hash
        self._remember(header)

    def _put_block(self, batch: keys.WriteBatch, block: Block, events: Sequence[Event]) -> None:
        block_hash = block.hash
        batch.put(HEADERS + block_hash, rlp.encode(block.header))
        batch.put(keys.BLOCKS + block_hash, codec.encode(list(block.extrinsics)))
        if events:
            batch.put(keys.EVENTS + block_hash, codec.encode([e.encode() for e in events]))

    def _remember(self, header: Header) -> None:
        self._headers[header.hash] = header
        if len(self._headers) > _HEADER_CACHE_SIZE:
            self._headers.popitem(last=False)

    def best_number(self) -> BlockNumber:
        return BlockNumber(self.best_header.number)
