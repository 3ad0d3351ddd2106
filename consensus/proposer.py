"""Building and sealing a block for one of our slots from the pool's ready transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from chain.blocks import Block, Header
from chain.errors import InvalidTransaction
from chain.importer import extrinsics_root
from chain.keys import Signer
from chain.primitives import BlockNumber, Slot, TimestampMs
from chain.runtime.executive import BlockExecution, Runtime
from chain.runtime.framework import BlockEnv
from chain.store import ChainStore
from chain.validity import ValidTransaction


def propose(
    store: ChainStore,
    runtime: Runtime,
    parent: Header,
    candidates: Iterable[ValidTransaction],
    *,
    slot: Slot,
    timestamp: TimestampMs,
    signer: Signer,
    on_invalid: Callable[[ValidTransaction, InvalidTransaction], None],
    keep_going: Callable[[], bool] = lambda: True,
) -> tuple[Block, BlockExecution]:
    """Execute candidates on top of `parent` and return the sealed block with its execution,
    ready to be committed without running it again."""
    env = BlockEnv(BlockNumber(parent.number + 1), parent.hash, timestamp, signer.public)
    execution = runtime.build_block(
        store.state_at(parent.hash),
        env,
        candidates,
        on_invalid=on_invalid,
        keep_going=keep_going,
    )
    header = Header(
        parent_hash=parent.hash,
        number=env.number,
        state_root=execution.commit.root,
        extrinsics_root=extrinsics_root(execution.extrinsics),
        timestamp=timestamp,
        slot=slot,
        author=signer.public,
        seal=b"",
    )
    sealed = header.copy(seal=signer.sign(header.pre_seal_hash()))
    return Block(sealed, execution.extrinsics), execution
