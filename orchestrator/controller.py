"""The level-triggered reconcile loop: desired replicas -> observe containers by their labels ->
diff -> apply, per replica in order, with back-off; plus the probes and metering of what runs.

Everything the loop decides follows from the desired state and the engine's containers; what it
keeps in memory (back-off, restart counts, readiness) only shapes timing and reporting, so a new
controller adopts the containers of an old one instead of duplicating them."""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from chain.clock import Clock, SystemClock
from orchestrator import disk, labels, metering
from orchestrator.backoff import Backoff, BackoffPolicy
from orchestrator.diff import (
    Action,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    RemoveContainer,
    RemoveNetwork,
    RemoveReason,
    RemoveVolume,
    StartContainer,
    diff,
    keep_order,
)
from orchestrator.engine import (
    ContainerEngine,
    ContainerInfo,
    ContainerState,
    DiskUsage,
    EngineEvent,
    NetworkInfo,
    VolumeInfo,
)
from orchestrator.errors import EngineFailure, EngineUnavailable
from orchestrator.events import EventKind, EventLog
from orchestrator.firewall import HostFirewall
from orchestrator.labels import ContainerIdentity, ContainerKey
from orchestrator.metering import Meter, MeterTarget, VolumeUsage
from orchestrator.probes import ContainerProber, ProbeKind
from orchestrator.secrets import FileStore, NoSecretSource, SecretSource, project
from orchestrator.spec import ReplicaKey, ReplicaSpec, RestartPolicy, VolumeKind
from orchestrator.status import (
    LIVE,
    ContainerFacts,
    ReplicaStatus,
    container_status,
    termination_reason,
)

if TYPE_CHECKING:
    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus.
    from trio_typing import TaskStatus

log = logging.getLogger("statemesh.orchestrator")
_SYSTEM_CLOCK = SystemClock()

BackoffKey = tuple[ContainerKey, str]
"""A container key and the spec hash it runs: a new spec starts with a clean back-off."""
NETWORK_BACKOFF = "network"
"""The spec hash of a replica's back-off for creating its application's network (with the
key of its sandbox): a network the engine cannot create is tried again after a delay."""


def _network_backoff(replica: ReplicaKey) -> BackoffKey:
    return (ContainerKey(replica, labels.SANDBOX), NETWORK_BACKOFF)


def _action_instance(action: Action) -> int | None:
    """The application instance `action` works for, from the action itself: by the time it
    fails, the name may belong to another instance. None for the removal of a network or a
    volume, which says nothing of the instance it served."""
    if isinstance(action, CreateContainer | StartContainer | RemoveContainer):
        return action.instance
    if isinstance(action, CreateNetwork | CreateVolume):
        return labels.instance_of(action.labels)
    return None


def _backoff_key(action: Action) -> BackoffKey | None:
    """What a failure of `action` backs off: creates and starts, and network creation."""
    if isinstance(action, CreateContainer | StartContainer):
        return (action.key, action.spec_hash)
    if isinstance(action, CreateNetwork):
        return _network_backoff(action.replica)
    return None


class DesiredState(Protocol):
    """Where the replicas this node must run come from (finalized chain state, in the node)."""

    async def replicas(self) -> Collection[ReplicaSpec]:
        """The current desired replicas; keys are unique, or the highest revision wins."""
        ...

    def kept_instances(self) -> Mapping[str, Collection[int]] | None:
        """Chain -> the application instances whose persistent volumes stay: the live
        applications and the deleted ones within their retention period. None while not known,
        which keeps every volume. Read after `replicas`, from the same state."""
        ...


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    node: str
    """This node's id: the owner label of everything the controller creates and observes."""
    crash_backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    """CrashLoopBackOff: restarts of containers that exited."""
    failure_backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    """ImagePullBackOff and failed creates or starts."""
    engine_backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(initial_seconds=1.0, max_seconds=30.0)
    )
    """Between attempts to reach an engine that does not answer."""
    resync_seconds: float = 10.0
    """A full pass at least this often, even if nothing said that anything changed."""
    metering_seconds: float = 10.0
    unused_volume_seconds: float | None = None
    """How long a persistent volume of a live application instance stays on this node once no
    replica here uses it (scaled down, or moved to another node), as a deleted application's
    stay for the chain's retention period; None keeps it as long as the chain keeps the
    instance. Counted from when this controller first saw it unused."""
    disk_seconds: float | None = 10.0
    """How often containers' writable layers and volumes are measured against their limits;
    None measures nothing (and evicts nothing)."""
    removal_grace_seconds: float = 30.0
    """The stop timeout for containers whose replica spec is no longer known."""
    max_parallel_replicas: int = 8
    """Replicas worked on at once; one replica's actions always run one after another."""


@dataclass(frozen=True, slots=True)
class ControllerStatistics:
    passes: int
    last_pass_seconds: float
    """Observe, diff and dispatch of the last pass (actions run after it, per replica)."""
    desired_replicas: int
    observed_containers: int
    running_containers: int
    """Of the replicas' own containers (sandboxes are counted as `pods`)."""
    pods: int
    """Desired replicas whose sandbox runs with an address."""
    ready_replicas: int
    busy_replicas: int
    held_back: int
    """Creates and starts waiting for their back-off in the last pass."""
    actions_applied: int
    actions_failed: int
    probers: int
    engine_available: bool
    engine_error: str


@dataclass(slots=True)
class _ProberHandle:
    key: ContainerKey
    scope: trio.CancelScope
    prober: ContainerProber | None = None


class Controller:
    """Makes the engine run exactly the desired replicas. Start it with `nursery.start(run)`."""

    def __init__(
        self,
        engine: ContainerEngine,
        desired: DesiredState,
        config: ControllerConfig,
        *,
        firewall: HostFirewall,
        sandbox_rootfs: Callable[[], bytes],
        clock: Clock = _SYSTEM_CLOCK,
        secrets: SecretSource | None = None,
        files: FileStore | None = None,
    ) -> None:
        self._engine = engine
        self._secrets: SecretSource = secrets if secrets is not None else NoSecretSource()
        self._files = files
        """Where secret and configMap files are written (a tmpfs); None: nowhere, and replicas
        with such volumes wait."""
        self._source = desired
        self.config = config
        self._firewall = firewall
        self._sandbox_rootfs = sandbox_rootfs
        """The root filesystem of the pod sandbox image, built on first use."""
        self._sandbox_image = False
        self._firewall_checked = -math.inf
        """When the host rules were last asserted (trio time); never before the first pass."""
        self._networks: list[NetworkInfo] = []
        self._pod_addresses: dict[ReplicaKey, str] = {}
        self._network_locks: dict[str, trio.Lock] = defaultdict(trio.Lock)
        self._clock = clock
        """Dates events, samples and volume use (wall time); timers run on trio's clock."""
        self._owner = labels.owner_labels(config.node)
        self.events = EventLog()
        self.meter = Meter()
        self._restarts: Backoff[BackoffKey] = Backoff(config.crash_backoff)
        self._failures: Backoff[BackoffKey] = Backoff(config.failure_backoff)
        self._engine_backoff: Backoff[str] = Backoff(config.engine_backoff)
        self._restart_counts: dict[BackoffKey, int] = defaultdict(int)
        self._waiting: dict[ContainerKey, tuple[str, str]] = {}
        self._held: dict[BackoffKey, float] = {}
        self._desired: dict[ReplicaKey, ReplicaSpec] = {}
        self._known: dict[ReplicaKey, ReplicaSpec] = {}
        self._observed: list[ContainerInfo] = []
        self._volumes: list[VolumeInfo] | None = None
        """The volumes of the last listing; None before the first."""
        self._evicted: dict[ContainerKey, str] = {}
        """Containers evicted under restart policy Never, by the spec hash they ran: not
        created again while that spec is desired (kept in memory only)."""
        self._retained: list[VolumeUsage] = []
        self._unused_since: dict[str, float] = {}
        """Persistent volumes no desired replica uses -> when they were first seen so."""
        self._disk_passes = 0
        self._seen_ends: dict[str, tuple[float, float]] = {}
        self._probers: dict[str, _ProberHandle] = {}
        self._targets: dict[str, MeterTarget] = {}
        self._busy: set[ReplicaKey] = set()
        self._fence: dict[ReplicaKey, int] = {}
        self._pass_seq = itertools.count(1)
        self._next_seq = 1
        self._limiter = trio.CapacityLimiter(config.max_parallel_replicas)
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._engine_error = ""
        self._passes = 0
        self._last_pass = 0.0
        self._held_back = 0
        self._applied = 0
        self._failed = 0

    # -- the service -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_engine)
            nursery.start_soon(self._meter_loop)
            if self.config.disk_seconds is not None:
                nursery.start_soon(self._disk_loop, self.config.disk_seconds)
            task_status.started()
            try:
                await self._loop()
            finally:
                self._nursery = None

    def _now(self) -> float:
        """Wall-clock seconds, as events, samples and the engine's timestamps are dated."""
        return self._clock.now_ms() / 1000

    def trigger(self) -> None:
        """Asks for a pass now (the desired state may have changed). Cheap; calls coalesce."""
        self._wake.set()

    async def changed(self) -> None:
        """Returns at the next change of status: a pass, an action done, a readiness flip."""
        await self._changed.wait()

    def _event(
        self,
        replica: ReplicaKey,
        instance: int | None,
        kind: EventKind,
        container: str = "",
        *,
        reason: str = "",
        message: str = "",
        at: float | None = None,
    ) -> None:
        """Records an event of `replica` as the application `instance`'s: the instance is
        always the one the event's container or spec was made for, so that a later
        application of the same name is never shown it. `at`: when it happened, if not now."""
        self.events.record(
            self._now() if at is None else at,
            replica,
            kind,
            instance=instance,
            container=container,
            reason=reason,
            message=message,
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _loop(self) -> None:
        while True:
            self._wake = trio.Event()
            wake_at = await self._pass()
            deadline = min(wake_at, trio.current_time() + self.config.resync_seconds)
            with trio.move_on_at(deadline):
                await self._wake.wait()

    async def _watch_engine(self) -> None:
        send, receive = trio.open_memory_channel[EngineEvent](64)
        async with trio.open_nursery() as nursery, send, receive:
            nursery.start_soon(self._drain_events, receive)
            while True:
                try:
                    await self._engine.watch(self._owner, send)
                except EngineFailure as e:
                    log.debug("engine events unavailable: %s", e)
                # The stream ended (engine restart or failure): resync, then watch again.
                self.trigger()
                await trio.sleep(self._engine_backoff.policy.initial_seconds)

    async def _drain_events(self, receive: trio.MemoryReceiveChannel[EngineEvent]) -> None:
        async for _ in receive:
            self.trigger()

    async def _meter_loop(self) -> None:
        limiter = trio.CapacityLimiter(8)
        while True:
            await trio.sleep(self.config.metering_seconds)
            await metering.sample(
                self._engine,
                self.meter,
                list(self._targets.values()),
                clock=self._clock,
                limiter=limiter,
            )

    # -- one pass ----------------------------------------------------------------------------

    async def _pass(self) -> float:
        """Observes, diffs and dispatches; returns when the next pass is due at the latest."""
        seq = next(self._pass_seq)
        self._next_seq = seq + 1
        started = trio.current_time()
        self._set_desired(await self._source.replicas())
        try:
            containers = await self._engine.list_containers(self._owner)
            if self._must_list_volumes():
                self._volumes = await self._engine.list_volumes(self._owner)
            self._networks = await self._engine.list_networks(self._owner)
            await self._assert_firewall()
        except EngineFailure as e:
            return self._engine_failed(e)
        if self._engine_error:
            log.info("container engine is reachable again and replicas can be isolated")
        self._engine_error = ""
        self._engine_backoff.forget("engine")
        self._observed = containers
        self._note_ends(containers)
        actions = diff(
            self.config.node,
            self._desired,
            containers,
            self._volumes or [],
            self._networks,
            self._source.kept_instances(),
        )
        wake_at = self._dispatch(seq, actions + self._unused_volumes(actions))
        self._sync_probers(containers, self._note_pods(containers))
        self._prune(containers)
        self._passes += 1
        self._last_pass = trio.current_time() - started
        self._notify()
        return wake_at

    async def _assert_firewall(self) -> None:
        """The host rules come before any replica can run: asserted at the first pass, and
        again at every resync (someone may have flushed them). They cover every workload
        bridge, so a new application's network is covered as soon as it exists."""
        now = trio.current_time()
        if now - self._firewall_checked < self.config.resync_seconds:
            return
        await self._firewall.apply()
        self._firewall_checked = now

    def _unused_volumes(self, actions: list[Action]) -> list[Action]:
        """Removals of the persistent volumes that no desired replica has used for
        `unused_volume_seconds` (their instance may live on, on other nodes)."""
        period = self.config.unused_volume_seconds
        if period is None or self._volumes is None:
            return []
        now = self._now()
        wanted = {
            labels.volume_name(self.config.node, labels.volume_identity(spec, v))
            for spec in self._desired.values()
            for v in spec.volumes
        }
        planned = {a.name for a in actions if isinstance(a, RemoveVolume)}
        since: dict[str, float] = {}
        removals: list[Action] = []
        for volume in self._volumes:
            vid = labels.parse_volume_labels(volume.labels)
            if vid is None or vid.kind is not VolumeKind.PERSISTENT or volume.name in wanted:
                continue
            since[volume.name] = self._unused_since.get(volume.name, now)
            if now - since[volume.name] >= period and volume.name not in planned:
                removals.append(RemoveVolume(vid.replica, volume.name))
        self._unused_since = since
        return removals

    def _must_list_volumes(self) -> bool:
        """Whether this pass needs the engine's volumes. The controller creates volumes only for
        desired replicas that have some, and removes only volumes it has seen: with neither, the
        diff has nothing to do with volumes, so the listing (a call to the engine) is skipped.
        The first pass always lists, to find what an earlier controller left behind."""
        return (
            self._volumes is None
            or bool(self._volumes)
            or any(spec.volumes for spec in self._desired.values())
        )

    def _set_desired(self, replicas: Collection[ReplicaSpec]) -> None:
        desired: dict[ReplicaKey, ReplicaSpec] = {}
        for spec in replicas:
            kept = desired.get(spec.key)
            if kept is not None and kept.revision != spec.revision:
                log.warning("replica %s desired twice; keeping the highest revision", spec.key)
            if kept is None or spec.revision >= kept.revision:
                desired[spec.key] = spec
        for key, spec in sorted(desired.items()):
            # A new instance of the name is scheduled anew, even at the same revision number.
            was = self._desired.get(key)
            if was is None or (was.instance, was.revision) != (spec.instance, spec.revision):
                message = f"revision {spec.revision}"
                self._event(key, spec.instance, EventKind.SCHEDULED, message=message)
        self._desired = desired
        self._known.update(desired)

    def _engine_failed(self, error: EngineFailure) -> float:
        if error.message != self._engine_error:
            log.warning("container engine: %s", error.message)
        self._engine_error = error.message
        now = trio.current_time()
        not_before = self._engine_backoff.not_before("engine")
        if not_before is None or not_before <= now:
            self._engine_backoff.record("engine", now)
        self._notify()
        return now + self._engine_backoff.delay("engine")

    def _note_ends(self, containers: list[ContainerInfo]) -> None:
        """Records exits and OOM kills once each, and ends the probes and meters of the dead."""
        present = set()
        for c in containers:
            present.add(c.id)
            identity = labels.parse_container_labels(c.labels)
            if identity is None or c.state in LIVE:
                continue
            run = c.run
            if run is None or run.finished_at is None or run.started_at is None:
                continue
            if self._seen_ends.get(c.id) == (run.started_at, run.finished_at):
                continue
            self._seen_ends[c.id] = (run.started_at, run.finished_at)
            self._stop_prober(c.id)
            self.meter.record_exit(identity.key.replica, c.id, run.started_at, run.finished_at)
            kind = EventKind.OOM_KILLED if run.oom_killed else EventKind.EXITED
            self._event(
                identity.key.replica,
                labels.instance_of(c.labels),
                kind,
                identity.key.container,
                reason=termination_reason(run),
                message=f"exit code {run.exit_code}",
            )
        for cid in [cid for cid in self._seen_ends if cid not in present]:
            del self._seen_ends[cid]
        for cid in [cid for cid in self._probers if cid not in present]:
            self._stop_prober(cid)

    def _dispatch(self, seq: int, actions: list[Action]) -> float:
        """Starts one worker per replica that has work, is idle, and was observed after its
        last worker finished. Returns when the earliest held-back action comes due."""
        now = trio.current_time()
        wake_at = math.inf
        groups: dict[ReplicaKey, list[Action]] = defaultdict(list)
        self._held_back = 0
        for action in actions:
            if (
                isinstance(action, CreateContainer)
                and self._evicted.get(action.key) == action.spec_hash
            ):
                continue  # evicted, and its restart policy is Never
            groups[action.replica].append(action)
        for replica, group in groups.items():
            if replica in self._busy or self._fence.get(replica, 0) > seq:
                continue
            runnable = []
            for action in group:
                not_before = self._hold(action, now)
                if not_before is None:
                    runnable.append(action)
                    continue
                self._held_back += 1
                wake_at = min(wake_at, not_before)
            if runnable and self._nursery is not None:
                self._busy.add(replica)
                self._nursery.start_soon(self._apply, replica, runnable)
        return wake_at

    def _hold(self, action: Action, now: float) -> float | None:
        """When a held-back create or start (or network creation) may run, or None if it may
        run now."""
        key = _backoff_key(action)
        if key is None:
            return None
        times = [self._failures.not_before(key)]
        if isinstance(action, StartContainer) and action.restart:
            times.append(self._restarts.not_before(key, good_for=action.ran_for))
        due = max((t for t in times if t is not None), default=None)
        if due is None or due <= now:
            return None
        if self._held.get(key) != due:
            self._held[key] = due
            self._event(
                action.replica,
                _action_instance(action),
                EventKind.BACK_OFF,
                key[0].container,
                message=f"back-off {due - now:.1f}s before starting again",
            )
        return due

    def _prune(self, containers: list[ContainerInfo]) -> None:
        keys = set()
        observed_replicas = set()
        for c in containers:
            identity = labels.parse_container_labels(c.labels)
            if identity is not None:
                keys.add((identity.key, identity.spec_hash))
                observed_replicas.add(identity.key.replica)
        for spec in self._desired.values():
            for container in spec.containers:
                key = ContainerKey(spec.key, container.name)
                keys.add((key, labels.spec_hash(spec, container)))
            sandbox = ContainerKey(spec.key, labels.SANDBOX)
            keys.add((sandbox, labels.sandbox_hash(self.config.node, spec)))
            keys.add(_network_backoff(spec.key))
        self._restarts.retain(keys)
        self._failures.retain(keys)
        for k in [k for k in self._restart_counts if k not in keys]:
            del self._restart_counts[k]
        for k in [k for k in self._held if k not in keys]:
            del self._held[k]
        wanted = {k for k, _ in keys}
        for ck in [ck for ck in self._waiting if ck not in wanted]:
            del self._waiting[ck]
        for ck in [ck for ck, h in self._evicted.items() if (ck, h) not in keys]:
            del self._evicted[ck]
        if self._files is not None:
            self._files.keep_only(
                [
                    self._files.folder(k.replica, k.container, h)
                    for k, h in keys
                    if isinstance(k, ContainerKey) and k.container != labels.SANDBOX
                ]
            )
        forgotten = {
            r
            for r in self._known.keys() | self._fence.keys()
            if r not in self._desired and r not in observed_replicas and r not in self._busy
        }
        for replica in forgotten:
            self._known.pop(replica, None)
            self._fence.pop(replica, None)

    # -- applying actions --------------------------------------------------------------------

    async def _apply(self, replica: ReplicaKey, actions: list[Action]) -> None:
        try:
            async with self._limiter:
                for action in actions:
                    if not await self._apply_one(action):
                        break  # the next pass plans again from what the engine then reports
        finally:
            self._busy.discard(replica)
            self._fence[replica] = self._next_seq
            self.trigger()
            self._notify()

    async def _apply_one(self, action: Action) -> bool:
        try:
            if isinstance(action, CreateNetwork):
                # Two replicas of one application may both find its network missing.
                async with self._network_locks[action.name]:
                    await self._engine.create_network(action.name, action.bridge, action.labels)
                key = _network_backoff(action.replica)
                self._failures.forget(key)
                self._waiting.pop(key[0], None)
            elif isinstance(action, RemoveNetwork):
                await self._engine.remove_network(action.name)
                self._network_locks.pop(action.name, None)
            elif isinstance(action, CreateVolume):
                await self._engine.create_volume(
                    action.name, action.labels, memory_bytes=action.memory_bytes
                )
            elif isinstance(action, RemoveVolume):
                await self._engine.remove_volume(action.name)
            elif isinstance(action, CreateContainer):
                await self._create(action)
            elif isinstance(action, StartContainer):
                await self._start(action)
            else:
                await self._remove(action)
        except EngineUnavailable as e:
            self._failed += 1
            self._engine_error = e.message
            return False
        except EngineFailure as e:
            self._failed += 1
            self._failure(action, e)
            return False
        self._applied += 1
        return True

    def _failure(self, action: Action, error: EngineFailure) -> None:
        container = ""
        key = _backoff_key(action)
        if key is not None:
            delay = self._failures.record(key, trio.current_time())
            self._waiting[key[0]] = (error.reason, error.message)
            container = key[0].container
            log.info("%s: %s; retrying in %.1f s", key[0], error.message, delay)
        elif isinstance(action, RemoveContainer):
            container = action.key.container
        self._event(
            action.replica,
            _action_instance(action),
            EventKind.FAILED,
            container,
            reason=error.reason,
            message=error.message,
        )

    async def _create(self, action: CreateContainer) -> None:
        replica, name = action.replica, action.key.container
        if name == labels.SANDBOX:
            # The pod's sandbox is plumbing: its failures are events, its start is not.
            if not self._sandbox_image:
                await self._engine.ensure_local_image(labels.SANDBOX_IMAGE, self._sandbox_rootfs)
                self._sandbox_image = True
            container_id = await self._engine.create(action.request)
            await self._start_id(action.key, action.spec_hash, container_id)
            return
        request = action.request
        spec = self._desired.get(replica)
        if spec is not None and (spec.files or spec.secrets()):
            request = await project(
                request, spec, name, action.spec_hash, self._secrets, self._files
            )
        container_id = await self._engine.create(request)
        self._event(replica, action.instance, EventKind.CREATED, name, message=action.request.name)
        await self._start_id(action.key, action.spec_hash, container_id)
        self._event(replica, action.instance, EventKind.STARTED, name)

    async def _start(self, action: StartContainer) -> None:
        key = (action.key, action.spec_hash)
        restarted_at = self._now()
        if action.restart:
            self._restarts.record(key, trio.current_time(), good_for=action.ran_for)
            self._restart_counts[key] += 1
        await self._start_id(action.key, action.spec_hash, action.container_id)
        if action.restart:
            # Dated when the back-off let it restart, as the back-off counts; the engine's
            # start may take a while longer on a busy host.
            message = f"restart {self._restart_counts[key]}"
            self._event(
                action.replica,
                action.instance,
                EventKind.RESTARTED,
                action.key.container,
                message=message,
                at=restarted_at,
            )
        else:
            self._event(action.replica, action.instance, EventKind.STARTED, action.key.container)

    async def _start_id(self, key: ContainerKey, spec_hash: str, container_id: str) -> None:
        self._stop_prober(container_id)
        await self._engine.start(container_id)
        self._failures.forget((key, spec_hash))
        self._waiting.pop(key, None)

    async def _remove(self, action: RemoveContainer) -> None:
        self._stop_prober(action.container_id)
        spec = self._desired.get(action.replica) or self._known.get(action.replica)
        grace = (
            spec.termination_grace_period_seconds
            if spec is not None
            else self.config.removal_grace_seconds
        )
        await self._engine.stop(action.container_id, grace)
        await self._engine.remove(action.container_id)
        self.meter.forget_container(action.container_id)
        self._event(
            action.replica,
            action.instance,
            EventKind.REMOVED,
            action.key.container,
            reason=action.reason.name,
            message=action.reason.value,
        )

    # -- disk --------------------------------------------------------------------------------

    async def _disk_loop(self, period: float) -> None:
        failed = ""
        while True:
            await trio.sleep(period)
            try:
                usage = await self._engine.disk_usage(self._owner)
            except EngineFailure as e:
                if e.message != failed:
                    log.warning("no disk measurement, so no disk limit holds: %s", e.message)
                failed = e.message
                continue
            failed = ""
            self._measured(usage)

    def _measured(self, usage: DiskUsage) -> None:
        """Takes one disk measurement: records each replica's disk in the meter, notes the
        retained volumes, and evicts the replicas past a limit (as kubelet does: the writable
        layer past `ephemeral-storage`, a volume past its size)."""
        node = self.config.node
        self._disk_passes += 1
        wanted: set[str] = set()
        for replica, spec in sorted(self._desired.items()):
            total, over = 0, []
            live = [
                (c, identity)
                for c in self._observed
                if (identity := labels.parse_container_labels(c.labels)) is not None
                and identity.key.replica == replica
            ]
            for c, identity in live:
                written = usage.containers.get(c.id, 0)
                total += written
                names = {x.name for x in spec.containers}
                if identity.key.container not in names:
                    continue
                limit = spec.container(identity.key.container).resources.disk_bytes
                if limit is not None and written > limit:
                    over.append(
                        f"container {identity.key.container} wrote {disk.shown(written)} to its "
                        f"filesystem, past its ephemeral-storage limit of {disk.shown(limit)}"
                    )
            for v in spec.volumes:
                name = labels.volume_name(node, labels.volume_identity(spec, v))
                wanted.add(name)
                held = usage.volumes.get(name, 0)
                total += held
                why = usage.unmeasurable.get(name)
                if why is not None:
                    over.append(f"volume {v.name} cannot be measured: it {why}")
                elif v.size_bytes is not None and held > v.size_bytes and not v.memory:
                    what = "size" if v.kind is VolumeKind.PERSISTENT else "sizeLimit"
                    over.append(
                        f"volume {v.name} holds {disk.shown(held)}, past its {what} of "
                        f"{disk.shown(v.size_bytes)}"
                    )
            self.meter.record_disk(replica, total)
            if over and live:
                self._evict(spec, [c for c, _ in live], "; ".join(over))
        retained = []
        for volume in self._volumes or []:
            vid = labels.parse_volume_labels(volume.labels)
            if vid is None or volume.name in wanted:
                continue
            if vid.kind is VolumeKind.PERSISTENT and volume.name in usage.volumes:
                key = vid.replica
                retained.append(
                    VolumeUsage(
                        key.chain,
                        key.app,
                        vid.instance,
                        key.replica,
                        vid.volume,
                        usage.volumes[volume.name],
                    )
                )
        self._retained = retained
        self._notify()

    def _evict(self, spec: ReplicaSpec, containers: list[ContainerInfo], message: str) -> None:
        """Removes the replica's containers and its ephemeral volumes, then lets the restart
        policy decide: they are created again after a back-off, unless the policy is Never."""
        replica = spec.key
        if replica in self._busy or self._nursery is None:
            return  # being worked on: the next measurement looks again
        log.info("%s evicted: %s", replica, message)
        self._event(replica, spec.instance, EventKind.EVICTED, reason="Evicted", message=message)
        now = trio.current_time()
        actions: list[Action] = []
        for c in sorted(containers, key=lambda c: c.id):
            identity = labels.parse_container_labels(c.labels)
            if identity is None or c.state is ContainerState.REMOVING:
                continue
            actions.append(RemoveContainer.of(identity.key, c, RemoveReason.EVICTED))
        for container in spec.containers:
            key = ContainerKey(replica, container.name)
            spec_hash = labels.spec_hash(spec, container)
            self._failures.record((key, spec_hash), now)
            self._waiting[key] = ("Evicted", message)
            if spec.restart_policy is RestartPolicy.NEVER:
                self._evicted[key] = spec_hash
        present = {v.name for v in self._volumes or []}
        for v in spec.volumes:
            name = labels.volume_name(self.config.node, labels.volume_identity(spec, v))
            if v.kind is VolumeKind.EPHEMERAL and name in present:
                actions.append(RemoveVolume(replica, name))
        self._busy.add(replica)
        self._nursery.start_soon(self._apply, replica, actions)

    def retained_volume_usage(self) -> list[VolumeUsage]:
        """Persistent volumes kept on this node for application instances it does not run here,
        with their size at the last measurement."""
        return list(self._retained)

    def desired_spec(self, replica: ReplicaKey) -> ReplicaSpec | None:
        """The spec of a replica desired now or recently (until its containers are gone)."""
        return self._desired.get(replica) or self._known.get(replica)

    # -- probes ------------------------------------------------------------------------------

    def pod_address(self, replica: ReplicaKey) -> str | None:
        """The address of the replica's running pod on its network, as last observed."""
        return self._pod_addresses.get(replica)

    def _note_pods(self, containers: list[ContainerInfo]) -> dict[str, str]:
        """Records each desired replica's pod address; returns running sandbox id -> address."""
        pods, addresses = {}, {}
        for c in containers:
            sandbox = labels.parse_sandbox_labels(c.labels)
            spec = self._desired.get(sandbox.replica) if sandbox is not None else None
            if spec is None or c.state is not ContainerState.RUNNING:
                continue
            network = labels.network_name(self.config.node, spec.chain, spec.app, spec.instance)
            address = c.addresses.get(network)
            if address:
                pods[c.id] = address
                addresses[spec.key] = address
        self._pod_addresses = addresses
        return pods

    def _sync_probers(self, containers: list[ContainerInfo], pods: Mapping[str, str]) -> None:
        """One prober per running container that runs a desired spec in a running pod with an
        address (`pods`: sandbox id -> address); none for anything else."""
        keep = set()
        for c in containers:
            identity = labels.parse_container_labels(c.labels)
            if identity is None or c.state is not ContainerState.RUNNING:
                continue
            spec = self._desired.get(identity.key.replica)
            if spec is None or identity.key.container not in {x.name for x in spec.containers}:
                continue
            address = pods.get(c.network_mode.removeprefix("container:"))
            if address is None:
                continue
            if labels.spec_hash(spec, spec.container(identity.key.container)) != (
                identity.spec_hash
            ):
                continue
            keep.add(c.id)
            if c.id not in self._probers and self._nursery is not None:
                handle = _ProberHandle(identity.key, trio.CancelScope())
                self._probers[c.id] = handle
                self._nursery.start_soon(self._probe, c.id, spec, handle, address)
        for cid in [cid for cid in self._probers if cid not in keep]:
            self._stop_prober(cid)

    def _stop_prober(self, container_id: str) -> None:
        handle = self._probers.pop(container_id, None)
        if handle is not None:
            handle.scope.cancel()
        self._targets.pop(container_id, None)

    async def _probe(
        self, container_id: str, spec: ReplicaSpec, handle: _ProberHandle, address: str
    ) -> None:
        key = handle.key
        container = spec.container(key.container)
        with handle.scope:
            try:
                info = await self._engine.inspect(container_id)
            except EngineFailure:
                return  # gone already; the next pass sees it
            started_at = info.run.started_at if info.run is not None else None
            if info.state is not ContainerState.RUNNING or started_at is None:
                return
            self._targets[container_id] = MeterTarget(key.replica, container_id, started_at)

            def on_ready(ready: bool, message: str) -> None:
                kind = EventKind.READY if ready else EventKind.UNHEALTHY
                self._event(key.replica, spec.instance, kind, key.container, message=message)
                self._notify()

            async def on_failed(kind: ProbeKind, message: str) -> None:
                self._event(
                    key.replica,
                    spec.instance,
                    EventKind.UNHEALTHY,
                    key.container,
                    reason=f"{kind.value.capitalize()}ProbeFailed",
                    message=f"{message}; the container will be restarted",
                )
                try:
                    await self._engine.stop(container_id, spec.termination_grace_period_seconds)
                except EngineFailure as e:
                    log.warning("%s: cannot stop after a failed probe: %s", key, e)
                self.trigger()

            handle.prober = ContainerProber(
                self._engine,
                container_id,
                container,
                address=address,
                age_seconds=self._now() - started_at,
                on_ready=on_ready,
                on_failed=on_failed,
            )
            await handle.prober.run()

    # -- reporting ---------------------------------------------------------------------------

    def status(self) -> dict[ReplicaKey, ReplicaStatus]:
        """The status of every desired replica, from the last pass and the probes since."""
        by_identity: dict[ContainerIdentity, list[ContainerInfo]] = defaultdict(list)
        for c in self._observed:
            identity = labels.parse_container_labels(c.labels)
            if identity is not None:
                by_identity[identity].append(c)
        now = trio.current_time()
        result = {}
        for replica, spec in sorted(self._desired.items()):
            statuses = []
            for container in spec.containers:
                key = ContainerKey(replica, container.name)
                want = labels.spec_hash(spec, container)
                found = by_identity.get(ContainerIdentity(key, spec.revision, want), [])
                observed = min(found, key=keep_order, default=None)
                statuses.append(
                    container_status(
                        container.name,
                        spec.restart_policy,
                        observed,
                        self._facts(key, want, observed),
                        now,
                    )
                )
            result[replica] = ReplicaStatus(
                replica, spec.revision, tuple(statuses), self._pod_addresses.get(replica)
            )
        return result

    def _facts(
        self, key: ContainerKey, spec_hash: str, observed: ContainerInfo | None
    ) -> ContainerFacts:
        backoff_key = (key, spec_hash)
        handle = None if observed is None else self._probers.get(observed.id)
        ran_for = observed.run.ran_for if observed is not None and observed.run else 0.0
        return ContainerFacts(
            restart_count=self._restart_counts.get(backoff_key, 0),
            failure=self._waiting.get(key),
            ready=bool(handle and handle.prober and handle.prober.ready),
            restart_due=self._restarts.not_before(backoff_key, good_for=ran_for),
            restart_delay=self._restarts.delay(backoff_key),
            engine_error=self._engine_error,
        )

    def usage(self) -> dict[ReplicaKey, metering.ReplicaUsage]:
        return {key: self.meter.usage(key) for key in self.meter.replicas()}

    def statistics(self) -> ControllerStatistics:
        statuses = self.status()
        return ControllerStatistics(
            passes=self._passes,
            last_pass_seconds=self._last_pass,
            desired_replicas=len(self._desired),
            observed_containers=len(self._observed),
            running_containers=sum(
                c.state in LIVE and labels.parse_container_labels(c.labels) is not None
                for c in self._observed
            ),
            pods=len(self._pod_addresses),
            ready_replicas=sum(s.ready for s in statuses.values()),
            busy_replicas=len(self._busy),
            held_back=self._held_back,
            actions_applied=self._applied,
            actions_failed=self._failed,
            probers=len(self._probers),
            engine_available=not self._engine_error,
            engine_error=self._engine_error,
        )
