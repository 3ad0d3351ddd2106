"""One machine with no Docker engine: `statemesh node --dev` starts a private dockerd under its base
path, imports busybox into it, runs docs/examples/web.yaml on it, and stops it on exit; with
`--no-private-engine`, or when dockerd cannot start, the node runs and offers no compute."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from orchestrator.dockerd import EngineStartError, PrivateEngine, find_dockerd, ping
from orchestrator.engine_connection import DEFAULT_DOCKER_HOST
from orchestrator.images import BUSYBOX_BINARY
from tests.integration.harness import ROOT, NodeProcess, cli, ingress_page
from tests.integration.workloads.pods import app_containers, connects, pod_addresses

pytestmark = pytest.mark.integration

STARTED = re.compile(r"started a private Docker engine at unix://(\S+) for this dev node")
NO_COMPUTE = (
    f"no container engine answers at {DEFAULT_DOCKER_HOST}: the socket does not exist; "
    "this node offers no compute"
)
WEB = ROOT / "docs" / "examples" / "web.yaml"


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DOCKER_HOST and nothing at the default socket: the case a dev node starts its own for.
    The node processes inherit this environment."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    client = ping(DEFAULT_DOCKER_HOST)
    if client is not None:
        client.close()
        pytest.skip(f"an engine answers at {DEFAULT_DOCKER_HOST}: a dev node would use it")
    if Path(DEFAULT_DOCKER_HOST.removeprefix("unix://")).exists():
        pytest.skip(f"{DEFAULT_DOCKER_HOST} exists but does not answer (an engine starting?)")
    if os.geteuid() != 0:
        pytest.skip("a dev node starts dockerd only as root")
    try:
        find_dockerd()
    except EngineStartError as e:
        pytest.skip(e.message)
    if not BUSYBOX_BINARY.is_file():
        pytest.skip("busybox-static is not installed")
    yield


def started_socket(node: NodeProcess) -> Path:
    found = node.wait_for(lambda: STARTED.search(node.log()), timeout=60, what="the engine")
    return Path(found.group(1))


def dockerd_pid(base_path: Path) -> int:
    return int((base_path / "docker" / "docker.pid").read_text())


def is_dockerd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def test_a_dev_node_with_no_engine_starts_one_and_stops_it_on_exit(
    tmp_path: Path, no_engine: None
) -> None:
    # A base path too long for the engine's sockets: they go to a short folder under /tmp.
    base = tmp_path / ("a-base-path-deep-enough-that-unix-socket-paths-would-not-fit" * 2) / "dev"
    base.parent.mkdir()
    node = NodeProcess(base, private_engine=True).start(timeout=60)
    try:
        socket = started_socket(node)
        engine = PrivateEngine(base / "docker")
        assert engine.runtime_dir != engine.root
        assert str(engine.runtime_dir).startswith("/tmp/statemesh-docker-")
        assert socket == engine.runtime_dir / "docker.sock"
        assert f"the engine's socket and exec root are in {engine.runtime_dir}" in node.log()
        pid = dockerd_pid(base)
        assert is_dockerd(pid)
        client = docker.DockerClient(base_url=f"unix://{socket}", version="auto")
        with contextlib.closing(client):
            # Its own registry serves busybox (the engine's mirror); no local copy is kept.
            assert "--registry-mirror" in " ".join(
                a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            )
            client.images.pull("busybox", tag="latest")
            assert "busybox:latest" in client.images.get("busybox").tags
            # No default bridge (the node makes its own networks) …
            assert sorted(n["Name"] for n in client.api.networks()) == ["host", "none"]
        # … and otherwise Docker's defaults: iptables and IP masquerading on.
        flags = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"--bridge=none" in flags
        assert not [f for f in flags if f.startswith((b"--iptables", b"--ip-masq"))]
        assert "Traceback" not in node.log()
    finally:
        code = node.stop(signal.SIGINT, timeout=60)
    assert code == 0, node.log()[-3000:]
    assert not is_dockerd(pid)
    assert not socket.exists()
    assert not engine.runtime_dir.exists()
    assert "stopped the private Docker engine" in node.log()
    with open("/proc/self/mounts") as mounts:
        assert not [line for line in mounts if f"{base}/" in line or f"{socket.parent}/" in line]


def test_the_web_example_runs_on_a_dev_nodes_private_engine(
    tmp_path: Path, no_engine: None
) -> None:
    base = tmp_path / "dev"
    node = NodeProcess(base, private_engine=True).start(timeout=60)
    try:
        engine = PrivateEngine(base / "docker")
        assert started_socket(node) == engine.socket
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        deployed = cli("app", "deploy", str(WEB), "--from", "dev-alice", "--rpc", node.url)
        assert deployed.returncode == 0, deployed.stderr

        def ready() -> list[int]:
            replicas = node.call("node_workloads")["replicas"]
            return [r["replica"] for r in replicas if r["app"] == "web" and r["ready"]]

        # Every replica in a pod of its own: all three listen on 8080 side by side.
        node.wait_for(lambda: ready() == [0, 1, 2], timeout=90, what="web's replicas ready")
        status = cli("app", "status", "web", "--rpc", node.url)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("application web  revision 1  replicas 3")

        # Through the ingress, each of the three answers in turn.
        seen: set[str] = set()
        node.wait_for(
            lambda: (
                {f"hello from web-{i}\n" for i in range(3)}
                <= (seen.add(ingress_page(node, "web.statemesh.internal")) or seen)
            ),
            timeout=60,
            what="the three replicas answering through the ingress proxy",
        )
        # Replicas of one application on one node reach each other, pod to pod.
        with contextlib.closing(engine.client()) as client:
            first, *_ = app_containers(client, "web")
            pods = pod_addresses(client, "web")
            assert len(pods) == 3
            assert all(connects(first, address, 8080) for address in pods)
    finally:
        node.stop(signal.SIGINT, timeout=60)


def test_no_private_engine_leaves_the_node_without_compute(tmp_path: Path, no_engine: None) -> None:
    base = tmp_path / "dev"
    # The flag given here, not the one the harness gives test nodes by default.
    node = NodeProcess(base, args=["--dev", "--no-private-engine"], private_engine=True).start()
    try:
        node.wait_for(lambda: NO_COMPUTE in node.log(), what="the no-compute line")
        assert "private Docker engine" not in node.log()
        assert not (base / "docker").exists()
        # It registered without compute, so the chain gives it no replica.
        (info,) = node.wait_for(lambda: node.call("nodes_list")["nodes"], what="registered")
        assert info["capacity"] == {"cores": 0, "memoryMb": 0, "diskGb": 0, "gpus": 0}
    finally:
        node.stop()


def test_a_private_engine_that_cannot_start_leaves_the_node_running_without_compute(
    tmp_path: Path, no_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dockerd exits at once: there is no such storage driver.
    monkeypatch.setenv("STATEMESH_DOCKER_STORAGE_DRIVER", "no-such-driver")
    base = tmp_path / "dev"
    node = NodeProcess(base, private_engine=True).start(timeout=60)
    try:
        node.wait_for(lambda: NO_COMPUTE in node.log(), timeout=60, what="the no-compute line")
        (line,) = [
            line
            for line in node.log().splitlines()
            if "no engine answers and a private one could not start" in line
        ]
        assert re.search(r"could not start: dockerd exited with \d+: .*driver not supported", line)
        height = node.best_number()
        node.wait_for(lambda: node.best_number() > height, what="blocks")
        assert "Traceback" not in node.log()
    finally:
        assert node.stop() == 0
    with open("/proc/self/mounts") as mounts:
        assert not [line for line in mounts if f"{base}/" in line]


def test_a_signal_while_the_engine_starts_stops_the_node_and_the_engine(
    tmp_path: Path, no_engine: None
) -> None:
    # The RPC answers before the other services start, the private engine among them: an
    # operator's Ctrl-C then stops the node as one later does (exit 0, engine gone, database
    # closed), not a KeyboardInterrupt in whichever task was running.
    base = tmp_path / "dev"
    node = NodeProcess(base, private_engine=True).start(timeout=60)
    code = node.stop(signal.SIGINT, timeout=60)
    assert code == 0, node.log()[-3000:]
    assert "database closed" in node.log()
    pid_file = base / "docker" / "docker.pid"
    assert not pid_file.exists() or not is_dockerd(int(pid_file.read_text() or 0))
