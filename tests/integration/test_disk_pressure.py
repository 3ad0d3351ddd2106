"""Disk pressure on a real node: a dev node whose private engine keeps its data on a small
filesystem (a 256 MiB tmpfs). Filled past the high-water mark, the node declares on chain no
more disk than is placed on it: its replica with a disk request stays and keeps running, a
tenant's new disk request waits with a reason. Freed below the low mark, it declares its whole
disk again and the waiting replica is placed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.dockerd import PrivateEngine, unmount_under
from tests.integration.harness import NodeProcess, cli
from tests.integration.test_private_engine import no_engine, started_socket
from tests.integration.workloads.pods import app_containers

pytestmark = pytest.mark.integration

__all__ = ["no_engine"]  # the fixture, used by name

TMPFS_MIB = 256
APP = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: {name}
spec:
  replicas: 1
  containers:
    - name: main
      image: busybox
      command: ["sleep", "2147483647"]
      resources:
        requests: {{cpu: 50m, memory: 16Mi, ephemeral-storage: {disk}}}
"""
FILL_TO_PERCENT = 92
STEP_TIMEOUT = 30.0
"""A look at the disk every 2 s, a registration check every second, one-second blocks."""


@pytest.fixture
def small_disk(tmp_path: Path, no_engine: None) -> Iterator[Path]:
    """The base path of a dev node whose engine folder is a tmpfs of its own."""
    base = tmp_path / "dev"
    folder = base / "docker"
    folder.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m,mode=0700", "tmpfs", str(folder)],
        check=True,
    )
    try:
        yield base
    finally:
        unmount_under(folder)
    with open("/proc/self/mounts") as mounts:
        assert not [line for line in mounts if f" {folder}" in line]


def node_record(node: NodeProcess) -> dict[str, Any]:
    (record,) = node.call("nodes_list")["nodes"]
    assert isinstance(record, dict)
    return record


def declared_disk(node: NodeProcess) -> int:
    return int(node_record(node)["capacity"]["diskGb"])


def placement(node: NodeProcess, app: str) -> list[dict[str, Any]]:
    found = node.call("apps_get", app)
    return list(found["placement"]) if found else []


def deploy(node: NodeProcess, path: Path, who: str) -> None:
    deployed = cli("app", "deploy", str(path), "--from", who, "--rpc", node.url)
    assert deployed.returncode == 0, deployed.stderr


def fill(filesystem: Path, percent: int) -> Path:
    """A file that brings the filesystem to `percent` used."""
    stat = os.statvfs(filesystem)
    total = stat.f_blocks * stat.f_frsize
    used = total - stat.f_bavail * stat.f_frsize
    ballast = filesystem / "ballast"
    with ballast.open("wb") as out:
        os.posix_fallocate(out.fileno(), 0, total * percent // 100 - used)
    return ballast


def test_a_full_data_root_lowers_the_declared_disk_until_it_is_freed(small_disk: Path) -> None:
    base = small_disk
    node = NodeProcess(base, private_engine=True)
    node.start(timeout=60)
    try:
        socket = started_socket(node)
        engine = PrivateEngine(base / "docker")
        assert f"watching the disk of the engine's data root {engine.data_root}" in node.wait_for(
            lambda: "watching the disk" in node.log() and node.log(), timeout=20, what="watch"
        )
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        whole = declared_disk(node)
        assert whole >= 3, "the host's disk under the base path is too small for this test"
        me = node_record(node)["nodeId"]

        # A tenant's app that requests 2 GiB of disk runs here before the disk fills.
        kept = base.parent / "kept.yaml"
        kept.write_text(APP.format(name="kept", disk="2Gi"))
        deploy(node, kept, "dev-alice")
        client = docker.DockerClient(base_url=f"unix://{socket}", version="auto")
        try:
            running = node.wait_for(
                lambda: [c.id for c in app_containers(client, "kept")], timeout=60, what="kept"
            )
            assert [r["node"] for r in placement(node, "kept")] == [me]

            ballast = fill(base / "docker", FILL_TO_PERCENT)
            node.wait_for(lambda: declared_disk(node) == 2, timeout=STEP_TIMEOUT, what="pressure")
            assert node.log().count("disk pressure: ") == 1
            # What it holds stays, and keeps running.
            assert [r["node"] for r in placement(node, "kept")] == [me]
            assert [c.id for c in app_containers(client, "kept")] == running

            # A new disk request, however small, does not come here: it waits, with a reason.
            more = base.parent / "more.yaml"
            more.write_text(APP.format(name="more", disk="1Gi"))
            deploy(node, more, "dev-bob")
            waiting = node.wait_for(lambda: placement(node, "more"), timeout=20, what="more")
            assert [(r["state"], r["reason"]) for r in waiting] == [
                ("pending", "insufficient disk on every eligible node")
            ]

            # Freed: back below the low mark, the whole disk is declared again and the waiting
            # replica comes.
            ballast.unlink()
            node.wait_for(lambda: declared_disk(node) == whole, timeout=STEP_TIMEOUT, what="back")
            node.wait_for(
                lambda: [r["node"] for r in placement(node, "more")] == [me],
                timeout=20,
                what="more placed",
            )
            assert [r["node"] for r in placement(node, "kept")] == [me]
            assert [c.id for c in app_containers(client, "kept")] == running
            log = node.log()
            assert log.count("disk pressure: ") == 1 and log.count("disk pressure is over") == 1
        finally:
            client.close()
    finally:
        code = node.stop(timeout=60)
    assert code == 0, node.log()[-3000:]
