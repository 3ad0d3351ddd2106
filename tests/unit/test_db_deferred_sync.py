"""`Database.deferred_sync`, as sync imports its batches of blocks: every block stays one atomic
write, the batch is flushed to the disk once, and a process killed in the middle of the batch
(`kill -9`) leaves a database that opens with every block it had committed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chain.importer import BlockImporter
from chain.runtime import system
from tests.factories import DAVE
from tests.unit.test_store import author, open_store, transfer

ROOT = Path(__file__).resolve().parents[2]
AMOUNT = 5_000_000

KILLED_MID_BATCH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from chain.importer import BlockImporter
    from tests.unit.test_store import author, open_store, transfer

    db, store, runtime = open_store(Path(sys.argv[1]))
    importer = BlockImporter(store, runtime)
    with db.deferred_sync():
        for n in range(6):
            block = author(store, runtime, [transfer(runtime, n)], slot=5 + n)
            importer.import_block(block, finalize=True)
        print(store.best_hash.hex(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_process_killed_inside_the_batch_loses_no_committed_block(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_BATCH, str(tmp_path / "db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    head = bytes.fromhex(done.stdout.strip())
    db, store, runtime = open_store(tmp_path / "db")
    assert store.best_hash == store.finalized_hash == head
    assert store.best_header.number == 6
    assert system.account(store.best_state(), DAVE.public).free == 6 * AMOUNT
    # The blocks replay on a fresh database to the same state root.
    blocks = [store.block(store.canonical_hash(n) or b"") for n in range(1, 7)]
    db.close()
    replay_db, replay, _ = open_store(tmp_path / "replay")
    importer = BlockImporter(replay, runtime)
    for block in blocks:
        assert block is not None
        importer.import_block(block, finalize=True)
    assert replay.best_header.state_root == store.best_header.state_root
    replay_db.close()


def test_the_window_nests_and_flushes_even_when_its_body_raises(tmp_path: Path) -> None:
    db, store, runtime = open_store(tmp_path / "db")
    importer = BlockImporter(store, runtime)
    with pytest.raises(RuntimeError, match="peer went away"):
        with db.deferred_sync():
            with db.deferred_sync():
                importer.import_block(
                    author(store, runtime, [transfer(runtime, 0)], 5), finalize=True
                )
            importer.import_block(author(store, runtime, [transfer(runtime, 1)], 6), finalize=True)
            raise RuntimeError("peer went away")
    # After the window, writes are durable one by one again, and nothing was lost.
    importer.import_block(author(store, runtime, [transfer(runtime, 2)], 7), finalize=True)
    head = store.best_hash
    db.close()
    db, store, _ = open_store(tmp_path / "db")
    assert store.best_hash == head and store.best_header.number == 3
    assert system.account(store.best_state(), DAVE.public).free == 3 * AMOUNT
    db.close()


def test_writes_are_counted_unsynced_only_inside_the_window_and_flush_syncs_them(
    tmp_path: Path,
) -> None:
    db, store, runtime = open_store(tmp_path / "db")
    importer = BlockImporter(store, runtime)
    importer.import_block(author(store, runtime, [transfer(runtime, 0)], 5), finalize=True)
    assert db.unsynced_writes == 0
    with db.deferred_sync():
        importer.import_block(author(store, runtime, [transfer(runtime, 1)], 6), finalize=True)
        importer.import_block(author(store, runtime, [transfer(runtime, 2)], 7), finalize=True)
        assert db.unsynced_writes == 2
        db.flush()
        assert db.unsynced_writes == 0
        importer.import_block(author(store, runtime, [transfer(runtime, 3)], 8), finalize=True)
        assert db.unsynced_writes == 1
    assert db.unsynced_writes == 0
    db.close()
