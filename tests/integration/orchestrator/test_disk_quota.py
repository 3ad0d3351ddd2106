"""Disk limits as engine quotas, on real engines: on an engine whose data root is xfs mounted with
`pquota` a container's writable layer is capped at its `ephemeral-storage` limit (a write past it
fails with ENOSPC); on xfs without `pquota` and on this machine's ext4 the same create succeeds
without a quota, and the limit holds by measurement and eviction only."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest
import trio

from orchestrator import labels
from orchestrator.docker_engine import DockerAdapter
from orchestrator.engine import CreateRequest
from orchestrator.spec import EnforcedResources
from tests.integration.docker_harness import (
    BUSYBOX_IMAGE,
    DockerEngine,
    XfsUnavailable,
    ensure_busybox_image,
    start_private_engine,
    stop_engine,
)

pytestmark = pytest.mark.integration

MIB = 2**20
LIMIT = 10 * MIB
WRITE_MIB = 30
LIMITED = EnforcedResources(disk_bytes=LIMIT)


@dataclass(frozen=True)
class Written:
    """What a container that tried to write `WRITE_MIB` MiB to its root filesystem got."""

    exit_code: int
    output: str
    measured: int
    """Its writable layer's size, as the node measures it for eviction."""
    storage_opt: dict[str, str] | None


async def write(
    adapter: DockerAdapter, client: docker.DockerClient, node: str, resources: EnforcedResources
) -> Written:
    request = CreateRequest(
        name=f"{node}-{uuid.uuid4().hex[:6]}",
        image=BUSYBOX_IMAGE,
        command=(),
        args=("sh", "-c", f"dd if=/dev/zero of=/fill bs=1048576 count={WRITE_MIB} && sync"),
        env=(),
        labels=labels.owner_labels(node),
        resources=resources,
    )
    cid = await adapter.create(request)
    await adapter.start(cid)
    waited = await trio.to_thread.run_sync(lambda: client.api.wait(cid, timeout=30))
    output = (await adapter.logs(cid)).decode(errors="replace")
    usage = await adapter.disk_usage(labels.owner_labels(node))
    host_config = await trio.to_thread.run_sync(lambda: client.api.inspect_container(cid))
    return Written(
        int(waited["StatusCode"]),
        output,
        usage.containers[cid],
        host_config["HostConfig"].get("StorageOpt"),
    )


async def limited_and_unlimited(engine: DockerEngine) -> tuple[Written, Written, DockerAdapter]:
    adapter = await DockerAdapter.connect(engine.host)
    try:
        node = f"quota-{uuid.uuid4().hex[:8]}"
        limited = await write(adapter, engine.client, node, LIMITED)
        unlimited = await write(adapter, engine.client, node, EnforcedResources())
        return limited, unlimited, adapter
    finally:
        adapter.close()


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("an engine on an xfs data root needs root (mount, loop devices, dockerd)")


def xfs_engine(quota: bool) -> Iterator[DockerEngine]:
    try:
        engine = start_private_engine(xfs_size="512m", xfs_quota=quota)
    except XfsUnavailable as e:
        pytest.skip(str(e))
    try:
        ensure_busybox_image(engine.client)
        yield engine
    finally:
        stop_engine(engine)


@pytest.fixture
def xfs_pquota_engine(root_only: None) -> Iterator[DockerEngine]:
    """A private engine whose data root is xfs mounted with project quotas."""
    yield from xfs_engine(quota=True)


@pytest.fixture
def xfs_noquota_engine(root_only: None) -> Iterator[DockerEngine]:
    """A private engine whose data root is xfs mounted without quotas."""
    yield from xfs_engine(quota=False)


def test_on_xfs_with_pquota_a_disk_limit_is_a_hard_quota_of_the_writable_layer(
    xfs_pquota_engine: DockerEngine,
) -> None:
    limited, unlimited, adapter = trio.run(limited_and_unlimited, xfs_pquota_engine)
    assert adapter.disk_quotas is True
    assert limited.storage_opt == {"size": str(LIMIT)}
    assert limited.exit_code != 0, limited.output
    assert "No space left on device" in limited.output
    # What it wrote stops at the limit (the node's measurement, for eviction, stays on top).
    assert limited.measured <= LIMIT + MIB // 2, limited.measured
    assert unlimited.storage_opt is None
    assert unlimited.exit_code == 0, unlimited.output
    assert unlimited.measured >= WRITE_MIB * MIB


def test_on_xfs_without_pquota_a_disk_limit_is_created_without_a_quota(
    xfs_noquota_engine: DockerEngine,
) -> None:
    """The engine refuses the quota once; the adapter creates without it from then on."""
    limited, unlimited, adapter = trio.run(limited_and_unlimited, xfs_noquota_engine)
    assert adapter.disk_quotas is False
    for written in (limited, unlimited):
        assert written.storage_opt is None
        assert written.exit_code == 0, written.output
        assert written.measured >= WRITE_MIB * MIB  # past the limit: the eviction's to see


def test_on_the_session_engine_a_disk_limit_is_created_without_a_quota(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    async def main() -> tuple[Written, DockerAdapter]:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            return await write(adapter, docker_engine.client, node_id, LIMITED), adapter
        finally:
            adapter.close()

    info = docker_engine.client.info()
    backing = dict(row for row in info.get("DriverStatus") or [] if len(row) == 2)
    if info.get("Driver") == "overlay2" and backing.get("Backing Filesystem") == "xfs":
        pytest.skip("the session engine's data root is xfs: this test is about one without")
    limited, adapter = trio.run(main)
    assert adapter.disk_quotas is False
    assert limited.storage_opt is None
    assert limited.exit_code == 0, limited.output
    assert limited.measured >= WRITE_MIB * MIB
