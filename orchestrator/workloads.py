"""The node's compute: the replicas the chain assigns to this node (in finalized state), turned
into the orchestrator's replica specs and run on the local Docker engine. Without a reachable
engine the node says so once and offers no compute."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import trio

from chain.address import encode_address
from chain.ledger import Ledger
from chain.runtime import apps
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
from orchestrator.replica_specs import (
    DEFAULT_MAX_PIDS,
    ChainSources,
    UnsupportedManifest,
    replica_spec,
)
from orchestrator.secrets import FileStore, SecretSource, default_file_root

log = logging.getLogger("statemesh.workloads")

ENGINE_RETRY_SECONDS = 2.0
MAX_ENGINE_RETRY_SECONDS = 30.0
"""A node without an engine keeps looking for one, at most this far apart."""
DEFAULT_MAX_IMAGE_BYTES = 10 * 2**30
"""The largest image a node accepts by default (`--max-image-size`)."""


class ChainDesiredState:
    """What this node must run, read from the finalized state (a `controller.DesiredState`).

    The state is read once per finalized block: the controller's passes between blocks (engine
    events, resyncs) reuse what was read, and a block that changes nothing for this node is told
    apart from one that does (`refresh`)."""

    def __init__(
        self,
        chain: Ledger,
        node_id: bytes,
        chain_id: str,
        *,
        max_pids: int = DEFAULT_MAX_PIDS,
        manifests: ManifestCache | None = None,
    ) -> None:
        self.chain = chain
        self.max_pids = max_pids
        """This node's cap on any container's processes and threads."""
        self.node_id = node_id
        self.chain_id = chain_id
        self._manifests = manifests or ManifestCache()
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
                        sources=ChainSources(state, record.owner),
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
        chain: Ledger,
        node_id: bytes,
        chain_id: str,
        docker_host: str | None,
        *,
        egress: EgressPolicy = EgressPolicy.ALLOW,
        max_pids: int = DEFAULT_MAX_PIDS,
        max_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
        allow_private_registries: bool = False,
        image_gc: ImageGcPolicy | None = None,
        manifests: ManifestCache | None = None,
        secrets: SecretSource | None = None,
        files: FileStore | None = None,
    ) -> None:
        self.secrets = secrets
        """Where the plaintext of the secrets replicas read comes from (the node's delivery);
        None: replicas that read a secret wait. May be set until `run` starts."""
        self.files = files if files is not None else FileStore(default_file_root(node_id))
        self.max_image_bytes = max_image_bytes
        """An image larger than this once pulled is removed again (`ImageTooLarge`)."""
        self.allow_private_registries = allow_private_registries
        """Whether tenants' images may come from registries only this node reaches."""
        self.image_gc = image_gc or ImageGcPolicy()
        self.chain = chain
        self.node_id = node_id
        self.manifests = manifests or ManifestCache()
        """The manifests read back from the chain's state, shared with the endpoint service."""
        self.desired = ChainDesiredState(
            chain, node_id, chain_id, max_pids=max_pids, manifests=self.manifests
        )
        self.docker_host = docker_host
        self.firewall = IptablesFirewall(firewall_tag(node_id), egress)
        self.controller: Controller | None = None
        self.controller_started = trio.Event()
        """Set once `controller` is: the engine answered and replicas can run."""
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
                engine.docker.image_usage.clock = self.chain.clock
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
            clock=self.chain.clock,
            secrets=self.secrets,
            files=self.files,
        )
        self.controller, self._docker = controller, engine.docker
        self.controller_started.set()
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
            logs = WorkloadLogs(engine.docker, controller, clock=self.chain.clock)
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
