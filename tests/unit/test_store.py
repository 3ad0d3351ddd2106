"""The database, block store and import: atomic commits, schema and genesis checks, and the
checks a block must pass (parent, number, roots, author, seal)."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp

from chain.blocks import Block, tx_hash
from chain.db import SCHEMA_VERSION, Database
from chain.errors import BlockRejection, DatabaseError, InvalidBlock
from chain.genesis import build_genesis
from chain.importer import BlockImporter
from chain.keys import sign_transaction
from chain.primitives import Slot, TimestampMs
from chain.runtime import system
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from consensus.aura import verify_header
from consensus.proposer import propose
from tests.factories import ALICE, BOB, DAVE, spec_for, transfer_call

SPEC = spec_for(ALICE, BOB)


def open_store(path: Path) -> tuple[Database, ChainStore, Runtime]:
    db = Database(path)
    store = ChainStore(db)
    genesis = build_genesis(SPEC, TrieState(db.trie_nodes, BLANK_ROOT))
    store.initialize(genesis)
    return db, store, Runtime(SPEC.runtime, genesis.hash)


def author(store: ChainStore, runtime: Runtime, txs: list[bytes], slot: int) -> Block:
    state = store.best_state()
    env_parent = store.best_header
    candidates = []
    for encoded in txs:
        env = BlockEnv(
            env_parent.number + 1, env_parent.hash, TimestampMs(slot * 1000), ALICE.public
        )
        candidates.append(runtime.validate_transaction(state, encoded, env))
    block, _ = propose(
        store,
        runtime,
        store.best_header,
        candidates,
        slot=Slot(slot),
        timestamp=TimestampMs(slot * 1000),
        signer=ALICE,
        on_invalid=lambda tx, exc: None,
    )
    return block


def transfer(runtime: Runtime, nonce: int, amount: int = 5_000_000) -> bytes:
    tx = sign_transaction(
        BOB, genesis_hash=runtime.genesis_hash, nonce=nonce, call=transfer_call(DAVE.public, amount)
    )
    return rlp.encode(tx)  # type: ignore[no-any-return]


def test_import_commit_and_reopen(tmp_path: Path) -> None:
    db, store, runtime = open_store(tmp_path / "db")
    importer = BlockImporter(store, runtime)
    block = author(store, runtime, [transfer(runtime, 0), transfer(runtime, 1)], slot=5)
    execution = importer.import_block(block, finalize=True)
    assert store.best_hash == store.finalized_hash == block.hash
    assert store.canonical_hash(1) == block.hash
    assert store.tx_location(execution.outcomes[1].hash) == (block.hash, 1)
    assert [e.name for e in store.events(block.hash) or []].count("Transfer") == 2
    db.close()
    db, store, runtime = open_store(tmp_path / "db")
    assert store.best_hash == block.hash
    assert system.account(store.best_state(), DAVE.public).free == 10_000_000
    assert store.block(block.hash) == block
    db.close()


@pytest.mark.parametrize("compression", ["lz4", b"snappy", "", 1])
def test_a_bad_compression_is_refused_before_anything_is_made(
    tmp_path: Path, compression: object
) -> None:
    with pytest.raises(DatabaseError, match="compression is one of"):
        Database(tmp_path / "db", compression=compression)  # type: ignore[arg-type]
    assert not (tmp_path / "db").exists()


def test_a_database_written_compressed_reads_back_uncompressed(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", compression="snappy")
    values = {i.to_bytes(4, "big"): bytes([i % 256]) * 4096 for i in range(2048)}  # 8 MB
    with db.deferred_sync():
        for key, value in values.items():
            with db.batch() as batch:
                batch.put(key, value)
    db.close()
    # Beyond LevelDB's 4 MiB write buffer: some of it is in tables written compressed.
    assert list((tmp_path / "db").glob("*.ldb"))
    db = Database(tmp_path / "db")
    assert all(db.get(key) == value for key, value in values.items())
    db.close()


@pytest.mark.parametrize("stored", [b"1", b"2", b"99"])
def test_schema_version_mismatch(tmp_path: Path, stored: bytes) -> None:
    """A database of another format (1: before app and usage records carried their instance; 2:
    before wallets were requested on chain) is refused before any record of it is read, and the
    error says what to do."""
    db = Database(tmp_path / "db")
    db._db.put(b"meta:schema-version", stored)
    db.close()
    with pytest.raises(DatabaseError) as info:
        Database(tmp_path / "db")
    assert str(info.value) == (
        f"the database at {tmp_path / 'db'} has schema version {stored.decode()}, this node reads "
        f"version {SCHEMA_VERSION}: run `statemesh purge-chain` or use another --base-path"
    )


def test_database_of_another_chain(tmp_path: Path) -> None:
    db, _store, _ = open_store(tmp_path / "db")
    db.close()
    db = Database(tmp_path / "db")
    other = spec_for(ALICE, amount=7 * 10**18)
    with pytest.raises(DatabaseError, match="holds the chain with genesis 0x"):
        ChainStore(db).initialize(build_genesis(other, TrieState(db.trie_nodes, BLANK_ROOT)))
    db.close()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda b: b.copy(header=b.header.copy(state_root=b"\x11" * 32)),
            BlockRejection.BAD_STATE_ROOT,
        ),
        (lambda b: b.copy(extrinsics=b.extrinsics[:1]), BlockRejection.BAD_EXTRINSICS_ROOT),
        (
            lambda b: b.copy(header=b.header.copy(parent_hash=b"\x22" * 32)),
            BlockRejection.UNKNOWN_PARENT,
        ),
        (lambda b: b.copy(header=b.header.copy(number=5)), BlockRejection.BAD_NUMBER),
        (lambda b: b.copy(header=b.header.copy(timestamp=0)), BlockRejection.BAD_TIMESTAMP),
    ],
)
def test_bad_block_changes_nothing(tmp_path: Path, change, reason) -> None:  # type: ignore[no-untyped-def]
    db, store, runtime = open_store(tmp_path / "db")
    block = author(store, runtime, [transfer(runtime, 0), transfer(runtime, 1)], slot=5)
    bad = change(block)
    best = store.best_hash
    with pytest.raises(InvalidBlock) as info:
        BlockImporter(store, runtime).import_block(bad, finalize=True)
    assert info.value.reason is reason
    assert store.best_hash == best and store.header(bad.hash) is None
    db.close()


def test_aura_header_checks(tmp_path: Path) -> None:
    db, store, runtime = open_store(tmp_path / "db")
    block = author(store, runtime, [], slot=5)
    parent = store.best_header
    authorities = (ALICE.public,)
    genesis = Slot(0)
    verify_header(block.header, parent, authorities, 1000, 5_000, genesis)
    with pytest.raises(InvalidBlock, match="bad seal"):
        verify_header(
            block.header.copy(seal=b"\x00" * 64), parent, authorities, 1000, 5_000, genesis
        )
    with pytest.raises(InvalidBlock, match="wrong author: slot 5 belongs to"):
        verify_header(block.header, parent, (BOB.public,), 1000, 5_000, genesis)
    with pytest.raises(InvalidBlock, match="future slot: slot 5 is in the future"):
        verify_header(block.header, parent, authorities, 1000, 3_000, genesis)
    with pytest.raises(InvalidBlock, match="does not match timestamp"):
        verify_header(block.header.copy(slot=9), parent, authorities, 1000, 5_000, genesis)
    db.close()


def build_on(
    store: ChainStore, runtime: Runtime, parent_hash: bytes, txs: list[bytes], slot: int
) -> tuple[Block, object]:
    """Build a block on any stored parent (not only the best), without committing it."""
    parent = store.require_header(parent_hash)
    env = BlockEnv(parent.number + 1, parent.hash, TimestampMs(slot * 1000), ALICE.public)
    state = store.state_at(parent.hash)
    candidates = [runtime.validate_transaction(state, t, env) for t in txs]
    return propose(
        store,
        runtime,
        parent,
        candidates,
        slot=Slot(slot),
        timestamp=TimestampMs(slot * 1000),
        signer=ALICE,
        on_invalid=lambda tx, exc: None,
    )


def test_fork_reorg_moves_indexes_and_finality_prunes_leaves(tmp_path: Path) -> None:
    db, store, runtime = open_store(tmp_path / "db")
    genesis = store.best_hash
    a1, ea1 = build_on(store, runtime, genesis, [transfer(runtime, 0)], slot=1)
    store.commit_block(a1, ea1)  # type: ignore[arg-type]
    b1, eb1 = build_on(store, runtime, genesis, [transfer(runtime, 0, amount=7_000_000)], slot=2)
    assert store.commit_block(b1, eb1, best=False) is None  # type: ignore[arg-type]
    assert store.best_hash == a1.hash and set(store.leaves()) == {a1.hash, b1.hash}
    b2, eb2 = build_on(store, runtime, b1.hash, [], slot=3)
    route = store.commit_block(b2, eb2)  # type: ignore[arg-type]
    assert route is not None
    assert route.retracted == (a1.hash,) and route.enacted == (b1.hash, b2.hash)
    assert route.common == genesis
    assert store.canonical_hash(1) == b1.hash and store.canonical_hash(2) == b2.hash
    assert store.tx_location(tx_hash(a1.extrinsics[0])) is None
    assert store.tx_location(tx_hash(b1.extrinsics[0])) == (b1.hash, 0)
    assert system.account(store.best_state(), DAVE.public).free == 7_000_000
    assert store.is_descendant(b2.hash, genesis) and not store.is_descendant(b2.hash, a1.hash)
    store.finalize(b1.hash)
    assert store.leaves() == [b2.hash]
    with pytest.raises(DatabaseError, match="is not on the best chain"):
        store.finalize(a1.hash)
    # Everything survives a reopen.
    db.close()
    db, store, runtime = open_store(tmp_path / "db")
    assert (store.best_hash, store.finalized_hash) == (b2.hash, b1.hash)
    assert store.set_best(b1.hash).retracted == (b2.hash,)
    assert store.canonical_hash(2) is None
    db.close()


def test_a_blocks_events_are_decoded_once_while_it_is_asked_for(tmp_path: Path) -> None:
    """A client polling its transaction's status asks for one block's events again and again:
    they are read and decoded once, and a caller's changes to the list it got touch no one."""
    db, store, runtime = open_store(tmp_path / "db")
    importer = BlockImporter(store, runtime)
    block = author(store, runtime, [transfer(runtime, 0), transfer(runtime, 1)], slot=5)
    importer.import_block(block, finalize=True)
    reads: list[bytes] = []
    read = db.get

    def counted(key: bytes) -> bytes | None:
        reads.append(key)
        return read(key)

    db.get = counted  # type: ignore[method-assign]
    first = store.events(block.hash)
    assert first is not None and [e.name for e in first].count("Transfer") == 2
    first.clear()
    for _ in range(5):
        assert store.events(block.hash) == store.events(block.hash) != []
    assert len(reads) == 1
    assert store.events(b"\x07" * 32) is None  # not stored, not remembered
    db.close()
