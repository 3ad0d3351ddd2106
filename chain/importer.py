"""Block import on the ledger side: the checks a block must pass regardless of consensus (parent,
number, extrinsics root, execution, state root), then one atomic commit."""

from __future__ import annotations

from collections.abc import Container

from chain.blocks import Block, tx_hash
from chain.errors import BlockRejection, InvalidBlock
from chain.primitives import Hash32, merkle_root
from chain.runtime.executive import BlockExecution, Runtime
from chain.runtime.framework import BlockEnv
from chain.store import ChainStore


def extrinsics_root(extrinsics: tuple[bytes, ...] | list[bytes]) -> Hash32:
    return merkle_root([tx_hash(e) for e in extrinsics])


class BlockImporter:
    def __init__(self, store: ChainStore, runtime: Runtime) -> None:
        self.store = store
        self.runtime = runtime

    def execute(self, block: Block, *, verified: Container[bytes] = frozenset()) -> BlockExecution:
        """Check and execute a block on top of its parent without writing anything."""
        header = block.header
        if self.store.header(header.hash) is not None:
            raise InvalidBlock(
                BlockRejection.ALREADY_KNOWN, f"block 0x{header.hash.hex()} is known"
            )
        parent = self.store.header(header.parent_hash)
        if parent is None:
            raise InvalidBlock(
                BlockRejection.UNKNOWN_PARENT, f"parent 0x{header.parent_hash.hex()} is unknown"
            )
        if header.number != parent.number + 1:
            raise InvalidBlock(
                BlockRejection.BAD_NUMBER,
                f"number {header.number} does not follow the parent's {parent.number}",
            )
        if header.timestamp <= parent.timestamp:
            raise InvalidBlock(
                BlockRejection.BAD_TIMESTAMP,
                f"timestamp {header.timestamp} is not after the parent's {parent.timestamp}",
            )
        hashes = [tx_hash(e) for e in block.extrinsics]
        root = merkle_root(hashes)
        if header.extrinsics_root != root:
            raise InvalidBlock(
                BlockRejection.BAD_EXTRINSICS_ROOT,
                f"header says 0x{header.extrinsics_root.hex()}, extrinsics give 0x{root.hex()}",
            )
        env = BlockEnv(header.number, header.parent_hash, header.timestamp, header.author)
        execution = self.runtime.execute_block(
            self.store.state_at(header.parent_hash),
            env,
            block.extrinsics,
            verified=verified,
            hashes=hashes,
        )
        if execution.commit.root != header.state_root:
            raise InvalidBlock(
                BlockRejection.BAD_STATE_ROOT,
                f"header says 0x{header.state_root.hex()}, execution gives "
                f"0x{execution.commit.root.hex()}",
            )
        return execution

    def import_block(
        self, block: Block, *, finalize: bool, verified: Container[bytes] = frozenset()
    ) -> BlockExecution:
        execution = self.execute(block, verified=verified)
        self.store.commit_block(block, execution, finalize=finalize)
        return execution
