"""Tenants' data and disk, tried as a hostile tenant would on a dev node with a real engine: an
application deleted and created again under its name by another owner starts with an empty
volume, and the old one is gone once its retention period is over; writing past an
`ephemeral-storage` limit, an emptyDir's `sizeLimit` or a persistent volume's `size` evicts the
replica within two measurement periods, with the reason in `statemesh app events`; an emptyDir in
memory is a tmpfs of its size."""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.docker_harness import DockerEngine, remove_labelled
from tests.integration.harness import NodeProcess, cli
from tests.integration.workloads.pods import app_container, app_containers

pytestmark = pytest.mark.integration

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


@pytest.fixture
def node(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[NodeProcess]:
    dev = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host])
    dev.start()
    try:
        dev.wait_for(lambda: dev.call("towers_active")["total"] == 1, timeout=40, what="active")
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


def read(client: docker.DockerClient, app: str, path: str) -> str:
    try:
        result = app_container(client, app).exec_run(["cat", path])
    except (AssertionError, docker.errors.APIError):
        return ""
    return result.output.decode() if result.exit_code == 0 else ""


def test_an_application_created_again_by_another_owner_starts_empty(
    node: NodeProcess, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    client = docker_engine.client
    deploy(node, tmp_path / "a.yaml", DB.format(image=busybox_image, row="alice-row"), "dev-alice")
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


def volume_created(client: docker.DockerClient, app: str) -> str:
    """When the app's one volume was made ("" while it has none)."""
    found = app_volumes(client, app)
    return str(found[0].attrs.get("CreatedAt", "")) if len(found) == 1 else ""


def evicted(node: NodeProcess, app: str) -> str:
    """The node's Evicted event of `app`, as `statemesh app events` prints it ("" if none)."""
    for line in run(node, "app", "events", app).splitlines():
        if re.search(r"\bEvicted\b", line) and "node" in line:
            return line
    return ""


def started_at(client: docker.DockerClient, app: str) -> float:
    """When the app's container wrote `wrote` (seconds since the epoch), 0 before."""
    try:
        logs = app_container(client, app).logs(timestamps=True).decode()
    except (AssertionError, docker.errors.APIError):
        return 0.0  # not running yet
    for line in logs.splitlines():
        if line.endswith(" wrote"):
            return calendar.timegm(time.strptime(line.split()[0][:19], "%Y-%m-%dT%H:%M:%S"))
    return 0.0


def test_writing_past_a_disk_limit_evicts_the_replica_with_the_reason(
    node: NodeProcess, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    client = docker_engine.client
    cases = {
        # name: (where it writes, MiB written, container limit, volume, expected reason)
        "layer": ("/tmp", 40, "10Mi", "emptyDir: {}", r"container main wrote 4\d\.\d MiB"),
        "scratch": ("/space", 20, "1Gi", "emptyDir: {sizeLimit: 2Mi}", r"past its sizeLimit"),
        "keeps": ("/space", 20, "1Gi", "persistent: {size: 2Mi}", r"past its size of 2\.0 MiB"),
    }
    for name, (target, mib, ephemeral, volume, _) in cases.items():
        text = WRITER.format(
            name=name,
            image=busybox_image,
            target=target,
            mib=mib,
            ephemeral=ephemeral,
            volume=volume,
        )
        deploy(node, tmp_path / f"{name}.yaml", text, "dev-alice")
    written = {}
    for name in cases:
        written[name] = node.wait_for(
            lambda name=name: started_at(client, name), timeout=60, what=f"{name} written"
        )
    created = {name: volume_created(client, name) for name in ("scratch", "keeps")}
    for name, (*_, reason) in cases.items():
        line = node.wait_for(lambda name=name: evicted(node, name), timeout=40, what=name)
        assert re.search(reason, line), line
        assert "Evicted" in line
    # Within two measurement periods of the write (and the slack of one pass).
    now = time.time()
    for name in cases:
        assert now - written[name] < 2 * DISK_SECONDS + 15, name
    # An emptyDir that overflowed went with its replica (a new one was made for its next start);
    # a persistent volume is the same volume, with its data.
    node.wait_for(
        lambda: volume_created(client, "scratch") not in ("", created["scratch"]),
        timeout=90,
        what="the emptyDir made anew",
    )
    assert volume_created(client, "keeps") == created["keeps"]


def test_a_volume_too_deep_to_measure_evicts_its_replica(
    node: NodeProcess, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    text = WRITER.format(
        name="deep",
        image=busybox_image,
        target="/space",
        mib=1,
        ephemeral="1Gi",
        volume="emptyDir: {sizeLimit: 1Gi}",
    ).replace(
        "dd if=/dev/zero",
        "cd /space && for i in $(seq 140); do mkdir d && cd d; done; dd if=/dev/zero",
    )
    deploy(node, tmp_path / "deep.yaml", text, "dev-alice")
    line = node.wait_for(lambda: evicted(node, "deep"), timeout=60, what="deep evicted")
    assert "volume space cannot be measured: it nests folders more than 128 deep" in line, line
    assert node.call("system_health") is not None  # the node is unaffected


def test_an_empty_dir_in_memory_is_a_tmpfs_of_its_size(
    node: NodeProcess, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    client = docker_engine.client
    text = WRITER.format(
        name="ram",
        image=busybox_image,
        target="/space",
        mib=8,
        ephemeral="1Gi",
        volume="emptyDir: {medium: Memory, sizeLimit: 4Mi}",
    )
    deploy(node, tmp_path / "ram.yaml", text, "dev-alice")
    node.wait_for(lambda: started_at(client, "ram"), timeout=60, what="ram written")
    mounts = read(client, "ram", "/proc/mounts")
    (line,) = [m for m in mounts.splitlines() if " /space " in m]
    assert line.split()[2] == "tmpfs" and "size=4096k" in line, line
    # The tmpfs holds at its size: the write stopped there, and nothing is evicted.
    size = app_container(client, "ram").exec_run(["du", "-k", "/space/fill"]).output.decode()
    assert int(size.split()[0]) <= 4096
    time.sleep(DISK_SECONDS + 2)
    assert evicted(node, "ram") == ""
