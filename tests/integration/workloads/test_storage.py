"""Tenants' data and disk, tried as a hostile tenant would on a dev node with a real engine: an
application deleted and created again under its name by another owner starts with an empty
volume, and the old one is gone once its retention period is over; writing past an
`ephemeral-storage` limit, an emptyDir's `sizeLimit` or a persistent volume's `size` evicts the
replica within two measurement periods, with the reason in `statemesh app events`; an emptyDir in
memory is a tmpfs of its size."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from chain.keys import dev_keypair
from tests.integration.docker_harness import DockerEngine, remove_labelled
from tests.integration.harness import NodeProcess, cli, grant
from tests.integration.workloads.pods import app_container, app_containers

pytestmark = pytest.mark.integration

ALICE = dev_keypair("alice")
"""Who deploys the scenarios whose node events are read."""

DISK_SECONDS = 10.0
"""How often a node measures its replicas' disk (the controller's default)."""

DB = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: db
spec:
  replicas: 1
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c"]
      args:
        - >-
          touch /data/rows && echo {row} >> /data/rows && exec sleep 100000
      volumeMounts: [{{name: data, mountPath: /data}}]
      resources:
        limits: {{cpu: 100m, memory: 16Mi}}
  volumes:
    - name: data
      persistent: {{size: 64Mi}}
"""

WRITER = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: {name}
spec:
  replicas: 1
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c"]
      args:
        - >-
          dd if=/dev/zero of={target}/fill bs=1048576 count={mib} 2>/dev/null;
          echo wrote; exec sleep 100000
      volumeMounts: [{{name: space, mountPath: /space}}]
      resources:
        limits: {{cpu: 100m, memory: 32Mi, ephemeral-storage: {ephemeral}}}
  volumes:
    - name: space
      {volume}
"""


WRITERS = {
    # name: (where it writes, MiB written, container limit, volume, the reason expected)
    "layer": ("/tmp", 40, "10Mi", "emptyDir: {}", r"container main wrote 4\d\.\d MiB"),
    "scratch": ("/space", 20, "1Gi", "emptyDir: {sizeLimit: 2Mi}", r"past its sizeLimit"),
    "keeps": ("/space", 20, "1Gi", "persistent: {size: 2Mi}", r"past its size of 2\.0 MiB"),
    # 140 nested folders: a walk that would not end is not made.
    "deep": ("/space", 1, "1Gi", "emptyDir: {sizeLimit: 1Gi}", r"nests folders more than 128"),
    # A tmpfs holds at its size: the write stops there, nothing is evicted.
    "ram": ("/space", 8, "1Gi", "emptyDir: {medium: Memory, sizeLimit: 4Mi}", None),
}


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine, busybox_image: str
) -> Iterator[NodeProcess]:
    """One dev node for the module, with every scenario's applications deployed at once (each
    test then checks its own, so their waits overlap)."""
    folder = tmp_path_factory.mktemp("storage")
    dev = NodeProcess(folder / "dev", args=["--dev", "--docker-host", docker_engine.host])
    dev.start()
    try:
        dev.wait_for(lambda: dev.call("towers_active")["total"] == 1, timeout=40, what="active")
        deploy(
            dev, folder / "db.yaml", DB.format(image=busybox_image, row="alice-row"), "dev-alice"
        )
        for name, (target, mib, ephemeral, volume, _) in WRITERS.items():
            text = WRITER.format(
                name=name,
                image=busybox_image,
                target=target,
                mib=mib,
                ephemeral=ephemeral,
                volume=volume,
            )
            if name == "deep":
                text = text.replace(
                    "dd if=/dev/zero",
                    "cd /space && for i in $(seq 140); do mkdir d && cd d; done; dd if=/dev/zero",
                )
            deploy(dev, folder / f"{name}.yaml", text, "dev-alice")
        yield dev
    finally:
        dev.stop()
        remove_labelled(docker_engine.client, {"statemesh.chain": "statemesh_dev"})
        for volume in docker_engine.client.volumes.list(
            filters={"label": "statemesh.chain=statemesh_dev"}
        ):
            volume.remove(force=True)


def run(node: NodeProcess, *args: str) -> str:
    result = cli(*args, "--rpc", node.url)
    assert result.returncode == 0, result.stderr
    return result.stdout


def deploy(node: NodeProcess, path: Path, text: str, who: str) -> None:
    path.write_text(text)
    run(node, "app", "deploy", str(path), "--from", who)


def app_volumes(client: docker.DockerClient, app: str) -> list[docker.models.volumes.Volume]:
    return client.volumes.list(filters={"label": [f"statemesh.app={app}"]})


def volume_created(client: docker.DockerClient, app: str) -> str:
    """When the app's one volume was made ("" while it has none)."""
    found = app_volumes(client, app)
    return str(found[0].attrs.get("CreatedAt", "")) if len(found) == 1 else ""


def read(client: docker.DockerClient, app: str, path: str) -> str:
    try:
        result = app_container(client, app).exec_run(["cat", path])
    except (AssertionError, docker.errors.APIError):
        return ""
    return result.output.decode() if result.exit_code == 0 else ""


def node_events(node: NodeProcess, app: str, kind: str) -> list[dict[str, Any]]:
    """The node's events of `app` of one kind (`Started`, `Evicted`, ...), oldest first."""
    events: list[dict[str, Any]] = node.call("app_events", app, grant(node, ALICE, app))
    return [e for e in events if e["block"] is None and e["kind"] == kind]


def test_an_application_created_again_by_another_owner_starts_empty(
    node: NodeProcess, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    client = docker_engine.client
    node.wait_for(lambda: read(client, "db", "/data/rows") == "alice-row\n", timeout=60)
    (alice_volume,) = app_volumes(client, "db")
    alice_instance = alice_volume.attrs["Labels"]["statemesh.instance"]
    run(node, "app", "delete", "db", "--from", "dev-alice")
    node.wait_for(lambda: not app_containers(client, "db"), timeout=30, what="alice's db gone")
    # Retained (and billed) for the chain's retention period: still there, of nobody's app.
    assert [v.name for v in app_volumes(client, "db")] == [alice_volume.name]

    deploy(node, tmp_path / "b.yaml", DB.format(image=busybox_image, row="bob-row"), "dev-bob")
    node.wait_for(lambda: read(client, "db", "/data/rows") == "bob-row\n", timeout=60)
    volumes = {v.name: v.attrs["Labels"] for v in app_volumes(client, "db")}
    assert len(volumes) == 2 and alice_volume.name in volumes
    (bob_labels,) = [labels for name, labels in volumes.items() if name != alice_volume.name]
    assert bob_labels["statemesh.instance"] != alice_instance
    assert bob_labels["statemesh.owner"] != alice_volume.attrs["Labels"]["statemesh.owner"]

    # The dev chain keeps a deleted application's volumes for 30 s.
    node.wait_for(
        lambda: alice_volume.name not in {v.name for v in app_volumes(client, "db")},
        timeout=90,
        what="the retained volume removed",
    )
    assert read(client, "db", "/data/rows") == "bob-row\n"  # bob's own is untouched


@pytest.mark.parametrize("app", [name for name, case in WRITERS.items() if case[4] is not None])
def test_a_replica_past_a_disk_limit_is_evicted_with_the_reason(
    node: NodeProcess, docker_engine: DockerEngine, app: str
) -> None:
    reason = WRITERS[app][4]
    assert reason is not None
    evicted = node.wait_for(lambda: node_events(node, app, "Evicted"), timeout=60, what=app)
    assert evicted[0]["reason"] == "Evicted" and re.search(reason, evicted[0]["message"])
    # Within two measurement periods of the container's first start (which writes at once),
    # and the slack of one pass.
    started = node_events(node, app, "Started")[0]["time"]
    assert evicted[0]["time"] - started < 2 * DISK_SECONDS + 5
    # As `statemesh app events` says it.
    printed = run(node, "app", "events", app)
    assert re.search(r"node\s+Evicted\s+replica 0 \(revision 1\)\s+Evicted: ", printed), printed
    client = docker_engine.client
    if app == "scratch":
        # An emptyDir that overflowed went with its replica, and is made anew for the next start.
        first = volume_created(client, app)
        node.wait_for(
            lambda: (
                volume_created(client, app) not in ("", first)
                or len(node_events(node, app, "Evicted")) > 1
            ),
            timeout=60,
            what="the emptyDir made anew",
        )
    if app == "keeps":
        # A persistent volume is the same volume through evictions, with its data.
        (volume,) = app_volumes(client, app)
        assert volume.attrs["Labels"]["statemesh.volume-kind"] == "persistent"
        assert len(node_events(node, app, "Evicted")) >= 1
    assert node.call("system_health") is not None  # the node carries on


def test_an_empty_dir_in_memory_is_a_tmpfs_of_its_size(
    node: NodeProcess, docker_engine: DockerEngine
) -> None:
    client = docker_engine.client
    started = node.wait_for(lambda: node_events(node, "ram", "Started"), timeout=60, what="ram")
    node.wait_for(lambda: read(client, "ram", "/proc/mounts") != "", timeout=30)
    mounts = read(client, "ram", "/proc/mounts")
    (line,) = [m for m in mounts.splitlines() if " /space " in m]
    assert line.split()[2] == "tmpfs" and "size=4096k" in line, line
    # The tmpfs holds at its size: the write stopped there, and nothing is evicted.
    node.wait_for(lambda: "wrote" in app_container(client, "ram").logs().decode(), timeout=30)
    size = app_container(client, "ram").exec_run(["du", "-k", "/space/fill"]).output.decode()
    assert int(size.split()[0]) <= 4096
    wait = started[0]["time"] + DISK_SECONDS + 2 - time.time()
    if wait > 0:
        time.sleep(wait)
    assert node_events(node, "ram", "Evicted") == []
