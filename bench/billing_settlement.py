"""Settlement of one metering period: 10,000 replicas (1,000 applications of 10) on 1,000 active
nodes, each node's usage report of the period in one block, the block that issues the invoices
(one per paying wallet, 100 wallets) and the block of the wallets' payouts; each against the
same block without billing (the same reports of applications no wallet pays, the same block
with nothing to issue, an empty block), executed by the runtime over an in-memory trie on one
core, trie commit and signature checks included.

Run: `.venv/bin/python -m bench.billing_settlement [--apps N] [--replicas N] [--nodes N]
[--wallets N] [--rounds N] [--smoke]`."""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import rlp

from chain import codec
from chain.genesis import build_genesis
from chain.keys import Keypair, sign_transaction
from chain.primitives import AccountId, BlockNumber, Hash32, TimestampMs
from chain.runtime import apps, billing, nodes, system
from chain.runtime.apps import AppRecord, Apps
from chain.runtime.billing import Billing, encode_payees
from chain.runtime.executive import BlockExecution, Runtime
from chain.runtime.framework import BlockEnv, Context
from chain.runtime.nodes import NodeRecord, NodeStatus
from chain.runtime.scheduler import Resources
from chain.runtime.usage import Usage, UsageRecord, encode_records, report_payload
from chain.state import Overlay, TrieState, storage_key
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec

SEED = 20_261_203
PERIOD = 1_000
"""The metering period settled."""
FUNDS = 10**24
(REPORT,) = Usage().calls()
(PAY, _SET_PRICES) = Billing().calls()


def best_seconds(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class Sizes:
    apps: int
    replicas: int
    nodes: int
    wallets: int


class Chain:
    """One state: nodes, applications placed during period PERIOD - 1, paid by wallets or not.
    A node offers one core: ten replicas of a tenth of a core fill it, so that 10,000 replicas
    take 1,000 nodes."""

    def __init__(self, sizes: Sizes, *, billed: bool) -> None:
        rng = random.Random(SEED)
        spec = development_spec()
        self.config = spec.runtime
        self.trie: dict[bytes, bytes] = {}
        genesis = build_genesis(spec, TrieState(self.trie, BLANK_ROOT))
        self.trie.update(genesis.commit.nodes.items())
        self.runtime = Runtime(self.config, genesis.hash)
        self.period_ms = self.config.metering_period_seconds * 1000
        state = Overlay(TrieState(self.trie, genesis.commit.root))
        placed_at = self.env((PERIOD - 1) * self.period_ms + 1)
        ctx = Context(state, placed_at, self.config, genesis.hash)
        self.node_keys = sorted(
            (Keypair.from_seed(rng.randbytes(32)) for _ in range(sizes.nodes)),
            key=lambda k: k.public,
        )
        self.operators: dict[bytes, Keypair] = {
            k.public: Keypair.from_seed(rng.randbytes(32)) for k in self.node_keys
        }
        for key in self.node_keys:
            operator = self.operators[key.public]
            offer = NodeRecord(
                AccountId(operator.public), "cpu", 1, 1_024, 10, 0, b"", 0, 0,
                NodeStatus.ACTIVE,
            )  # fmt: skip
            nodes.put_node(state, key.public, offer)
            system.put_account(state, AccountId(operator.public), system.AccountInfo(0, FUNDS))
        state.put(nodes.INDEX_KEY, b"".join(k.public for k in self.node_keys))
        self.wallets = [Keypair.from_seed(rng.randbytes(32)) for _ in range(sizes.wallets)]
        for wallet in self.wallets:
            system.put_account(state, AccountId(wallet.public), system.AccountInfo(0, FUNDS))
        names = [f"app-{i:05d}" for i in range(sizes.apps)]
        resources = Resources(100, 64, 0, 0)
        for i, name in enumerate(names):
            app = AppRecord(
                AccountId(rng.randbytes(32)), 1, rng.randbytes(32), sizes.replicas, "cpu",
                resources, 1, 0, 1, 1, i + 1,
            )  # fmt: skip
            state.put(storage_key(apps.NAME, "app") + name.encode(), app.encode())
            if billed:
                payer = AccountId(self.wallets[i % sizes.wallets].public)
                billing.set_wallet(state, name, i + 1, payer)
        state.put(apps.INDEX_KEY, codec.encode([n.encode() for n in names]))
        Apps().place(ctx)
        # What each node ran in PERIOD: a tenth of a core, 32 MiB, the whole period.
        by_node: dict[bytes, list[UsageRecord]] = {}
        for i, name in enumerate(names):
            for entry in apps.placement(state, name):
                by_node.setdefault(entry.node, []).append(
                    UsageRecord(
                        name, entry.index, i + 1, self.period_ms // 10, 2**25, self.period_ms
                    )
                )
        self.replicas = sum(len(r) for r in by_node.values())
        total = sum(
            system.account(state, AccountId(a)).free
            for a in [
                *(o.public for o in self.operators.values()),
                *(w.public for w in self.wallets),
            ]
        )
        from chain.runtime import balances

        balances.set_total_issuance(state, balances.total_issuance(state) + total)
        commit = TrieState(self.trie, genesis.commit.root).commit(dict(state.items()))
        self.trie.update(commit.nodes.items())
        self.root = commit.root
        self.reports = [
            self._report(holder, records) for holder, records in sorted(by_node.items())
        ]

    def env(self, timestamp: int) -> BlockEnv:
        number = timestamp // 1000
        number += 1 if number % self.config.towers.epoch_length == 0 else 0
        return BlockEnv(
            BlockNumber(number),
            Hash32(b"\x00" * 32),
            TimestampMs(timestamp),
            AccountId(b"\x00" * 32),
        )

    def _report(self, holder: bytes, records: list[UsageRecord]) -> bytes:
        key = next(k for k in self.node_keys if k.public == holder)
        records.sort(key=UsageRecord.order)
        raw = encode_records(records)
        call = REPORT.call(
            node_id=holder, period=PERIOD, records=raw,
            node_signature=key.sign(report_payload(holder, PERIOD, raw)),
        )  # fmt: skip
        tx = sign_transaction(
            self.operators[holder], genesis_hash=self.runtime.genesis_hash, nonce=0, call=call
        )
        return bytes(rlp.encode(tx))

    def execute(self, root: Hash32, env: BlockEnv, extrinsics: list[bytes]) -> BlockExecution:
        return self.runtime.execute_block(TrieState(self.trie, root), env, extrinsics)

    def keep(self, execution: BlockExecution) -> Hash32:
        self.trie.update(execution.commit.nodes.items())
        return execution.commit.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1_000)
    parser.add_argument("--replicas", type=int, default=10, help="per application")
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--wallets", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    parser.add_argument("--smoke", action="store_true", help="20 apps of 5 on 20 nodes, one run")
    args = parser.parse_args()
    if args.smoke:
        args.apps, args.replicas, args.nodes, args.wallets, args.rounds = 20, 5, 20, 4, 1
    sizes = Sizes(args.apps, args.replicas, args.nodes, args.wallets)
    started = time.perf_counter()
    billed, plain = Chain(sizes, billed=True), Chain(sizes, billed=False)
    built = time.perf_counter() - started
    period_ms = billed.period_ms
    report_env = billed.env((PERIOD + 1) * period_ms + 1_500)
    issue_env = billed.env((PERIOD + 2) * period_ms + 500)
    pay_env = billed.env((PERIOD + 2) * period_ms + 1_500)

    def settle(chain: Chain) -> tuple[list[float], BlockExecution]:
        reported = chain.execute(chain.root, report_env, chain.reports)
        if any(o.error is not None for o in reported.outcomes):
            raise SystemExit(
                f"a report failed: {next(o.error for o in reported.outcomes if o.error)}"
            )
        after_reports = chain.keep(reported)
        issued = chain.execute(after_reports, issue_env, [])
        after_issue = chain.keep(issued)
        state = TrieState(chain.trie, after_issue)
        payouts = []
        for wallet in chain.wallets:
            for invoice in billing.open_invoices(state, wallet.public):
                call = PAY.call(invoice=invoice.id, payees=encode_payees(invoice.lines))
                tx = sign_transaction(
                    wallet, genesis_hash=chain.runtime.genesis_hash, nonce=0, call=call
                )
                payouts.append(bytes(rlp.encode(tx)))
        times = [
            best_seconds(args.rounds, lambda: chain.execute(chain.root, report_env, chain.reports)),
            best_seconds(args.rounds, lambda: chain.execute(after_reports, issue_env, [])),
            best_seconds(args.rounds, lambda: chain.execute(after_issue, pay_env, payouts)),
        ]
        paid = chain.execute(after_issue, pay_env, payouts)
        if any(o.error is not None for o in paid.outcomes):
            raise SystemExit("a payout failed")
        return times, issued

    with_billing, issued = settle(billed)
    without, plain_issued = settle(plain)
    invoices = sum(1 for e in issued.events if e.name == "InvoiceIssued")
    if invoices != args.wallets or any(e.name == "InvoiceIssued" for e in plain_issued.events):
        raise SystemExit(f"{invoices} invoices issued, expected {args.wallets}")
    print(
        f"{billed.replicas:,} replicas ({args.apps:,} apps) on {args.nodes:,} nodes "
        f"({len(billed.reports):,} of them hold replicas), "
        f"{args.wallets:,} paying wallets (states built in {built:.1f} s); best of {args.rounds}"
    )
    labels = (
        f"{len(billed.reports):,} usage reports",
        f"issuing {invoices} invoices",
        f"{invoices} payouts",
    )
    for label, w, b in zip(labels, with_billing, without, strict=True):
        print(f"{label:<22} with billing {w * 1e3:8.1f} ms   without {b * 1e3:8.1f} ms")
    extra = sum(with_billing) - sum(without)
    print(
        f"the period's blocks: {sum(with_billing) * 1e3:.1f} ms with billing, "
        f"{sum(without) * 1e3:.1f} ms without: billing adds {extra * 1e3:.1f} ms per period "
        f"({extra / billed.replicas * 1e6:.1f} µs per replica)"
    )


if __name__ == "__main__":
    main()
