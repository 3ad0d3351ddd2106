"""`kill -9` of a node in the middle of a sync, whose batches of blocks reach the disk with one
fsync each: its database opens, every block it holds replays on a fresh database to the same
state root, and the node resumes the sync to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.network import build_chain
from chain.db import Database
from chain.genesis import build_genesis, load_spec
from chain.importer import BlockImporter
from chain.runtime.executive import Runtime
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from node.commands.testnet import load
from testkit.nodes import NodeProcess

pytestmark = pytest.mark.integration

BLOCKS = 800
PER_BLOCK = 4


def test_kill9_during_sync_then_replay_and_resume(tmp_path: Path) -> None:
    spec_path, base = build_chain(tmp_path / "net", BLOCKS, PER_BLOCK)
    spec = load_spec(spec_path)
    layout = load(tmp_path / "net")[0]
    source = NodeProcess(
        base, args=["--chain", str(spec_path)], port=layout.rpc_port, p2p_port=layout.p2p_port
    )
    fresh = NodeProcess(
        tmp_path / "fresh", args=["--chain", str(spec_path), "--bootnodes", layout.multiaddr]
    )
    source.start()
    try:
        fresh.start()
        # Killed once it has several batches (128 blocks each) and is well short of the end.
        fresh.wait_for(lambda: fresh.best_number() >= 200, timeout=120, what="sync under way")
        fresh.kill9()
        db = Database(fresh.base_path / "chains" / spec.id / "db")
        store = ChainStore(db)
        head = store.best_header
        assert 200 <= head.number < BLOCKS
        replay_db = Database(tmp_path / "replay")
        replay = ChainStore(replay_db)
        genesis = build_genesis(spec, TrieState(replay_db.trie_nodes, BLANK_ROOT))
        replay.initialize(genesis)
        importer = BlockImporter(replay, Runtime(spec.runtime, genesis.hash))
        for number in range(1, head.number + 1):
            block = store.block(store.canonical_hash(number) or b"")
            assert block is not None and len(block.extrinsics) == PER_BLOCK
            importer.import_block(block, finalize=True)
        assert replay.best_hash == head.hash
        assert replay.best_header.state_root == head.state_root
        replay_db.close()
        db.close()

        fresh.start()
        fresh.wait_for(lambda: fresh.best_number() >= BLOCKS, timeout=180, what="sync resumed")
    finally:
        fresh.stop()
        source.stop()
