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


def _digest(*parts: object, size: int = 16) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def owner_labels(node: str) -> dict[str, str]:
    """The labels that every container and volume of this node carries: the observe filter."""
    return {NODE: node}


def spec_hash(spec: ReplicaSpec, container: Container) -> str:
    """A digest of everything the engine was given to create this container.

    Probes, restart policy and grace period are read from the desired spec at run time, so they
    are left out: changing them alone does not replace a running container. Secret values are in
    the digest so that rotating one replaces the container; the engine holds them anyway."""
    return _digest(
        spec.revision,
        container.image,
        list(container.command),
        list(container.args),
        [[e.name, e.value, e.secret] for e in container.env],
        [[p.container_port, p.name, p.protocol] for p in container.ports],
        [
            container.resources.cpu_millicores,
            container.resources.cpu_request_millicores,
            container.resources.memory_bytes,
            container.resources.pids_limit,
        ],
        container.image_pull_policy.value,
        [[v.name, v.mount_path, v.kind.value] for v in spec.volumes],
    )


def container_labels(node: str, spec: ReplicaSpec, container: Container) -> dict[str, str]:
    return {
        NODE: node,
        CHAIN: spec.chain,
        APP: spec.app,
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
    """None for labels that are not a complete, well-formed set of ours."""
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
        )
    except (KeyError, ValueError):
        return None
