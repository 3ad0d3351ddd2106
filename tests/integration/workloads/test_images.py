"""A tenant's manifest on a dev node with a real engine and registry: an image only the operator
has is never run (ImagePullBackOff with the pull's reason in the app's events), and a name the
operator has locally runs what the registry serves under it, not the operator's copy, and the
operator's tag stays."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.integration.docker_harness import DockerEngine, image_with, publish
from tests.integration.harness import NodeProcess, cli
from tests.integration.workloads.pods import app_containers

pytestmark = pytest.mark.integration

MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: {name}
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c"]
      args: ["cat /content; exec sleep 3600"]
      resources:
        requests: {{cpu: 100m, memory: 16Mi}}
        limits: {{cpu: 500m, memory: 64Mi}}
"""


def test_a_tenants_manifest_never_runs_the_operators_images(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    client = docker_engine.client
    suffix = uuid.uuid4().hex[:8]
    only_local = f"statemesh-test/operator-only-{suffix}:1"
    shadowed = f"statemesh-test/shadowed-{suffix}:1"
    image_with(client, busybox_image, only_local, "operator-private")
    image_with(client, busybox_image, shadowed, "from-the-registry")
    publish(client, shadowed)
    operators = image_with(client, busybox_image, shadowed, "operator-private")
    apps = {"stolen": only_local, "fresh": shadowed}
    for name, image in apps.items():
        (tmp_path / f"{name}.yaml").write_text(MANIFEST.format(name=name, image=image))
    node = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host])
    node.start()
    rpc = ["--rpc", node.url]
    try:
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        for name in apps:
            manifest = str(tmp_path / f"{name}.yaml")
            deployed = cli("app", "deploy", manifest, "--from", "dev-alice", *rpc)
            assert deployed.returncode == 0, deployed.stderr

        def logs() -> str:
            result = cli("app", "logs", "fresh", *rpc)
            return result.stdout if result.returncode == 0 and result.stdout else ""

        assert node.wait_for(logs, timeout=60, what="fresh's output") == "from-the-registry\n"
        # Pulled by the digest the registry resolved: the operator's tag is untouched.
        assert client.images.get(shadowed).id == operators

        def refused() -> str:
            events = cli("app", "events", "stolen", *rpc).stdout
            return events if "ImagePullBackOff" in events else ""

        events = node.wait_for(refused, timeout=60, what="stolen's pull refused")
        assert re.search(
            rf"ImagePullBackOff.*image '{re.escape(only_local)}' is not present and could not be "
            "pulled: ",
            events,
        ), events
        assert app_containers(client, "stolen", all=True) == []
        assert "operator-private" not in cli("app", "logs", "stolen", *rpc).stdout
    finally:
        node.stop()
        for name in apps:
            for c in client.containers.list(all=True, filters={"label": f"statemesh.app={name}"}):
                c.remove(force=True)
        for image in apps.values():
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image, force=True)
