from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from orchestrator import labels
from tests.integration.docker_harness import DockerEngine, remove_labelled


@pytest.fixture
def node_id(docker_engine: DockerEngine) -> Iterator[str]:
    """A node id of its own for each test; whatever carries it is removed afterwards."""
    node = f"test-{uuid.uuid4().hex[:10]}"
    try:
        yield node
    finally:
        remove_labelled(docker_engine.client, labels.owner_labels(node))
