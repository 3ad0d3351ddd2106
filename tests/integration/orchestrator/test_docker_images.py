"""The Docker adapter creates from an image it has seen without asking about it again, and
notices on the real engine when that image is gone."""

from __future__ import annotations

import contextlib
import uuid

import docker
import pytest
import trio

from orchestrator import labels
from orchestrator.docker_runtime import DockerRuntime
from orchestrator.errors import ImageUnavailable
from orchestrator.runtime import CreateRequest
from orchestrator.spec import ImagePullPolicy, Resources
from tests.integration.docker_harness import DockerEngine

pytestmark = pytest.mark.integration


def test_an_image_removed_after_a_create_is_looked_for_again(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    client: docker.DockerClient = docker_engine.client
    repository = f"statemesh-test/gone-{uuid.uuid4().hex[:8]}"
    image = f"{repository}:1"

    def request(name: str) -> CreateRequest:
        return CreateRequest(
            name=f"{node_id}-{name}",
            image=image,
            command=(),
            args=("sleep", "1000"),
            env=(),
            labels=labels.owner_labels(node_id),
            resources=Resources(),
            image_pull_policy=ImagePullPolicy.NEVER,
        )

    async def main() -> None:
        runtime = await DockerRuntime.connect(docker_engine.host)
        try:
            await runtime.create(request("first"))
            client.images.remove(image)  # the tag only: the busybox image stays
            with pytest.raises(ImageUnavailable) as raised:
                await runtime.create(request("second"))
            assert str(raised.value) == (
                f"image {image!r} is not present and could not be pulled: "
                "it is not present and the pull policy is Never"
            )
            client.images.get(busybox_image).tag(repository, "1")
            await runtime.create(request("third"))
        finally:
            runtime.close()

    client.images.get(busybox_image).tag(repository, "1")
    try:
        trio.run(main)
    finally:
        # Untagging leaves the busybox image; node_id's fixture removes the containers.
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image)
