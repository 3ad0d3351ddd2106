"""VDF proofs verified per second: each proof over its own challenge (what the runtime does
today: `vdf.proof.verify`, and a tower proof's whole check in the runtime, deriving its challenge
with `chain.runtime.towers.tower_challenge` and verifying it with `towers.verify_vdf`), against
proofs that share one discriminant per epoch (the baseline: chiavdf.verify_n_wesolowski with the
discriminant derived once). Every verification starts with no remembered verdict
(`chain.vdf.forget_verdicts`); one row shows what a proof checked again costs, as when it waits
in the pool. Then the verification load per epoch for 10, 1,000 and 100,000 nodes.

Run: `.venv/bin/python -m bench.vdf_verify [--proofs N] [--epoch-seconds S]
[--proof-interval S] [--smoke]`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import chiavdf

from chain import vdf as chain_vdf
from chain.primitives import blake2_256
from chain.runtime import towers
from vdf.proof import DEFAULT_PARAMS, GENERATOR, VdfProof, prove, verify
from vdf.tower import GENESIS_PREVIOUS_Y, TOWER_INPUT, TowerProof, tower_challenge

ITERATIONS = 10_000
SMOKE_ITERATIONS = 1_000
"""Verification cost hardly depends on the count (it is logarithmic in it); printed below."""
NODE_COUNTS = (10, 1_000, 100_000)
ROUNDS = 3


def _rate(items: int, run: Callable[[], None], rounds: int) -> float:
    """Items per second, best of `rounds`."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return items / best


def _own_challenges(count: int, iterations: int) -> list[tuple[bytes, VdfProof]]:
    proofs = []
    for index in range(count):
        challenge = bytes(blake2_256(b"bench-verify" + index.to_bytes(4, "big")))
        proofs.append((challenge, prove(challenge, GENERATOR, iterations)))
    return proofs


def _tower_proofs(count: int, iterations: int) -> list[TowerProof]:
    proofs = []
    anchor = bytes(32)
    for index in range(count):
        node = bytes(blake2_256(b"bench-node" + index.to_bytes(4, "big")))
        challenge = tower_challenge(node, GENESIS_PREVIOUS_Y, anchor, 1)
        result = prove(challenge, TOWER_INPUT, iterations)
        proofs.append(TowerProof(node, 1, 0, anchor, iterations, result.y, result.proof))
    return proofs


def _shared_discriminant(count: int, iterations: int) -> tuple[str, list[tuple[bytes, bytes]]]:
    """Proofs in one class group, each from a distinct input (the previous proof's output)."""
    challenge = bytes(blake2_256(b"bench-epoch"))
    discriminant: str = chiavdf.create_discriminant(challenge, DEFAULT_PARAMS.discriminant_bits)
    proofs = []
    x = GENERATOR
    for _ in range(count):
        result = prove(challenge, x, iterations)
        proofs.append((x, result.y + result.proof))
        x = result.y
    return discriminant, proofs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proofs", type=int, default=40)
    parser.add_argument("--epoch-seconds", type=int, default=3600)
    parser.add_argument("--proof-interval", type=int, default=600)
    parser.add_argument("--smoke", action="store_true", help="3 short proofs, one round")
    args = parser.parse_args()
    bits = DEFAULT_PARAMS.discriminant_bits
    count = 3 if args.smoke else args.proofs
    iterations = SMOKE_ITERATIONS if args.smoke else ITERATIONS
    rounds = 1 if args.smoke else ROUNDS

    own = _own_challenges(count, iterations)
    tower_proofs = _tower_proofs(count, iterations)
    discriminant, shared = _shared_discriminant(count, iterations)

    def verify_own(*, remembered: bool = False) -> None:
        for challenge, proof in own:
            if not remembered:
                chain_vdf.forget_verdicts()
            if not verify(challenge, GENERATOR, proof, iterations):
                raise SystemExit("a valid proof did not verify")

    def check_towers() -> None:
        # What the runtime's towers.submit_proof spends on a proof past its table lookups.
        for proof in tower_proofs:
            chain_vdf.forget_verdicts()
            challenge = towers.tower_challenge(
                proof.node_id, GENESIS_PREVIOUS_Y, proof.anchor_hash, proof.height
            )
            if not towers.verify_vdf(challenge, proof.y, proof.proof, proof.iterations, bits):
                raise SystemExit("a valid tower proof did not verify")

    def verify_shared() -> None:
        for x, blob in shared:
            if not chiavdf.verify_n_wesolowski(discriminant, x, blob, iterations, bits, 0):
                raise SystemExit("a valid proof did not verify")

    def derive() -> None:
        for challenge, _ in own:
            chiavdf.create_discriminant(challenge, bits)

    own_rate = _rate(count, verify_own, rounds)
    verify_own(remembered=True)  # this pass remembers every verdict for the next ones
    again_rate = _rate(count, lambda: verify_own(remembered=True), rounds)
    tower_rate = _rate(count, check_towers, rounds)
    shared_rate = _rate(count, verify_shared, rounds)
    derive_rate = _rate(count, derive, rounds)

    # Discriminant derivation costs differ between challenges (a prime search), so the
    # iteration count's effect is measured on one challenge at two counts.
    one_challenge, short_proof = own[0]
    long_proof = prove(one_challenge, GENERATOR, 100 * iterations)

    def repeat(proof: VdfProof) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                chain_vdf.forget_verdicts()
                verify(one_challenge, GENERATOR, proof, proof.iterations)

        return run

    short_rate = _rate(count, repeat(short_proof), rounds)
    long_rate = _rate(count, repeat(long_proof), rounds)

    print(
        f"{count} proofs of {iterations:,} iterations, {bits}-bit discriminants, best of {rounds}"
    )
    print(f"{'':<46}{'proofs/s':>12}{'ms each':>10}{'ratio':>10}")
    rows = [
        ("shared discriminant (baseline)", shared_rate),
        ("own challenge: vdf.proof.verify", own_rate),
        ("own challenge: the runtime's tower check", tower_rate),
        ("own challenge, checked again (remembered)", again_rate),
        (f"one challenge, {iterations:,} iterations", short_rate),
        (f"one challenge, {100 * iterations:,} iterations", long_rate),
        ("deriving a discriminant alone", derive_rate),
    ]
    for label, rate in rows:
        print(f"{label:<46}{rate:>12,.1f}{1000 / rate:>10.3f}{rate / shared_rate:>10,.3f}")

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
