"""The engine's view of a tenant's manifest: the replica spec of one assigned replica. This is the
one place where the manifest's types (`chain.runtime.manifest`) become `orchestrator.spec`'s,
one function per type; the manifest was checked when the chain accepted it, so nothing here
checks it again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chain.runtime import manifest as m
from chain.runtime.apps import ReplicaEntry
from chain.runtime.configs import ConfigRecord, get_config
from chain.runtime.secrets import SecretRecord, secret_record
from chain.state import StateReader
from orchestrator import spec as o
from orchestrator.errors import OrchestratorError

DEFAULT_MAX_PIDS = 4096
"""The most processes and threads a node lets one replica have, all its containers together,
unless its operator says otherwise (`statemesh node --max-pids`), whatever the manifest asks:
a manifest may have 8 containers, and 8 times this is a host's whole `pid_max`."""

VOLUME_KINDS = {
    m.VolumeKind.EMPTY_DIR: o.VolumeKind.EPHEMERAL,
    m.VolumeKind.PERSISTENT: o.VolumeKind.PERSISTENT,
}
"""The engine's kind of each kind of manifest volume."""


class UnsupportedManifest(OrchestratorError):
    """A manifest this node cannot run yet (the reason is logged once per revision)."""


class Sources(Protocol):
    """The application owner's configurations and secrets, as the finalized state holds them."""

    def config(self, name: str) -> ConfigRecord | None: ...

    def secret(self, name: str) -> SecretRecord | None: ...


class ChainSources:
    """`Sources` read from one state for one owner."""

    def __init__(self, state: StateReader, owner: bytes) -> None:
        self.state = state
        self.owner = owner

    def config(self, name: str) -> ConfigRecord | None:
        return get_config(self.state, self.owner, name)

    def secret(self, name: str) -> SecretRecord | None:
        return secret_record(self.state, self.owner, name)


class NoSources:
    """For a manifest that reads no configuration or secret."""

    def config(self, name: str) -> ConfigRecord | None:
        return None

    def secret(self, name: str) -> SecretRecord | None:
        return None


def _config(sources: Sources, name: str) -> tuple[o.SourceRef, ConfigRecord]:
    record = sources.config(name)
    if record is None:
        raise UnsupportedManifest(f"the owner has no config {name!r}")
    return o.SourceRef(o.SourceKind.CONFIG, name, record.version), record


def _secret(sources: Sources, name: str) -> tuple[o.SourceRef, SecretRecord]:
    record = sources.secret(name)
    if record is None:
        raise UnsupportedManifest(f"the owner has no secret {name!r}")
    return o.SourceRef(o.SourceKind.SECRET, name, record.version), record


def config_text(name: str, key: str, value: bytes) -> str:
    """A configuration value as an environment variable's text."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise UnsupportedManifest(
            f"key {key!r} of config {name!r} is not UTF-8 text: mount it as a file"
        ) from None
    if "\x00" in text:
        raise UnsupportedManifest(f"key {key!r} of config {name!r} holds a NUL character")
    return text


def volume_kind(kind: m.VolumeKind) -> o.VolumeKind:
    return VOLUME_KINDS[kind]


def probe_action(action: m.ProbeAction) -> o.ProbeAction:
    if isinstance(action, m.HttpGetAction):
        return o.HTTPGetAction(port=action.port, path=action.path)
    if isinstance(action, m.TcpSocketAction):
        return o.TCPSocketAction(port=action.port)
    return o.ExecAction(command=action.command)


def probe(probe: m.Probe | None) -> o.Probe | None:
    if probe is None:
        return None
    return o.Probe(
        action=probe_action(probe.action),
        initial_delay_seconds=probe.initial_delay_seconds,
        period_seconds=probe.period_seconds,
        timeout_seconds=probe.timeout_seconds,
        success_threshold=probe.success_threshold,
        failure_threshold=probe.failure_threshold,
    )


def security_context(context: m.SecurityContext) -> o.SecurityContext:
    """An effective context (`m.effective_security_context`): what is still unset is the
    engine's default."""
    return o.SecurityContext(
        run_as_user=context.run_as_user,
        run_as_group=context.run_as_group,
        run_as_non_root=bool(context.run_as_non_root),
        read_only_root_filesystem=bool(context.read_only_root_filesystem),
        capabilities_drop=context.capabilities_drop or (),
        capabilities_add=context.capabilities_add or (),
    )


def env_var(var: m.EnvVar, sources: Sources) -> o.EnvVar:
    if var.secret_ref is not None:
        ref, secret = _secret(sources, var.secret_ref.name)
        if var.secret_ref.key not in {k for k, _ in secret.keys}:
            raise UnsupportedManifest(f"secret {ref.name!r} has no key {var.secret_ref.key!r}")
        return o.EnvVar(var.name, "", secret=True, source=ref, key=var.secret_ref.key)
    if var.config_ref is not None:
        ref, config = _config(sources, var.config_ref.name)
        key = var.config_ref.key
        if key not in config.data:
            raise UnsupportedManifest(f"config {ref.name!r} has no key {key!r}")
        return o.EnvVar(var.name, config_text(ref.name, key, config.data[key]), source=ref, key=key)
    return o.EnvVar(var.name, var.value or "")


def env_from(source: m.EnvFromSource, sources: Sources) -> list[o.EnvVar]:
    """Every key of the configuration or secret whose name is a valid variable name (as
    Kubernetes does, the others are left out)."""
    found: list[o.EnvVar] = []
    if source.secret is not None:
        ref, secret = _secret(sources, source.secret)
        for key, _ in secret.keys:
            if o.valid_env_name(key):
                found.append(o.EnvVar(key, "", secret=True, source=ref, key=key))
    elif source.config is not None:
        ref, config = _config(sources, source.config)
        for key, value in config.data.items():
            if o.valid_env_name(key):
                found.append(o.EnvVar(key, config_text(ref.name, key, value), source=ref, key=key))
    return found


def env_vars(container: m.Container, sources: Sources) -> tuple[o.EnvVar, ...]:
    """`envFrom` first, in order, then `env`: a later one of a name wins, as in Kubernetes."""
    chosen: dict[str, o.EnvVar] = {}
    for source in container.env_from:
        for var in env_from(source, sources):
            chosen.pop(var.name, None)
            chosen[var.name] = var
    for item in container.env:
        chosen.pop(item.name, None)
        chosen[item.name] = env_var(item, sources)
    return tuple(chosen.values())


def container_port(port: m.ContainerPort) -> o.ContainerPort:
    return o.ContainerPort(port.container_port, port.name or "", port.protocol)


def enforced_resources(resources: m.ContainerResources, pids_limit: int) -> o.EnforcedResources:
    limits, requests = resources.limits, resources.requests
    return o.EnforcedResources(
        # CPU as Kubernetes does: a limit caps, a request only weighs (CPU is compressible).
        # Memory is not: without a limit the request is the cap, as a node has no eviction.
        cpu_millicores=limits.cpu_millicores or None,
        cpu_request_millicores=requests.cpu_millicores or limits.cpu_millicores or None,
        memory_bytes=limits.memory_bytes or requests.memory_bytes or None,
        # Kubernetes' ephemeral-storage: the limit caps the container's writable layer.
        disk_bytes=limits.disk_bytes or None,
        # Never unlimited: the manifest's limit or the default, within the replica's share
        # of the node's cap (`pids_limits`).
        pids_limit=pids_limit,
    )


def pids_limits(asked: Sequence[int | None], max_pids: int) -> list[int]:
    """The pids limit of each of a replica's containers, given what each manifest limit asks
    (None: no limit, so `DEFAULT_PIDS_LIMIT`): the node's cap `max_pids` holds for the replica,
    so its containers together never get more (a replica of many containers cannot take the
    host's every process id). The cap is shared fairly: containers asking for less than an equal
    share get what they ask and leave the rest to the others, smallest ask first (in manifest
    order among equal asks). Each container gets at least 1, even with more containers than
    `max_pids`: none is left without a process."""
    wanted = [o.DEFAULT_PIDS_LIMIT if limit is None else limit for limit in asked]
    given = [0] * len(wanted)
    left = max_pids
    by_ask = sorted(range(len(wanted)), key=lambda i: wanted[i])
    for served, i in enumerate(by_ask):
        share = left // (len(wanted) - served)
        given[i] = max(1, min(wanted[i], share))
        left -= given[i]
    return given


def container(
    spec: m.ApplicationSpec, container: m.Container, pids_limit: int, sources: Sources
) -> o.Container:
    return o.Container(
        name=container.name,
        image=container.image,
        command=container.command,
        args=container.args,
        env=env_vars(container, sources),
        ports=tuple(container_port(p) for p in container.ports),
        resources=enforced_resources(container.resources, pids_limit),
        liveness_probe=probe(container.liveness_probe),
        readiness_probe=probe(container.readiness_probe),
        startup_probe=probe(container.startup_probe),
        security=security_context(m.effective_security_context(spec, container)),
    )


def volumes(spec: m.ApplicationSpec) -> tuple[o.Volume, ...]:
    """The volumes some container mounts, each at its one mount path (the manifest mounts a
    volume at the same path in every container that mounts it)."""
    mounts = {vm.name: vm.mount_path for c in spec.containers for vm in c.volume_mounts}
    return tuple(
        o.Volume(
            v.name,
            mounts[v.name],
            volume_kind(v.kind),
            size_bytes=v.size_bytes,
            memory=v.memory,
        )
        for v in spec.volumes
        if v.name in mounts and v.kind in VOLUME_KINDS
    )


def files(spec: m.ApplicationSpec, sources: Sources) -> tuple[o.FilesVolume, ...]:
    """The secret and configMap volumes some container mounts: each key it lists (or, with no
    `items`, every key of its source, named after it) as a file of its mode."""
    mounts = {vm.name: vm.mount_path for c in spec.containers for vm in c.volume_mounts}
    found: list[o.FilesVolume] = []
    for v in spec.volumes:
        if v.name not in mounts or v.source is None or v.kind in VOLUME_KINDS:
            continue
        default = v.default_mode if v.default_mode is not None else 0o400
        data: tuple[tuple[str, bytes], ...] = ()
        if v.kind is m.VolumeKind.SECRET:
            ref, secret = _secret(sources, v.source)
            held = [k for k, _ in secret.keys]
        else:
            ref, config = _config(sources, v.source)
            held = list(config.data)
        items = v.items or tuple(m.KeyToPath(k, k) for k in held)
        for item in items:
            if item.key not in held:
                raise UnsupportedManifest(f"{ref.kind.value} {ref.name!r} has no key {item.key!r}")
        if v.kind is m.VolumeKind.CONFIG_MAP:
            wanted = {item.key for item in items}
            data = tuple((k, value) for k, value in config.data.items() if k in wanted)
        found.append(
            o.FilesVolume(
                v.name,
                mounts[v.name],
                ref,
                tuple(
                    o.FileItem(i.key, i.path, i.mode if i.mode is not None else default)
                    for i in items
                ),
                data,
                tuple(
                    c.name for c in spec.containers if v.name in {m.name for m in c.volume_mounts}
                ),
            )
        )
    return tuple(found)


def replica_spec(
    chain_id: str,
    app: str,
    entry: ReplicaEntry,
    manifest: m.Manifest,
    *,
    max_pids: int = DEFAULT_MAX_PIDS,
    owner: str = "",
    instance: int = 0,
    sources: Sources | None = None,
) -> o.ReplicaSpec:
    """The orchestrator's view of one assigned replica of `manifest`, an application of `owner`
    (an address) created on chain as `instance`. Its containers together have at most
    `max_pids` processes and threads (`pids_limits`). `sources` are the owner's
    configurations and secrets: their versions (and a configuration's values) are read there,
    a secret's values only when a container is created."""
    sources = sources if sources is not None else NoSources()
    spec = manifest.spec
    asked = [c.resources.limits.pids for c in spec.containers]
    return o.ReplicaSpec(
        chain=chain_id,
        app=app,
        revision=entry.revision,
        replica=entry.index,
        containers=tuple(
            container(spec, c, pids, sources)
            for c, pids in zip(spec.containers, pids_limits(asked, max_pids), strict=True)
        ),
        restart_policy=spec.restart_policy,
        volumes=volumes(spec),
        owner=owner,
        instance=instance,
        files=files(spec, sources),
        pull_secrets=pull_secrets(spec, sources),
    )


def pull_secrets(spec: m.ApplicationSpec, sources: Sources) -> tuple[o.SourceRef, ...]:
    """The versions of the owner's `imagePullSecrets`, each with its registry credentials."""
    found: list[o.SourceRef] = []
    for name in spec.image_pull_secrets:
        ref, secret = _secret(sources, name)
        if m.DOCKER_CONFIG_KEY not in {k for k, _ in secret.keys}:
            raise UnsupportedManifest(f"secret {name!r} has no key {m.DOCKER_CONFIG_KEY!r}")
        found.append(ref)
    return tuple(found)
