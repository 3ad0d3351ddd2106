"""Replica placement time: `chain.runtime.scheduler.schedule` placing apps x 3 replicas on a
network of nodes from nothing, again on its own output (an epoch where nothing changed), and
after 10 % of the nodes are jailed; at 1,000 apps on 1,000 nodes, then with 10x the nodes, 10x
the apps, and both. Baseline, measured in the same run: sorting the node list by tower height
and id (what any placement must at least do). Target: under one slot (1 s) at 1,000 x 1,000.

Run: `.venv/bin/python -m bench.scheduler [--rounds N] [--smoke]`."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import replace

from chain.runtime.nodes import NodeStatus
from chain.runtime.scheduler import AppDemand, NodeInfo, Placement, Resources, schedule

SEED = 20_261_125
REPLICAS = 3
CASES = ((1_000, 1_000), (10_000, 1_000), (1_000, 10_000), (10_000, 10_000))
SMOKE_CASES = ((50, 50), (100, 50))
"""(nodes, apps)."""


def make_nodes(count: int, rng: random.Random) -> list[NodeInfo]:
    """About four nodes per operator; 90 % active; one node in ten is a gpu node."""
    operators = [rng.randbytes(32) for _ in range(max(1, count // 4))]
    nodes = []
    for _ in range(count):
        gpu = rng.random() < 0.1
        nodes.append(
            NodeInfo(
                node_id=rng.randbytes(32),
                operator=rng.choice(operators),
                node_class="gpu" if gpu else "cpu",
                capacity=Resources(
                    cpu_millicores=rng.choice((4, 8, 16, 32, 64)) * 1000,
                    memory_mib=rng.choice((8, 16, 32, 64, 128)) * 1024,
                    disk_gib=rng.choice((100, 250, 500, 1000)),
                    gpus=rng.choice((1, 2, 4)) if gpu else 0,
                ),
                tower_height=rng.randrange(1_000),
                status=NodeStatus.ACTIVE if rng.random() < 0.9 else NodeStatus.STANDBY,
            )
        )
    return nodes


def make_apps(count: int, rng: random.Random) -> list[AppDemand]:
    """Small to large replicas; one app in twenty wants a gpu."""
    apps = []
    for i in range(count):
        gpu = rng.random() < 0.05
        apps.append(
            AppDemand(
                app=f"app-{i:05d}",
                revision=1,
                replicas=REPLICAS,
                node_class="gpu" if gpu else "cpu",
                resources=Resources(
                    cpu_millicores=rng.choice((100, 250, 500, 1000, 2000)),
                    memory_mib=rng.choice((64, 128, 256, 512, 1024, 2048)),
                    disk_gib=rng.choice((0, 1, 5, 20)),
                    gpus=1 if gpu else 0,
                ),
            )
        )
    return apps


def best_seconds(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def jail_tenth(nodes: list[NodeInfo], rng: random.Random) -> list[NodeInfo]:
    jailed = set(rng.sample(range(len(nodes)), len(nodes) // 10))
    return [replace(n, status=NodeStatus.JAILED) if i in jailed else n for i, n in enumerate(nodes)]


def measure(node_count: int, app_count: int, rounds: int) -> dict[str, float]:
    rng = random.Random(SEED + node_count + app_count)
    nodes = make_nodes(node_count, rng)
    apps = make_apps(app_count, rng)
    fresh: list[Placement] = []
    fresh_s = best_seconds(rounds, lambda: fresh.append(schedule(apps, nodes, {})))
    placement = fresh[-1]
    again_s = best_seconds(rounds, lambda: schedule(apps, nodes, placement.assignments))
    if schedule(apps, nodes, placement.assignments) != placement:
        raise SystemExit("running again on the output changed it")
    jailed_nodes = jail_tenth(nodes, rng)
    after: list[Placement] = []
    jailed_s = best_seconds(
        rounds, lambda: after.append(schedule(apps, jailed_nodes, placement.assignments))
    )
    moved = sum(1 for r, n in after[-1].assignments.items() if placement.assignments.get(r) != n)
    sort_s = best_seconds(
        rounds, lambda: sorted(nodes, key=lambda info: (-info.tower_height, info.node_id))
    )
    return {
        "placed": len(placement.assignments),
        "pending": len(placement.pending),
        "fresh": fresh_s,
        "again": again_s,
        "jailed": jailed_s,
        "moved": moved,
        "sort": sort_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    parser.add_argument("--smoke", action="store_true", help="one run of two small networks")
    args = parser.parse_args()
    cases = SMOKE_CASES if args.smoke else CASES
    if args.smoke:
        args.rounds = 1

    print(f"{REPLICAS} replicas per app; times are the best of {args.rounds} runs")
    print(
        f"{'nodes':>7} {'apps':>7} {'placed':>7} {'pending':>7} {'from nothing':>13} "
        f"{'again':>9} {'10% jailed':>11} {'moved':>6} {'sort nodes':>11} {'ratio':>6} "
        f"{'growth':>7}"
    )
    base = 0.0
    for node_count, app_count in cases:
        m = measure(node_count, app_count, args.rounds)
        base = base or m["fresh"]
        print(
            f"{node_count:>7,} {app_count:>7,} {m['placed']:>7,.0f} {m['pending']:>7,.0f} "
            f"{m['fresh'] * 1e3:>10.1f} ms {m['again'] * 1e3:>6.1f} ms "
            f"{m['jailed'] * 1e3:>8.1f} ms {m['moved']:>6,.0f} {m['sort'] * 1e3:>8.2f} ms "
            f"{m['fresh'] / m['sort']:>5.0f}x {m['fresh'] / base:>6.1f}x"
        )
    print("ratio: placing from nothing / sorting the nodes; growth: against the first row")


if __name__ == "__main__":
    main()
