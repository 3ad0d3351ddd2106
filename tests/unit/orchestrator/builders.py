"""Replica specs and observed containers for orchestrator tests."""

from __future__ import annotations

from orchestrator import labels
from orchestrator.engine import ContainerInfo, ContainerState, NetworkInfo, RunState, VolumeInfo
from orchestrator.spec import (
    Container,
    EnforcedResources,
    Probe,
    ReplicaSpec,
    RestartPolicy,
    Volume,
    VolumeKind,
)
from testkit.desired import InMemoryDesired as InMemoryDesired

NODE = "node-a"
CHAIN = "statemesh_dev"


def container(
    name: str = "main",
    *,
    image: str = "img:1",
    args: tuple[str, ...] = ("sleep", "1000"),
    liveness: Probe | None = None,
    readiness: Probe | None = None,
    startup: Probe | None = None,
    resources: EnforcedResources | None = None,
) -> Container:
    return Container(
        name=name,
        image=image,
        args=args,
        resources=resources or EnforcedResources(),
        liveness_probe=liveness,
        readiness_probe=readiness,
        startup_probe=startup,
    )


def replica(
    app: str = "web",
    index: int = 0,
    *,
    revision: int = 1,
    containers: tuple[Container, ...] | None = None,
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS,
    volumes: tuple[Volume, ...] = (),
    grace: float = 1.0,
) -> ReplicaSpec:
    return ReplicaSpec(
        chain=CHAIN,
        app=app,
        revision=revision,
        replica=index,
        containers=containers or (container(),),
        restart_policy=restart_policy,
        volumes=volumes,
        termination_grace_period_seconds=grace,
    )


def ephemeral(name: str = "scratch", path: str = "/scratch") -> Volume:
    return Volume(name, path, VolumeKind.EPHEMERAL)


def persistent(name: str = "data", path: str = "/data") -> Volume:
    return Volume(name, path, VolumeKind.PERSISTENT)


def observed(
    spec: ReplicaSpec,
    name: str = "main",
    state: ContainerState = ContainerState.RUNNING,
    *,
    cid: str = "c1",
    exit_code: int = 0,
    oom: bool = False,
    started: bool = True,
    node: str = NODE,
    pod: str | None = None,
) -> ContainerInfo:
    """A container as the engine would report it for `spec`'s container `name`, in the pod
    whose sandbox has id `pod` (by default that of `observed_pod(spec)`)."""
    c = spec.container(name)
    ran = started and state is not ContainerState.CREATED
    finished = ran and state not in (ContainerState.RUNNING,)
    return ContainerInfo(
        id=cid,
        name=labels.container_name(node, spec, c),
        labels=labels.container_labels(node, spec, c),
        state=state,
        run=RunState(
            started_at=100.0 if ran else None,
            finished_at=160.0 if finished else None,
            exit_code=exit_code,
            oom_killed=oom,
        ),
        network_mode=f"container:{pod or pod_id(spec)}",
    )


def pod_id(spec: ReplicaSpec) -> str:
    return f"p-{spec.app}-{spec.replica}"


def observed_pod(
    spec: ReplicaSpec,
    state: ContainerState = ContainerState.RUNNING,
    *,
    cid: str | None = None,
    node: str = NODE,
    address: str = "10.88.0.2",
) -> ContainerInfo:
    """A replica's sandbox as the engine would report it."""
    network = labels.network_name(node, spec.chain, spec.app, spec.instance)
    running = state is ContainerState.RUNNING
    return ContainerInfo(
        id=cid or pod_id(spec),
        name=labels.sandbox_name(node, spec.key),
        labels=labels.sandbox_labels(node, spec),
        state=state,
        run=RunState(100.0, None if running else 160.0, 0, False),
        network_mode=network,
        addresses={network: address} if running else {},
    )


def observed_network(spec: ReplicaSpec, node: str = NODE) -> NetworkInfo:
    return NetworkInfo(
        labels.network_name(node, spec.chain, spec.app, spec.instance),
        labels.network_labels(node, spec.chain, spec.app, spec.instance),
    )


def observed_volume(spec: ReplicaSpec, volume: Volume, node: str = NODE) -> VolumeInfo:
    identity = labels.volume_identity(spec, volume)
    return VolumeInfo(labels.volume_name(node, identity), labels.volume_labels(node, identity))
