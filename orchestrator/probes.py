"""Health probes of one running container: HTTP GET, TCP connect and exec, with Kubernetes'
thresholds. A failing startup or liveness probe asks for the container to be killed; the
readiness probe only sets the container's `ready` flag. HTTP and TCP probes dial the pod's
address, whatever host the probe names: a probe cannot be aimed at anything but its own pod."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h11
import trio

from orchestrator.engine import ContainerEngine
from orchestrator.errors import EngineFailure
from orchestrator.spec import Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction

if TYPE_CHECKING:
    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus.
    from trio_typing import TaskStatus


class ProbeKind(enum.Enum):
    STARTUP = "startup"
    LIVENESS = "liveness"
    READINESS = "readiness"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    success: bool
    message: str


class Threshold:
    """Turns single probe results into a passing / failing state with Kubernetes' thresholds:
    `failure_threshold` consecutive failures to fail, `success_threshold` successes to pass."""

    def __init__(self, probe: Probe, *, passing: bool) -> None:
        self._probe = probe
        self.passing = passing
        self._streak = 0

    def observe(self, success: bool) -> bool | None:
        """Returns the new state when this result changes it, else None."""
        if success == self.passing:
            self._streak = 0
            return None
        self._streak += 1
        needed = self._probe.success_threshold if success else self._probe.failure_threshold
        if self._streak < needed:
            return None
        self.passing = success
        self._streak = 0
        return success


async def http_get(action: HTTPGetAction, timeout_seconds: float) -> ProbeResult:
    """One GET over a fresh connection; a status from 200 to 399 is a success."""
    where = f"http://{action.host}:{action.port}{action.path}"
    with trio.move_on_after(timeout_seconds):
        try:
            stream = await trio.open_tcp_stream(action.host, action.port)
        except OSError as e:
            return ProbeResult(False, f"GET {where}: {_connect_error(e)}")
        async with stream:
            try:
                status = await _exchange(stream, action)
            except (OSError, trio.BrokenResourceError, h11.ProtocolError) as e:
                return ProbeResult(False, f"GET {where}: {e}")
        if status is None:
            return ProbeResult(False, f"GET {where}: connection closed before a response")
        return ProbeResult(200 <= status < 400, f"GET {where}: HTTP {status}")
    return ProbeResult(False, f"GET {where}: no response within {timeout_seconds} s")


async def _exchange(stream: trio.SocketStream, action: HTTPGetAction) -> int | None:
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=action.path,
        headers=[
            ("Host", f"{action.host}:{action.port}"),
            ("User-Agent", "statemesh-probe"),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )
    data = (connection.send(request) or b"") + (connection.send(h11.EndOfMessage()) or b"")
    await stream.send_all(data)
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            if not data and connection.their_state is h11.SEND_RESPONSE:
                return None  # closed without a word: not an HTTP server (yet)
            connection.receive_data(data)
        elif isinstance(event, h11.Response):
            return int(event.status_code)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def tcp_socket(action: TCPSocketAction, timeout_seconds: float) -> ProbeResult:
    where = f"{action.host}:{action.port}"
    with trio.move_on_after(timeout_seconds):
        try:
            stream = await trio.open_tcp_stream(action.host, action.port)
        except OSError as e:
            return ProbeResult(False, f"connect {where}: {_connect_error(e)}")
        await stream.aclose()
        return ProbeResult(True, f"connect {where}: open")
    return ProbeResult(False, f"connect {where}: no answer within {timeout_seconds} s")


async def exec_command(
    engine: ContainerEngine, container_id: str, action: ExecAction, timeout_seconds: float
) -> ProbeResult:
    try:
        result = await engine.exec(container_id, action.command, timeout_seconds)
    except EngineFailure as e:
        return ProbeResult(False, f"exec {list(action.command)!r}: {e.message}")
    return ProbeResult(
        result.exit_code == 0, f"exec {list(action.command)!r}: exit code {result.exit_code}"
    )


async def probe_once(
    engine: ContainerEngine, container_id: str, probe: Probe, address: str
) -> ProbeResult:
    """One probe of a container whose pod has `address`: HTTP and TCP probes dial the pod (the
    node reaches every pod on its networks), exec probes run inside the container."""
    action = probe.action
    if isinstance(action, HTTPGetAction):
        return await http_get(dataclasses.replace(action, host=address), probe.timeout_seconds)
    if isinstance(action, TCPSocketAction):
        return await tcp_socket(dataclasses.replace(action, host=address), probe.timeout_seconds)
    return await exec_command(engine, container_id, action, probe.timeout_seconds)


class ContainerProber:
    """Runs the probes of one container instance from its start until it is cancelled.

    `on_ready(ready, message)` is called whenever readiness changes (at once with True when the
    container has no readiness probe). `on_failed(kind, message)` is called, and probing stops,
    when the startup or liveness probe fails its threshold: the container must be restarted."""

    def __init__(
        self,
        engine: ContainerEngine,
        container_id: str,
        container: Container,
        *,
        address: str,
        age_seconds: float,
        on_ready: Callable[[bool, str], None],
        on_failed: Callable[[ProbeKind, str], Awaitable[None]],
    ) -> None:
        self._engine = engine
        self._container_id = container_id
        self._container = container
        self._address = address
        self._age = max(0.0, age_seconds)
        self._on_ready = on_ready
        self._on_failed = on_failed
        self.ready = False
        self.started = container.startup_probe is None
        self.probes_run = 0
        self.probes_failed = 0

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Delays count from the container's start, which may be before this prober's.
        born = trio.current_time() - self._age
        task_status.started()
        startup = self._container.startup_probe
        if startup is not None and not await self._startup(startup, born):
            return
        self.started = True
        readiness = self._container.readiness_probe
        liveness = self._container.liveness_probe
        if readiness is None:
            self._set_ready(True, "running")
        async with trio.open_nursery() as nursery:
            if readiness is not None:
                nursery.start_soon(self._watch, readiness, ProbeKind.READINESS, born)
            if liveness is not None:
                nursery.start_soon(self._liveness, liveness, born, nursery.cancel_scope)

    async def _probe(self, probe: Probe) -> ProbeResult:
        result = await probe_once(self._engine, self._container_id, probe, self._address)
        self.probes_run += 1
        self.probes_failed += not result.success
        return result

    async def _startup(self, probe: Probe, born: float) -> bool:
        await trio.sleep_until(born + probe.initial_delay_seconds)
        failures = 0
        next_at = trio.current_time()
        while True:
            result = await self._probe(probe)
            if result.success:
                return True
            failures += 1
            if failures >= probe.failure_threshold:
                await self._on_failed(ProbeKind.STARTUP, f"startup probe failed: {result.message}")
                return False
            next_at = _next_tick(next_at, probe.period_seconds)
            await trio.sleep_until(next_at)

    async def _liveness(self, probe: Probe, born: float, scope: trio.CancelScope) -> None:
        if await self._watch(probe, ProbeKind.LIVENESS, born) is False:
            scope.cancel()  # the container is being killed: readiness no longer matters

    async def _watch(self, probe: Probe, kind: ProbeKind, born: float) -> bool | None:
        """Probes until liveness fails (returns False) or cancelled."""
        await trio.sleep_until(born + probe.initial_delay_seconds)
        # Liveness starts out passing; readiness starts out not ready, like Kubernetes.
        threshold = Threshold(probe, passing=kind is ProbeKind.LIVENESS)
        next_at = trio.current_time()
        while True:
            result = await self._probe(probe)
            changed = threshold.observe(result.success)
            if changed is not None and kind is ProbeKind.READINESS:
                self._set_ready(changed, f"readiness probe {_word(changed)}: {result.message}")
            if changed is False and kind is ProbeKind.LIVENESS:
                await self._on_failed(kind, f"liveness probe failed: {result.message}")
                return False
            next_at = _next_tick(next_at, probe.period_seconds)
            await trio.sleep_until(next_at)

    def _set_ready(self, ready: bool, message: str) -> None:
        if ready != self.ready:
            self.ready = ready
            self._on_ready(ready, message)


def _connect_error(error: OSError) -> str:
    """The reason of the last connection attempt ("Connection refused"), not trio's summary."""
    cause = error.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[-1]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return error.strerror or str(error)


def _next_tick(previous: float, period: float) -> float:
    """The next probe time on the period's grid, skipping ticks missed by a slow probe."""
    now = trio.current_time()
    if previous + period >= now:
        return previous + period
    return previous + period * math.ceil((now - previous) / period)


def _word(passing: bool) -> str:
    return "passed" if passing else "failed"
