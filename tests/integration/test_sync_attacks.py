"""Hostile peers against a new node's sync, on real processes: beside a network of validators,
a validator key sealing as long a chain of its own slots as the chain's rules let it and a sync
answer whose justification is 57,000 copies of one real vote (three of four validators run; the
fourth validator's key is the forger's); beside a real node serving a finalized chain of 1,000
blocks, peers claiming a best block they never serve."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consensus.sync import FIRST_TIMEOUT
from p2p.addresses import node_multiaddr
from p2p.identity import NodeKey
from testkit.built_chain import build_finalized_chain, chain_server
from testkit.local_network import LocalNetwork, assert_no_conflicting_finality
from tests.integration.harness import ROOT, NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.serial]

RUNNING = 3
"""Validators 0-2 run; validator 3's key is left to the forger."""
FORGED_BLOCKS = 1000
SYNCED_BLOCKS = 1000
CATCH_UP_SECONDS = 60.0
"""How long a new node beside a liar may take before the test gives up on it."""
MAX_RPC_PAUSE = 1.0
"""The longest a node may leave its RPC unanswered while refusing an oversized justification
(checking all 57,000 signatures on its event loop took seconds)."""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    net = LocalNetwork(tmp_path_factory.mktemp("sync-attacks") / "testnet", 4)
    for node in net.nodes[:RUNNING]:
        node.start()
    try:
        net.nodes[0].wait_for(
            lambda: net.nodes[0].finalized_number() >= 3, timeout=60, what="finality"
        )
        yield net
    finally:
        for node in net.nodes[:RUNNING]:
            node.stop()


class Rogue:
    """A hostile peer process (`testkit/rogue_peer.py`) that serves the sync protocol;
    `address` is its multiaddr once it listens."""

    def __init__(self, network_id: str, spec: Path, target: str, kind: str, *extra: str) -> None:
        self._log = tempfile.TemporaryFile("w+")
        command = [sys.executable, "-m", "testkit.rogue_peer", network_id, target, kind]
        self.process = subprocess.Popen(
            [*command, str(spec), *extra],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the {kind} peer did not start:\n{self._stderr()}")
        self.address: str = json.loads(line)["listening"]
        self.peer_id = self.address.rsplit("/", 1)[-1]

    def _stderr(self) -> str:
        self._log.seek(0)
        return self._log.read()[-3000:]

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        """Its report, once it ends on its own."""
        out, _ = self.process.communicate(timeout=timeout)
        lines = out.strip().splitlines()
        assert lines, self._stderr()
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def stop(self) -> dict[str, Any]:
        """Make it leave; its report."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.result(timeout=30)

    def kill(self) -> None:
        """End it if it still runs (every test does this last)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self._log.close()


def chain_of(net: LocalNetwork) -> tuple[str, Path]:
    """The network id and spec file of the validators' chain."""
    return net.nodes[0].call("chain_getBlockHash", 0)[2:18], net.folder / "genesis.json"


def new_node(net: LocalNetwork, base: Path, *bootnodes: str) -> NodeProcess:
    return NodeProcess(
        base, args=["--chain", str(net.folder / "genesis.json"), "--bootnodes", *bootnodes]
    )


def finalized_hash(node: NodeProcess, number: int) -> str | None:
    header = node.call("chain_getHeader", node.call("chain_getFinalizedHead"))
    if int(header["number"], 16) < number:
        return None
    result: str = node.call("chain_getBlockHash", number)
    return result


def test_a_new_node_beside_a_slot_forger_follows_the_honest_finalized_chain(
    network: LocalNetwork, tmp_path: Path
) -> None:
    honest = network.nodes[0]
    forger = Rogue(
        *chain_of(network), "-", "slot-forger", str(network.folder), "3", str(FORGED_BLOCKS)
    )
    node = new_node(network, tmp_path / "new", forger.address, network.layout[0].multiaddr)
    try:
        node.start()
        target = honest.finalized_number()
        node.wait_for(
            lambda: node.finalized_number() >= target,
            timeout=45,
            what=f"the honest finalized #{target}",
        )
        assert finalized_hash(node, target) == honest.call("chain_getBlockHash", target)
        report = forger.stop()
        later = honest.finalized_number() + 3
        node.wait_for(
            lambda: node.finalized_number() >= later, timeout=30, what="following after it left"
        )
        assert_no_conflicting_finality([honest, node])
        print(f"forged chain #{report['forged']} sealed in {report['seconds']} s")
    finally:
        forger.kill()
        node.stop()


@pytest.fixture(scope="module")
def served_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, NodeProcess]]:
    """A finalized chain of SYNCED_BLOCKS blocks served by a real full node: enough blocks that
    syncing them, not starting the node, takes most of a new node's catch-up time."""
    folder = tmp_path_factory.mktemp("served-chain") / "testnet"
    spec = build_finalized_chain(folder, SYNCED_BLOCKS)
    server = chain_server(folder).start()
    try:
        yield spec, server
    finally:
        server.stop()


def catch_up_seconds(node: NodeProcess, timeout: float) -> float:
    """From launching `node` to its finalized block reaching the served chain's last."""
    began = time.monotonic()
    node.start()
    try:
        node.wait_for(
            lambda: node.finalized_number() >= SYNCED_BLOCKS,
            timeout=timeout,
            what=f"finalized #{SYNCED_BLOCKS}",
        )
        return time.monotonic() - began
    finally:
        node.stop()


@pytest.mark.parametrize("kind", ["lying-empty", "lying-stall"])
def test_a_new_node_beside_a_lying_peer_loses_at_most_one_request_timeout(
    served_chain: tuple[Path, NodeProcess], tmp_path: Path, kind: str
) -> None:
    """A peer claiming the longest chain is asked first; one that answers nothing holds the new
    node for one first request's timeout (FIRST_TIMEOUT), then loses its turn for good. The
    catch-up beside it may take that much longer than beside honest peers alone, with half the
    honest time again for a shared machine's noise. (The bound was twice the honest time while
    a node's sync started at its idle check, a second after its start.)"""
    spec, server = served_chain
    served_at = server.call("system_localListenAddresses")[0]

    def new(name: str, *bootnodes: str) -> NodeProcess:
        return NodeProcess(
            tmp_path / name, args=["--chain", str(spec), "--bootnodes", *bootnodes, served_at]
        )

    honest_only = catch_up_seconds(new("alone"), 60)
    network_id = server.call("chain_getBlockHash", 0)[2:18]
    liar = Rogue(network_id, spec, "-", kind)
    try:
        beside_liar = catch_up_seconds(new("beside", liar.address), CATCH_UP_SECONDS)
        report = liar.stop()
    finally:
        liar.kill()
    print(
        f"{kind}: {SYNCED_BLOCKS} blocks, honest only {honest_only:.1f} s, beside the liar "
        f"{beside_liar:.1f} s (asked {report['asked']} times)"
    )
    assert beside_liar <= 1.5 * honest_only + FIRST_TIMEOUT, (honest_only, beside_liar)


class RpcPauses:
    """The longest the node took to answer a cheap RPC call, polled every 20 ms meanwhile."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=30) as client:
            body = {"jsonrpc": "2.0", "id": 1, "method": "system_health", "params": []}
            while not self._stop.is_set():
                began = time.monotonic()
                client.post(self.node.url, json=body)
                self.longest = max(self.longest, time.monotonic() - began)
                time.sleep(0.02)

    def __enter__(self) -> RpcPauses:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_an_oversized_justification_is_refused_at_once_and_its_sender_banned(
    network: LocalNetwork, tmp_path: Path
) -> None:
    """The target is a new node whose only peer at first is the sender: it has finalized none
    of the blocks it downloads, so it checks the justification that comes with them (a
    validator has most blocks final before a sync answer arrives). An honest full node it
    also names as a bootnode comes up once the attack is over, and the target follows it."""
    honest = network.nodes[0]
    relay_key = NodeKey.generate()
    relay = NodeProcess(
        tmp_path / "relay",
        args=[
            "--chain", str(network.folder / "genesis.json"),
            "--bootnodes", network.layout[0].multiaddr,
            "--node-key", relay_key.seed.hex(),
        ],
    )  # fmt: skip
    relay_address = node_multiaddr("127.0.0.1", relay.p2p_port, relay_key.peer_id)
    source = network.layout[0].multiaddr
    rogue = Rogue(*chain_of(network), "-", "oversized-justification", source)
    node = new_node(network, tmp_path / "target", rogue.address, relay_address)
    try:
        node.start()
        with RpcPauses(node) as pauses:
            report = rogue.result()
        print(
            f"oversized justification: {report}, longest RPC pause {pauses.longest * 1000:.0f} ms"
        )
        assert report["served"] >= 1 and report["bytes"] == 57_000 * 145, report
        assert report["connected"] is False, node.log()[-3000:]
        assert f"peer {rogue.peer_id} banned" in node.log()
        assert all(p["peerId"] != rogue.peer_id for p in node.call("system_peers"))
        assert pauses.longest < MAX_RPC_PAUSE, node.log()[-3000:]
        relay.start()
        target = honest.finalized_number() + 2
        node.wait_for(
            lambda: node.finalized_number() >= target, timeout=40, what=f"finalized #{target}"
        )
        assert_no_conflicting_finality([honest, node])
    finally:
        rogue.kill()
        node.stop()
        relay.stop()
