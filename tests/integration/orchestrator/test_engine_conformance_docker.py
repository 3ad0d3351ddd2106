"""The Docker adapter passes the engine conformance checks on the real engine."""

from __future__ import annotations

import uuid

import pytest
import trio

from orchestrator import labels
from orchestrator.docker_engine import DockerAdapter
from tests.integration.docker_harness import DockerEngine
from tests.unit.orchestrator.engine_conformance import CHECKS, Check

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("check", CHECKS.values(), ids=list(CHECKS))
def test_docker_adapter_conforms(
    check: Check, docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    async def main() -> None:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            tag = {"conformance": uuid.uuid4().hex[:8], **labels.owner_labels(node_id)}
            await check(adapter, busybox_image, tag)
        finally:
            adapter.close()

    trio.run(main)
