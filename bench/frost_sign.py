"""Threshold signing cost: one 3-of-5 FROST(Ed25519, SHA-512) signing round in one process
(3 commits, 3 signature shares, the checked aggregation that verifies the result), against a
single-key Ed25519 signature of the same message with PyNaCl, both measured in this run; and
the wall time of one whole 5-member DKG (4 rounds, shares sealed and opened), threshold 3.

Prints median and p95 per round, the ratio of medians, and the DKG's median and p95.
Run: `.venv/bin/python -m bench.frost_sign [--rounds 300] [--dkg-runs 20] [--smoke]`."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import nacl.signing

from chain.keys import Keypair
from chain.signature import verify
from wallet.frost.dealer import trusted_dealer_keygen
from wallet.frost.dkg import DkgMember, DkgParams, run_in_process
from wallet.frost.identifier import as_identifier
from wallet.frost.signing import SigningPackage, aggregate, commit, sign

MESSAGE = b"billing: pay the operator of node 17 for hour 482,113 from wallet 9"
SIGNERS = (1, 3, 5)


def _timings(run: Callable[[], object], count: int) -> list[float]:
    run()  # warm-up
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def _median_p95_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p95 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--dkg-runs", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="5 rounds, 1 DKG")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.dkg_runs = 5, 1

    dealt = trusted_dealer_keygen(5, 3)
    keys = dealt.key_packages
    public = dealt.public_key_package
    signers = [as_identifier(i) for i in SIGNERS]

    def frost_round() -> bytes:
        nonces = {}
        commitments = []
        for identifier in signers:
            nonces[identifier], commitment = commit(keys[identifier])
            commitments.append(commitment)
        package = SigningPackage.create(MESSAGE, commitments)
        shares = [
            sign(keys[i], nonces[i], package, approve=lambda m: m == MESSAGE) for i in signers
        ]
        return aggregate(package, shares, public)

    if not verify(public.group_public_key.encoding, MESSAGE, frost_round()):
        raise SystemExit("the FROST signature does not verify")

    single = nacl.signing.SigningKey.generate()

    def single_sign() -> bytes:
        return single.sign(MESSAGE).signature

    frost_ms = _median_p95_ms(_timings(frost_round, args.rounds))
    single_ms = _median_p95_ms(_timings(single_sign, args.rounds))
    print(
        f"3-of-5 FROST signing round ({args.rounds} rounds): "
        f"median {frost_ms[0]:.2f} ms, p95 {frost_ms[1]:.2f} ms"
    )
    print(
        f"single-key Ed25519 sign (PyNaCl):         "
        f"median {single_ms[0] * 1e3:.1f} us, p95 {single_ms[1] * 1e3:.1f} us"
    )
    print(f"ratio of medians: {frost_ms[0] / single_ms[0]:,.0f}x")

    identities = [Keypair.generate() for _ in range(5)]
    members = [DkgMember(as_identifier(n + 1), k.public) for n, k in enumerate(identities)]

    def dkg_run() -> object:
        params = DkgParams.create(os.urandom(32), 3, members)
        outputs = run_in_process(params, identities)
        if len({o.public_key_package for o in outputs.values()}) != 1:
            raise SystemExit("the DKG members disagree")
        return outputs

    dkg_ms = _median_p95_ms(_timings(dkg_run, args.dkg_runs))
    print(
        f"5-member DKG, t=3, one process ({args.dkg_runs} runs): "
        f"median {dkg_ms[0]:.1f} ms, p95 {dkg_ms[1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
