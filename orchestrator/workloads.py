"""The node's compute: the replicas the chain assigns to this node (in finalized state), turned
into the orchestrator's replica specs and run on the local Docker engine. Without a reachable
engine the node says so once and offers no compute."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from chain.address import encode_address
from chain.runtime import apps
from chain.runtime import manifest as m
from consensus.chain_service import ChainService
from node.errors import NodeError
from orchestrator import spec as o
from orchestrator.controller import Controller, ControllerConfig
from orchestrator.docker_engine import DockerAdapter
from orchestrator.engine import ContainerState
from orchestrator.engine_connection import ConnectedEngine, connect_engine
from orchestrator.errors import EngineFailure, EngineUnavailable, SpecError
from orchestrator.firewall import EgressPolicy, IptablesFirewall
from orchestrator.image_gc import ImageCollector, ImageGcPolicy
from orchestrator.images import busybox_rootfs_tar
from orchestrator.labels import owner_labels
from orchestrator.logs import WorkloadLogs
from orchestrator.manifest_cache import ManifestCache

log = logging.getLogger("statemesh.workloads")

ENGINE_RETRY_SECONDS = 2.0
MAX_ENGINE_RETRY_SECONDS = 30.0
"""A node without an engine keeps looking for one, at most this far apart."""
DEFAULT_MAX_PIDS = 4096
"""The most processes and threads a node lets one replica have, all its containers together,
unless its operator says otherwise (`statemesh node --max-pids`), whatever the manifest asks:
a manifest may have 8 containers, and 8 times this is a host's whole `pid_max`."""
DEFAULT_MAX_IMAGE_BYTES = 10 * 2**30
"""The largest image a node accepts by default (`--max-image-size`)."""

_RESTART = {
    m.RestartPolicy.ALWAYS: o.RestartPolicy.ALWAYS,
    m.RestartPolicy.ON_FAILURE: o.RestartPolicy.ON_FAILURE,
    m.RestartPolicy.NEVER: o.RestartPolicy.NEVER,
}


class UnsupportedManifest(NodeError):
    """A manifest this node cannot run yet (the reason is logged once per revision)."""


def _probe(probe: m.Probe | None) -> o.Probe | None:
    if probe is None:
        return None
    action: o.ProbeAction
    if isinstance(probe.action, m.HttpGetAction):
        action = o.HTTPGetAction(port=probe.action.port, path=probe.action.path)
    elif isinstance(probe.action, m.TcpSocketAction):
        action = o.TCPSocketAction(port=probe.action.port)
    else:
        action = o.ExecAction(command=probe.action.command)
    return o.Probe(
        action=action,
        initial_delay_seconds=probe.initial_delay_seconds,
        period_seconds=probe.period_seconds,
        timeout_seconds=probe.timeout_seconds,
        success_threshold=probe.success_threshold,
        failure_threshold=probe.failure_threshold,
    )


def _security(context: m.SecurityContext) -> o.SecurityContext:
    return o.SecurityContext(
        run_as_user=context.run_as_user,
        run_as_group=context.run_as_group,
        run_as_non_root=bool(context.run_as_non_root),
        read_only_root_filesystem=bool(context.read_only_root_filesystem),
        capabilities_drop=context.capabilities_drop or (),
        capabilities_add=context.capabilities_add or (),
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


def _container(spec: m.ApplicationSpec, container: m.Container, pids_limit: int) -> o.Container:
    env = []
    for var in container.env:
        if var.value is None:
            # Secret and configuration values reach containers with the secrets feature.
            raise UnsupportedManifest(
                f"container {container.name}: env {var.name} refers to a secret or config"
            )
        env.append(o.EnvVar(var.name, var.value))
    limits, requests = container.resources.limits, container.resources.requests
    return o.Container(
        name=container.name,
        image=container.image,
        command=container.command,
        args=container.args,
        env=tuple(env),
        ports=tuple(
            o.ContainerPort(p.container_port, p.name or "", p.protocol.value)
            for p in container.ports
        ),
        resources=o.EnforcedResources(
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
        ),
        liveness_probe=_probe(container.liveness_probe),
        readiness_probe=_probe(container.readiness_probe),
        startup_probe=_probe(container.startup_probe),
        security=_security(m.effective_security_context(spec, container)),
    )


def replica_spec(
    chain_id: str,
    app: str,
    entry: apps.ReplicaEntry,
    manifest: m.Manifest,
    *,
    max_pids: int = DEFAULT_MAX_PIDS,
    owner: str = "",
    instance: int = 0,
) -> o.ReplicaSpec:
    """The orchestrator's view of one assigned replica of `manifest`, an application of `owner`
    (an address) created on chain as `instance`. Its containers together have at most
    `max_pids` processes and threads (`pids_limits`)."""
    spec = manifest.spec
    mounts = {vm.name: vm.mount_path for c in spec.containers for vm in c.volume_mounts}
    volumes = tuple(
        o.Volume(
            v.name,
            mounts[v.name],
            o.VolumeKind.PERSISTENT
            if v.kind is m.VolumeKind.PERSISTENT
            else o.VolumeKind.EPHEMERAL,
            size_bytes=v.size_bytes,
            memory=v.memory,
        )
        for v in spec.volumes
        if v.name in mounts
    )
    return o.ReplicaSpec(
        chain=chain_id,
        app=app,
        revision=entry.revision,
        replica=entry.index,
        containers=tuple(
            _container(spec, c, pids)
            for c, pids in zip(
                spec.containers,
                pids_limits([c.resources.limits.pids for c in spec.containers], max_pids),
                strict=True,
            )
        ),
        restart_policy=_RESTART[spec.restart_policy],
        volumes=volumes,
        owner=owner,
        instance=instance,
    )


class ChainDesiredState:
    """What this node must run, read from the finalized state (`orchestrator.DesiredState`).

    The state is read once per finalized block: the controller's passes between blocks (engine
    events, resyncs) reuse what was read, and a block that changes nothing for this node is told
    apart from one that does (`refresh`)."""

    def __init__(
        self,
        chain: ChainService,
        node_id: bytes,
        chain_id: str,
        *,
        max_pids: int = DEFAULT_MAX_PIDS,
    ) -> None:
        self.chain = chain
        self.max_pids = max_pids
        """This node's cap on any container's processes and threads."""
        self.node_id = node_id
        self.chain_id = chain_id
        self._manifests = ManifestCache()
        self._read_at: bytes | None = None
        """The finalized block `_replicas` was read at."""
        self._replicas: tuple[o.ReplicaSpec, ...] = ()
        self._kept: dict[str, frozenset[int]] | None = None
        self._refused: set[tuple[str, int, int]] = set()
        """(app, revision, replica) not run for a reason already logged."""

    def refresh(self) -> bool:
        """Reads the finalized state if it moved since the last read. True if what this node
        must run changed."""
        store = self.chain.store
        head = store.finalized_header.hash
        if head == self._read_at:
            return False
        state = store.state_at(head)
        wanted = []
        assigned = apps.assignments_for(state, self.node_id)
        records = {app: apps.get_app(state, app) for app in {app for app, _ in assigned}}
        for app, entry in assigned:
            manifest = self._manifests.get(state, app, entry.revision)
            record = records[app]
            if manifest is None or record is None:
                continue
            try:
                wanted.append(
                    replica_spec(
                        self.chain_id,
                        app,
                        entry,
                        manifest,
                        max_pids=self.max_pids,
                        owner=encode_address(record.owner),
                        instance=record.instance,
                    )
                )
            except (UnsupportedManifest, SpecError) as exc:
                refused = (app, entry.revision, entry.index)
                if refused not in self._refused:
                    log.warning("not running %s replica %d: %s", app, entry.index, exc)
                    self._refused.add(refused)
        # Forget what is no longer assigned, so the set does not grow with the chain's history.
        self._refused &= {(app, e.revision, e.index) for app, e in assigned}
        replicas = tuple(wanted)
        kept = {self.chain_id: frozenset(apps.kept_instances(state))}
        changed = replicas != self._replicas or kept != self._kept
        self._read_at, self._replicas, self._kept = head, replicas, kept
        return changed

    async def replicas(self) -> Collection[o.ReplicaSpec]:
        self.refresh()
        return self._replicas

    def kept_instances(self) -> Mapping[str, Collection[int]] | None:
        """The live applications' instances and those of deleted ones still retained, at the
        finalized block `replicas` last read; None before the first read."""
        return self._kept


def firewall_tag(node_id: bytes) -> str:
    """The tag of this node's host rules (`SM-<tag>-IN`, ...): several nodes on one host each
    keep their own."""
    return hashlib.blake2b(node_id, digest_size=4).hexdigest()


class WorkloadService:
    def __init__(
        self,
        chain: ChainService,
        node_id: bytes,
        chain_id: str,
        docker_host: str | None,
        *,
        egress: EgressPolicy = EgressPolicy.ALLOW,
        max_pids: int = DEFAULT_MAX_PIDS,
        max_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
        allow_private_registries: bool = False,
        image_gc: ImageGcPolicy | None = None,
    ) -> None:
        self.max_image_bytes = max_image_bytes
        """An image larger than this once pulled is removed again (`ImageTooLarge`)."""
        self.allow_private_registries = allow_private_registries
        """Whether tenants' images may come from registries only this node reaches."""
        self.image_gc = image_gc or ImageGcPolicy()
        self.chain = chain
        self.node_id = node_id
        self.desired = ChainDesiredState(chain, node_id, chain_id, max_pids=max_pids)
        self.docker_host = docker_host
        self.firewall = IptablesFirewall(firewall_tag(node_id), egress)
        self.controller: Controller | None = None
        self._docker: DockerAdapter | None = None
        """The engine's adapter once the engine answered."""
        self.logs: WorkloadLogs | None = None
        self.engine_error: EngineUnavailable | None = None
        """Why this node offers no compute, while the engine does not answer."""
        self._tried = False

    def offers_compute(self) -> bool | None:
        """Whether this node can run replicas now: its engine answers and the host rules that
        sandbox replicas are in place. None until the first attempt to reach the engine."""
        if self.controller is None:
            return False if self._tried else None
        stats = self.controller.statistics()
        if stats.passes == 0 and stats.engine_available:
            return None
        return stats.engine_available

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        delay = ENGINE_RETRY_SECONDS
        while True:
            try:
                engine = await connect_engine(self.docker_host)
                engine.docker.max_image_bytes = self.max_image_bytes
                engine.docker.allow_private_registries = self.allow_private_registries
                break
            except EngineUnavailable as exc:
                if self.engine_error is None or self.engine_error.cause != exc.cause:
                    log.warning("%s", exc)
                self.engine_error = exc
            if not self._tried:
                self._tried = True
                task_status.started()
            await trio.sleep(delay)
            delay = min(delay * 2, MAX_ENGINE_RETRY_SECONDS)
        if self.engine_error is not None:
            log.info(
                "the container engine at %s answers: this node offers compute", engine.info.host
            )
        self.engine_error = None
        config = ControllerConfig(
            node=encode_address(self.node_id),
            unused_volume_seconds=self.chain.runtime.config.volume_retention_seconds,
        )
        controller = Controller(
            engine.docker,
            self.desired,
            config,
            firewall=self.firewall,
            sandbox_rootfs=busybox_rootfs_tar,
        )
        self.controller, self._docker = controller, engine.docker
        try:
            await self._serve(engine, controller, task_status)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self._release(engine)

    async def engine_data_root(self) -> Path | None:
        """Where the engine keeps images, containers and volumes (`DockerRootDir`), as it says
        through the adapter the replicas run on (the image GC asks the same); None until the
        engine first answered, and while it does not."""
        if self._docker is None:
            return None
        try:
            root = await self._docker.data_root()
        except EngineFailure:
            return None
        return Path(root) if root else None

    async def _release(self, engine: ConnectedEngine) -> None:
        """On the way out: the host rules go only if no replica of this node still runs (the
        engine keeps containers across a node restart, and they stay sandboxed meanwhile)."""
        try:
            running = await engine.docker.list_containers(
                owner_labels(encode_address(self.node_id))
            )
        except EngineFailure:
            return
        if any(c.state is ContainerState.RUNNING for c in running):
            log.info("replicas keep running while the node is down, and their host rules stay")
            return
        await self.firewall.remove()

    async def _serve(
        self, engine: ConnectedEngine, controller: Controller, task_status: Any
    ) -> None:
        finalized = self.chain.finalized_heads.subscribe()
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            logs = WorkloadLogs(engine.docker, controller)
            await nursery.start(logs.run)
            # Unused images this node pulled go, least recently used first, when the data
            # root fills up (as kubelet's image GC).
            await nursery.start(ImageCollector(engine.docker, self.image_gc).run)
            self.logs = logs
            log.info("running assigned replicas on the Docker engine %s", engine.info)
            if not self._tried:
                self._tried = True
                task_status.started()
            async with finalized:
                async for _ in finalized:
                    # A block that changes nothing for this node needs no pass: the controller
                    # also passes on engine events and on its resync timer.
                    if self.desired.refresh():
                        controller.trigger()
