"""Finding and connecting to this node's container engine: `--docker-host`, else DOCKER_HOST,
else the default socket. An engine that does not answer is an `EngineUnavailable` error, and
the node then runs without compute."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from orchestrator.docker_engine import DockerAdapter
from orchestrator.engine import EngineInfo
from orchestrator.errors import EngineFailure, EngineUnavailable

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class ConnectedEngine:
    """A connected engine and what it said about itself."""

    docker: DockerAdapter
    info: EngineInfo


def resolve_docker_host(flag: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The engine address: the flag, then DOCKER_HOST, then the default socket."""
    if flag:
        return flag
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


async def connect_engine(
    docker_host: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    timeout_seconds: float = 10.0,
) -> ConnectedEngine:
    """Connects and asks the engine about itself within `timeout_seconds`.

    Raises `EngineUnavailable` with the address tried and why it failed."""
    host = resolve_docker_host(docker_host, environ)
    if host.startswith("unix://") and not await trio.Path(host.removeprefix("unix://")).exists():
        raise EngineUnavailable(host, "the socket does not exist")
    try:
        with trio.fail_after(timeout_seconds):
            docker = await DockerAdapter.connect(host, timeout_seconds=timeout_seconds)
            try:
                info = await docker.info()
            except BaseException:
                docker.close()
                raise
    except trio.TooSlowError:
        raise EngineUnavailable(host, f"no answer within {timeout_seconds} s") from None
    except EngineUnavailable:
        raise
    except EngineFailure as e:
        raise EngineUnavailable(host, e.message) from e
    return ConnectedEngine(docker, info)
