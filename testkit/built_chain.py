"""A finalized chain of empty blocks built in one process, for tests and benchmarks that need
many blocks to sync: a new testnet's validator keys seal blocks in their own slots, one slot
after another and ending a few slots ago, each executed by the node's own proposer on the
database of the testnet's node-0, which a real node then serves."""

from __future__ import annotations

import time
from pathlib import Path

from chain.db import Database
from chain.genesis import build_genesis, load_spec
from chain.keys import Keypair
from chain.primitives import Slot, TimestampMs
from chain.runtime.executive import Runtime
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from consensus.aura import slot_author
from consensus.finality import Phase, quorum, sign_vote
from consensus.proposer import propose
from node.commands.testnet import create, load
from testkit.nodes import NodeProcess, free_port
from wallet.keystore import Keystore

SLOT_MS = 500
VALIDATORS = 4
JUSTIFY_EVERY = 100
"""Every 100th block and the last carry a justification, as the gadget's rounds leave them."""


def build_finalized_chain(folder: Path, blocks: int) -> Path:
    """A chain of `blocks` empty blocks, finalized up to the last, in node-0's database of a new
    4-validator testnet in `folder` whose genesis time is just before the first block. Returns
    the spec's path. Each justification holds precommits of three of the four validators."""
    first_slot = time.time_ns() // 1_000_000 // SLOT_MS - blocks - 5
    ports = [(free_port(), free_port()) for _ in range(VALIDATORS)]
    genesis_ms = first_slot * SLOT_MS
    create(folder, VALIDATORS, 0, 0, SLOT_MS, ports=ports, genesis_timestamp_ms=genesis_ms)
    spec = load_spec(folder / "genesis.json")
    keys = {k.public: k for k in (unlock_validator(folder, i) for i in range(VALIDATORS))}
    db = Database(load(folder)[0].base_path / "chains" / spec.id / "db")
    try:
        store = ChainStore(db)
        genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
        store.initialize(genesis)
        runtime = Runtime(spec.runtime, genesis.hash)
        voters = list(keys.values())[: quorum(VALIDATORS)]
        for n in range(1, blocks + 1):
            slot = first_slot + n
            block, execution = propose(
                store,
                runtime,
                store.best_header,
                [],
                slot=Slot(slot),
                timestamp=TimestampMs(slot * SLOT_MS),
                signer=keys[slot_author(slot, spec.authorities)],
                on_invalid=lambda tx, exc: None,
            )
            store.commit_block(block, execution, best=True)
            if n % JUSTIFY_EVERY == 0 or n == blocks:
                votes = [
                    sign_vote(v, genesis.hash, slot, Phase.PRECOMMIT, block.header).encode()
                    for v in voters
                ]
                store.finalize(block.hash, b"".join(votes))
    finally:
        db.close()
    return folder / "genesis.json"


def chain_server(folder: Path) -> NodeProcess:
    """A full node (not started) of the testnet in `folder`, on node-0's folder and ports: it
    serves the chain `build_finalized_chain` left there and authors nothing."""
    node = load(folder)[0]
    return NodeProcess(
        node.base_path,
        args=["--chain", str(folder / "genesis.json")],
        port=node.rpc_port,
        p2p_port=node.p2p_port,
    )


def unlock_validator(folder: Path, index: int) -> Keypair:
    """The key `statemesh testnet` wrote for validator `index` of the testnet in `folder`."""
    password = (folder / "password").read_text().strip()
    return Keystore(folder / "keystore").unlock(f"validator-{index}", password)
