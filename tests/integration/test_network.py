"""Real validator processes on loopback: finality, transaction propagation, a killed and
restarted validator, a late full node syncing from genesis, an isolated validator re-joining
without conflicting finality, and hostile peers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rlp

from chain.keys import dev_keypair, sign_transaction
from node.commands.testnet import create, load, validator_arguments
from tests.factories import transfer_call
from tests.integration.harness import ROOT, NodeProcess, free_port

pytestmark = pytest.mark.integration

SLOT_MS = 500


class LocalNetwork:
    def __init__(self, folder: Path, count: int) -> None:
        ports = [(free_port(), free_port()) for _ in range(count)]
        create(folder, count, 0, 0, SLOT_MS, ports=ports)
        self.folder = folder
        self.layout = load(folder)
        self.nodes = [
            NodeProcess(
                n.base_path, args=self.arguments(n.index), port=n.rpc_port, p2p_port=n.p2p_port
            )
            for n in self.layout
        ]

    def arguments(self, index: int, *, bootnodes: bool = True) -> list[str]:
        node = self.layout[index]
        boot = self.layout[1 if index == 0 else 0]
        extra = ["--bootnodes", boot.multiaddr] if bootnodes else []
        return [*validator_arguments(self.folder, node), *extra]

    def full_node(self, base: Path) -> NodeProcess:
        return NodeProcess(
            base,
            args=[
                "--chain",
                str(self.folder / "genesis.json"),
                "--bootnodes",
                self.layout[0].multiaddr,
            ],
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(tmp_path / "testnet", 4)
    for node in net.nodes:
        node.start()
    try:
        yield net
    finally:
        net.stop()


def finalized_hashes(node: NodeProcess, upto: int) -> dict[int, str]:
    return {n: node.call("chain_getBlockHash", n) for n in range(upto + 1)}


def assert_no_conflicting_finality(nodes: list[NodeProcess]) -> None:
    """At every height finalized on two nodes, they finalized the same block."""
    finalized = [(node, node.finalized_number()) for node in nodes]
    common = min(number for _, number in finalized)
    views = [finalized_hashes(node, common) for node, _ in finalized]
    for height in range(common + 1):
        assert len({view[height] for view in views}) == 1, f"conflict at #{height}"


def test_validators_finalize_and_a_transaction_reaches_every_node(testnet: LocalNetwork) -> None:
    a, *_, d = testnet.nodes
    for node in testnet.nodes:
        node.wait_for(lambda n=node: n.finalized_number() >= 3, timeout=30, what="finality")
    assert d.call("system_health")["peers"] >= 1
    genesis = bytes.fromhex(a.call("chain_getBlockHash", 0)[2:])
    dest = dev_keypair("ferdie").public
    before = int(d.call("system_account", dev_keypair("ferdie").address)["free"])
    later = sign_transaction(
        dev_keypair("bob"), genesis_hash=genesis, nonce=1, call=transfer_call(dest, 7)
    )
    # A future transaction waits in every pool: D has it only if gossip carried it.
    later_hex = "0x" + rlp.encode(later).hex()
    a.call("author_submitExtrinsic", later_hex)
    d.wait_for(lambda: later_hex in d.call("author_pendingExtrinsics"), timeout=10, what="gossip")
    tx = sign_transaction(
        dev_keypair("bob"), genesis_hash=genesis, nonce=0, call=transfer_call(dest, 1_234_567)
    )
    tx_hash = a.call("author_submitExtrinsic", "0x" + rlp.encode(tx).hex())

    def final_on_d() -> bool:
        receipt = d.call("chain_getExtrinsic", tx_hash)
        return bool(receipt) and receipt["blockNumber"] <= d.finalized_number()

    d.wait_for(final_on_d, timeout=30, what="the transfer final on node D")
    after = int(
        d.call("system_account", dev_keypair("ferdie").address, d.call("chain_getFinalizedHead"))[
            "free"
        ]
    )
    assert after in (before + 1_234_567, before + 1_234_567 + 7)
    assert_no_conflicting_finality(testnet.nodes)


def test_three_of_four_keep_finalizing_and_the_fourth_catches_up(
    testnet: LocalNetwork, tmp_path: Path
) -> None:
    a, b, c, d = testnet.nodes
    a.wait_for(lambda: a.finalized_number() >= 2, timeout=30, what="finality")
    d.kill9()
    start = a.finalized_number()
    a.wait_for(lambda: a.finalized_number() >= start + 6, timeout=30, what="finality with 3 of 4")
    d.start()
    target = a.finalized_number()
    d.wait_for(
        lambda: d.finalized_number() >= target, timeout=40, what="the restarted node catching up"
    )
    # A full node started late syncs from genesis and verifies every justification it gets.
    late = testnet.full_node(tmp_path / "late")
    late.start()
    try:
        target = a.finalized_number()
        late.wait_for(lambda: late.finalized_number() >= target, timeout=60, what="the late node")
        assert "synced" in late.log() or "syncing" in late.log()
        assert_no_conflicting_finality([a, b, c, d, late])
    finally:
        late.stop()


def test_an_isolated_validator_rejoins_without_conflicting_finality(testnet: LocalNetwork) -> None:
    a, _, _, d = testnet.nodes
    a.wait_for(lambda: a.finalized_number() >= 2, timeout=30, what="finality")
    d.stop()
    d.args = testnet.arguments(3, bootnodes=False)
    d.start()
    time.sleep(4)  # D authors alone in its slots and cannot finalize; the others go on.
    isolated_final = d.finalized_number()
    assert d.call("system_health")["peers"] == 0
    assert a.finalized_number() > isolated_final
    d.stop()
    d.args = testnet.arguments(3)
    d.start()
    target = a.finalized_number()
    d.wait_for(
        lambda: d.finalized_number() >= target, timeout=40, what="the isolated node rejoining"
    )
    assert_no_conflicting_finality(testnet.nodes)


@pytest.mark.parametrize("kind", ["garbage", "bad-seal", "stranger-vote"])
def test_hostile_peer_is_dropped_and_the_node_is_unaffected(
    testnet: LocalNetwork, kind: str
) -> None:
    a = testnet.nodes[0]
    a.wait_for(lambda: a.finalized_number() >= 1, timeout=30, what="finality")
    network_id = a.call("chain_getBlockHash", 0)[2:18]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "testkit.rogue_peer",
            network_id,
            testnet.layout[0].multiaddr,
            kind,
            str(testnet.folder / "genesis.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sent"] > 0
    assert report["connected"] is False, a.log()[-2000:]
    assert "banned" in a.log()
    start = a.finalized_number()
    a.wait_for(
        lambda: a.finalized_number() > start + 1, timeout=20, what="finality after the attack"
    )


def test_a_node_of_another_chain_never_connects(testnet: LocalNetwork, tmp_path: Path) -> None:
    other = NodeProcess(
        tmp_path / "other", args=["--dev", "--bootnodes", testnet.layout[0].multiaddr]
    )
    other.start()
    try:
        time.sleep(4)
        assert other.call("system_peers") == []
        assert all(
            p["peerId"] != other.call("system_localPeerId")
            for p in testnet.nodes[0].call("system_peers")
        )
    finally:
        other.stop()


def test_testnet_command_runs_stops_and_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "tn"
    rpc, p2p = free_port(), free_port()
    command = [
        sys.executable, "-m", "node.cli", "testnet", "--nodes", "2", "--dir", str(folder),
        "--rpc-port", str(rpc), "--p2p-port", str(p2p), "--slot-ms", "500",
    ]  # fmt: skip
    first = NodeProcess(folder / "node-0", port=rpc)

    def run_until(height: int) -> int:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            first.wait_for(lambda: _finalized(first) >= height, timeout=40, what="testnet finality")
            reached = _finalized(first)
        finally:
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=30)
        assert process.returncode == 0, out
        assert b"node-1  rpc http://127.0.0.1:" in out
        return reached

    reached = run_until(2)
    assert (folder / "testnet.json").exists() and (folder / "genesis.json").exists()
    assert run_until(reached + 2) >= reached + 2  # the same folder starts again where it was


def _finalized(node: NodeProcess) -> int:
    try:
        return node.finalized_number()
    except (httpx.HTTPError, KeyError):
        return -1
