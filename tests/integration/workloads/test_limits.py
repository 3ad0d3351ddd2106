"""Process limits that hold, tried as a hostile tenant would on a dev node with a real engine: a
replica runs a fork bomb and asks for far more processes than the node allows. The node's
--max-pids holds for the replica, its containers together: another container of it gets the
smaller limit its manifest gives, the bomb's pids cgroup is capped at the rest, its process count
stays at that cap, and meanwhile the node keeps authoring and answering RPC while another
tenant's replica on it stays ready and serves."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import docker.models.containers
import pytest

from orchestrator import labels
from tests.integration.docker_harness import DockerEngine, remove_labelled
from tests.integration.harness import NodeProcess, ingress_page
from tests.integration.workloads.pods import app_containers
from tests.integration.workloads.test_sandbox import APP, deploy

pytestmark = pytest.mark.integration

MAX_PIDS = 96
"""The node's cap: small, so that the bomb reaches it within a second."""
QUIET_PIDS = 16
BOMB_PIDS = MAX_PIDS - QUIET_PIDS
"""The bomb's container: what the quiet one leaves of the replica's cap."""
BOMB = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: bomb
spec:
  replicas: 1
  containers:
    - name: bomb
      image: {image}
      command: ["sh", "-c"]
      # Processes that never exit, started as fast as the kernel allows, by a shell that is
      # started again each time the kernel stops it.
      args:
        - >-
          (while :; do (while :; do sleep 2147483647 & done); done) &
          exec sleep 2147483647
      resources:
        limits: {{cpu: 250m, memory: 64Mi, pids: 20000}}
    - name: quiet
      image: {image}
      command: ["sleep", "2147483647"]
      resources:
        limits: {{cpu: 50m, memory: 16Mi, pids: {quiet}}}
"""
OBSERVE_SECONDS = 6.0


def pids_cgroup(container: docker.models.containers.Container) -> Path:
    """The cgroup (v1) of the container's processes in the pids hierarchy, read from its first
    process as the kernel sees it."""
    container.reload()
    pid = container.attrs["State"]["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return Path("/sys/fs/cgroup/pids") / path.lstrip("/")
    raise AssertionError(f"process {pid} is in no pids cgroup (is this cgroup v1?)")


def read_int(path: Path) -> int:
    return int(path.read_text().strip())


def refused_forks(cgroup: Path) -> int:
    """How many times a fork in the cgroup was refused for its limit (`pids.events`)."""
    events = dict(line.split() for line in (cgroup / "pids.events").read_text().splitlines())
    return int(events["max"])


def by_container(client: docker.DockerClient, app: str) -> dict[str, Path]:
    found = {c.labels[labels.CONTAINER]: c for c in app_containers(client, app)}
    return {name: pids_cgroup(c) for name, c in found.items()} if len(found) == 2 else {}


def test_a_fork_bomb_is_capped_and_the_node_and_its_other_replicas_carry_on(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    if not Path("/sys/fs/cgroup/pids").is_dir():
        pytest.skip("the pids cgroup (v1) is not mounted at /sys/fs/cgroup/pids")
    client = docker_engine.client
    node = NodeProcess(
        tmp_path / "dev",
        args=["--dev", "--docker-host", docker_engine.host, "--max-pids", str(MAX_PIDS)],
    )
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB.format(image=busybox_image, quiet=QUIET_PIDS))
    victim = tmp_path / "victim.yaml"
    victim.write_text(APP.format(name="victim", image=busybox_image, port=8080))
    node_label = ""
    node.start()
    try:
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        node_label = node.call("towers_active")["nodes"][0]["nodeId"]
        deploy(node, victim)
        node.wait_for(
            lambda: ingress_page(node, "victim.statemesh.internal") == "victim-page\n",
            timeout=90,
            what="victim served through the ingress",
        )
        deploy(node, bomb, "dev-bob")
        cgroups = node.wait_for(lambda: by_container(client, "bomb"), timeout=60, what="bomb")

        # What the engine enforces: the node's cap for the replica, though the manifest asked
        # for 20000, shared with the quiet container, which keeps its smaller limit.
        assert read_int(cgroups["bomb"] / "pids.max") == BOMB_PIDS
        assert read_int(cgroups["quiet"] / "pids.max") == QUIET_PIDS
        limits = {
            c.labels[labels.CONTAINER]: c.attrs["HostConfig"]["PidsLimit"]
            for c in app_containers(client, "bomb")
        }
        assert limits == {"bomb": BOMB_PIDS, "quiet": QUIET_PIDS}
        victim_limit = {
            c.attrs["HostConfig"]["PidsLimit"] for c in app_containers(client, "victim")
        }
        assert victim_limit == {MAX_PIDS}  # the default (1024) is capped too

        # The bomb reaches the cap and stays there; the kernel refuses its further forks.
        current = cgroups["bomb"] / "pids.current"
        node.wait_for(lambda: read_int(current) == BOMB_PIDS, timeout=30, what="the bomb at cap")
        best = node.best_number()
        refused = refused_forks(cgroups["bomb"])
        samples, pages, started = [], [], time.monotonic()
        while time.monotonic() - started < OBSERVE_SECONDS:
            samples.append(read_int(current))
            pages.append(ingress_page(node, "victim.statemesh.internal"))
            assert node.call("system_health") is not None
            time.sleep(0.2)
        # At the cap, never past it (one below while the shell that hit it is started again),
        # and the bomb kept trying all along.
        assert max(samples) == BOMB_PIDS, samples
        assert min(samples) >= BOMB_PIDS - 2, samples
        assert refused_forks(cgroups["bomb"]) > refused
        # The node kept authoring (one-second slots) and the other tenant kept being served.
        assert node.best_number() >= best + OBSERVE_SECONDS // 2
        assert pages == ["victim-page\n"] * len(pages)
    finally:
        node.stop()
        # The bomb goes with its containers: the session's engine outlives this node.
        if node_label:
            remove_labelled(client, {labels.NODE: node_label})
    assert not app_containers(client, "bomb", all=True)
