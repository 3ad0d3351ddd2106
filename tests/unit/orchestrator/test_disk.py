"""Disk: volumes that belong to one application instance, measurement, and eviction of replicas
past their limits, over the in-memory engine under trio's mock clock."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import trio

from orchestrator import disk, labels
from orchestrator.controller import Controller, ControllerConfig
from orchestrator.diff import (
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    RemoveNetwork,
    RemoveVolume,
    diff,
)
from orchestrator.errors import SpecError
from orchestrator.events import EventKind
from orchestrator.spec import EnforcedResources, ReplicaSpec, RestartPolicy, Volume, VolumeKind
from tests.unit.orchestrator.builders import (
    CHAIN,
    NODE,
    InMemoryDesired,
    container,
    observed_network,
    observed_pod,
    observed_volume,
    persistent,
    replica,
)
from tests.unit.orchestrator.fake_engine import FakeEngine
from tests.unit.orchestrator.test_controller import OWNER, kinds, reason, scenario, until

MiB = 1024 * 1024
DISK = ControllerConfig(node=NODE, resync_seconds=5.0, metering_seconds=5.0, disk_seconds=5.0)


def of(spec: ReplicaSpec, owner: str, instance: int) -> ReplicaSpec:
    return dataclasses.replace(spec, owner=owner, instance=instance)


# -- measuring a folder --------------------------------------------------------------------


def test_a_folder_is_measured_by_its_blocks_each_inode_once(tmp_path: Path) -> None:
    empty = disk.directory_bytes(str(tmp_path))
    (tmp_path / "a").write_bytes(os.urandom(256 * 1024))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(os.urandom(64 * 1024))
    os.link(tmp_path / "a", tmp_path / "sub" / "a-again")
    os.symlink("/usr", tmp_path / "elsewhere")  # never followed
    measured = disk.directory_bytes(str(tmp_path))
    assert 320 * 1024 <= measured - empty < 400 * 1024
    with pytest.raises(FileNotFoundError):
        disk.directory_bytes(str(tmp_path / "gone"))


def test_a_folder_deeper_than_a_path_can_be_is_measured(tmp_path: Path) -> None:
    # 25 levels of 200-character names: a path of 5,000 characters, past the kernel's 4,096.
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(25):
        os.mkdir("d" * 200, dir_fd=folder)
        inner = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
        os.close(folder)
        folder = inner
    written = os.open("fill", os.O_WRONLY | os.O_CREAT, dir_fd=folder)
    os.write(written, os.urandom(512 * 1024))
    os.close(written)
    os.close(folder)
    assert disk.directory_bytes(str(tmp_path)) >= 512 * 1024


def test_a_tenant_cannot_make_a_measurement_endless(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c" / "d"
    nested.mkdir(parents=True)
    with pytest.raises(disk.Unmeasurable, match="nests folders more than 3 deep"):
        disk.directory_bytes(str(tmp_path), max_depth=3)
    assert disk.directory_bytes(str(tmp_path), max_depth=5) > 0
    for i in range(20):
        (tmp_path / f"f{i}").touch()
    with pytest.raises(disk.Unmeasurable, match="more than 10 files and folders"):
        disk.directory_bytes(str(tmp_path), max_entries=10)
    # No descriptor is left open by a walk that gave up.
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(disk.Unmeasurable):
            disk.directory_bytes(str(tmp_path), max_depth=2)
    assert len(os.listdir("/proc/self/fd")) == before


def test_sizes_are_shown_for_people() -> None:
    assert disk.shown(512) == "512 B"
    assert disk.shown(10 * MiB) == "10.0 MiB"
    assert disk.shown(3 * 1024 * MiB) == "3.0 GiB"


# -- volume identity -------------------------------------------------------------------------


def test_an_application_created_again_by_anyone_gets_other_volumes() -> None:
    alice = of(replica("db", volumes=(persistent(),)), "alice", 1)
    bob = of(replica("db", volumes=(persistent(),)), "bob", 2)
    alice_again = of(replica("db", volumes=(persistent(),)), "alice", 3)
    names = {
        labels.volume_name(NODE, labels.volume_identity(s, persistent()))
        for s in (alice, bob, alice_again)
    }
    assert len(names) == 3
    # The old instance's containers and pod are not adopted by the new one either.
    c = alice.containers[0]
    assert labels.spec_hash(alice, c) != labels.spec_hash(alice_again, c)
    assert labels.sandbox_hash(NODE, alice) != labels.sandbox_hash(NODE, alice_again)
    identity = labels.parse_volume_labels(observed_volume(bob, persistent()).labels)
    assert identity is not None and (identity.owner, identity.instance) == ("bob", 2)


def test_persistent_volumes_stay_while_the_chain_keeps_their_instance() -> None:
    old = of(replica("db", volumes=(persistent(),)), "alice", 1)
    new = of(replica("db", volumes=(persistent(),)), "bob", 2)
    left = observed_volume(old, persistent())
    desired = {new.key: new}

    def removed(kept: dict[str, set[int]] | None) -> list[str]:
        actions = diff(NODE, desired, [], [left], [], kept)
        return [a.name for a in actions if isinstance(a, RemoveVolume)]

    assert removed(None) == []  # the chain's word is not known yet
    assert removed({CHAIN: {1, 2}}) == []  # deleted, within its retention
    assert removed({CHAIN: {2}}) == [left.name]  # retention over
    assert removed({"another-chain": {1}}) == []  # not this chain's word: left alone
    # Unlabelled or half-labelled volumes are never touched.
    stripped = dataclasses.replace(
        left, labels={k: v for k, v in left.labels.items() if k != labels.INSTANCE}
    )
    actions = diff(NODE, desired, [], [stripped], [], {CHAIN: set()})
    assert not [a for a in actions if isinstance(a, RemoveVolume)]


def test_a_volume_in_memory_is_created_as_a_tmpfs_of_its_size() -> None:
    volume = Volume("cache", "/cache", VolumeKind.EPHEMERAL, size_bytes=4 * MiB, memory=True)
    spec = replica("web", volumes=(volume,))
    (create,) = [a for a in diff(NODE, {spec.key: spec}, [], []) if isinstance(a, CreateVolume)]
    assert create.memory_bytes == 4 * MiB
    with pytest.raises(SpecError, match="needs a size limit"):
        Volume("cache", "/cache", VolumeKind.EPHEMERAL, memory=True)
    with pytest.raises(SpecError, match="only an ephemeral"):
        Volume("cache", "/cache", VolumeKind.PERSISTENT, size_bytes=MiB, memory=True)


# -- eviction --------------------------------------------------------------------------------


def limited(
    *,
    disk_bytes: int | None = None,
    volumes: tuple[Volume, ...] = (),
    policy: RestartPolicy = RestartPolicy.ALWAYS,
) -> ReplicaSpec:
    main = container(resources=EnforcedResources(disk_bytes=disk_bytes))
    spec = replica("web", containers=(main,), volumes=volumes, restart_policy=policy)
    return of(spec, "alice", 7)


def volume_name(spec: ReplicaSpec, volume: Volume) -> str:
    return labels.volume_name(NODE, labels.volume_identity(spec, volume))


def test_a_container_past_its_ephemeral_storage_is_evicted_and_started_again() -> None:
    spec = limited(disk_bytes=10 * MiB)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: bool(engine.with_labels(OWNER)))
        (first,) = engine.with_labels(OWNER)
        engine.written[first.id] = 9 * MiB  # under the limit: nothing happens
        await until(controller, lambda: controller.meter.usage(spec.key).disk_bytes == 9 * MiB)
        assert "Evicted" not in kinds(controller, spec)
        engine.written[first.id] = 300 * MiB
        await until(controller, lambda: "Evicted" in kinds(controller, spec))
        event = [e for e in controller.events.for_replica(spec.key) if e.kind is EventKind.EVICTED]
        assert event[0].reason == "Evicted"
        assert "container main wrote 300.0 MiB" in event[0].message
        assert "ephemeral-storage limit of 10.0 MiB" in event[0].message
        await until(controller, lambda: first.id not in engine.containers)
        # Created again after a back-off, with an empty writable layer.
        await until(controller, lambda: bool(engine.with_labels(OWNER)))
        (second,) = engine.with_labels(OWNER)
        assert second.id != first.id
        assert "BackOff" in kinds(controller, spec)
        assert controller.usage()[spec.key].peak_disk_bytes == 300 * MiB

    scenario(test, spec, config=DISK)


def test_an_empty_dir_past_its_size_limit_is_emptied_with_its_replica() -> None:
    scratch = Volume("scratch", "/scratch", VolumeKind.EPHEMERAL, size_bytes=MiB)
    spec = limited(volumes=(scratch,))
    name = volume_name(spec, scratch)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: bool(engine.with_labels(OWNER)))
        engine.volume_bytes[name] = 100 * MiB
        await until(controller, lambda: "Evicted" in kinds(controller, spec))
        assert "volume scratch holds 100.0 MiB, past its sizeLimit of 1.0 MiB" in (
            controller.events.for_replica(spec.key)[-1].message
            + " ".join(e.message for e in controller.events.for_replica(spec.key))
        )
        await until(controller, lambda: ("remove_volume", name) in engine.operations)
        engine.volume_bytes.pop(name)
        await until(
            controller, lambda: name in engine.volumes and controller.status()[spec.key].running
        )

    scenario(test, spec, config=DISK)


def test_a_persistent_volume_past_its_size_evicts_but_keeps_the_data() -> None:
    data = Volume("data", "/data", VolumeKind.PERSISTENT, size_bytes=MiB)
    spec = limited(volumes=(data,))
    name = volume_name(spec, data)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: bool(engine.with_labels(OWNER)))
        engine.volume_bytes[name] = 5 * MiB
        await until(controller, lambda: "Evicted" in kinds(controller, spec))
        assert any(
            "past its size of 1.0 MiB" in e.message for e in controller.events.for_replica(spec.key)
        )
        assert ("remove_volume", name) not in engine.operations

    scenario(test, spec, config=DISK)


def test_a_volume_that_cannot_be_measured_evicts_its_replica() -> None:
    scratch = Volume("scratch", "/scratch", VolumeKind.EPHEMERAL, size_bytes=MiB)
    spec = limited(volumes=(scratch,))
    name = volume_name(spec, scratch)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: bool(engine.with_labels(OWNER)))
        engine.unmeasurable[name] = "holds more than 1000000 files and folders"
        await until(controller, lambda: "Evicted" in kinds(controller, spec))
        assert any(
            "volume scratch cannot be measured: it holds more than 1000000 files" in e.message
            for e in controller.events.for_replica(spec.key)
        )

    scenario(test, spec, config=DISK)


def test_an_evicted_container_of_restart_policy_never_stays_gone() -> None:
    spec = limited(disk_bytes=MiB, policy=RestartPolicy.NEVER)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: bool(engine.with_labels(OWNER)))
        (first,) = engine.with_labels(OWNER)
        engine.written[first.id] = 2 * MiB
        await until(controller, lambda: not engine.with_labels(OWNER))
        for _ in range(5):
            controller.trigger()
            await controller.changed()
        assert not engine.with_labels(OWNER)
        assert reason(controller, spec) == "Evicted"

    scenario(test, spec, config=DISK)


def test_retained_volumes_are_measured_for_usage() -> None:
    old = of(replica("db", volumes=(persistent(),)), "alice", 1)
    left = observed_volume(old, persistent())
    engine = FakeEngine()
    engine.volumes[left.name] = dict(left.labels)
    engine.volume_bytes[left.name] = 3 * MiB

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: bool(controller.retained_volume_usage()))
        (kept,) = controller.retained_volume_usage()
        assert (kept.app, kept.instance, kept.replica, kept.volume, kept.bytes) == (
            "db",
            1,
            0,
            "data",
            3 * MiB,
        )
        assert left.name in engine.volumes  # kept: the desired state keeps every instance

    scenario(test, replica("web"), engine=engine, config=DISK)


def test_an_application_created_again_gets_a_network_of_its_own() -> None:
    alice = of(replica("db"), "alice", 1)
    bob = of(replica("db"), "bob", 2)
    old_net, new_net = observed_network(alice), observed_network(bob)
    assert old_net.name != new_net.name
    # Bob's pod is made on a new network, never on the one alice's pods may still be on.
    actions = diff(NODE, {bob.key: bob}, [observed_pod(alice)], [], [old_net])
    (create,) = [a for a in actions if isinstance(a, CreateNetwork)]
    assert create.name == new_net.name
    (sandbox,) = [
        a for a in actions if isinstance(a, CreateContainer) and a.key.container == labels.SANDBOX
    ]
    assert sandbox.request.network == new_net.name
    # Alice's network goes once nothing of her instance is left, though "db" still runs.
    actions = diff(NODE, {bob.key: bob}, [observed_pod(bob)], [], [old_net, new_net])
    assert [a.name for a in actions if isinstance(a, RemoveNetwork)] == [old_net.name]


def test_a_volume_no_replica_here_uses_goes_after_the_retention_period() -> None:
    data = persistent()
    kept, moved = (
        of(replica("db", 0, volumes=(data,)), "alice", 1),
        of(replica("db", 1, volumes=(data,)), "alice", 1),
    )
    config = dataclasses.replace(DISK, unused_volume_seconds=60.0)

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, lambda: len(engine.volumes) == 2)
        desired.specs = [kept]  # replica 1 moved to another node: its volume is unused here
        controller.trigger()
        gone = volume_name(moved, data)
        started = trio.current_time()
        await until(controller, lambda: gone not in engine.volumes)
        assert trio.current_time() - started >= 59
        assert volume_name(kept, data) in engine.volumes  # used: never goes

    scenario(test, kept, moved, config=config)
