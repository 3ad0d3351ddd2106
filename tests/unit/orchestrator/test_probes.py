"""Probe thresholds and timing, with a fake engine for exec probes and trio's mock clock; HTTP
and TCP probes against real sockets on loopback."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio
import trio.testing

from orchestrator.probes import (
    ContainerProber,
    ProbeKind,
    ProbeResult,
    Threshold,
    http_get,
    tcp_socket,
)
from orchestrator.spec import ExecAction, HTTPGetAction, Probe, TCPSocketAction
from tests.unit.orchestrator.builders import container
from tests.unit.orchestrator.fake_engine import FakeEngine


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def exec_probe(**kwargs: float) -> Probe:
    return Probe(ExecAction(("check",)), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("success", "failure", "start", "results", "flips"),
    [
        (1, 3, True, "FFF", [None, None, False]),
        (1, 3, True, "FFSFFF", [None, None, None, None, None, False]),
        (1, 1, True, "FS", [False, True]),
        (2, 3, False, "SFSS", [None, None, None, True]),
        (3, 1, False, "SSSF", [None, None, True, False]),
        (1, 3, False, "S", [True]),
    ],
)
def test_threshold_counts_consecutive_results(
    success: int, failure: int, start: bool, results: str, flips: list[bool | None]
) -> None:
    threshold = Threshold(
        exec_probe(success_threshold=success, failure_threshold=failure), passing=start
    )
    assert [threshold.observe(r == "S") for r in results] == flips


class Recorder:
    """Collects what the prober reports, with the (mock) time of each report."""

    def __init__(self) -> None:
        self.ready: list[tuple[float, bool, str]] = []
        self.failed: list[tuple[float, ProbeKind, str]] = []

    def on_ready(self, ready: bool, message: str) -> None:
        self.ready.append((trio.current_time(), ready, message))

    async def on_failed(self, kind: ProbeKind, message: str) -> None:
        self.failed.append((trio.current_time(), kind, message))


def prober_for(
    engine: FakeEngine, recorder: Recorder, *, age: float = 0.0, **probes: Probe
) -> ContainerProber:
    spec = container(
        liveness=probes.get("liveness"),
        readiness=probes.get("readiness"),
        startup=probes.get("startup"),
    )
    cid = engine.add_foreign("probed", {})
    return ContainerProber(
        engine,
        cid,
        spec,
        address="127.0.0.1",
        age_seconds=age,
        on_ready=recorder.on_ready,
        on_failed=recorder.on_failed,
    )


def scripted(outcomes: Sequence[int]) -> Callable[[str, Sequence[str]], int]:
    """Exit codes in order; the last one repeats."""
    calls = iter(outcomes)
    last = [outcomes[-1]]

    def handler(_cid: str, _command: Sequence[str]) -> int:
        last[0] = next(calls, last[0])
        return last[0]

    return handler


def test_no_readiness_probe_means_ready_at_once() -> None:
    async def main() -> None:
        engine, recorder = FakeEngine(), Recorder()
        prober = prober_for(engine, recorder)
        async with trio.open_nursery() as nursery:
            await nursery.start(prober.run)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert recorder.ready == [(0.0, True, "running")]
        assert prober.ready

    run(main)


def test_readiness_follows_thresholds_on_the_period_grid() -> None:
    async def main() -> None:
        # fail, pass, pass, fail, fail, pass ...
        engine = FakeEngine(exec_handler=scripted([1, 0, 0, 1, 1, 0]))
        recorder = Recorder()
        readiness = exec_probe(
            initial_delay_seconds=5, period_seconds=2, success_threshold=2, failure_threshold=2
        )
        prober = prober_for(engine, recorder, readiness=readiness)
        async with trio.open_nursery() as nursery:
            await nursery.start(prober.run)
            await trio.sleep(20)
            nursery.cancel_scope.cancel()
        # Probes at 5, 7, 9, 11, 13, 15: ready after the 2nd success (9), not ready after the
        # 2nd failure (13), ready again only after two more successes (17).
        assert [(t, r) for t, r, _ in recorder.ready] == [(9.0, True), (13.0, False), (17.0, True)]
        assert recorder.ready[1][2] == "readiness probe failed: exec ['check']: exit code 1"
        assert recorder.failed == []

    run(main)


def test_liveness_failure_asks_for_a_restart_once_and_stops_probing() -> None:
    async def main() -> None:
        engine = FakeEngine(exec_handler=scripted([0, 0, 1]))
        recorder = Recorder()
        liveness = exec_probe(initial_delay_seconds=1, period_seconds=10, failure_threshold=3)
        prober = prober_for(engine, recorder, liveness=liveness)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(prober.run)
            await trio.sleep(200)
            nursery.cancel_scope.cancel()
        # Passes at 1 and 11, fails at 21, 31, 41: the third failure asks for the restart.
        assert recorder.failed == [
            (41.0, ProbeKind.LIVENESS, "liveness probe failed: exec ['check']: exit code 1")
        ]
        assert prober.probes_run == 5

    run(main)


def test_startup_probe_holds_off_the_others_until_it_passes() -> None:
    async def main() -> None:
        engine = FakeEngine(exec_handler=scripted([1, 1, 0]))
        recorder = Recorder()
        startup = exec_probe(period_seconds=1, failure_threshold=30)
        readiness = exec_probe(initial_delay_seconds=0, period_seconds=5)
        prober = prober_for(engine, recorder, startup=startup, readiness=readiness)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(prober.run)
            await trio.sleep(1.5)
            assert not prober.started
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
        assert prober.started
        assert [(t, r) for t, r, _ in recorder.ready] == [(2.0, True)]

    run(main)


def test_startup_failure_asks_for_a_restart() -> None:
    async def main() -> None:
        engine = FakeEngine(exec_handler=scripted([1]))
        recorder = Recorder()
        startup = exec_probe(period_seconds=2, failure_threshold=3)
        prober = prober_for(engine, recorder, startup=startup, readiness=exec_probe())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(prober.run)
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
        assert recorder.failed == [
            (4.0, ProbeKind.STARTUP, "startup probe failed: exec ['check']: exit code 1")
        ]
        assert recorder.ready == []

    run(main)


def test_an_adopted_container_is_probed_without_waiting_the_initial_delay_again() -> None:
    async def main() -> None:
        engine, recorder = FakeEngine(), Recorder()
        readiness = exec_probe(initial_delay_seconds=30, period_seconds=10)
        prober = prober_for(engine, recorder, age=100.0, readiness=readiness)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(prober.run)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert [(t, r) for t, r, _ in recorder.ready] == [(0.0, True)]

    run(main)


async def http_server(nursery: trio.Nursery, response: bytes | None, requests: list[bytes]) -> int:
    """Serves `response` to every connection (None: accept and never answer)."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        requests.append(data)
        if response is None:
            await trio.sleep_forever()
        await stream.send_all(response)
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
    return int(listeners[0].socket.getsockname()[1])


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", (True, "HTTP 200")),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", (True, "HTTP 302")),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", (False, "HTTP 404")),
        (b"HTTP/1.0 500 Oops\r\n\r\n", (False, "HTTP 500")),
        (b"", (False, "connection closed before a response")),
        (None, (False, "no response within 0.5 s")),
    ],
)
def test_http_get(response: bytes | None, expected: tuple[bool, str]) -> None:
    async def main() -> None:
        requests: list[bytes] = []
        async with trio.open_nursery() as nursery:
            port = await http_server(nursery, response, requests)
            result = await http_get(HTTPGetAction(port, "/healthz"), timeout_seconds=0.5)
            nursery.cancel_scope.cancel()
        ok, tail = expected
        assert result == ProbeResult(ok, f"GET http://127.0.0.1:{port}/healthz: {tail}")
        assert requests[0].startswith(b"GET /healthz HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{port}".encode() in requests[0].lower()

    trio.run(main)


def test_http_get_garbage_is_a_failure() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await http_server(nursery, b"SSH-2.0-OpenSSH\r\n\r\n", [])
            result = await http_get(HTTPGetAction(port), timeout_seconds=1)
            nursery.cancel_scope.cancel()
        assert not result.success
        assert result.message.startswith(f"GET http://127.0.0.1:{port}/: ")

    trio.run(main)


def test_http_and_tcp_to_a_closed_port_fail_with_the_reason() -> None:
    async def main() -> None:
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        http = await http_get(HTTPGetAction(port), timeout_seconds=1)
        tcp = await tcp_socket(TCPSocketAction(port), timeout_seconds=1)
        assert http.success is False and tcp.success is False
        assert http.message.startswith(f"GET http://127.0.0.1:{port}/: ")
        assert "refused" in http.message.lower()
        assert tcp.message.startswith(f"connect 127.0.0.1:{port}: ")

    trio.run(main)


def test_tcp_to_a_listening_port_succeeds() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await http_server(nursery, b"", [])
            result = await tcp_socket(TCPSocketAction(port), timeout_seconds=1)
            nursery.cancel_scope.cancel()
        assert result == ProbeResult(True, f"connect 127.0.0.1:{port}: open")

    trio.run(main)
