"""The labels that carry a container's and a volume's identity and last-applied spec, and the
names derived from them. Labels are the controller's only memory: it observes by them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.spec import Container, ReplicaKey, ReplicaSpec, Volume, VolumeKind

NODE = "statemesh.node"
CHAIN = "statemesh.chain"
APP = "statemesh.app"
REPLICA = "statemesh.replica"
REVISION = "statemesh.revision"
CONTAINER = "statemesh.container"
SPEC_HASH = "statemesh.spec-hash"
VOLUME = "statemesh.volume"
VOLUME_KIND = "statemesh.volume-kind"
OWNER = "statemesh.owner"
"""The account that owns the application of a volume."""
INSTANCE = "statemesh.instance"
"""The application instance of a volume: a new one each time the name is created on chain."""
ROLE = "statemesh.role"
SANDBOX_ROLE = "sandbox"
"""The `ROLE` of a pod's sandbox: the container that holds the replica's network namespace."""
SANDBOX = ""
"""The container name of a pod's sandbox in a `ContainerKey` (no container has an empty name)."""
SANDBOX_IMAGE = "statemesh/sandbox:1"
"""Built by the node from the static busybox; it only sleeps, so the pod's namespace outlives
restarts of the replica's containers."""
SANDBOX_COMMAND = ("/bin/busybox", "sleep", "2147483647")
SANDBOX_USER = 65534


@dataclass(frozen=True, slots=True, order=True)
class ContainerKey:
    """One container of one replica, across revisions and restarts."""

    replica: ReplicaKey
    container: str

    def __str__(self) -> str:
        return f"{self.replica}/{self.container}"


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    """What a container's labels say about it."""

    key: ContainerKey
    revision: int
    spec_hash: str


@dataclass(frozen=True, slots=True)
class VolumeIdentity:
    """What a volume's labels say about it."""

    replica: ReplicaKey
    volume: str
    kind: VolumeKind
    revision: int | None
    """Set for ephemeral volumes, which belong to one revision."""
    owner: str
    instance: int
    """The application instance: an application deleted and created again under its name, by
    anyone, is another instance and never finds the volumes of the first."""


def _digest(*parts: object, size: int = 16) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def owner_labels(node: str) -> dict[str, str]:
    """The labels that every container and volume of this node carries: the observe filter."""
    return {NODE: node}


def spec_hash(spec: ReplicaSpec, container: Container) -> str:
    """A digest of everything the engine was given to create this container.

    Probes, restart policy and grace period are read from the desired spec at run time, so they
    are left out: changing them alone does not replace a running container. A value from a
    configuration or secret is covered by its version, never by itself: a new version replaces
    the container, and no digest (a label, a name) is computed from a secret."""
    files = [[f.digest_parts() for f in spec.files]] if spec.files else []
    # Only when given, so that other containers keep their digests; the versions, never values.
    pulls = [[r.digest_parts() for r in spec.pull_secrets]] if spec.pull_secrets else []
    return _digest(
        spec.revision,
        spec.owner,
        spec.instance,
        container.image,
        list(container.command),
        list(container.args),
        [e.digest_parts() for e in container.env],
        [[p.container_port, p.name, p.protocol] for p in container.ports],
        [
            container.resources.cpu_millicores,
            container.resources.cpu_request_millicores,
            container.resources.memory_bytes,
            container.resources.pids_limit,
        ],
        [[v.size_bytes, v.memory] for v in spec.volumes],
        container.image_pull_policy.value,
        [[v.name, v.mount_path, v.kind.value] for v in spec.volumes],
        [
            container.security.run_as_user,
            container.security.run_as_group,
            container.security.run_as_non_root,
            container.security.read_only_root_filesystem,
            list(container.security.capabilities_drop),
            list(container.security.capabilities_add),
        ],
        *files,
        *pulls,
    )


def container_labels(node: str, spec: ReplicaSpec, container: Container) -> dict[str, str]:
    return {
        NODE: node,
        CHAIN: spec.chain,
        APP: spec.app,
        INSTANCE: str(spec.instance),
        REPLICA: str(spec.replica),
        REVISION: str(spec.revision),
        CONTAINER: container.name,
        SPEC_HASH: spec_hash(spec, container),
    }


def container_name(node: str, spec: ReplicaSpec, container: Container) -> str:
    """Readable, and unique per node and spec, so a repeated create conflicts, never duplicates."""
    digest = _digest(node, spec.chain, spec.app, spec.replica, container.name, size=5)
    return (
        f"sm-{spec.app}-{spec.replica}-{container.name}-{digest}-{spec_hash(spec, container)[:8]}"
    )


def parse_container_labels(labels: Mapping[str, str]) -> ContainerIdentity | None:
    """None for labels that are not a complete, well-formed set of ours, and for sandboxes."""
    if ROLE in labels:
        return None
    try:
        replica = ReplicaKey(labels[CHAIN], labels[APP], int(labels[REPLICA]))
        return ContainerIdentity(
            key=ContainerKey(replica, labels[CONTAINER]),
            revision=int(labels[REVISION]),
            spec_hash=labels[SPEC_HASH],
        )
    except (KeyError, ValueError):
        return None


def volume_identity(spec: ReplicaSpec, volume: Volume) -> VolumeIdentity:
    ephemeral = volume.kind is VolumeKind.EPHEMERAL
    return VolumeIdentity(
        replica=spec.key,
        volume=volume.name,
        kind=volume.kind,
        revision=spec.revision if ephemeral else None,
        owner=spec.owner,
        instance=spec.instance,
    )


def volume_name(node: str, identity: VolumeIdentity) -> str:
    key = identity.replica
    digest = _digest(
        node,
        key.chain,
        key.app,
        key.replica,
        identity.volume,
        identity.kind.value,
        identity.revision,
        identity.owner,
        identity.instance,
        size=5,
    )
    return f"sm-{key.app}-{key.replica}-{identity.volume}-{digest}"


def volume_labels(node: str, identity: VolumeIdentity) -> dict[str, str]:
    labels = {
        NODE: node,
        CHAIN: identity.replica.chain,
        APP: identity.replica.app,
        REPLICA: str(identity.replica.replica),
        VOLUME: identity.volume,
        VOLUME_KIND: identity.kind.value,
        OWNER: identity.owner,
        INSTANCE: str(identity.instance),
    }
    if identity.revision is not None:
        labels[REVISION] = str(identity.revision)
    return labels


def parse_volume_labels(labels: Mapping[str, str]) -> VolumeIdentity | None:
    try:
        revision = labels.get(REVISION)
        return VolumeIdentity(
            replica=ReplicaKey(labels[CHAIN], labels[APP], int(labels[REPLICA])),
            volume=labels[VOLUME],
            kind=VolumeKind(labels[VOLUME_KIND]),
            revision=None if revision is None else int(revision),
            owner=labels[OWNER],
            instance=int(labels[INSTANCE]),
        )
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class SandboxIdentity:
    """What a pod sandbox's labels say about it."""

    replica: ReplicaKey
    spec_hash: str


def network_name(node: str, chain: str, app: str, instance: int) -> str:
    """The network of one application instance on this node: its replicas here, and nothing
    else (not even those of an application of the same name deleted a moment ago)."""
    return f"sm-{app}-{_digest(node, chain, app, instance, size=6)}"


BRIDGE_PREFIX = "smb"


def bridge_name(node: str, chain: str, app: str, instance: int) -> str:
    """The host interface of `network_name`: `smb` and 12 hex digits, within the kernel's 15
    characters, so that host rules can match every workload bridge as `smb+`."""
    return f"{BRIDGE_PREFIX}{_digest('bridge', node, chain, app, instance, size=6)}"


def network_labels(node: str, chain: str, app: str, instance: int) -> dict[str, str]:
    return {NODE: node, CHAIN: chain, APP: app, INSTANCE: str(instance)}


AppInstance = tuple[str, str, int]
"""(chain, app, instance): one application instance."""


def instance_of(labels: Mapping[str, str]) -> int | None:
    """The application instance a container, sandbox or network of ours belongs to."""
    try:
        return int(labels[INSTANCE])
    except (KeyError, ValueError):
        return None


def parse_network_labels(labels: Mapping[str, str]) -> AppInstance | None:
    """(chain, app, instance) of a network of ours, None for labels that are not a complete
    set."""
    instance = instance_of(labels)
    if instance is None or CHAIN not in labels or APP not in labels:
        return None
    return labels[CHAIN], labels[APP], instance


def sandbox_hash(node: str, spec: ReplicaSpec) -> str:
    """A digest of everything the engine was given to create the replica's sandbox."""
    return _digest(
        spec.owner,
        spec.instance,
        SANDBOX_IMAGE,
        list(SANDBOX_COMMAND),
        SANDBOX_USER,
        sandbox_hostname(spec),
        network_name(node, spec.chain, spec.app, spec.instance),
    )


def sandbox_hostname(spec: ReplicaSpec) -> str:
    """The pod's host name, which its containers share: `<app>-<replica>`."""
    return f"{spec.app}-{spec.replica}"


def sandbox_name(node: str, key: ReplicaKey) -> str:
    """Unique per node and replica, so containers can join it by name."""
    digest = _digest(node, key.chain, key.app, key.replica, size=5)
    return f"sm-{key.app}-{key.replica}-pod-{digest}"


def sandbox_labels(node: str, spec: ReplicaSpec) -> dict[str, str]:
    return {
        NODE: node,
        CHAIN: spec.chain,
        APP: spec.app,
        INSTANCE: str(spec.instance),
        REPLICA: str(spec.replica),
        ROLE: SANDBOX_ROLE,
        SPEC_HASH: sandbox_hash(node, spec),
    }


def parse_sandbox_labels(labels: Mapping[str, str]) -> SandboxIdentity | None:
    if labels.get(ROLE) != SANDBOX_ROLE:
        return None
    try:
        return SandboxIdentity(
            ReplicaKey(labels[CHAIN], labels[APP], int(labels[REPLICA])), labels[SPEC_HASH]
        )
    except (KeyError, ValueError):
        return None
