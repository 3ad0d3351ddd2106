"""An in-memory container engine for unit tests: a fake `ContainerEngine`, not a mock.

Containers run when started and end only when a test calls `exit()`, `kill()` or `stop()`.
What a container writes to its log comes from `write_log()`, and from its command when that is
`echo ...` or a `sh -c` script of `echo` and `sleep` steps: each run writes the script's lines at
the times its sleeps say (the rest of a script is ignored)."""

from __future__ import annotations

import itertools
import math
import shlex
from bisect import insort
from collections.abc import (
    AsyncGenerator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from orchestrator.engine import (
    ContainerInfo,
    ContainerState,
    ContainerStats,
    CreateRequest,
    DiskUsage,
    EngineEvent,
    EngineInfo,
    ExecResult,
    NetworkInfo,
    RunState,
    VolumeInfo,
)
from orchestrator.errors import (
    ContainerNotFound,
    CreateFailed,
    EngineFailure,
    EngineUnavailable,
    ImageUnavailable,
    StartFailed,
)
from orchestrator.firewall import FirewallFailure
from orchestrator.labels import ROLE

if TYPE_CHECKING:
    from trio_typing import TaskStatus

HOST = "fake://engine"

LogEntry = tuple[float, int, bytes]
"""(time written, sequence, line without its newline), in the order a log holds them."""


def script_lines(argv: Sequence[str]) -> list[tuple[float, bytes]]:
    """(seconds after the start, line) for each line an `echo` / `sh -c` script writes."""
    if tuple(argv[:1]) == ("echo",):
        return [(0.0, " ".join(argv[1:]).encode())]
    if len(argv) < 3 or argv[0] not in ("sh", "/bin/sh") or argv[1] != "-c":
        return []
    written: list[tuple[float, bytes]] = []
    offset = 0.0
    for step in argv[2].replace("&&", ";").split(";"):
        words = shlex.split(step)
        if words[:1] == ["echo"]:
            written.append((offset, " ".join(words[1:]).encode()))
        elif words[:1] == ["sleep"] and len(words) == 2:
            offset += float(words[1])
    return written


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
    network_mode: str = ""
    addresses: dict[str, str] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    """Sorted; entries later than the engine's clock are what a running script writes next."""

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            labels=dict(self.labels),
            state=self.state,
            run=RunState(
                self.started_at, self.finished_at, self.exit_code, self.oom_killed, self.error
            ),
            network_mode=self.network_mode,
            addresses=dict(self.addresses),
        )


@dataclass
class FakeEngine:
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
    networks: dict[str, dict[str, str]] = field(default_factory=dict)
    """Network name -> its labels."""
    network_failure: str = ""
    """While set, creating a network fails with this reason (as an exhausted address pool)."""
    operations: list[tuple[str, str]] = field(default_factory=list)
    """(operation, container id or volume name) for every call that changes something."""
    volume_listings: int = 0
    memory_volumes: dict[str, int] = field(default_factory=dict)
    """Volume name -> the size of its tmpfs, for volumes in memory."""
    written: dict[str, int] = field(default_factory=dict)
    """Container id -> bytes in its writable layer, as the test sets them."""
    volume_bytes: dict[str, int] = field(default_factory=dict)
    """Volume name -> bytes it holds, as the test sets them."""
    unmeasurable: dict[str, str] = field(default_factory=dict)
    """Volume name -> why it cannot be measured, as the test sets it."""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _log_seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _log_written: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    _last_time: float = -1.0
    _watchers: list[tuple[dict[str, str], trio.MemorySendChannel[EngineEvent]]] = field(
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

    def _time(self) -> float:
        """The clock now, never before a time already handed out (unlike `now`, no step)."""
        try:
            return max(self.clock(), self._last_time)
        except RuntimeError:
            return self._last_time

    def write_log(self, container_id: str, *lines: str) -> None:
        """The container writes these lines now."""
        c = self._get(container_id)
        at = self.now()
        for line in lines:
            insort(c.log, (at, next(self._log_seq), line.encode()))
        self._log_written.unpark_all()

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
        c.log = [e for e in c.log if e[0] <= c.finished_at]  # the script stops with its process
        self._log_written.unpark_all()
        if oom:
            self._emit(c, "oom")
        self._emit(c, "die")

    def with_labels(
        self, labels: Mapping[str, str], *, sandboxes: bool = False
    ) -> list[FakeContainer]:
        """The containers with the labels; pod sandboxes only if asked for."""
        return [
            c
            for c in self.containers.values()
            if _matches(c.labels, labels) and (sandboxes or ROLE not in c.labels)
        ]

    def running(
        self, labels: Mapping[str, str] | None = None, *, sandboxes: bool = False
    ) -> list[FakeContainer]:
        return [
            c
            for c in self.with_labels(labels or {}, sandboxes=sandboxes)
            if c.state is ContainerState.RUNNING
        ]

    def sandboxes(self) -> list[FakeContainer]:
        return [c for c in self.containers.values() if ROLE in c.labels]

    def count(self, operation: str) -> int:
        """How often `operation` was done to anything but a pod sandbox."""
        return sum(
            1
            for op, target in self.operations
            if op == operation
            and not (target in self.containers and ROLE in self.containers[target].labels)
        )

    def _emit(self, c: FakeContainer, action: str) -> None:
        for labels, channel in list(self._watchers):
            if _matches(c.labels, labels):
                try:
                    channel.send_nowait(EngineEvent(c.id, action))
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

    # -- ContainerEngine --------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        await trio.lowlevel.checkpoint()
        self._check()
        return EngineInfo(HOST, "fake", "1.41", 2, 2**30, "memory", "none", "0")

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        await trio.lowlevel.checkpoint()
        self._check()
        return [c.info() for c in self.with_labels(labels, sandboxes=True)]

    async def inspect(self, container_id: str) -> ContainerInfo:
        await trio.lowlevel.checkpoint()
        self._check()
        return self._get(container_id).info()

    async def create(self, request: CreateRequest) -> str:
        await trio.lowlevel.checkpoint()
        self._check()
        if request.image not in self.images:
            # Images are "pulled" from `images`; the request's pull policy is ignored, as the
            # Docker engine ignores it.
            raise ImageUnavailable(request.image, "pull access denied: no registry")
        if any(c.name == request.name for c in self.containers.values()):
            raise CreateFailed(f"cannot create {request.name}: the name is in use")
        if not request.command and not request.args:
            raise CreateFailed(f"cannot create {request.name}: no command specified")
        network_mode, addresses = "none", {}
        if request.network is not None:
            if request.network not in self.networks:
                raise CreateFailed(f"cannot create {request.name}: no network {request.network}")
            network_mode = request.network
        elif request.join is not None:
            pod = next((c for c in self.containers.values() if c.name == request.join), None)
            if pod is None:
                raise CreateFailed(f"cannot create {request.name}: no container {request.join}")
            network_mode = f"container:{pod.id}"
        for mount in request.mounts:
            self.volumes.setdefault(mount.volume, {})
        n = next(self._ids)
        cid = f"c{n:04d}"
        if request.network is not None:
            addresses = {request.network: f"10.88.{n // 250}.{n % 250 + 2}"}
        self.containers[cid] = FakeContainer(
            cid,
            request.name,
            dict(request.labels),
            request,
            network_mode=network_mode,
            addresses=addresses,
        )
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
        if c.request is not None:
            argv = (*c.request.command, *c.request.args)
            for offset, line in script_lines(argv):
                insort(c.log, (c.started_at + offset, next(self._log_seq), line))
        self._log_written.unpark_all()
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
            self._log_written.unpark_all()

    async def exec(
        self, container_id: str, command: Sequence[str], timeout_seconds: float
    ) -> ExecResult:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self._get(container_id)
        if c.state is not ContainerState.RUNNING:
            raise EngineFailure(f"container {container_id} is not running")
        return ExecResult(self.exec_handler(container_id, command), b"")

    async def stats(self, container_id: str) -> ContainerStats:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self._get(container_id)
        if c.state is not ContainerState.RUNNING:
            raise EngineFailure(f"container {container_id} is not running")
        return ContainerStats(c.cpu_ns, c.memory_bytes, 1)

    def _log_window(
        self, c: FakeContainer, tail: int | None, since: float | None
    ) -> tuple[list[LogEntry], tuple[float, int]]:
        """The entries `logs` returns now, and the position of the last entry written so far."""
        if tail is not None and tail < 0:
            raise ValueError(f"tail must not be negative, got {tail}")
        now = self._time()
        written = [e for e in c.log if e[0] <= now]
        window = [e for e in written if since is None or e[0] >= since]
        if tail is not None:
            window = window[len(window) - tail :] if tail else []
        return window, (written[-1][:2] if written else (-math.inf, 0))

    async def logs(
        self, container_id: str, *, tail: int | None = None, since: float | None = None
    ) -> bytes:
        await trio.lowlevel.checkpoint()
        self._check()
        window, _ = self._log_window(self._get(container_id), tail, since)
        return b"".join(line + b"\n" for _, _, line in window)

    async def follow_logs(
        self, container_id: str, *, tail: int | None = None, since: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        await trio.lowlevel.checkpoint()
        self._check()
        c = self._get(container_id)
        run = c.starts  # like the engine's, a stream follows one run of the container
        window, last = self._log_window(c, tail, since)
        for _, _, line in window:
            yield line
        while True:
            now = self._time()
            for at, seq, line in [e for e in c.log if e[:2] > last and e[0] <= now]:
                last = (at, seq)
                yield line
            if (
                self.containers.get(container_id) is not c
                or c.state is not ContainerState.RUNNING
                or c.starts != run
            ):
                return
            due = min((e[0] for e in c.log if e[:2] > last), default=math.inf)
            with trio.move_on_after(max(0.0, due - now)):
                await self._log_written.park()

    async def list_volumes(self, labels: Mapping[str, str]) -> list[VolumeInfo]:
        await trio.lowlevel.checkpoint()
        self._check()
        self.volume_listings += 1
        return [VolumeInfo(n, dict(v)) for n, v in self.volumes.items() if _matches(v, labels)]

    async def create_volume(
        self, name: str, labels: Mapping[str, str], *, memory_bytes: int | None = None
    ) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if name not in self.volumes:
            self.volumes[name] = dict(labels)
            if memory_bytes is not None:
                self.memory_volumes[name] = memory_bytes
            self.operations.append(("create_volume", name))

    async def disk_usage(self, labels: Mapping[str, str]) -> DiskUsage:
        await trio.lowlevel.checkpoint()
        self._check()
        return DiskUsage(
            {
                cid: self.written.get(cid, 0)
                for cid, c in self.containers.items()
                if _matches(c.labels, labels)
            },
            {
                n: self.volume_bytes.get(n, 0)
                for n, v in self.volumes.items()
                if _matches(v, labels) and n not in self.memory_volumes
            },
            {n: why for n, why in self.unmeasurable.items() if n in self.volumes},
        )

    async def remove_volume(self, name: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if any(
            m.volume == name
            for c in self.containers.values()
            if c.request is not None
            for m in c.request.mounts
        ):
            raise EngineFailure(f"cannot remove volume {name}: it is in use")
        if self.volumes.pop(name, None) is not None:
            self.operations.append(("remove_volume", name))

    async def list_networks(self, labels: Mapping[str, str]) -> list[NetworkInfo]:
        await trio.lowlevel.checkpoint()
        self._check()
        return [NetworkInfo(n, dict(v)) for n, v in self.networks.items() if _matches(v, labels)]

    async def create_network(self, name: str, bridge: str, labels: Mapping[str, str]) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.operations.append(("try_network", name))
        if self.network_failure:
            raise EngineFailure(f"cannot create network {name}: {self.network_failure}")
        if name not in self.networks:
            self.networks[name] = dict(labels)
            self.operations.append(("create_network", name))

    async def remove_network(self, name: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if any(name in c.addresses for c in self.containers.values()):
            raise EngineFailure(f"cannot remove network {name}: it is in use")
        if self.networks.pop(name, None) is not None:
            self.operations.append(("remove_network", name))

    async def ensure_local_image(self, name: str, rootfs: Callable[[], bytes]) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        if name not in self.images:
            rootfs()
            self.images.add(name)
            self.operations.append(("import_image", name))

    async def watch(
        self,
        labels: Mapping[str, str],
        events: trio.MemorySendChannel[EngineEvent],
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


@dataclass
class FakeFirewall:
    """A `HostFirewall` that counts its assertions."""

    applied: int = 0
    failure: str = ""
    """While set, `apply` fails with this message, as iptables would."""
    removed: int = 0
    observe: Callable[[], int] = lambda: 0
    """Read at each assertion into `operations_seen` (e.g. how much the engine had done)."""
    operations_seen: list[int] = field(default_factory=list)

    async def apply(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.failure:
            raise FirewallFailure(self.failure)
        self.applied += 1
        self.operations_seen.append(self.observe())

    async def remove(self) -> None:
        await trio.lowlevel.checkpoint()
        self.removed += 1


def no_rootfs() -> bytes:
    """The sandbox image's root filesystem, as far as a fake engine needs one."""
    return b""
