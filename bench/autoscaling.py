"""The autoscaling pass of one metering period for 10,000 autoscaled applications (3 replicas
each on 1,000 active nodes, one node's usage report each, kept by application as reports arrive),
spread over blocks: each block of the pass against the same block without it (the period already
decided), executed by the runtime over an in-memory trie on one core, trie commit included. A
third of the apps are busy (120% of their request against a 60% target: they scale up, and the
block that ends the pass places their new replicas), a third idle (10%: held by the scale-down
window), a third on target. Also timed: the pass alone in each block (the usage module's hook,
without placement or commit), and for scale the same block without the pass at an epoch
boundary, where every application is placed again anyway.

Run: `.venv/bin/python -m bench.autoscaling [--apps N] [--nodes N] [--rounds N] [--per-block N]
[--smoke]`."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from chain import codec
from chain.genesis import build_genesis
from chain.primitives import AccountId, BlockNumber, Hash32, TimestampMs
from chain.runtime import app_scaling, apps, nodes, usage
from chain.runtime.app_scaling import AutoscaleState
from chain.runtime.apps import AppRecord, Apps
from chain.runtime.autoscaling import History, Recommendation
from chain.runtime.executive import BlockExecution, Runtime
from chain.runtime.framework import BlockEnv, Context
from chain.runtime.manifest import Autoscaling
from chain.runtime.nodes import NodeRecord, NodeStatus
from chain.runtime.scheduler import Resources
from chain.runtime.usage import Usage, UsageRecord, encode_records
from chain.state import Overlay, TrieState, storage_key
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec

SEED = 20_261_203
REPLICAS = 3
PERIOD = 1_000
"""The metering period the block decides."""
LOADS = (120, 10, 60)
"""Percent of the CPU request used, by app number modulo 3."""


def best_seconds(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


class Setup:
    """Two states that differ only in whether period PERIOD is decided, and the block env."""

    def __init__(self, app_count: int, node_count: int, per_block: int) -> None:
        rng = random.Random(SEED)
        spec = development_spec()
        spec = replace(spec, runtime=replace(spec.runtime, autoscaling_apps_per_block=per_block))
        self.trie_nodes: dict[bytes, bytes] = {}
        genesis = build_genesis(spec, TrieState(self.trie_nodes, BLANK_ROOT))
        self.trie_nodes.update(genesis.commit.nodes.items())
        self.runtime = Runtime(spec.runtime, genesis.hash)
        config = spec.runtime
        period_ms = config.metering_period_seconds * 1000
        epoch = config.towers.epoch_length
        number = (PERIOD + 1) * period_ms // 1000 + 1
        number += 1 if number % epoch == 0 else 0  # no epoch boundary: no placement by itself
        self.env = BlockEnv(
            BlockNumber(number),
            Hash32(b"\x00" * 32),
            TimestampMs((PERIOD + 1) * period_ms + period_ms // 2),
            AccountId(b"\x00" * 32),
        )
        assert usage.due_period(self.env.timestamp, config.metering_period_seconds) == PERIOD
        state = Overlay(TrieState(self.trie_nodes, genesis.commit.root))
        ctx = Context(state, self.env, config, genesis.hash)
        node_ids = sorted(AccountId(rng.randbytes(32)) for _ in range(node_count))
        for node_id in node_ids:
            offer = NodeRecord(
                AccountId(rng.randbytes(32)), "cpu", 64, 262_144, 1_000, 0, b"", 0, 0,
                NodeStatus.ACTIVE,
            )  # fmt: skip
            nodes.put_node(state, node_id, offer)
        state.put(nodes.INDEX_KEY, b"".join(node_ids))
        names = [f"app-{i:05d}" for i in range(app_count)]
        scaling = Autoscaling(1, 10, 60)
        now = self.env.timestamp * config.autoscaling_time_scale // 1000
        # The last period recommended what runs: the idle third stays within the window.
        history = History(
            (Recommendation(now - period_ms * config.autoscaling_time_scale // 1000, REPLICAS),)
        )
        fresh = AutoscaleState(scaling, 1, REPLICAS, 60, "", PERIOD - 1, None, 0, history, ())
        resources = Resources(100, 64, 0, 0)
        for i, name in enumerate(names):
            app = AppRecord(
                AccountId(rng.randbytes(32)), 1, rng.randbytes(32), REPLICAS, "cpu", resources,
                1, 0, 1, 1, i + 1,
            )  # fmt: skip
            state.put(storage_key(apps.NAME, "app") + name.encode(), app.encode())
            app_scaling.put_state(state, name, fresh)
        state.put(apps.INDEX_KEY, codec.encode([n.encode() for n in names]))
        state.put(app_scaling.AUTOSCALED_KEY, codec.encode([n.encode() for n in names]))
        Apps().place(ctx)
        request_ms = resources.cpu_millicores * period_ms // 1000
        by_node: dict[bytes, list[UsageRecord]] = {}
        for i, name in enumerate(names):
            for entry in apps.placement(state, name):
                used = request_ms * LOADS[i % 3] // 100
                by_node.setdefault(entry.node, []).append(
                    UsageRecord(name, entry.index, i + 1, used, 2**20, period_ms)
                )
        for holder, records in by_node.items():
            records.sort(key=UsageRecord.order)
            state.put(usage.report_key(holder, PERIOD), encode_records(records))
            usage.index_by_app(state, holder, PERIOD, records)
        changes = dict(state.items())
        undecided = TrieState(self.trie_nodes, genesis.commit.root).commit(changes)
        self.trie_nodes.update(undecided.nodes.items())
        changes[usage.DECIDED_PERIOD_KEY] = PERIOD.to_bytes(8, "big")
        decided = TrieState(self.trie_nodes, genesis.commit.root).commit(changes)
        self.trie_nodes.update(decided.nodes.items())
        self.with_pass = undecided.root
        self.without_pass = decided.root
        self.replicas = sum(len(r) for r in by_node.values())

    def env_after(self, blocks: int) -> BlockEnv:
        """The block `blocks` slots after the first of the pass."""
        return BlockEnv(
            BlockNumber(self.env.number + blocks),
            self.env.parent_hash,
            TimestampMs(self.env.timestamp + 1_000 * blocks),
            self.env.author,
        )

    def execute(self, root: Hash32, env: BlockEnv) -> BlockExecution:
        return self.runtime.execute_block(TrieState(self.trie_nodes, root), env, [])

    def pass_blocks(self) -> tuple[list[tuple[Hash32, BlockEnv]], int]:
        """Each block of the pass (its parent state root and env), executed once in order until
        the pass ends (skipping epoch boundaries, where every app is placed anyway); the number
        of `Scaled` events."""
        epoch = self.runtime.config.towers.epoch_length
        blocks: list[tuple[Hash32, BlockEnv]] = []
        root, step, scaled = self.with_pass, 0, 0
        while True:
            env = self.env_after(step)
            step += 1
            if env.number % epoch == 0:
                continue
            execution = self.execute(root, env)
            self.trie_nodes.update(execution.commit.nodes.items())
            scaled += sum(1 for e in execution.events if e.name == "Scaled")
            blocks.append((root, env))
            root = execution.commit.root
            if TrieState(self.trie_nodes, root).get(app_scaling.PASS_KEY) is None:
                return blocks, scaled

    def epoch_boundary(self) -> BlockEnv:
        """The same block at an epoch boundary, where every app is placed again anyway."""
        epoch = self.runtime.config.towers.epoch_length
        number = self.env.number - self.env.number % epoch
        return BlockEnv(
            BlockNumber(number), self.env.parent_hash, self.env.timestamp, self.env.author
        )

    def pass_alone(self, root: Hash32, env: BlockEnv) -> None:
        state = Overlay(TrieState(self.trie_nodes, root))
        ctx = Context(state, env, self.runtime.config, self.runtime.genesis_hash)
        Usage().autoscale(ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--per-block",
        type=int,
        default=development_spec().runtime.autoscaling_apps_per_block,
        help="apps decided per block (the runtime's autoscaling_apps_per_block)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="200 apps on 20 nodes, 64 a block, one run"
    )
    args = parser.parse_args()
    if args.smoke:
        args.apps, args.nodes, args.per_block, args.rounds = 200, 20, 64, 1
    started = time.perf_counter()
    setup = Setup(args.apps, args.nodes, args.per_block)
    built = time.perf_counter() - started
    blocks, scaled = setup.pass_blocks()
    if scaled != (args.apps + 2) // 3:
        raise SystemExit(f"{scaled} apps scaled, expected the busy third")
    if any(e.name == "Scaled" for e in setup.execute(setup.without_pass, setup.env).events):
        raise SystemExit("the block without the pass scaled something")
    per_block = setup.runtime.config.autoscaling_apps_per_block
    if len(blocks) != -(-args.apps // per_block):
        raise SystemExit(f"the pass took {len(blocks)} blocks at {per_block} apps a block")
    with_pass = [best_seconds(args.rounds, partial(setup.execute, *block)) for block in blocks]
    without = [
        best_seconds(args.rounds, partial(setup.execute, setup.without_pass, env))
        for _, env in blocks
    ]
    alone = [best_seconds(args.rounds, partial(setup.pass_alone, *block)) for block in blocks]
    boundary = setup.epoch_boundary()
    epoch_s = best_seconds(args.rounds, lambda: setup.execute(setup.without_pass, boundary))
    # The largest block of the pass before the one that ends it (which places the apps).
    k = max(range(max(len(blocks) - 1, 1)), key=lambda i: with_pass[i])
    print(
        f"{args.apps:,} autoscaled apps, {setup.replicas:,} replicas reported on {args.nodes:,}"
        f" nodes (state built in {built:.1f} s); best of {args.rounds} runs"
    )
    print(f"the pass: {len(blocks)} blocks of at most {per_block:,} apps; {scaled:,} apps scaled")
    print(
        f"largest block of the pass before its end: {with_pass[k] * 1e3:7.1f} ms (block {k + 1});"
        f" the same block without the pass: {without[k] * 1e3:.1f} ms;"
        f" ratio {with_pass[k] / without[k]:.1f}x"
    )
    extra = max(w - b for w, b in zip(with_pass, without, strict=True))
    print(f"most time a block of the pass adds to the same block without it: {extra * 1e3:.1f} ms")
    print(
        f"the block that ends it (placing the apps): {with_pass[-1] * 1e3:7.1f} ms;"
        f" without the pass: {without[-1] * 1e3:.1f} ms"
    )
    per_app = sum(alone) / args.apps * 1e6
    print(
        f"the pass alone (no placing): largest block {max(alone) * 1e3:.1f} ms,"
        f" all blocks {sum(alone) * 1e3:.1f} ms ({per_app:.1f} µs per app)"
    )
    print(f"an epoch boundary (placing every app, no pass): {epoch_s * 1e3:7.1f} ms")
    print(f"the block that ends the pass / an epoch boundary: {with_pass[-1] / epoch_s:.2f}x")


if __name__ == "__main__":
    main()
