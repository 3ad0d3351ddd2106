"""The seam between the controller and a container engine: the `ContainerEngine` Protocol and
the plain data it speaks in. `docker_engine.DockerAdapter` is the real implementation."""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from orchestrator.pull_auth import RegistryAuth
from orchestrator.spec import EnforcedResources, EnvVar, ImagePullPolicy, SecurityContext

if TYPE_CHECKING:
    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus.
    from trio_typing import TaskStatus


class ContainerState(enum.Enum):
    """The engine's word for where a container is in its life."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class RunState:
    """The current or last run of a container's process. Times are Unix seconds."""

    started_at: float | None
    """None if the process never started."""
    finished_at: float | None
    """None while running or if it never ran."""
    exit_code: int
    oom_killed: bool
    error: str = ""
    """The engine's message when the process could not be started."""

    @property
    def ran_for(self) -> float:
        """Seconds the last run lasted (0 if it never ran or is still running)."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return max(0.0, self.finished_at - self.started_at)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A container as the engine reports it."""

    id: str
    name: str
    labels: Mapping[str, str] = field(hash=False)
    state: ContainerState
    run: RunState | None = None
    """Always set by `inspect`; set by `list_containers` for every container not running."""
    network_mode: str = ""
    """The engine's network mode: a network's name, or `container:<id>` for a container that
    joined another's network namespace (a pod's)."""
    addresses: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Network name -> the container's IP address on it (empty for a container that joined
    another's network namespace)."""


@dataclass(frozen=True, slots=True)
class Mount:
    """A named volume mounted into a container."""

    volume: str
    target: str


@dataclass(frozen=True, slots=True)
class Bind:
    """A folder of the host mounted read-only into a container: the node's files of a secret or
    configMap volume, on a tmpfs."""

    source: str
    target: str


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Everything the engine needs to create one container.

    Its network is one of two, never the host's: a pod's sandbox is attached to `network` (its
    application's network on this node); every other container joins the network namespace of
    the container named `join` (its pod's sandbox), and so shares its address and localhost.
    With neither, the container has no network at all."""

    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[EnvVar, ...]
    labels: Mapping[str, str] = field(hash=False)
    resources: EnforcedResources
    mounts: tuple[Mount, ...] = ()
    image_pull_policy: ImagePullPolicy = ImagePullPolicy.IF_NOT_PRESENT
    """The spec's policy, carried for engines to come; no engine here follows it: the Docker
    adapter pulls every tenant image at each create whatever it says (Kubernetes'
    `AlwaysPullImages`), and the fake engine of the tests ignores it too."""
    network: str | None = None
    join: str | None = None
    hostname: str | None = None
    """Only for a container with a network of its own; members of a pod share its sandbox's."""
    security: SecurityContext = field(default_factory=SecurityContext)
    binds: tuple[Bind, ...] = ()
    registry_auth: RegistryAuth | None = field(default=None, repr=False, compare=False)
    """The tenant's login to the image's registry (from its `imagePullSecrets`), for the pull
    of this create only; None pulls anonymously."""

    def __post_init__(self) -> None:
        if self.network is not None and self.join is not None:
            raise ValueError("a container either has a network or joins a pod's, not both")


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    output: bytes


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """One reading of a running container's counters."""

    cpu_ns: int
    """CPU time used by the current run, in nanoseconds (the engine resets it on restart)."""
    memory_bytes: int
    pids: int


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """One measurement of what containers and volumes hold on the engine's disk, in bytes."""

    containers: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Container id -> what it wrote to its own filesystem (its writable layer)."""
    volumes: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Volume name -> what it holds; volumes in memory are not on disk and not listed."""
    unmeasurable: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Volume name -> why what is in it keeps it from being measured (too many files, folders too
    deep, ...): its replica's doing, not the node's."""


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """A network of the engine: a bridge on this host."""

    name: str
    labels: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """Something happened to a container (`start`, `die`, `oom`, `destroy`, ...)."""

    container_id: str
    action: str


@dataclass(frozen=True, slots=True)
class EngineInfo:
    host: str
    server_version: str
    api_version: str
    cpus: int
    memory_bytes: int
    storage_driver: str
    cgroup_driver: str
    cgroup_version: str
    data_root: str = ""
    """Where the engine keeps images, containers and volumes (`DockerRootDir`), on its host."""


class ContainerEngine(Protocol):
    """A container engine. Every method may raise `EngineUnavailable`; each lists its others.

    Removal and stopping are idempotent: a container that is already gone is not an error."""

    async def info(self) -> EngineInfo: ...

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Every container, in any state, that carries all of the labels."""
        ...

    async def inspect(self, container_id: str) -> ContainerInfo:
        """`ContainerNotFound` if it is gone."""
        ...

    async def create(self, request: CreateRequest) -> str:
        """Returns the new container's id, its image pulled for the app first (the Docker adapter
        pulls it at each create, see `DockerAdapter`); `ImageUnavailable` (`ImageTooLarge`),
        `CreateFailed`."""
        ...

    async def start(self, container_id: str) -> None:
        """`StartFailed`, `ContainerNotFound`."""
        ...

    async def stop(self, container_id: str, timeout_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the timeout."""
        ...

    async def remove(self, container_id: str) -> None:
        """Kills the container if needed and removes it."""
        ...

    async def exec(
        self, container_id: str, command: Sequence[str], timeout_seconds: float
    ) -> ExecResult:
        """Runs a command inside a running container; `ContainerNotFound`, `EngineFailure`."""
        ...

    async def stats(self, container_id: str) -> ContainerStats:
        """`ContainerNotFound` if it is gone or not running."""
        ...

    async def logs(
        self, container_id: str, *, tail: int | None = None, since: float | None = None
    ) -> bytes:
        """What the container wrote to stdout and stderr, as it wrote it: the last `tail` lines
        (all if None) of those written at or after `since` (Unix seconds; None for all).
        `ContainerNotFound`; `ValueError` for a negative `tail`."""
        ...

    def follow_logs(
        self, container_id: str, *, tail: int | None = None, since: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The lines `logs` would return, one at a time and without their newline, then each
        new line as it is written, until the container stops or is removed. Closing or
        cancelling the iterator closes the engine's stream. `ContainerNotFound` on the first
        step if the container is gone."""
        ...

    async def list_volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]: ...

    async def create_volume(
        self, name: str, labels: Mapping[str, str], *, memory_bytes: int | None = None
    ) -> None:
        """Idempotent: an existing volume of that name is kept as it is. With `memory_bytes`,
        the volume is a tmpfs of that size (in memory, gone with the last container using it)."""
        ...

    async def disk_usage(self, labels: Mapping[str, str]) -> DiskUsage:
        """Measures the writable layer of every container and the content of every volume that
        carries all of the labels. Slow for big trees: the caller decides how often."""
        ...

    async def remove_volume(self, name: str) -> None:
        """Idempotent; `EngineFailure` if a container still uses it."""
        ...

    async def list_networks(self, labels: Mapping[str, str]) -> list[NetworkInfo]: ...

    async def create_network(self, name: str, bridge: str, labels: Mapping[str, str]) -> None:
        """A bridge network named `name` whose host interface is `bridge`, with the labels.
        Idempotent: an existing network of that name is kept as it is."""
        ...

    async def remove_network(self, name: str) -> None:
        """Idempotent; `EngineFailure` if a container is still attached to it."""
        ...

    async def ensure_local_image(self, name: str, rootfs: Callable[[], bytes]) -> None:
        """Makes image `name` present, importing the root filesystem tar `rootfs()` returns if
        it is not (images the node builds itself, never pulled); `ImageUnavailable`."""
        ...

    async def watch(
        self,
        labels: Mapping[str, str],
        events: trio.MemorySendChannel[EngineEvent],
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Sends the events of containers carrying the labels until cancelled or the engine
        ends the stream. An event is sent once `list_containers` reflects it."""
        ...
