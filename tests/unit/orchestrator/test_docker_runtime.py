"""The Docker adapter's use of the engine's images, over a fake of the `docker` SDK's low-level
client: an image is asked about until it is seen present, and again once the engine says it
is gone."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import trio

from orchestrator.docker_runtime import DockerRuntime
from orchestrator.errors import ImageUnavailable
from orchestrator.runtime import CreateRequest
from orchestrator.spec import ImagePullPolicy, Resources


class FakeApi:
    """The calls of `docker.APIClient` that creating a container makes, over a set of images;
    `pull` finds every image in `registry`."""

    def __init__(self, images: set[str], registry: set[str] | None = None) -> None:
        self.images = images
        self.registry = registry or set()
        self.calls: list[tuple[str, str]] = []

    def _missing(self, image: str) -> docker.errors.ImageNotFound:
        return docker.errors.ImageNotFound(f"No such image: {image}", explanation="no such image")

    def inspect_image(self, image: str) -> dict[str, Any]:
        self.calls.append(("inspect", image))
        if image not in self.images:
            raise self._missing(image)
        return {"Id": image}

    def pull(self, repository: str, tag: str) -> None:
        image = f"{repository}:{tag}"
        self.calls.append(("pull", image))
        if image not in self.registry:
            raise docker.errors.NotFound("pull access denied", explanation="pull access denied")
        self.images.add(image)

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        return options

    def create_container(self, image: str, **options: Any) -> dict[str, str]:
        self.calls.append(("create", image))
        if image not in self.images:
            raise self._missing(image)
        return {"Id": f"c{len(self.calls)}"}


def request(image: str, policy: ImagePullPolicy = ImagePullPolicy.IF_NOT_PRESENT) -> CreateRequest:
    return CreateRequest(
        name="sm-web-0-main",
        image=image,
        command=(),
        args=("sleep", "1000"),
        env=(),
        labels={},
        resources=Resources(),
        image_pull_policy=policy,
    )


def runtime_over(api: FakeApi) -> DockerRuntime:
    return DockerRuntime(SimpleNamespace(api=api), "fake://engine")  # type: ignore[arg-type]


def test_an_image_seen_present_is_not_asked_about_again() -> None:
    api = FakeApi({"img:1"})
    runtime = runtime_over(api)

    async def main() -> None:
        for _ in range(3):
            await runtime.create(request("img:1"))

    trio.run(main)
    assert api.calls == [("inspect", "img:1")] + [("create", "img:1")] * 3


def test_an_image_gone_since_is_looked_for_again_and_pulled() -> None:
    api = FakeApi({"img:1"}, registry={"img:1"})
    runtime = runtime_over(api)

    async def main() -> None:
        await runtime.create(request("img:1"))
        api.images.clear()
        api.calls.clear()
        await runtime.create(request("img:1"))

    trio.run(main)
    assert api.calls == [
        ("create", "img:1"),
        ("inspect", "img:1"),
        ("pull", "img:1"),
        ("create", "img:1"),
    ]


def test_an_image_gone_under_the_never_policy_is_image_pull_backoff() -> None:
    api = FakeApi({"img:1"})
    runtime = runtime_over(api)

    async def main() -> None:
        await runtime.create(request("img:1", ImagePullPolicy.NEVER))
        api.images.clear()
        with pytest.raises(ImageUnavailable) as raised:
            await runtime.create(request("img:1", ImagePullPolicy.NEVER))
        assert str(raised.value) == (
            "image 'img:1' is not present and could not be pulled: "
            "it is not present and the pull policy is Never"
        )
        api.images.add("img:1")
        await runtime.create(request("img:1", ImagePullPolicy.NEVER))

    trio.run(main)
    assert api.calls[-2:] == [("inspect", "img:1"), ("create", "img:1")]


def test_the_always_policy_pulls_before_every_create() -> None:
    api = FakeApi({"img:1"}, registry={"img:1"})
    runtime = runtime_over(api)

    async def main() -> None:
        for _ in range(2):
            await runtime.create(request("img:1", ImagePullPolicy.ALWAYS))

    trio.run(main)
    assert api.calls == [("pull", "img:1"), ("create", "img:1")] * 2
