"""The Time Tower prover service (worker process) against chiavdf.prove called directly, and
against chiavdf.prove in a trio worker thread, in interleaved rounds of the same run.

Prints iterations per second of each (best of the rounds), the ratios to the direct call, the
worker's start-up time and how long a cancellation mid-proof takes to return.
Run: `.venv/bin/python -m bench.vdf_prover [--iterations N] [--rounds R] [--smoke]`."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import chiavdf
import trio

from chain.primitives import blake2_256
from vdf.proof import DEFAULT_PARAMS, GENERATOR
from vdf.prover import Prover, TowerJob
from vdf.tower import GENESIS_PREVIOUS_Y, TowerProof, tower_challenge

NODE = bytes([0x42]) * 32
CANCEL_ITERATIONS = 10**8
TARGET_RATIO = 0.95


def _anchor(index: int) -> bytes:
    return bytes(blake2_256(b"bench-anchor" + index.to_bytes(4, "big")))


def _challenge(method: str, index: int) -> bytes:
    node = bytes(blake2_256(method.encode()))
    return tower_challenge(node, GENESIS_PREVIOUS_Y, _anchor(index), 1)


async def _measure(iterations: int, rounds: int) -> dict[str, list[float]]:
    bits = DEFAULT_PARAMS.discriminant_bits
    jobs_send, jobs_receive = trio.open_memory_channel[TowerJob](0)
    proofs_send, proofs_receive = trio.open_memory_channel[TowerProof](0)
    rates: dict[str, list[float]] = {"direct": [], "thread": [], "service": []}
    height = 0
    previous_y = GENESIS_PREVIOUS_Y

    async def direct(index: int) -> None:
        # Blocks the event loop on purpose: this is the bare library call.
        chiavdf.prove(_challenge("direct", index), GENERATOR, bits, iterations, "")

    async def thread(index: int) -> None:
        challenge = _challenge("thread", index)
        await trio.to_thread.run_sync(chiavdf.prove, challenge, GENERATOR, bits, iterations, "")

    async def service(index: int) -> None:
        nonlocal height, previous_y
        height += 1
        await jobs_send.send(TowerJob(height, previous_y, index, _anchor(index)))
        proof = await proofs_receive.receive()
        previous_y = proof.y

    methods: dict[str, Callable[[int], Awaitable[None]]] = {
        "direct": direct,
        "thread": thread,
        "service": service,
    }
    prover = Prover(NODE, DEFAULT_PARAMS, iterations, jobs_receive.receive, proofs_send.send)
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        await nursery.start(prover.run)
        print(f"worker process start-up: {(time.perf_counter() - started) * 1000:.0f} ms")
        order = list(methods)
        for index in range(rounds):
            for name in order:
                begin = time.perf_counter()
                await methods[name](index)
                rates[name].append(iterations / (time.perf_counter() - begin))
            order = order[1:] + order[:1]  # rotate, so no method always runs first
        nursery.cancel_scope.cancel()
    return rates


async def _cancel_latency() -> float:
    jobs_send, jobs_receive = trio.open_memory_channel[TowerJob](1)

    async def submit(proof: TowerProof) -> None:
        raise AssertionError("a proof of 10^8 iterations finished during the benchmark")

    prover = Prover(NODE, DEFAULT_PARAMS, CANCEL_ITERATIONS, jobs_receive.receive, submit)
    async with trio.open_nursery() as nursery:
        await nursery.start(prover.run)
        await jobs_send.send(TowerJob(1, GENESIS_PREVIOUS_Y, 0, _anchor(0)))
        await trio.sleep(0.5)
        cancelled = time.perf_counter()
        nursery.cancel_scope.cancel()
    return time.perf_counter() - cancelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one round of 20,000 iterations")
    args = parser.parse_args()
    if args.smoke:
        args.iterations, args.rounds = 20_000, 1
    print(f"{args.iterations:,} iterations per proof, 1024-bit discriminant, {args.rounds} rounds")
    rates = trio.run(_measure, args.iterations, args.rounds)
    best = {name: max(values) for name, values in rates.items()}
    print(f"{'':<34}{'best it/s':>12}{'median it/s':>13}{'ratio':>8}")
    labels = {
        "direct": "chiavdf.prove, direct (baseline)",
        "thread": "chiavdf.prove in a trio thread",
        "service": "Prover service (worker process)",
    }
    for name, label in labels.items():
        ratio = best[name] / best["direct"]
        median = statistics.median(rates[name])
        print(f"{label:<34}{best[name]:>12,.0f}{median:>13,.0f}{ratio:>8.3f}")
    latency = trio.run(_cancel_latency)
    print(f"cancelling a 10^8-iteration proof returned in {latency * 1000:.1f} ms")
    ratio = best["service"] / best["direct"]
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"service / direct = {ratio:.3f}: {verdict} the target {TARGET_RATIO}")


if __name__ == "__main__":
    main()
