"""VDF proofs verified per second: each proof over its own challenge (what the runtime does
today: `vdf.proof.verify`, and the whole `check_tower_proof`), against proofs that share one
discriminant per epoch (the baseline: chiavdf.verify_n_wesolowski with the discriminant derived
once). Then the verification load per epoch for 10, 1,000 and 100,000 nodes.

Run: `.venv/bin/python bench/vdf_verify.py [--proofs N] [--epoch-seconds S]
[--proof-interval S]`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import chiavdf

from chain.primitives import blake2_256
from vdf.proof import DEFAULT_PARAMS, GENERATOR, VdfProof, prove, verify
from vdf.tower import (
    GENESIS_PREVIOUS_Y,
    TOWER_INPUT,
    TowerProof,
    check_tower_proof,
    tower_challenge,
)

ITERATIONS = 10_000
"""Verification cost hardly depends on the count (it is logarithmic in it); printed below."""
NODE_COUNTS = (10, 1_000, 100_000)
ROUNDS = 3


def _rate(items: int, run: Callable[[], None]) -> float:
    """Items per second, best of ROUNDS."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return items / best


def _own_challenges(count: int) -> list[tuple[bytes, VdfProof]]:
    proofs = []
    for index in range(count):
        challenge = bytes(blake2_256(b"bench-verify" + index.to_bytes(4, "big")))
        proofs.append((challenge, prove(challenge, GENERATOR, ITERATIONS)))
    return proofs


def _tower_proofs(count: int) -> list[TowerProof]:
    proofs = []
    anchor = bytes(32)
    for index in range(count):
        node = bytes(blake2_256(b"bench-node" + index.to_bytes(4, "big")))
        challenge = tower_challenge(node, GENESIS_PREVIOUS_Y, anchor, 1)
        result = prove(challenge, TOWER_INPUT, ITERATIONS)
        proofs.append(TowerProof(node, 1, 0, anchor, ITERATIONS, result.y, result.proof))
    return proofs


def _shared_discriminant(count: int) -> tuple[str, list[tuple[bytes, bytes]]]:
    """Proofs in one class group, each from a distinct input (the previous proof's output)."""
    challenge = bytes(blake2_256(b"bench-epoch"))
    discriminant: str = chiavdf.create_discriminant(challenge, DEFAULT_PARAMS.discriminant_bits)
    proofs = []
    x = GENERATOR
    for _ in range(count):
        result = prove(challenge, x, ITERATIONS)
        proofs.append((x, result.y + result.proof))
        x = result.y
    return discriminant, proofs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proofs", type=int, default=40)
    parser.add_argument("--epoch-seconds", type=int, default=3600)
    parser.add_argument("--proof-interval", type=int, default=600)
    args = parser.parse_args()
    bits = DEFAULT_PARAMS.discriminant_bits
    count = args.proofs

    own = _own_challenges(count)
    towers = _tower_proofs(count)
    discriminant, shared = _shared_discriminant(count)

    def verify_own() -> None:
        for challenge, proof in own:
            if not verify(challenge, GENERATOR, proof, ITERATIONS):
                raise SystemExit("a valid proof did not verify")

    def check_towers() -> None:
        for proof in towers:
            check_tower_proof(
                proof,
                expected_node_id=proof.node_id,
                expected_height=1,
                previous_y=GENESIS_PREVIOUS_Y,
                anchor_is_recent=True,
                min_iterations=ITERATIONS,
                params=DEFAULT_PARAMS,
            )

    def verify_shared() -> None:
        for x, blob in shared:
            if not chiavdf.verify_n_wesolowski(discriminant, x, blob, ITERATIONS, bits, 0):
                raise SystemExit("a valid proof did not verify")

    def derive() -> None:
        for challenge, _ in own:
            chiavdf.create_discriminant(challenge, bits)

    own_rate = _rate(count, verify_own)
    tower_rate = _rate(count, check_towers)
    shared_rate = _rate(count, verify_shared)
    derive_rate = _rate(count, derive)

    # Discriminant derivation costs differ between challenges (a prime search), so the
    # iteration count's effect is measured on one challenge at two counts.
    one_challenge, short_proof = own[0]
    long_proof = prove(one_challenge, GENERATOR, 100 * ITERATIONS)

    def repeat(proof: VdfProof) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                verify(one_challenge, GENERATOR, proof, proof.iterations)

        return run

    short_rate = _rate(count, repeat(short_proof))
    long_rate = _rate(count, repeat(long_proof))

    print(
        f"{count} proofs of {ITERATIONS:,} iterations, {bits}-bit discriminants, best of {ROUNDS}"
    )
    print(f"{'':<46}{'proofs/s':>10}{'ms each':>9}{'ratio':>8}")
    rows = [
        ("shared discriminant (baseline)", shared_rate),
        ("own challenge: vdf.proof.verify", own_rate),
        ("own challenge: check_tower_proof", tower_rate),
        (f"one challenge, {ITERATIONS:,} iterations", short_rate),
        (f"one challenge, {100 * ITERATIONS:,} iterations", long_rate),
        ("deriving a discriminant alone", derive_rate),
    ]
    for label, rate in rows:
        print(f"{label:<46}{rate:>10,.1f}{1000 / rate:>9.2f}{rate / shared_rate:>8.3f}")

    per_node = args.epoch_seconds // args.proof_interval
    print()
    print(
        f"Verification load per epoch on every full node: epoch {args.epoch_seconds} s, "
        f"one proof per node every {args.proof_interval} s ({per_node} per node per epoch)"
    )
    print(
        f"{'nodes':>8}{'proofs/epoch':>14}{'own: core-s':>13}{'% of a core':>13}"
        f"{'shared: core-s':>16}{'% of a core':>13}"
    )
    for nodes in NODE_COUNTS:
        proofs = nodes * per_node
        own_seconds = proofs / tower_rate
        shared_seconds = proofs / shared_rate + 1 / derive_rate
        print(
            f"{nodes:>8,}{proofs:>14,}{own_seconds:>13,.1f}"
            f"{100 * own_seconds / args.epoch_seconds:>12.1f}%"
            f"{shared_seconds:>16,.1f}{100 * shared_seconds / args.epoch_seconds:>12.1f}%"
        )


if __name__ == "__main__":
    main()
