"""A hostile client against a dev node's pool, as measured before the pool held: 165 `apps.create`
with a 49 KB manifest that fails late, sent in about 31 s, cost no slots; a sender whose dry runs
keep failing is banned (1012); an account funded for three fees gets three pool entries, not 14.
The same transactions published by a hostile peer cost no slots either, and the peer is banned."""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import rlp

from chain.blocks import Call
from chain.keys import Keypair, dev_keypair, sign_transaction
from chain.primitives import AccountId, Hash32
from node.chain_spec import development_spec
from node.commands.tx import build_call
from tests.integration.harness import ROOT, NodeProcess, RpcFailure, cli

pytestmark = [pytest.mark.integration, pytest.mark.serial]

FLOOD = 165
FLOOD_SECONDS = 31.0
ATTEMPTS_PER_SENDER = 3
"""Each flooding sender makes as many attempts as the pool strikes before it bans, so that every
one of the 165 is dry-run: the flood is not cut short by bans and measures the off-loop path."""
SENDERS = FLOOD // ATTEMPTS_PER_SENDER
CLIENTS = 12
"""Concurrent connections of the flooding client: bounded traffic on loopback, enough to keep
the pace while answers wait for their dry runs."""
IDLE_SECONDS = 10.0
GOSSIP_FLOOD = 60
"""Published by the hostile peer (testkit/rogue_peer.py) over 15 s, three per sender.
The node bans the peer after about ten failed dry runs, so more would not be looked at."""
TAKEN = "flood"
SPEC = development_spec()
SLOT_MS = SPEC.slot_duration_ms


def manifest(salt: int, *, size: int = 49 * 1024) -> bytes:
    """A valid manifest of about `size` bytes (eight containers with long environments) for the
    application `TAKEN`: once that name is taken, its create is refused only at the very end of
    the dry run, after the whole manifest was parsed and checked."""
    value = 70
    per_var = value + 30
    count = max(1, min(64, (size - 400) // (8 * per_var)))
    containers = [
        {
            "name": f"c{c}",
            "image": "busybox",
            "env": [
                {"name": f"V{c}_{i}", "value": f"{salt:08d}".ljust(value, "x")}
                for i in range(count)
            ],
        }
        for c in range(8)
    ]
    document = {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": TAKEN},
        "spec": {"replicas": 1, "containers": containers},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def signed(genesis: Hash32, who: Keypair, nonce: int, call: Call) -> str:
    tx = sign_transaction(who, genesis_hash=genesis, nonce=nonce, call=call)
    return "0x" + bytes(rlp.encode(tx)).hex()


def transfer(dest: AccountId, amount: int) -> Call:
    return build_call("balances", "transfer", {"dest": dest, "amount": amount})


def create(raw: bytes) -> Call:
    return build_call("apps", "create", {"manifest": raw})


def submit(node: NodeProcess, extrinsic: str) -> tuple[str, float]:
    """What the node answered ("ok" or "<code>: <message>") and how long it took."""
    started = time.monotonic()
    try:
        node.call("author_submitExtrinsic", extrinsic)
        outcome = "ok"
    except RpcFailure as failure:
        outcome = f"{failure.code}: {failure.message}"
    return outcome, time.monotonic() - started


def next_index(node: NodeProcess, who: Keypair) -> int:
    return int(node.call("system_accountNextIndex", who.address))


def chain_nonce(node: NodeProcess, who: Keypair) -> int:
    """The account's nonce in the best block: how many of its transactions were included."""
    return int(node.call("system_account", who.address)["nonce"])


def size(extrinsic: str) -> int:
    return (len(extrinsic) - 2) // 2


def block_intervals(node: NodeProcess, first: int, last: int) -> tuple[list[int], int]:
    """Milliseconds between consecutive blocks `first`..`last` by their timestamps (an author
    that is late shows as an interval above one slot), and how many slots had no block."""
    headers = [
        node.call("chain_getHeader", node.call("chain_getBlockHash", n))
        for n in range(first, last + 1)
    ]
    intervals = [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(headers)]
    skipped = sum(b["slot"] - a["slot"] - 1 for a, b in itertools.pairwise(headers))
    return intervals, skipped


def fund(
    node: NodeProcess, genesis: Hash32, payer: Keypair, accounts: list[Keypair], amount: int
) -> None:
    start = next_index(node, payer)
    for offset, account in enumerate(accounts):
        outcome, _ = submit(
            node, signed(genesis, payer, start + offset, transfer(account.public, amount))
        )
        assert outcome == "ok", outcome
    node.wait_for(
        lambda: chain_nonce(node, payer) == start + len(accounts),
        timeout=30,
        what="the funding transfers to be included",
    )


def flood(node: NodeProcess, extrinsics: list[str], seconds: float) -> list[tuple[str, float]]:
    """Send `extrinsics` evenly over `seconds`, at most CLIENTS at a time."""
    interval = seconds / len(extrinsics)
    started = time.monotonic()

    def paced(index: int) -> tuple[str, float]:
        delay = started + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return submit(node, extrinsics[index])

    with ThreadPoolExecutor(CLIENTS) as clients:
        return list(clients.map(paced, range(len(extrinsics))))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f}, p95 {p95(values):.0f}, max {max(values):.0f}"


class LateFailing(NamedTuple):
    genesis: Hash32
    senders: list[Keypair]
    extrinsics: list[str]


def late_failing(node: NodeProcess, label: bytes, senders: int, count: int) -> LateFailing:
    """`count` apps.create of about 49 KB that fail only at the end of their dry run (bob takes
    their name first), from `senders` fresh accounts (named by `label`) that charlie funds for
    four fees each, in turn: what each flood sends."""
    genesis = Hash32(bytes.fromhex(node.call("chain_getBlockHash", 0)[2:]))
    bob, charlie = dev_keypair("bob"), dev_keypair("charlie")
    outcome, _ = submit(
        node, signed(genesis, bob, next_index(node, bob), create(manifest(0, size=1024)))
    )
    assert outcome == "ok", outcome
    node.wait_for(lambda: node.call("apps_get", TAKEN), timeout=30, what=f"{TAKEN} to exist")
    accounts = [
        Keypair.from_seed(hashlib.sha256(label + b" %d" % i).digest()) for i in range(senders)
    ]
    fee = SPEC.runtime.fee(size(signed(genesis, accounts[0], 0, create(manifest(0)))))
    fund(node, genesis, charlie, accounts, 4 * fee)
    extrinsics = [
        signed(genesis, accounts[i % senders], 0, create(manifest(1 + i))) for i in range(count)
    ]
    return LateFailing(genesis, accounts, extrinsics)


def test_late_failing_manifests_cost_no_slots_and_repeat_senders_are_banned(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "dev").start()
    try:
        genesis, senders, extrinsics = late_failing(node, b"flood", SENDERS, FLOOD)
        bob, charlie = dev_keypair("bob"), dev_keypair("charlie")
        assert all(45 * 1024 <= size(x) <= 53 * 1024 for x in extrinsics)
        # The same node idle, in the same run: the machine's own jitter, for comparison.
        idle_first = node.best_number()
        time.sleep(IDLE_SECONDS)
        idle, idle_skipped = block_intervals(node, idle_first, node.best_number())

        first = node.best_number()
        started = time.monotonic()
        results = flood(node, extrinsics, FLOOD_SECONDS)
        took = time.monotonic() - started
        last = node.best_number()

        outcomes = [outcome for outcome, _ in results]
        name_taken = "1010: call would fail: apps.NameTaken"
        assert all(o.startswith(name_taken) for o in outcomes), sorted(set(outcomes))
        intervals, skipped = block_intervals(node, first, last)
        print(
            f"\nidle: {len(idle)} intervals ms {summary([float(i) for i in idle])}, "
            f"{idle_skipped} slots without a block"
            f"\n{FLOOD} late-failing {size(extrinsics[0])} B apps.create in {took:.1f} s: "
            f"{len(intervals)} intervals ms {summary([float(i) for i in intervals])}, "
            f"{skipped} slots without a block; "
            f"answers ms {summary([1000 * seconds for _, seconds in results])}"
        )
        assert skipped == 0, intervals
        assert p95([float(i) for i in intervals]) <= 1.2 * SLOT_MS, intervals

        # Each sender's dry runs all failed: a fourth attempt is refused before its dry run.
        outcome, _ = submit(node, signed(genesis, senders[0], 0, create(manifest(9999))))
        assert outcome.startswith(
            f"1012: temporarily banned: sender {senders[0].address} is temporarily banned for "
            "another "
        ), outcome
        assert outcome.endswith(
            f" s: {ATTEMPTS_PER_SENDER} of its transactions failed their dry run within 60 s"
        )
        # ... and nobody else is: the same sender's funds and key are needed for that.
        outcome, _ = submit(
            node, signed(genesis, bob, next_index(node, bob), transfer(charlie.public, 1))
        )
        assert outcome == "ok", outcome
    finally:
        node.stop()


def test_a_sender_funded_for_three_fees_gets_three_pool_entries(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "dev").start()
    try:
        genesis = Hash32(bytes.fromhex(node.call("chain_getBlockHash", 0)[2:]))
        poor = Keypair.from_seed(hashlib.sha256(b"poor").digest())
        bob = dev_keypair("bob")
        payments = [signed(genesis, poor, nonce, transfer(bob.public, 1)) for nonce in range(14)]
        fee = SPEC.runtime.fee(size(payments[0]))
        # Three fees and three transfers of 1; the existential deposit is below that.
        fund(node, genesis, dev_keypair("charlie"), [poor], 3 * (fee + 1))

        outcomes = [submit(node, payment)[0] for payment in payments]
        accepted = outcomes.count("ok")
        refused = [o for o in outcomes if o != "ok"]
        print(f"\n14 transfers from an account funded for 3 fees: {accepted} accepted")
        assert accepted == 3, outcomes
        # Refused for the pending ones while they wait, for the balance itself once included.
        assert all(o.startswith("1010: cannot pay fees: ") for o in refused), refused
        assert refused[0].startswith(
            "1010: cannot pay fees: Inability to pay some fees: the sender's 3 pending "
            f"transactions already spend {3 * fee + 1} of its free balance {3 * (fee + 1)}"
        ), refused[0]
        node.wait_for(
            lambda: chain_nonce(node, poor) == 3, timeout=20, what="the three to be included"
        )
        assert next_index(node, poor) == 3
    finally:
        node.stop()


def test_late_failing_manifests_by_gossip_cost_no_slots_and_their_publisher_is_banned(
    tmp_path: Path,
) -> None:
    node = NodeProcess(tmp_path / "dev").start()
    try:
        _, senders, flood = late_failing(
            node, b"gossip", GOSSIP_FLOOD // ATTEMPTS_PER_SENDER, GOSSIP_FLOOD
        )
        extrinsics = tmp_path / "flood.txt"
        extrinsics.write_text("\n".join(flood))
        spec = tmp_path / "dev.json"
        built = cli("build-spec", "--dev")
        assert built.returncode == 0, built.stderr
        spec.write_text(built.stdout)
        network_id = node.call("chain_getBlockHash", 0)[2:18]
        address = node.call("system_localListenAddresses")[0]

        first = node.best_number()
        started = time.monotonic()
        result = subprocess.run(
            [
                *(sys.executable, "-m", "testkit.rogue_peer"),
                *(network_id, address, "transactions", str(spec), str(extrinsics)),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
        )
        took = time.monotonic() - started
        last = node.best_number()
        assert result.stdout.strip(), result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        intervals, skipped = block_intervals(node, first, last)
        print(
            f"\n{report['sent']} late-failing apps.create published by a peer in {took:.1f} s: "
            f"{len(intervals)} intervals ms {summary([float(i) for i in intervals])}, "
            f"{skipped} slots without a block"
        )
        assert skipped == 0, intervals
        assert p95([float(i) for i in intervals]) <= 1.2 * SLOT_MS, intervals
        # Their dry runs failed: the peer that published them is banned, nothing was pooled.
        assert report["sent"] > 0
        assert report["connected"] is False, node.log()[-3000:]
        assert "banned" in node.log()
        assert not set(node.call("author_pendingExtrinsics")) & set(flood)
        assert all(chain_nonce(node, sender) == 0 for sender in senders)
    finally:
        node.stop()
