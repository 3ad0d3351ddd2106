"""One machine: a dev node with a Docker engine runs the replicas the chain assigns to it. An
application deployed through the CLI serves HTTP from a real container; scaling to zero and
deleting remove it."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import docker
import pytest

from tests.integration.docker_harness import DockerEngine, free_port
from tests.integration.harness import NodeProcess, cli
from tests.integration.workloads.pods import app_containers, pod_addresses

pytestmark = pytest.mark.integration

MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: hello
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: httpd
      image: {image}
      command: ["sh", "-c"]
      args:
        - >-
          mkdir -p /www && echo hello-from-statemesh > /www/index.html
          && exec httpd -f -p {port} -h /www
      ports:
        - containerPort: {port}
      resources:
        requests: {{cpu: 100m, memory: 16Mi}}
        limits: {{cpu: 500m, memory: 64Mi}}
      readinessProbe:
        httpGet: {{path: /, port: {port}}}
        periodSeconds: 1
"""


def serves(client: docker.DockerClient, port: int) -> bool:
    """Whether the replica's pod answers, at its own address (nothing is published on the
    host)."""
    addresses = pod_addresses(client, "hello")
    if not addresses:
        return False
    try:
        with urllib.request.urlopen(f"http://{addresses[0]}:{port}/", timeout=1) as response:
            return b"hello-from-statemesh" in response.read()
    except OSError:
        return False


def containers(client: docker.DockerClient) -> list[str]:
    return [c.name for c in app_containers(client, "hello")]


def test_a_deployed_app_runs_on_the_dev_node(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    port = free_port()
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(MANIFEST.format(image=busybox_image, port=port))
    node = NodeProcess(
        tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host]
    ).start()
    client = docker_engine.client
    try:
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        rpc = ["--rpc", node.url]
        deployed = cli("app", "deploy", str(manifest), "--from", "dev-alice", *rpc)
        assert deployed.returncode == 0, deployed.stderr
        node.wait_for(lambda: serves(client, port), timeout=60, what="the container serving HTTP")
        assert len(containers(client)) == 1
        # The node reports what the replica used once the (10 s, dev) metering period is over.
        node_id = node.call("towers_active")["nodes"][0]["nodeId"]
        first = time.time_ns() // 10_000_000_000

        def reported() -> bool:
            for period in range(first - 1, first + 3):
                records = node.call("usage_report", node_id, period) or []
                if any(r["app"] == "hello" and r["uptimeMs"] > 0 for r in records):
                    return True
            return False

        node.wait_for(reported, timeout=40, what="a usage report on chain")
        assert (
            cli("app", "scale", "hello", "--replicas", "0", "--from", "dev-alice", *rpc).returncode
            == 0
        )
        node.wait_for(lambda: not containers(client), timeout=60, what="the container removed")
        assert cli("app", "delete", "hello", "--from", "dev-alice", *rpc).returncode == 0
    finally:
        node.stop()
        for container in client.containers.list(all=True, filters={"label": "statemesh.app=hello"}):
            container.remove(force=True)
