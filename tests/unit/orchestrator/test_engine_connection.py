"""Finding the engine: flag, then DOCKER_HOST, then the default socket; and clear errors."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import trio

from orchestrator.engine_connection import DEFAULT_DOCKER_HOST, connect_engine, resolve_docker_host
from orchestrator.errors import EngineUnavailable


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        ("unix:///flag.sock", {"DOCKER_HOST": "tcp://127.0.0.1:2375"}, "unix:///flag.sock"),
        (None, {"DOCKER_HOST": "tcp://127.0.0.1:2375"}, "tcp://127.0.0.1:2375"),
        (None, {"DOCKER_HOST": ""}, DEFAULT_DOCKER_HOST),
        (None, {}, DEFAULT_DOCKER_HOST),
    ],
)
def test_the_engine_address_comes_from_flag_then_environment_then_default(
    flag: str | None, environ: dict[str, str], expected: str
) -> None:
    assert resolve_docker_host(flag, environ) == expected
    assert DEFAULT_DOCKER_HOST == "unix:///var/run/docker.sock"


def test_a_missing_socket_means_no_compute(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/docker.sock"
    with pytest.raises(EngineUnavailable) as raised:
        trio.run(lambda: connect_engine(host))
    assert str(raised.value) == (
        f"no container engine answers at {host}: the socket does not exist; "
        "this node offers no compute"
    )


def test_a_closed_tcp_port_means_no_compute() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"tcp://127.0.0.1:{port}"
    with pytest.raises(EngineUnavailable) as raised:
        trio.run(lambda: connect_engine(None, environ={"DOCKER_HOST": host}, timeout_seconds=5))
    message = str(raised.value)
    assert message.startswith(f"no container engine answers at {host}: ")
    assert message.endswith("; this node offers no compute")
    assert "Connection refused" in message


def test_a_socket_that_never_answers_times_out(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    try:
        with pytest.raises(EngineUnavailable) as raised:
            trio.run(lambda: connect_engine(f"unix://{path}", timeout_seconds=0.5))
        assert str(raised.value) == (
            f"no container engine answers at unix://{path}: no answer within 0.5 s; "
            "this node offers no compute"
        )
    finally:
        for conn in accepted:
            conn.close()
        server.close()
