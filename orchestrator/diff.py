"""Desired replicas versus observed containers, volumes and networks, to the smallest list of
actions.

Every replica is a pod: a sandbox container holds its network namespace, attached to its
application's network on this node, and the replica's containers join it. A pod whose sandbox is
not running is made anew, its containers with it (their namespace died with the old sandbox);
a container that is not in its pod's current sandbox is replaced.

Pure: no I/O, no clock. Back-off is not decided here; the controller holds back starts and
creates whose back-off has not elapsed. Actions of one replica come out in the order they must
run in: removals, the network and the sandbox, volume creations, container creations and starts,
then volume removals. A network goes once no container of its application is left."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from orchestrator import labels
from orchestrator.engine import (
    ContainerInfo,
    ContainerState,
    CreateRequest,
    Mount,
    NetworkInfo,
    VolumeInfo,
)
from orchestrator.labels import ContainerIdentity, ContainerKey
from orchestrator.spec import (
    Container,
    EnforcedResources,
    ImagePullPolicy,
    ReplicaKey,
    ReplicaSpec,
    RestartPolicy,
    SecurityContext,
    VolumeKind,
)


class RemoveReason(Enum):
    NOT_DESIRED = "no longer assigned to this node"
    REPLACED = "replaced by a new spec"
    DUPLICATE = "a duplicate of another container"
    DEAD = "dead and cannot be started"
    POD_GONE = "its pod's sandbox is gone: the pod is made anew"
    EVICTED = "evicted: it used more disk than its limit"


APP_WIDE = -1
"""The replica number of the actions that concern a whole application on this node (removing
its network), so that they are serialised like a replica's."""


@dataclass(frozen=True, slots=True)
class CreateNetwork:
    replica: ReplicaKey
    name: str
    bridge: str
    labels: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class RemoveNetwork:
    replica: ReplicaKey
    """`APP_WIDE` replica of the application."""
    name: str


@dataclass(frozen=True, slots=True)
class CreateVolume:
    replica: ReplicaKey
    name: str
    labels: Mapping[str, str] = field(hash=False)
    memory_bytes: int | None = None
    """Set for a volume in memory: a tmpfs of this size."""


@dataclass(frozen=True, slots=True)
class CreateContainer:
    """Create the container and start it."""

    key: ContainerKey
    spec_hash: str
    request: CreateRequest

    @property
    def replica(self) -> ReplicaKey:
        return self.key.replica

    @property
    def instance(self) -> int | None:
        """The application instance the container is made for, as its labels say."""
        return labels.instance_of(self.request.labels)


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
    instance: int
    """The application instance of the spec it runs."""

    @property
    def replica(self) -> ReplicaKey:
        return self.key.replica


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    key: ContainerKey
    container_id: str
    reason: RemoveReason
    instance: int | None
    """The application instance the container belongs to, as its labels say (None without
    the label): the owner of that instance is the one told of the removal, never the owner of
    an instance that replaces it under the same name."""

    @classmethod
    def of(cls, key: ContainerKey, found: ContainerInfo, reason: RemoveReason) -> RemoveContainer:
        return cls(key, found.id, reason, labels.instance_of(found.labels))

    @property
    def replica(self) -> ReplicaKey:
        return self.key.replica


@dataclass(frozen=True, slots=True)
class RemoveVolume:
    replica: ReplicaKey
    name: str


Action = (
    CreateNetwork
    | RemoveNetwork
    | CreateVolume
    | CreateContainer
    | StartContainer
    | RemoveContainer
    | RemoveVolume
)

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
        join=labels.sandbox_name(node, spec.key),
        security=container.security,
    )


SANDBOX_RESOURCES = EnforcedResources(
    cpu_request_millicores=2, memory_bytes=8 * 2**20, pids_limit=8
)
SANDBOX_SECURITY = SecurityContext(
    run_as_user=labels.SANDBOX_USER,
    run_as_group=labels.SANDBOX_USER,
    run_as_non_root=True,
    read_only_root_filesystem=True,
    capabilities_drop=("ALL",),
)


def sandbox_request(node: str, spec: ReplicaSpec) -> CreateRequest:
    """What the engine is asked to create for a replica's sandbox: a process that only sleeps,
    with no capabilities, on its application's network."""
    return CreateRequest(
        name=labels.sandbox_name(node, spec.key),
        image=labels.SANDBOX_IMAGE,
        command=labels.SANDBOX_COMMAND,
        args=(),
        env=(),
        labels=labels.sandbox_labels(node, spec),
        resources=SANDBOX_RESOURCES,
        image_pull_policy=ImagePullPolicy.NEVER,
        network=labels.network_name(node, spec.chain, spec.app, spec.instance),
        hostname=labels.sandbox_hostname(spec),
        security=SANDBOX_SECURITY,
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
    pod: str | None,
) -> tuple[list[Action], list[Action]]:
    """(removals, creations and starts) for one desired container of the pod whose sandbox has
    id `pod` (None: the sandbox is made anew, so every container of the replica goes)."""
    key = ContainerKey(spec.key, container.name)
    want = labels.spec_hash(spec, container)
    removals: list[Action] = []
    candidates = []
    for c, identity in observed:
        if c.state in _GONE:
            continue
        if pod is None or c.network_mode != f"container:{pod}":
            removals.append(RemoveContainer.of(key, c, RemoveReason.POD_GONE))
        elif c.state is ContainerState.DEAD:
            removals.append(RemoveContainer.of(key, c, RemoveReason.DEAD))
        elif identity.spec_hash != want:
            removals.append(RemoveContainer.of(key, c, RemoveReason.REPLACED))
        else:
            candidates.append(c)
    candidates.sort(key=keep_order)
    removals.extend(RemoveContainer.of(key, c, RemoveReason.DUPLICATE) for c in candidates[1:])
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
    start = StartContainer(key, want, kept.id, restart=ran, ran_for=ran_for, instance=spec.instance)
    return removals, [start]


def _sandbox_actions(
    node: str, spec: ReplicaSpec, observed: Sequence[ContainerInfo]
) -> tuple[str | None, bool, list[Action], list[Action]]:
    """(the id of the running sandbox to keep or None, whether an old one is still being
    removed, removals, creations) for the sandbox of one desired replica."""
    key = ContainerKey(spec.key, labels.SANDBOX)
    want = labels.sandbox_hash(node, spec)
    removals: list[Action] = []
    running = []
    removing = False
    for c in observed:
        identity = labels.parse_sandbox_labels(c.labels)
        if c.state in _GONE:
            removing = True
        elif (
            identity is not None
            and identity.spec_hash == want
            and c.state is ContainerState.RUNNING
        ):
            running.append(c)
        else:
            # Stopped, dead or of another spec: a pod's namespace is never restarted in place.
            removals.append(RemoveContainer.of(key, c, RemoveReason.POD_GONE))
    running.sort(key=keep_order)
    removals.extend(RemoveContainer.of(key, c, RemoveReason.DUPLICATE) for c in running[1:])
    if running:
        return running[0].id, removing, removals, []
    if removing:
        return None, True, removals, []
    request = sandbox_request(node, spec)
    return None, False, removals, [CreateContainer(key, labels.sandbox_hash(node, spec), request)]


def _first_container(actions: Sequence[Action]) -> int:
    """Where a replica's volumes are created: after its sandbox, before its containers."""
    for i, action in enumerate(actions):
        if isinstance(action, CreateContainer | StartContainer):
            if action.key.container != labels.SANDBOX:
                return i
    return len(actions)


def diff(
    node: str,
    desired: Mapping[ReplicaKey, ReplicaSpec],
    containers: Sequence[ContainerInfo],
    volumes: Sequence[VolumeInfo],
    networks: Sequence[NetworkInfo] = (),
    kept: Mapping[str, Collection[int]] | None = None,
) -> list[Action]:
    """The actions that make the observed containers, volumes and networks match the desired
    replicas.

    `containers`, `volumes` and `networks` are what carries this node's owner label; any whose
    labels are not a complete set of ours are left alone. Ephemeral volumes go with their
    replica's revision. Persistent volumes outlive their replica, like a StatefulSet's claims,
    for as long as their application instance is kept by their chain (`kept`: chain -> the
    instances of its live applications and of deleted ones still in their retention period);
    volumes of a chain `kept` does not speak for are left alone, and None keeps every volume
    (the chain's word is not known yet)."""
    by_key: dict[ContainerKey, list[tuple[ContainerInfo, ContainerIdentity]]] = defaultdict(list)
    sandboxes: dict[ReplicaKey, list[ContainerInfo]] = defaultdict(list)
    apps_present: set[labels.AppInstance] = set()
    for c in containers:
        identity = labels.parse_container_labels(c.labels)
        sandbox = labels.parse_sandbox_labels(c.labels)
        replica = identity.key.replica if identity is not None else None
        if identity is not None:
            by_key[identity.key].append((c, identity))
        elif sandbox is not None:
            sandboxes[sandbox.replica].append(c)
            replica = sandbox.replica
        instance = labels.instance_of(c.labels)
        if replica is not None and instance is not None:
            apps_present.add((replica.chain, replica.app, instance))

    wanted_volumes: dict[str, CreateVolume] = {}
    for spec in desired.values():
        for v in spec.volumes:
            wanted = labels.volume_identity(spec, v)
            name = labels.volume_name(node, wanted)
            memory = v.size_bytes if v.memory else None
            wanted_volumes[name] = CreateVolume(
                spec.key, name, labels.volume_labels(node, wanted), memory
            )
    present_volumes = {v.name for v in volumes}
    present_networks = {n.name for n in networks}
    wanted_networks = {
        labels.network_name(node, s.chain, s.app, s.instance) for s in desired.values()
    }

    removals: dict[ReplicaKey, list[Action]] = defaultdict(list)
    creations: dict[ReplicaKey, list[Action]] = defaultdict(list)
    volume_removals: dict[ReplicaKey, list[Action]] = defaultdict(list)

    for spec in sorted(desired.values(), key=lambda s: s.key):
        pod, waiting, gone, made = _sandbox_actions(node, spec, sandboxes.pop(spec.key, []))
        net = labels.network_name(node, spec.chain, spec.app, spec.instance)
        if made and net not in present_networks:
            bridge = labels.bridge_name(node, spec.chain, spec.app, spec.instance)
            net_labels = labels.network_labels(node, spec.chain, spec.app, spec.instance)
            creations[spec.key].append(CreateNetwork(spec.key, net, bridge, net_labels))
        creations[spec.key].extend(made)
        for container in spec.containers:
            key = ContainerKey(spec.key, container.name)
            old, new = _container_actions(node, spec, container, by_key.pop(key, []), pod)
            removals[spec.key].extend(old)
            if not waiting:
                creations[spec.key].extend(new)
        removals[spec.key].extend(gone)  # after the containers that live in the old sandbox
    for name, create in sorted(wanted_volumes.items()):
        if name not in present_volumes:
            steps = creations[create.replica]
            steps.insert(_first_container(steps), create)
    for key, leftovers in by_key.items():
        for c, _ in sorted(leftovers, key=lambda pair: pair[0].id):
            if c.state not in _GONE:
                removals[key.replica].append(RemoveContainer.of(key, c, RemoveReason.NOT_DESIRED))
    for replica, leftover_pods in sandboxes.items():
        # After the replica's containers, which come first in the same group.
        key = ContainerKey(replica, labels.SANDBOX)
        for c in sorted(leftover_pods, key=lambda c: c.id):
            if c.state not in _GONE:
                volume_removals[replica].append(
                    RemoveContainer.of(key, c, RemoveReason.NOT_DESIRED)
                )
    for present in sorted(volumes, key=lambda v: v.name):
        vid = labels.parse_volume_labels(present.labels)
        if vid is None or present.name in wanted_volumes:
            continue
        if vid.kind is VolumeKind.PERSISTENT and (
            kept is None or vid.replica.chain not in kept or vid.instance in kept[vid.replica.chain]
        ):
            continue
        volume_removals[vid.replica].append(RemoveVolume(vid.replica, present.name))
    for network in sorted(networks, key=lambda n: n.name):
        owner = labels.parse_network_labels(network.labels)
        if owner is None or network.name in wanted_networks or owner in apps_present:
            continue
        app_wide = ReplicaKey(owner[0], owner[1], APP_WIDE)
        volume_removals[app_wide].append(RemoveNetwork(app_wide, network.name))

    ordered: list[Action] = []
    for replica in sorted(set(removals) | set(creations) | set(volume_removals)):
        ordered.extend(removals.get(replica, ()))
        ordered.extend(creations.get(replica, ()))
        ordered.extend(volume_removals.get(replica, ()))
    return ordered
