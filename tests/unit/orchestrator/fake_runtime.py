"""An in-memory container engine for unit tests: a fake `ContainerRuntime`, not a mock.

Containers run when started and end only when a test calls `exit()`, `kill()` or `stop()`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from orchestrator.errors import (
    ContainerNotFound,
    CreateFailed,
    EngineUnavailable,
    ImageUnavailable,
    RuntimeFailure,
    StartFailed,
)
from orchestrator.runtime import (
    ContainerInfo,
    ContainerState,
    ContainerStats,
    CreateRequest,
    EngineInfo,
    ExecResult,
    RunState,
    RuntimeEvent,
    VolumeInfo,
)
from orchestrator.spec import ImagePullPolicy

if TYPE_CHECKING:
    from trio_typing import TaskStatus

HOST = "fake://engine"


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    request: CreateRequest | None
    state: ContainerState = ContainerState.CREATED
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    cpu_ns: int = 0
    memory_bytes: int = 0
    starts: int = 0

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            labels=dict(self.labels),
            state=self.state,
            run=RunState(
                self.started_at, self.finished_at, self.exit_code, self.oom_killed, self.error
            ),
        )


@dataclass
class FakeRuntime:
    images: set[str] = field(default_factory=lambda: {"img:1"})
    clock: Callable[[], float] = trio.current_time
    """The engine's wall clock; tests under a MockClock pass trio.current_time."""
    missing_executables: set[str] = field(default_factory=set)
    """Commands whose start fails as if the file did not exist."""
    exec_handler: Callable[[str, Sequence[str]], int] = lambda _cid, cmd: int(cmd[0] == "false")
    """The exit code of a command run in a container (`false` fails, anything else passes)."""
    down: bool = False
    """While set, every call fails with EngineUnavailable."""
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    operations: list[tuple[str, str]] = field(default_factory=list)
    """(operation, container id or volume name) for every call that changes something."""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _last_time: float = -1.0
    _watchers: list[tuple[dict[str, str], trio.MemorySendChannel[RuntimeEvent]]] = field(
        default_factory=list
    )

    # -- helpers for tests -------------------------------------------------------------------

    def now(self) -> float:
        """The clock, made strictly increasing like the engine's nanosecond times."""
        try:
            now = self.clock()
        except RuntimeError:  # set-up outside trio.run, before the clock exists
            now = 0.0
        self._last_time = max(now, self._last_time + 1e-6)
        return self._last_time

    def add_foreign(self, name: str, labels: Mapping[str, str], *, running: bool = True) -> str:
        """A container someone else made (no request, any labels)."""
        cid = f"c{next(self._ids):04d}"
        self.containers[cid] = FakeContainer(
            cid,
            name,
            dict(labels),
            None,
            ContainerState.RUNNING if running else ContainerState.EXITED,
            started_at=self.now(),
        )
        return cid

    def exit(self, container_id: str, code: int = 0, *, oom: bool = False) -> None:
        c = self.containers[container_id]
        c.state = ContainerState.EXITED
        c.exit_code, c.oom_killed, c.finished_at = code, oom, self.now()
        if oom:
            self._emit(c, "oom")
        self._emit(c, "die")

    def with_labels(self, labels: Mapping[str, str]) -> list[FakeContainer]:
        return [c for c in self.containers.values() if _matches(c.labels, labels)]

    def running(self, labels: Mapping[str, str] | None = None) -> list[FakeContainer]:
        return [c for c in self.with_labels(labels or {}) if c.state is ContainerState.RUNNING]

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.operations if op == operation)

    def _emit(self, c: FakeContainer, action: str) -> None:
        for labels, channel in list(self._watchers):
            if _matches(c.labels, labels):
                try:
                    channel.send_nowait(RuntimeEvent(c.id, action))
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    def _check(self) -> None:
        if self.down:
            raise EngineUnavailable(HOST, "connection refused")

    def _get(self, container_id: str) -> FakeContainer:
        c = self.containers.get(container_id)
        if c is None:
            raise ContainerNotFound(container_id)
        return c

    # -- ContainerRuntime --------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        await trio.lowlevel.checkpoint()
        self._check()
        return EngineInfo(HOST, "fake", "1.41", 2, 2**30, "memory", "none", "0")

    async def ensure_image(self, image: str, policy: ImagePullPolicy) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if image not in self.images or policy is ImagePullPolicy.ALWAYS:
            raise ImageUnavailable(image, "pull access denied: no registry")

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        await trio.lowlevel.checkpoint()
        self._check()
        return [c.info() for c in self.with_labels(labels)]

    async def inspect(self, container_id: str) -> ContainerInfo:
        await trio.lowlevel.checkpoint()
        self._check()
        return self._get(container_id).info()

    async def create(self, request: CreateRequest) -> str:
        await self.ensure_image(request.image, request.image_pull_policy)
        if any(c.name == request.name for c in self.containers.values()):
            raise CreateFailed(f"cannot create {request.name}: the name is in use")
        if not request.command and not request.args:
            raise CreateFailed(f"cannot create {request.name}: no command specified")
        for mount in request.mounts:
            self.volumes.setdefault(mount.volume, {})
        cid = f"c{next(self._ids):04d}"
        self.containers[cid] = FakeContainer(cid, request.name, dict(request.labels), request)
        self.operations.append(("create", cid))
        return cid

    async def start(self, container_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self._get(container_id)
        if c.state is ContainerState.RUNNING:
            return
        program = (c.request.command or c.request.args)[0] if c.request else ""
        self.operations.append(("start", container_id))
        if program in self.missing_executables:
            c.error = f"exec: {program!r}: executable file not found"
            c.exit_code = 127
            raise StartFailed(f"cannot start {container_id}: {c.error}")
        c.state, c.started_at, c.finished_at = ContainerState.RUNNING, self.now(), None
        c.exit_code, c.oom_killed, c.error, c.cpu_ns = 0, False, "", 0
        c.starts += 1
        self._emit(c, "start")

    async def stop(self, container_id: str, timeout_seconds: float) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self.containers.get(container_id)
        if c is None or c.state is not ContainerState.RUNNING:
            return
        self.operations.append(("stop", container_id))
        self.exit(container_id, 143)

    async def remove(self, container_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self.containers.pop(container_id, None)
        if c is not None:
            self.operations.append(("remove", container_id))
            self._emit(c, "destroy")

    async def exec(
        self, container_id: str, command: Sequence[str], timeout_seconds: float
    ) -> ExecResult:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self._get(container_id)
        if c.state is not ContainerState.RUNNING:
            raise RuntimeFailure(f"container {container_id} is not running")
        return ExecResult(self.exec_handler(container_id, command), b"")

    async def stats(self, container_id: str) -> ContainerStats:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self._get(container_id)
        if c.state is not ContainerState.RUNNING:
            raise RuntimeFailure(f"container {container_id} is not running")
        return ContainerStats(c.cpu_ns, c.memory_bytes, 1)

    async def list_volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]:
        await trio.lowlevel.checkpoint()
        self._check()
        return [VolumeInfo(n, dict(v)) for n, v in self.volumes.items() if _matches(v, labels)]

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if name not in self.volumes:
            self.volumes[name] = dict(labels)
            self.operations.append(("create_volume", name))

    async def remove_volume(self, name: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if any(
            m.volume == name
            for c in self.containers.values()
            if c.request is not None
            for m in c.request.mounts
        ):
            raise RuntimeFailure(f"cannot remove volume {name}: it is in use")
        if self.volumes.pop(name, None) is not None:
            self.operations.append(("remove_volume", name))

    async def watch(
        self,
        labels: Mapping[str, str],
        events: trio.MemorySendChannel[RuntimeEvent],
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._check()
        entry = (dict(labels), events)
        self._watchers.append(entry)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self._watchers.remove(entry)


def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def ids(containers: Iterable[FakeContainer]) -> list[str]:
    return sorted(c.id for c in containers)
