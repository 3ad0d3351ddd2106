"""Block import throughput: signed transfers executed and committed per second on one core.

Builds a chain with 10,000 funded accounts in a real LevelDB, imports blocks of pre-signed
transfers through the full import path (decode, signature check, execution, trie commit,
one atomic write batch) with the node's settings of the garbage collector, and prints
transfers/s with the ratio to raw Ed25519 verifications per second of the same transactions
measured in the same run, block by block. Target: >= 5,000 transfers/s, ratio >= 0.4. Then
the same blocks again, their signatures verified before (as the pool verifies those it is
given): import's work without signature checks.

    .venv/bin/python -m bench.block_import [--accounts 10000] [--blocks 5] [--per-block 2000]
        [--smoke]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Container
from pathlib import Path

import nacl.bindings
import rlp

from chain.blocks import Block, Header, SignedTransaction, tx_hash
from chain.db import COMPRESSION, Database
from chain.genesis import ChainSpec, build_genesis
from chain.importer import BlockImporter, extrinsics_root
from chain.keys import Keypair, sign_transaction
from chain.primitives import BlockNumber, Hash32, Slot, TimestampMs
from chain.runtime.balances import Balances
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec
from node.collector import tune_collector


def signed_payloads(samples: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(signature + signed message, public key) of each transaction, as libsodium takes them."""
    txs = [rlp.decode(s, sedes=SignedTransaction) for s in samples]
    return [(t.signature + t.signing_payload(), t.sender) for t in txs]


def verify_all(payloads: list[tuple[bytes, bytes]]) -> float:
    """Seconds to verify every signature once with libsodium."""
    start = time.perf_counter()
    for signed_message, key in payloads:
        nacl.bindings.crypto_sign_open(signed_message, key)
    return time.perf_counter() - start


def funded_spec(keys: list[Keypair]) -> ChainSpec:
    """The development chain's authorities and runtime, with every key funded at genesis."""
    dev = development_spec()
    return ChainSpec(
        name="bench",
        id="bench",
        chain_type="Local",
        slot_duration_ms=1000,
        authorities=dev.authorities,
        balances=tuple((k.public, 10**20) for k in keys),
        runtime=dev.runtime,
    )


def new_chain(
    folder: Path, spec: ChainSpec, *, compression: str | None = COMPRESSION
) -> tuple[Database, ChainStore, Hash32]:
    """A fresh database at `folder` holding `spec`'s genesis block (closed again if that
    fails), its store, and the genesis hash."""
    db = Database(folder, compression=compression)
    try:
        store = ChainStore(db)
        genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
        store.initialize(genesis)
    except BaseException:
        db.close()
        raise
    return db, store, genesis.hash


def store_block(store: ChainStore, runtime: Runtime, spec: ChainSpec, txs: list[bytes]) -> Block:
    """Execute `txs` on the best block and store the result as the next block, final. Its seal
    is empty: import checks the ledger's rules, not who sealed a block."""
    parent = store.best_header
    number = parent.number + 1
    author = spec.authorities[0]
    env = BlockEnv(BlockNumber(number), parent.hash, TimestampMs(number * 1000), author)
    execution = runtime.execute_block(store.state_at(parent.hash), env, txs)
    header = Header(
        parent.hash,
        number,
        execution.commit.root,
        extrinsics_root(txs),
        number * 1000,
        Slot(number),
        author,
        b"",
    )
    block = Block(header, tuple(txs))
    store.commit_block(block, execution, finalize=True)
    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--per-block", type=int, default=2_000)
    parser.add_argument("--smoke", action="store_true", help="100 accounts, 2 blocks of 50")
    args = parser.parse_args()
    if args.smoke:
        args.accounts, args.blocks, args.per_block = 100, 2, 50
    tune_collector()  # as a node's process runs

    rng = random.Random(7)
    keys = [Keypair.from_seed(rng.randbytes(32)) for _ in range(args.accounts)]
    spec = funded_spec(keys)
    with tempfile.TemporaryDirectory() as tmp:
        db, store, genesis_hash = new_chain(Path(tmp) / "db", spec)
        runtime = Runtime(spec.runtime, genesis_hash)
        (transfer,) = Balances().calls()

        print(f"signing {args.blocks * args.per_block} transfers among {args.accounts} accounts…")
        nonces = [0] * len(keys)
        blocks_txs: list[list[bytes]] = []
        for _ in range(args.blocks):
            txs = []
            for _ in range(args.per_block):
                i, j = rng.randrange(len(keys)), rng.randrange(len(keys))
                call = transfer.call(dest=keys[j].public, amount=rng.randrange(1, 10**12))
                tx = sign_transaction(
                    keys[i], genesis_hash=genesis_hash, nonce=nonces[i], call=call
                )
                nonces[i] += 1
                txs.append(rlp.encode(tx))
            blocks_txs.append(txs)

        # Prepare the blocks on a first database (import checks the ledger rules, not who
        # sealed them), then time their import on a fresh one.
        blocks = [store_block(store, runtime, spec, txs) for txs in blocks_txs]
        db.close()

        # Each block's import is timed right after raw verification of its own transactions,
        # so that the ratio holds on a loaded machine; then again on a fresh database with the
        # signatures already verified, as a node's pool has verified those it gossiped.
        payloads = [signed_payloads(txs) for txs in blocks_txs]
        pool_verified = {tx_hash(e) for txs in blocks_txs for e in txs}
        timings: dict[str, float] = {"verify": 0.0, "import": 0.0, "pool-verified": 0.0}
        for kind in ("import", "pool-verified"):
            db, store, _ = new_chain(Path(tmp) / kind, spec)
            importer = BlockImporter(store, runtime)
            verified: Container[bytes] = pool_verified if kind == "pool-verified" else frozenset()
            for block, signed in zip(blocks, payloads, strict=True):
                if kind == "import":
                    timings["verify"] += verify_all(signed)
                start = time.perf_counter()
                importer.import_block(block, finalize=True, verified=verified)
                timings[kind] += time.perf_counter() - start
            db.close()

    total = args.blocks * args.per_block
    rate = total / timings["import"]
    baseline = total / timings["verify"]
    warm = total / timings["pool-verified"]
    print(f"block import: {total} transfers in {timings['import']:.2f} s = {rate:,.0f} transfers/s")
    print(
        f"baseline: {baseline:,.0f} raw Ed25519 verifications/s (each block's, before its import)"
    )
    print(f"ratio: {rate / baseline:.3f} (target >= 0.4; target rate >= 5,000/s)")
    print(
        f"signatures verified by the pool before: {warm:,.0f} transfers/s, "
        f"ratio {warm / baseline:.3f}"
    )


if __name__ == "__main__":
    main()
