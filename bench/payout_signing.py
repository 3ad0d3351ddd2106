"""Payout signing over the network: a wallet's committee of three members (2 of 3), each a
libp2p host on loopback with its own wallet service, pays one open invoice per round with a
FROST-signed `billing.pay` (`Payouts.pay`: commitments from every member, each checking the
payout against its own finalized state, two signature shares, aggregation, submission into an
in-memory chain that executes it). Prints the round's median and p95, against a single-key
Ed25519 signature of the same transaction measured in the same run.

The three hosts share one process and one trio loop (one core): the members' work is serial,
the network is real (TCP, Noise, yamux). The wallet's shares come from a trusted dealer (the
DKG is `bench.wallet_network`'s concern), written to each member's encrypted share store.

    .venv/bin/python -m bench.payout_signing [--rounds 50] [--operators 10] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from chain import codec
from chain.blocks import Call, tx_hash
from chain.genesis import build_genesis
from chain.keys import Keypair, dev_keypair
from chain.primitives import AccountId, BlockNumber, Hash32, TimestampMs
from chain.runtime import billing, system, wallets
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv, put_uints
from chain.state import Overlay, StateReader, TrieState
from chain.trie import BLANK_ROOT
from node.chain_spec import development_spec
from p2p.config import P2PConfig
from p2p.host import P2PService
from p2p.identity import NodeKey
from wallet.committee import P2PWalletTransport, WalletService
from wallet.frost.dealer import trusted_dealer_keygen
from wallet.member import payout_transaction
from wallet.payouts import Payouts
from wallet.shares import ShareStore, StoredShare

NETWORK_ID = "payoutbench"
LOGIN = dev_keypair("eve")


class MemoryLedger:
    """The chain as the wallet services see it, in memory: a submitted transaction is executed
    in a block of its own at once, and final at once."""

    def __init__(self) -> None:
        spec = development_spec()
        self.nodes: dict[bytes, bytes] = {}
        genesis = build_genesis(spec, TrieState(self.nodes, BLANK_ROOT))
        self._commit(genesis.commit)
        self.runtime = Runtime(spec.runtime, genesis.hash)
        self._genesis = genesis.hash
        self.number = 0

    @property
    def genesis_hash(self) -> Hash32:
        return self._genesis

    def state(self) -> TrieState:
        return TrieState(self.nodes, self.root)

    def finalized_state(self) -> StateReader:
        return self.state()

    @property
    def finalized_number(self) -> int:
        return self.number

    def in_pool(self, tx_hash: Hash32) -> bool:
        return False

    def finalized_heads(self) -> trio.MemoryReceiveChannel[object]:
        return trio.open_memory_channel[object](1)[1]

    def next_nonce(self, account: AccountId) -> int:
        return system.account(self.state(), account).nonce

    def submit(self, encoded: bytes) -> Hash32:
        env = BlockEnv(
            BlockNumber(self.number + 1),
            Hash32(self.number.to_bytes(32, "big")),
            TimestampMs(1_000 * (self.number + 1)),
            dev_keypair("alice").public,
        )
        self.runtime.validate_transaction(self.state(), encoded, env)
        execution = self.runtime.execute_block(self.state(), env, [encoded])
        (outcome,) = execution.outcomes
        if outcome.error is not None:
            raise RuntimeError(f"the payout failed: {outcome.error}")
        self._commit(execution.commit)
        self.number += 1
        return tx_hash(encoded)

    def submit_signed(self, keypair: Keypair, call: Call) -> Hash32:
        raise NotImplementedError("the benchmark submits payouts only")

    def write(self, overlay: Overlay) -> None:
        self._commit(self.state().commit(overlay.changes))

    def _commit(self, commit: Any) -> None:
        for node_hash, node in commit.nodes.items():
            self.nodes[node_hash] = node
        self.root = commit.root


def set_up_wallet(ledger: MemoryLedger, members: list[Keypair], folder: Path) -> AccountId:
    """A registered 2-of-3 wallet of `members` (shares dealt, sealed in each member's store),
    funded."""
    dealt = trusted_dealer_keygen(3, 2)
    group = AccountId(dealt.public_key_package.group_public_key.encoding)
    committee = sorted(m.public for m in members)
    for identifier, key_package in dealt.key_packages.items():
        member = next(m for m in members if m.public == committee[identifier - 1])
        store = ShareStore(folder / member.public.hex()[:8], member.seed)
        store.save(group, StoredShare(key_package, dealt.public_key_package))
    overlay = Overlay(ledger.state())
    record = wallets.WalletRecord(tuple(AccountId(m) for m in committee), 2, LOGIN.public, 0)
    wallets.put_wallet(overlay, group, record)
    system.put_account(overlay, group, system.AccountInfo(0, 10**24))
    ledger.write(overlay)
    return group


def issue(ledger: MemoryLedger, wallet: AccountId, operators: int, period: int) -> billing.Invoice:
    """An open invoice of `wallet` paying `operators` operators, written as `billing` issues it
    (the benchmark times the payout, not the metering)."""
    overlay = Overlay(ledger.state())
    lines = tuple(sorted((AccountId(bytes([i + 1]) * 32), 1_000_000 + i) for i in range(operators)))
    made = billing.Invoice(
        billing.next_invoice_id(overlay), wallet, period, lines, sum(a for _, a in lines), False
    )
    billing._store_invoice(overlay, made)
    overlay.put(billing._NEXT_INVOICE, codec.encode_uint(made.id + 1))
    put_uints(
        overlay, billing._OPEN + wallet, [*billing.open_invoice_ids(overlay, wallet), made.id]
    )
    ledger.write(overlay)
    return made


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def measure(rounds: int, operators: int) -> tuple[list[float], list[float]]:
    ledger = MemoryLedger()
    keys = [NodeKey.generate() for _ in range(3)]
    members = [Keypair.from_seed(k.seed) for k in keys]
    addresses: dict[AccountId, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        group = set_up_wallet(ledger, members, Path(tmp))
        async with trio.open_nursery() as nursery:
            services = []
            for key, member in zip(keys, members, strict=True):
                p2p = P2PService(P2PConfig(network_id=NETWORK_ID), key)
                wallet = WalletService(
                    identity=member,
                    ledger=ledger,
                    shares=ShareStore(Path(tmp) / member.public.hex()[:8], member.seed),
                    transport=P2PWalletTransport(p2p, addresses.get),
                    payer=None,
                )
                wallet.register(p2p)
                addresses[member.public] = await nursery.start(p2p.run)
                services.append(wallet)
            record = wallets.get_wallet(ledger.state(), group)
            assert record is not None
            payouts = [Payouts(service, ledger) for service in services]
            # The first round dials the other members: not timed.
            await payouts[0].pay(record, issue(ledger, group, operators, 0))
            rounds_s, single_s = [], []
            for n in range(rounds):
                invoice = issue(ledger, group, operators, n + 1)
                coordinator = payouts[n % 3]
                started = time.perf_counter()
                await coordinator.pay(record, invoice)
                rounds_s.append(time.perf_counter() - started)
                unsigned = payout_transaction(
                    ledger.genesis_hash, invoice, ledger.next_nonce(group)
                )
                started = time.perf_counter()
                LOGIN.sign(unsigned.signing_payload())
                single_s.append(time.perf_counter() - started)
                paid = billing.invoice(ledger.state(), invoice.id)
                assert paid is not None and paid.paid
            nursery.cancel_scope.cancel()
    return rounds_s, single_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--operators", type=int, default=10, help="operators one invoice pays")
    parser.add_argument("--smoke", action="store_true", help="three rounds")
    args = parser.parse_args()
    if args.smoke:
        args.rounds = 3
    rounds, single = trio.run(measure, args.rounds, args.operators)
    median = statistics.median(rounds)
    print(
        f"2-of-3 payout signing round over libp2p ({args.operators} operators, {args.rounds} "
        f"rounds): median {median * 1000:.1f} ms, p95 {p95(rounds) * 1000:.1f} ms"
    )
    baseline = statistics.median(single)
    print(
        f"single-key Ed25519 signing of the same transaction: median {baseline * 1e6:.1f} µs; "
        f"ratio {median / baseline:,.0f}x"
    )


if __name__ == "__main__":
    main()
