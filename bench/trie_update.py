"""Batch update of the state trie: `chain.trie.Trie` against `trie.HexaryTrie` (squash_changes),
the same 2,000 changes to the same 10,000-key trie in one run; prints updates/s for each, their
ratio, and the cost of one `get`. Run: `.venv/bin/python -m bench.trie_update [--smoke]`."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from trie.hexary import HexaryTrie

from chain.primitives import Hash32
from chain.trie import BLANK_ROOT, NodeCache, Trie

TRIE_KEYS = 10_000
OVERWRITES = 1_000
INSERTS = 800
DELETES = 200
ROUNDS = 5
SEED = 20_240_601


def _account_value(rng: random.Random) -> bytes:
    # About the size of an RLP account record: nonce, balance, two hashes.
    return rng.randbytes(rng.randrange(40, 100))


def _best_seconds(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("--smoke", action="store_true", help="a 1/50 size trie, one round")
    args = parser.parse_args()
    scale = 50 if args.smoke else 1
    trie_keys, rounds = TRIE_KEYS // scale, 1 if args.smoke else ROUNDS
    overwrites, inserts, deletes = OVERWRITES // scale, INSERTS // scale, DELETES // scale

    rng = random.Random(SEED)
    keys = [rng.randbytes(32) for _ in range(trie_keys)]
    initial = {key: _account_value(rng) for key in keys}

    store: dict[bytes, bytes] = {}
    genesis = Trie(store, BLANK_ROOT).update(initial)
    for node_hash, encoding in genesis.nodes.items():
        store[node_hash] = encoding
    root = genesis.root

    reference_db: dict[bytes, bytes] = {}
    reference = HexaryTrie(reference_db)
    with reference.squash_changes() as scratch:
        for key, value in initial.items():
            scratch[key] = value
    if reference.root_hash != root:
        raise SystemExit("the two tries disagree on the initial root")

    changes: dict[bytes, bytes | None] = {}
    for key in rng.sample(keys, overwrites + deletes):
        changes[key] = _account_value(rng) if len(changes) < overwrites else None
    for _ in range(inserts):
        changes[rng.randbytes(32)] = _account_value(rng)
    updates = len(changes)

    def run_reference() -> Hash32:
        trie = HexaryTrie(reference_db, root)
        with trie.squash_changes() as scratch:
            for key, value in changes.items():
                if value is None:
                    del scratch[key]
                else:
                    scratch[key] = value
        return Hash32(trie.root_hash)

    def run_cold() -> Hash32:
        return Trie(store, root, cache=NodeCache()).update(changes).root

    warm_cache = NodeCache()
    warm = Trie(store, root, cache=warm_cache)
    for key in keys:
        warm.get(key)

    def run_warm() -> Hash32:
        return warm.update(changes).root

    if not run_reference() == run_cold() == run_warm():
        raise SystemExit("the two tries disagree on the new root")

    reference_s = _best_seconds(run_reference, rounds)
    cold_s = _best_seconds(run_cold, rounds)
    warm_s = _best_seconds(run_warm, rounds)
    print(
        f"batch: {updates:,} changes ({overwrites:,} overwrites, {inserts:,} inserts, "
        f"{deletes:,} deletes) into a {trie_keys:,}-key trie, best of {rounds}"
    )
    print(f"trie.HexaryTrie squash_changes: {updates / reference_s:>10,.0f} updates/s")
    print(f"chain.trie.Trie, cold cache:    {updates / cold_s:>10,.0f} updates/s")
    print(f"chain.trie.Trie, warm cache:    {updates / warm_s:>10,.0f} updates/s")
    print(f"ratio cold: {reference_s / cold_s:.1f}x   ratio warm: {reference_s / warm_s:.1f}x")

    probes = rng.sample(keys, 2_000 // scale)
    reference_reader = HexaryTrie(reference_db, root)
    reader = Trie(store, root, cache=NodeCache())

    def read_reference() -> None:
        for key in probes:
            reference_reader.get(key)

    def read_warm() -> None:
        for key in probes:
            reader.get(key)

    read_warm()  # fills the reader's cache

    reference_get_us = _best_seconds(read_reference, rounds) / len(probes) * 1e6
    warm_get_us = _best_seconds(read_warm, rounds) / len(probes) * 1e6
    print(
        f"get: trie.HexaryTrie {reference_get_us:.1f} us, chain.trie.Trie warm cache "
        f"{warm_get_us:.1f} us, ratio {reference_get_us / warm_get_us:.1f}x"
    )


if __name__ == "__main__":
    main()
