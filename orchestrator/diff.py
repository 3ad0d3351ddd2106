"""Desired replicas versus observed containers and volumes, to the smallest list of actions.

Pure: no I/O, no clock. Back-off is not decided here; the controller holds back starts and
creates whose back-off has not elapsed. Actions of one replica come out in the order they must
run in: removals, volume creations, container creations and starts, then volume removals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from orchestrator import labels
from orchestrator.labels import ContainerIdentity, ContainerKey
from orchestrator.runtime import ContainerInfo, ContainerState, CreateRequest, Mount, VolumeInfo
from orchestrator.spec import Container, ReplicaKey, ReplicaSpec, RestartPolicy, VolumeKind


class RemoveReason(Enum):
    NOT_DESIRED = "no longer assigned to this node"
    REPLACED = "replaced by a new spec"
    DUPLICATE = "a duplicate of another container"
    DEAD = "dead and cannot be started"


@dataclass(frozen=True, slots=True)
class CreateVolume:
    replica: ReplicaKey
    name: str
    labels: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class CreateContainer:
    """Create the container and start it."""

    key: ContainerKey
    spec_hash: str
    request: CreateRequest

    @property
    def replica(self) -> ReplicaKey:
        return self.key.replica


@dataclass(frozen=True, slots=True)
class StartContainer:
    """Start a container that exists: for the first time, or again after it exited."""

    key: ContainerKey
    spec_hash: str
    container_id: str
    restart: bool
    """True if its process ran before (a restart, subject to CrashLoopBackOff)."""
    ran_for: float
    """How long its last run lasted, in seconds: long good runs reset the back-off."""

    @property
    def replica(self) -> ReplicaKey:
        return self.key.replica


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    key: ContainerKey
    container_id: str
    reason: RemoveReason

    @property
    def replica(self) -> ReplicaKey:
        return self.key.replica


@dataclass(frozen=True, slots=True)
class RemoveVolume:
    replica: ReplicaKey
    name: str


Action = CreateVolume | CreateContainer | StartContainer | RemoveContainer | RemoveVolume

_GONE = (ContainerState.REMOVING,)
_LIVE = (ContainerState.RUNNING, ContainerState.PAUSED, ContainerState.RESTARTING)


def create_request(node: str, spec: ReplicaSpec, container: Container) -> CreateRequest:
    """What the engine is asked to create for one container of a desired replica."""
    mounts = tuple(
        Mount(volume=labels.volume_name(node, labels.volume_identity(spec, v)), target=v.mount_path)
        for v in spec.volumes
    )
    return CreateRequest(
        name=labels.container_name(node, spec, container),
        image=container.image,
        command=container.command,
        args=container.args,
        env=container.env,
        labels=labels.container_labels(node, spec, container),
        resources=container.resources,
        mounts=mounts,
        image_pull_policy=container.image_pull_policy,
    )


def should_restart(policy: RestartPolicy, observed: ContainerInfo) -> bool:
    """Whether an exited container is started again under its replica's restart policy."""
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.NEVER:
        return False
    run = observed.run
    return run is None or run.exit_code != 0 or run.oom_killed


def keep_order(c: ContainerInfo) -> tuple[int, str]:
    """Sorts the container to keep first among several that run the same spec."""
    # Prefer a live container, then one that ran, then the id for a stable choice.
    live = c.state in _LIVE
    ran = c.run is not None and c.run.started_at is not None
    return (0 if live else 1 if ran else 2, c.id)


def _container_actions(
    node: str,
    spec: ReplicaSpec,
    container: Container,
    observed: Sequence[tuple[ContainerInfo, ContainerIdentity]],
) -> tuple[list[Action], list[Action]]:
    """(removals, creations and starts) for one desired container."""
    key = ContainerKey(spec.key, container.name)
    want = labels.spec_hash(spec, container)
    removals: list[Action] = []
    candidates = []
    for c, identity in observed:
        if c.state in _GONE:
            continue
        if c.state is ContainerState.DEAD:
            removals.append(RemoveContainer(key, c.id, RemoveReason.DEAD))
        elif identity.spec_hash != want:
            removals.append(RemoveContainer(key, c.id, RemoveReason.REPLACED))
        else:
            candidates.append(c)
    candidates.sort(key=keep_order)
    removals.extend(RemoveContainer(key, c.id, RemoveReason.DUPLICATE) for c in candidates[1:])
    if not candidates:
        if any(c.state in _GONE for c, _ in observed):
            return removals, []  # the engine is still removing the old one; wait for it
        return removals, [CreateContainer(key, want, create_request(node, spec, container))]
    kept = candidates[0]
    if kept.state in _LIVE:
        return removals, []
    ran = kept.run is not None and kept.run.started_at is not None
    if (
        kept.state is ContainerState.EXITED
        and ran
        and not should_restart(spec.restart_policy, kept)
    ):
        return removals, []
    ran_for = kept.run.ran_for if kept.run is not None else 0.0
    return removals, [StartContainer(key, want, kept.id, restart=ran, ran_for=ran_for)]


def diff(
    node: str,
    desired: Mapping[ReplicaKey, ReplicaSpec],
    containers: Sequence[ContainerInfo],
    volumes: Sequence[VolumeInfo],
) -> list[Action]:
    """The actions that make the observed containers and volumes match the desired replicas.

    `containers` and `volumes` are what carries this node's owner label; any whose labels are
    not a complete set of ours are left alone. Persistent volumes are retained when their
    replica goes away, like a StatefulSet's claims; ephemeral ones are removed."""
    by_key: dict[ContainerKey, list[tuple[ContainerInfo, ContainerIdentity]]] = defaultdict(list)
    for c in containers:
        identity = labels.parse_container_labels(c.labels)
        if identity is not None:
            by_key[identity.key].append((c, identity))

    wanted_volumes: dict[str, tuple[ReplicaKey, Mapping[str, str]]] = {}
    for spec in desired.values():
        for v in spec.volumes:
            wanted = labels.volume_identity(spec, v)
            name = labels.volume_name(node, wanted)
            wanted_volumes[name] = (spec.key, labels.volume_labels(node, wanted))
    present_volumes = {v.name for v in volumes}

    removals: dict[ReplicaKey, list[Action]] = defaultdict(list)
    creations: dict[ReplicaKey, list[Action]] = defaultdict(list)
    volume_removals: dict[ReplicaKey, list[Action]] = defaultdict(list)

    for name, (replica, volume_labels) in sorted(wanted_volumes.items()):
        if name not in present_volumes:
            creations[replica].append(CreateVolume(replica, name, volume_labels))
    for spec in desired.values():
        for container in spec.containers:
            key = ContainerKey(spec.key, container.name)
            gone, made = _container_actions(node, spec, container, by_key.pop(key, []))
            removals[spec.key].extend(gone)
            creations[spec.key].extend(made)
    for key, leftovers in by_key.items():
        for c, _ in sorted(leftovers, key=lambda pair: pair[0].id):
            if c.state not in _GONE:
                removals[key.replica].append(RemoveContainer(key, c.id, RemoveReason.NOT_DESIRED))
    for present in sorted(volumes, key=lambda v: v.name):
        vid = labels.parse_volume_labels(present.labels)
        if vid is None or present.name in wanted_volumes or vid.kind is VolumeKind.PERSISTENT:
            continue
        volume_removals[vid.replica].append(RemoveVolume(vid.replica, present.name))

    actions: list[Action] = []
    for replica in sorted(set(removals) | set(creations) | set(volume_removals)):
        actions.extend(removals.get(replica, ()))
        actions.extend(creations.get(replica, ()))
        actions.extend(volume_removals.get(replica, ()))
    return actions
