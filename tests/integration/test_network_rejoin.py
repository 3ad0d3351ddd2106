"""Real validator processes on loopback: an isolated validator re-joining without conflicting
finality, and `statemesh testnet` run, stopped and restarted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testkit.local_network import LocalNetwork, assert_no_conflicting_finality
from tests.integration.harness import ROOT, NodeProcess, free_port

pytestmark = pytest.mark.integration


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


def test_testnet_command_runs_stops_and_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "tn"
    rpc, p2p = free_port(), free_port()
    command = [
        sys.executable, "-m", "node.cli", "testnet", "--nodes", "2", "--dir", str(folder),
        "--rpc-port", str(rpc), "--p2p-port", str(p2p), "--slot-ms", "500",
        "--prometheus-port", "0",
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
