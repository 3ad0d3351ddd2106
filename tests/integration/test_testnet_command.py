"""`statemesh testnet --nodes 4` as a user runs it: `kill -9` of one node is reported while the
other three keep finalizing; `statemesh testnet --dir D restart node-3` starts it again with its
data and it catches up; Ctrl-C stops every node."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from node.commands.testnet import NODE_PID_FILE, SUPERVISOR_PID_FILE, create, load
from testkit.local_network import SLOT_MS, assert_no_conflicting_finality
from testkit.nodes import STATEMESH, NodeProcess, cli, free_port
from testkit.progress import STALL_SECONDS, chain_height, wait_blocks, wait_finalized

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of the supervisor that exited but was not reaped yet is a zombie: not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def pid_of(folder: Path, index: int) -> int:
    return int((folder / f"node-{index}" / NODE_PID_FILE).read_text())


def test_a_killed_node_is_reported_the_others_finalize_and_it_restarts_and_catches_up(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "testnet"
    create(folder, 4, 0, 0, SLOT_MS, ports=[(free_port(), free_port()) for _ in range(4)])
    # RPC clients only: the supervisor starts the processes.
    nodes = [NodeProcess(n.base_path, port=n.rpc_port) for n in load(folder)]
    output = tmp_path / "testnet.out"
    with output.open("wb") as out:
        supervisor = subprocess.Popen(
            [STATEMESH, "testnet", "--dir", str(folder), "--nodes", "4", "--prometheus-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    pids: list[int] = []
    try:
        for node in nodes:
            # Four nodes starting at once on a loaded machine may take a while to answer.
            wait_finalized(node, 2, stall_seconds=2 * STALL_SECONDS)
        pids = [pid_of(folder, i) for i in range(4)]
        # One testnet per folder: a second one is refused and starts nothing.
        second = cli("testnet", "--dir", str(folder), "--nodes", "4", timeout=60)
        assert second.returncode == 1
        assert f"a testnet is already running in {folder} (pid {supervisor.pid})" in second.stderr

        os.kill(pids[3], signal.SIGKILL)
        a, b, c, d = nodes
        wait_blocks(
            a,
            lambda: "node-3 stopped (killed by SIGKILL)" in output.read_text(),
            blocks=40,
            what="the supervisor reporting node-3",
        )
        assert supervisor.poll() is None, output.read_text()
        assert "the other nodes keep running" in output.read_text()
        assert all(alive(pid) for pid in pids[:3])
        start = max(chain_height(n, finalized=True) or 0 for n in (a, b, c))
        for node in (a, b, c):
            wait_finalized(node, start + 4, what=f"3 of 4 finalizing on {node.base_path.name}")

        restarted = cli("testnet", "--dir", str(folder), "restart", "node-3", timeout=120)
        assert restarted.returncode == 0, restarted.stderr
        new_pid = pid_of(folder, 3)
        assert restarted.stdout.startswith(f"node-3 restarted (pid {new_pid})")
        assert new_pid != pids[3] and alive(new_pid)
        # It catches up: it finalizes what the others had finalized when it came back.
        target = chain_height(a, finalized=True) or 0
        wait_finalized(d, target, what="node-3 catching up")
        assert_no_conflicting_finality(nodes)
        pids[3] = new_pid
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = supervisor.wait(STALL_SECONDS)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
            for pid in pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            raise
    assert code == 0, output.read_text()
    assert not any(alive(pid) for pid in pids)
    assert not (folder / SUPERVISOR_PID_FILE).exists()
    gone = cli("testnet", "--dir", str(folder), "restart", "node-3")
    assert gone.returncode == 1 and "no testnet is running in" in gone.stderr
