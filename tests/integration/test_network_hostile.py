"""Real validator processes on loopback, one testnet for the module: hostile peers are banned
and the node goes on finalizing; a node of another chain never connects."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.local_network import LocalNetwork
from tests.integration.harness import ROOT, NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """One testnet for every attack: each must leave it finalizing for the next."""
    net = LocalNetwork(tmp_path_factory.mktemp("hostile") / "testnet", 4).start()
    try:
        yield net
    finally:
        net.stop()


@pytest.mark.parametrize("kind", ["garbage", "bad-seal", "stranger-vote"])
def test_hostile_peer_is_dropped_and_the_node_is_unaffected(
    testnet: LocalNetwork, kind: str
) -> None:
    a = testnet.nodes[0]
    bans_before = a.log().count("banned")
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
    assert a.log().count("banned") > bans_before
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
