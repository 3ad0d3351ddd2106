"""The node's storage under a long import: CPU per block with tables written uncompressed, as
the node writes them, against LevelDB's default (snappy), background compaction included.

Builds a chain of blocks of signed transfers, then imports it into two fresh databases, one with
snappy (the baseline, first) and one uncompressed. The figure is the process's CPU time per
block, which counts LevelDB's compaction thread as well as the import, taken until compaction
has gone quiet after the last block; LevelDB's own compaction totals are printed beside it, so
that a run too short to compact shows as such. Target: the node's setting costs no more CPU per
block than the default (ratio >= 1).

    .venv/bin/python -m bench.storage [--blocks 12000] [--per-block 10] [--smoke]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import rlp

from bench.block_import import funded_spec, new_chain, store_block
from chain.blocks import Block, tx_hash
from chain.db import COMPRESSION, Database
from chain.genesis import ChainSpec
from chain.importer import BlockImporter
from chain.keys import Keypair, sign_transaction
from chain.runtime.balances import Balances
from chain.runtime.executive import Runtime

QUIET_CPU_SECONDS = 0.005
"""Compaction counts as gone quiet once the process uses less CPU than this in half a second."""
SETTLE_LIMIT_SECONDS = 60.0


def size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def build(
    folder: Path, spec: ChainSpec, keys: list[Keypair], blocks: int, per_block: int
) -> list[Block]:
    """`blocks` blocks of random transfers among `keys`, built and stored in `folder`."""
    rng = random.Random(11)
    db, store, genesis_hash = new_chain(folder, spec)
    runtime = Runtime(spec.runtime, genesis_hash)
    (transfer,) = Balances().calls()
    nonces = [0] * len(keys)
    made = []
    with db.deferred_sync():
        for _ in range(blocks):
            txs = []
            for _ in range(per_block):
                i, j = rng.randrange(len(keys)), rng.randrange(len(keys))
                call = transfer.call(dest=keys[j].public, amount=rng.randrange(1, 10**9))
                tx = sign_transaction(
                    keys[i], genesis_hash=genesis_hash, nonce=nonces[i], call=call
                )
                nonces[i] += 1
                txs.append(rlp.encode(tx))
            made.append(store_block(store, runtime, spec, txs))
    db.close()
    return made


def settle() -> float:
    """Seconds of CPU the process spends after the import, until compaction goes quiet."""
    start = before = time.process_time()
    deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = time.process_time()
        if now - before < QUIET_CPU_SECONDS:
            break
        before = now
    return time.process_time() - start


def compaction(db: Database) -> tuple[float, float, float]:
    """LevelDB's compaction totals so far: seconds, MB read, MB written (`leveldb.stats`)."""
    stats = db.property("leveldb.stats") or ""
    seconds = read = written = 0.0
    for line in stats.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[0].isdigit():
            seconds += float(fields[3])
            read += float(fields[4])
            written += float(fields[5])
    return seconds, read, written


def import_all(
    folder: Path, spec: ChainSpec, chain: list[Block], compression: str | None
) -> tuple[float, int, tuple[float, float, float]]:
    """CPU seconds per block to import `chain` into a fresh database written with
    `compression`, compaction included; its size on disk and its compaction totals after."""
    db, store, genesis_hash = new_chain(folder, spec, compression=compression)
    verified = {tx_hash(e) for block in chain for e in block.extrinsics}
    try:
        importer = BlockImporter(store, Runtime(spec.runtime, genesis_hash))
        started = time.process_time()
        with db.deferred_sync():
            for block in chain:
                importer.import_block(block, finalize=True, verified=verified)
        used = time.process_time() - started + settle()
        compacted = compaction(db)
    finally:
        db.close()
    return used / len(chain), size_of(folder), compacted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12_000)
    parser.add_argument("--per-block", type=int, default=10)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--smoke", action="store_true", help="40 blocks of 5 transfers")
    args = parser.parse_args()
    if args.smoke:
        args.blocks, args.per_block, args.accounts = 40, 5, 50

    rng = random.Random(7)
    keys = [Keypair.from_seed(rng.randbytes(32)) for _ in range(args.accounts)]
    spec = funded_spec(keys)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"building {args.blocks} blocks of {args.per_block} transfers…")
        chain = build(root / "source", spec, keys, args.blocks, args.per_block)
        # Warm up (code paths, caches) on a throwaway database, so that neither pays for it.
        import_all(root / "warm-up", spec, chain[:200], COMPRESSION)
        theirs, their_size, their_compaction = import_all(root / "snappy", spec, chain, "snappy")
        ours, our_size, our_compaction = import_all(root / "node", spec, chain, COMPRESSION)

    def described(size: int, compacted: tuple[float, float, float]) -> str:
        seconds, read, written = compacted
        return (
            f"{size / 2**20:.0f} MiB; compaction {seconds:.0f} s, "
            f"{read:,.0f} MB read, {written:,.0f} MB written"
        )

    print(
        f"storage: {ours * 1000:.2f} ms of CPU per block, tables uncompressed "
        f"({described(our_size, our_compaction)})"
    )
    print(
        f"baseline: {theirs * 1000:.2f} ms per block with snappy, LevelDB's default "
        f"({described(their_size, their_compaction)})"
    )
    print(f"ratio: {theirs / ours:.2f} (target >= 1)")


if __name__ == "__main__":
    main()
