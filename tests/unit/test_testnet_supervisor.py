"""`statemesh testnet`'s supervisor with stand-in node processes (real processes that only
sleep): a node that dies is reported once and the others keep running, a restart request starts
it again, one supervisor per folder; and the `restart` command's refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli import main
from node.commands.testnet import (
    NODE_PID_FILE,
    RESTART_REQUEST_FILE,
    SUPERVISOR_PID_FILE,
    Supervisor,
    claim,
    create,
    exit_description,
    node_named,
    release,
    request_restart,
)
from node.commands.testnet import (
    TestnetNode as Node,
)
from node.errors import CliError, UsageError

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def nodes_in(folder: Path, count: int) -> list[Node]:
    nodes = []
    for i in range(count):
        base = folder / f"node-{i}"
        base.mkdir(parents=True)
        nodes.append(Node(i, base, 0, 0, ""))
    return nodes


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(tmp_path, nodes_in(tmp_path, 3), lambda node: SLEEPER)
    for node in supervisor.nodes:
        supervisor.start(node)
    try:
        yield supervisor
    finally:
        supervisor.stop_all()


def test_a_killed_node_is_reported_once_and_the_others_keep_running(
    supervised: Supervisor,
) -> None:
    victim = supervised.processes[1]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    lines = supervised.tend()
    assert len(lines) == 1
    assert lines[0].startswith("node-1 stopped (killed by SIGKILL); the other nodes keep running")
    assert f"statemesh testnet --dir {supervised.folder} restart node-1" in lines[0]
    assert supervised.tend() == []
    assert [p.poll() is None for p in supervised.processes.values()] == [True, False, True]
    assert supervised.running()


def test_a_restart_request_starts_a_stopped_node_again_and_the_requester_learns_its_pid(
    supervised: Supervisor,
) -> None:
    folder = supervised.folder
    node = supervised.nodes[2]
    supervised.processes[2].kill()
    supervised.processes[2].wait()
    claim(folder, [])
    answered: list[int | BaseException] = []

    def requester() -> None:
        try:
            answered.append(request_restart(folder, node, timeout=20))
        except BaseException as exc:
            answered.append(exc)

    thread = threading.Thread(target=requester)
    thread.start()
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while thread.is_alive() and time.monotonic() < deadline:
        lines += supervised.tend()
        time.sleep(0.05)
    thread.join(5)
    release(folder)
    restarted = supervised.processes[2]
    assert answered == [restarted.pid]
    assert restarted.poll() is None
    assert lines[-1] == f"node-2 restarted (pid {restarted.pid})"
    assert (node.base_path / NODE_PID_FILE).read_text().strip() == str(restarted.pid)
    assert not (node.base_path / RESTART_REQUEST_FILE).exists()
    assert not (folder / SUPERVISOR_PID_FILE).exists()


def test_a_restart_of_a_running_node_stops_it_first(supervised: Supervisor) -> None:
    before = supervised.processes[0]
    (supervised.nodes[0].base_path / RESTART_REQUEST_FILE).touch()
    lines = supervised.tend()
    after = supervised.processes[0]
    assert before.poll() is not None and after.poll() is None and after.pid != before.pid
    assert lines == [f"node-0 restarted (pid {after.pid})"]  # not reported as stopped


def test_when_every_node_stopped_nothing_runs_and_stop_all_stops_everything(
    supervised: Supervisor,
) -> None:
    supervised.stop_all()
    assert all(p.poll() is not None for p in supervised.processes.values())
    assert not supervised.running()


def test_one_supervisor_per_folder(tmp_path: Path) -> None:
    live = subprocess.Popen(SLEEPER)
    try:
        (tmp_path / SUPERVISOR_PID_FILE).write_text(f"{live.pid}\n")
        with pytest.raises(CliError, match=rf"already running in {tmp_path} \(pid {live.pid}\)"):
            claim(tmp_path, [])
    finally:
        live.kill()
        live.wait()
    claim(tmp_path, [])  # the one recorded is gone: this process takes over
    assert (tmp_path / SUPERVISOR_PID_FILE).read_text() == f"{os.getpid()}\n"
    release(tmp_path)
    assert not (tmp_path / SUPERVISOR_PID_FILE).exists()


def test_a_node_left_running_by_a_killed_supervisor_is_refused(tmp_path: Path) -> None:
    (node,) = nodes_in(tmp_path, 1)
    leftover = subprocess.Popen([*SLEEPER, str(node.base_path)])
    try:
        (node.base_path / NODE_PID_FILE).write_text(f"{leftover.pid}\n")
        cmdline = Path(f"/proc/{leftover.pid}/cmdline")
        for _ in range(100):  # until the child has become the program (after its exec)
            if str(node.base_path).encode() in cmdline.read_bytes():
                break
            time.sleep(0.02)
        with pytest.raises(
            CliError, match=rf"node-0 of an earlier run still runs \(pid {leftover.pid}\)"
        ):
            claim(tmp_path, [node])
        assert not (tmp_path / SUPERVISOR_PID_FILE).exists()
    finally:
        leftover.kill()
        leftover.wait()
    # Gone, or a pid now used by a program that is not this node: no obstacle.
    claim(tmp_path, [node])
    release(tmp_path)
    (node.base_path / NODE_PID_FILE).write_text(f"{os.getpid()}\n")
    claim(tmp_path, [node])
    release(tmp_path)


def test_restart_refuses_without_a_running_supervisor_and_a_second_pending_request(
    tmp_path: Path,
) -> None:
    (node,) = nodes_in(tmp_path, 1)
    with pytest.raises(CliError, match="no testnet is running in"):
        request_restart(tmp_path, node)
    assert not (node.base_path / RESTART_REQUEST_FILE).exists()
    claim(tmp_path, [])
    try:
        (node.base_path / RESTART_REQUEST_FILE).touch()
        with pytest.raises(CliError, match="a restart of node-0 is already under way"):
            request_restart(tmp_path, node)
        # Nobody serves it: the requester gives up, and takes its request back.
        (node.base_path / RESTART_REQUEST_FILE).unlink()
        with pytest.raises(CliError, match="did not restart node-0"):
            request_restart(tmp_path, node, timeout=0.3)
        assert not (node.base_path / RESTART_REQUEST_FILE).exists()
    finally:
        release(tmp_path)


def test_nodes_are_named_by_name_or_index() -> None:
    nodes = [Node(i, Path(f"node-{i}"), 0, 0, "") for i in range(4)]
    assert node_named(nodes, "node-3") is nodes[3]
    assert node_named(nodes, "2") is nodes[2]
    with pytest.raises(UsageError, match="no node 'node-4' in this testnet; its nodes are node-0"):
        node_named(nodes, "node-4")


@pytest.mark.parametrize(
    ("code", "text"),
    [(-9, "killed by SIGKILL"), (-2, "killed by SIGINT"), (1, "exit code 1"), (-99, "signal 99")],
)
def test_exit_descriptions(code: int, text: str) -> None:
    assert text in exit_description(code)


def test_the_restart_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "net"
    assert main(["testnet", "--dir", str(folder), "restart"]) == 2
    assert "restart needs a node" in capsys.readouterr().err
    assert main(["testnet", "--dir", str(folder), "restart", "node-1"]) == 1
    assert f"{folder} holds no testnet" in capsys.readouterr().err
    create(folder, 2, 0, 0, 500, ports=[(1, 2), (3, 4)])
    assert main(["testnet", "--dir", str(folder), "restart", "node-7"]) == 2
    assert "no node 'node-7'" in capsys.readouterr().err
    assert main(["testnet", "--dir", str(folder), "restart", "node-1"]) == 1
    assert "no testnet is running in" in capsys.readouterr().err
    for wrong in (["node-1"], ["reboot", "node-1"]):
        with pytest.raises(SystemExit) as exited:
            main(["testnet", "--dir", str(folder), *wrong])
        assert exited.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
