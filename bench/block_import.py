"""Block import throughput: signed transfers executed and committed per second on one core.

Builds a chain with 10,000 funded accounts in a real LevelDB, imports blocks of pre-signed
transfers through the full import path (decode, signature check, execution, trie commit,
one atomic write batch), and prints transfers/s with the ratio to raw Ed25519 verifications
per second measured in the same run. Target: >= 5,000 transfers/s, ratio >= 0.2.

    .venv/bin/python -m bench.block_import [--accounts 10000] [--blocks 5] [--per-block 2000]
        [--smoke]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import nacl.bindings
import rlp

from chain.blocks import Block, Header, SignedTransaction
from chain.db import Database
from chain.genesis import ChainSpec, build_genesis
from chain.importer import BlockImporter, extrinsics_root
from chain.keys import Keypair, sign_transaction
from chain.primitives import BlockNumber, Slot, TimestampMs
from chain.runtime.balances import Balances
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec


def verifications_per_second(samples: list[bytes], seconds: float = 1.0) -> float:
    txs = [rlp.decode(s, sedes=SignedTransaction) for s in samples]
    payloads = [(t.signature + t.signing_payload(), t.sender) for t in txs]
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for signed_message, key in payloads:
            nacl.bindings.crypto_sign_open(signed_message, key)
        count += len(payloads)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--per-block", type=int, default=2_000)
    parser.add_argument("--smoke", action="store_true", help="100 accounts, 2 blocks of 50")
    args = parser.parse_args()
    if args.smoke:
        args.accounts, args.blocks, args.per_block = 100, 2, 50

    rng = random.Random(7)
    keys = [Keypair.from_seed(rng.randbytes(32)) for _ in range(args.accounts)]
    dev = development_spec()
    spec = ChainSpec(
        name="bench",
        id="bench",
        chain_type="Local",
        slot_duration_ms=1000,
        authorities=dev.authorities,
        balances=tuple((k.public, 10**20) for k in keys),
        runtime=dev.runtime,
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "db")
        store = ChainStore(db)
        genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
        store.initialize(genesis)
        runtime = Runtime(spec.runtime, genesis.hash)
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
                    keys[i], genesis_hash=genesis.hash, nonce=nonces[i], call=call
                )
                nonces[i] += 1
                txs.append(rlp.encode(tx))
            blocks_txs.append(txs)

        # Prepare the blocks on a first database (import checks the ledger rules, not who
        # sealed them), then time their import on a fresh one.
        blocks = []
        for n, txs in enumerate(blocks_txs, start=1):
            parent = store.best_header
            env = BlockEnv(BlockNumber(n), parent.hash, TimestampMs(n * 1000), dev.authorities[0])
            execution = runtime.execute_block(store.state_at(parent.hash), env, txs)
            header = Header(
                parent.hash,
                n,
                execution.commit.root,
                extrinsics_root(txs),
                n * 1000,
                Slot(n),
                dev.authorities[0],
                b"",
            )
            block = Block(header, tuple(txs))
            store.commit_block(block, execution, finalize=True)
            blocks.append(block)
        db.close()

        db = Database(Path(tmp) / "timed")
        store = ChainStore(db)
        store.initialize(
            build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
        )
        importer = BlockImporter(store, runtime)
        start = time.perf_counter()
        for block in blocks:
            importer.import_block(block, finalize=True)
        elapsed = time.perf_counter() - start
        db.close()

    total = args.blocks * args.per_block
    rate = total / elapsed
    baseline = verifications_per_second(blocks_txs[0][:500])
    print(f"block import: {total} transfers in {elapsed:.2f} s = {rate:,.0f} transfers/s")
    print(f"baseline: {baseline:,.0f} raw Ed25519 verifications/s")
    print(f"ratio: {rate / baseline:.3f} (target >= 0.2; target rate >= 5,000/s)")


if __name__ == "__main__":
    main()
