"""The tests' session fixtures for a real Docker engine and registry (`testkit.engines`, which the
benchmarks share, holds the engine itself).

In a conftest.py, `docker_engine = docker_harness.docker_engine` (likewise `docker_client`,
`busybox_image`) makes the session fixtures available."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from orchestrator.dockerd import EngineStartError, EngineStartReason
from orchestrator.registry import RegistryError
from testkit.engines import BUSYBOX_IMAGE as BUSYBOX_IMAGE
from testkit.engines import EXAMPLE_IMAGE as EXAMPLE_IMAGE
from testkit.engines import DockerEngine as DockerEngine
from testkit.engines import EngineSetupError as EngineSetupError
from testkit.engines import XfsUnavailable as XfsUnavailable
from testkit.engines import connect_or_start as connect_or_start
from testkit.engines import ensure_busybox_image as ensure_busybox_image
from testkit.engines import free_port as free_port
from testkit.engines import image_with as image_with
from testkit.engines import open_engine as open_engine
from testkit.engines import publish as publish
from testkit.engines import remove_labelled as remove_labelled
from testkit.engines import restart_engine as restart_engine
from testkit.engines import session_registry as session_registry
from testkit.engines import start_private_engine as start_private_engine
from testkit.engines import stop_engine as stop_engine


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    try:
        engine = connect_or_start()
    except EngineStartError as e:
        if e.reason in (EngineStartReason.NOT_INSTALLED, EngineStartReason.NOT_ROOT):
            pytest.skip(f"no Docker engine can be started: {e.message}")
        raise
    except RegistryError as e:
        if "not installed" in str(e):
            pytest.skip(str(e))
        raise
    try:
        yield engine
    finally:
        stop_engine(engine)


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> docker.DockerClient:
    return docker_engine.client


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    return ensure_busybox_image(docker_client)
