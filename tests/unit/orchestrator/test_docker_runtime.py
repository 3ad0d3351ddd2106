"""The Docker adapter's pulls for tenants, over a fake of the `docker` SDK's low-level client: a
tag is pulled before every create, anonymously; a digest is taken from the store only if this
runtime pulled it; the node-built sandbox image is never pulled; an image above the size cap is
removed again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import trio

from orchestrator import labels
from orchestrator.docker_runtime import DockerRuntime
from orchestrator.errors import ImageTooLarge, ImageUnavailable
from orchestrator.runtime import CreateRequest
from orchestrator.spec import ImagePullPolicy, Resources


@dataclass
class Image:
    id: str
    size: int = 1000
    digest: str = ""


@dataclass
class FakeApi:
    """The calls of `docker.APIClient` that creating a container makes. `store` is the engine's
    images by reference, `registry` what a pull finds (reference -> image)."""

    store: dict[str, Image] = field(default_factory=dict)
    registry: dict[str, Image] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    auths: list[object] = field(default_factory=list)

    def _missing(self, image: str) -> docker.errors.ImageNotFound:
        return docker.errors.ImageNotFound(f"No such image: {image}", explanation="no such image")

    def _find(self, reference: str) -> Image:
        if reference in self.store:
            return self.store[reference]
        for name, image in self.store.items():
            digest = f"{name.rsplit(':', 1)[0]}@{image.digest}"
            if reference == image.id or (image.digest and reference == digest):
                return image
        raise self._missing(reference)

    def inspect_image(self, reference: str) -> dict[str, Any]:
        self.calls.append(("inspect", reference))
        image = self._find(reference)
        tags = [r for r, i in self.store.items() if i.id == image.id and "@" not in r]
        name = tags[0].rsplit(":", 1)[0] if tags else ""
        digests = [f"{name}@{image.digest}"] if image.digest and name else []
        return {"Id": image.id, "Size": image.size, "RepoTags": tags, "RepoDigests": digests}

    def pull(
        self, repository: str, tag: str, *, stream: bool, decode: bool, auth_config: object
    ) -> Iterator[dict[str, str]]:
        reference = f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"
        self.calls.append(("pull", reference))
        self.auths.append(auth_config)
        if reference not in self.registry:
            raise docker.errors.NotFound("pull access denied", explanation="pull access denied")
        self.store[reference] = self.registry[reference]
        yield {"status": "Downloaded newer image"}

    def inspect_distribution(self, reference: str, *, auth_config: object) -> dict[str, Any]:
        self.calls.append(("distribution", reference))
        self.auths.append(auth_config)
        if reference not in self.registry:
            raise docker.errors.NotFound("manifest unknown", explanation="manifest unknown")
        return {"Descriptor": {"digest": reference.split("@")[-1]}}

    def remove_image(self, reference: str) -> None:
        self.calls.append(("remove", reference))
        image = self._find(reference)
        for name in [r for r, i in self.store.items() if r == reference or reference == i.id]:
            del self.store[name]
        del image

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        return options

    def create_container(self, image: str, **options: Any) -> dict[str, str]:
        self.calls.append(("create", image))
        self._find(image)
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


def runtime_over(api: FakeApi, **options: Any) -> DockerRuntime:
    return DockerRuntime(SimpleNamespace(api=api), "fake://engine", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", list(ImagePullPolicy))
def test_every_create_of_a_tag_pulls_it_first_anonymously_whatever_the_policy(
    policy: ImagePullPolicy,
) -> None:
    api = FakeApi(registry={"img:1": Image("sha256:a")})
    runtime = runtime_over(api)

    async def main() -> None:
        for _ in range(3):
            await runtime.create(request("img:1", policy))

    trio.run(main)
    assert api.calls == [("pull", "img:1"), ("inspect", "img:1"), ("create", "img:1")] * 3
    # An explicit empty auth: None would make the SDK send the operator's stored logins.
    assert api.auths == [{}, {}, {}]
    assert all(auth is not None for auth in api.auths)


def test_an_image_only_in_the_engines_store_is_refused_and_never_created() -> None:
    api = FakeApi(store={"operator/secret:1": Image("sha256:s")})
    runtime = runtime_over(api)

    async def main() -> None:
        with pytest.raises(ImageUnavailable) as raised:
            await runtime.create(request("operator/secret:1", ImagePullPolicy.NEVER))
        assert str(raised.value) == (
            "image 'operator/secret:1' is not present and could not be pulled: "
            "pull access denied"
        )
        assert raised.value.reason == "ImagePullBackOff"

    trio.run(main)
    assert ("create", "operator/secret:1") not in api.calls


def test_a_digest_never_pulled_here_is_pulled_and_then_taken_from_the_store() -> None:
    digest = "sha256:" + "d" * 64
    api = FakeApi(
        store={f"app@{digest}": Image("sha256:x", digest=digest)},
        registry={f"app@{digest}": Image("sha256:x", digest=digest)},
    )
    runtime = runtime_over(api)

    async def main() -> None:
        await runtime.create(request(f"app@{digest}"))
        await runtime.create(request(f"app@{digest}"))
        # Gone from the store since: pulled again.
        api.store.clear()
        await runtime.create(request(f"app@{digest}"))

    trio.run(main)
    pulls = [c for c in api.calls if c[0] in ("pull", "distribution")]
    # The registry is asked first: the engine would not ask it about a digest it has.
    assert pulls == [("distribution", f"app@{digest}"), ("pull", f"app@{digest}")] * 2
    assert api.auths == [{}] * 4
    # The third create finds the image gone, pulls it and creates again.
    assert [c for c in api.calls if c[0] == "create"] == [("create", f"app@{digest}")] * 4


def test_a_digest_the_operator_has_but_the_registry_does_not_serve_is_refused() -> None:
    digest = "sha256:" + "f" * 64
    api = FakeApi(store={f"private@{digest}": Image("sha256:p", digest=digest)})
    runtime = runtime_over(api)

    async def main() -> None:
        with pytest.raises(ImageUnavailable) as raised:
            await runtime.create(request(f"private@{digest}"))
        assert raised.value.cause == "manifest unknown"

    trio.run(main)
    assert api.calls == [("distribution", f"private@{digest}")]


def test_the_digest_of_a_tag_pulled_here_is_taken_from_the_store() -> None:
    digest = "sha256:" + "e" * 64
    api = FakeApi(registry={"app:1": Image("sha256:y", digest=digest)})
    runtime = runtime_over(api)

    async def main() -> None:
        await runtime.create(request("app:1"))
        api.calls.clear()
        await runtime.create(request(f"app@{digest}"))

    trio.run(main)
    assert ("pull", f"app@{digest}") not in api.calls
    assert ("create", f"app@{digest}") in api.calls


def test_the_sandbox_image_is_never_pulled_even_when_a_tenant_names_it() -> None:
    api = FakeApi(
        store={labels.SANDBOX_IMAGE: Image("sha256:sandbox")},
        registry={labels.SANDBOX_IMAGE: Image("sha256:hostile")},
    )
    runtime = runtime_over(api)

    async def main() -> None:
        await runtime.create(request(labels.SANDBOX_IMAGE, ImagePullPolicy.ALWAYS))
        with pytest.raises(ImageUnavailable) as raised:
            await runtime.pull(labels.SANDBOX_IMAGE)
        assert raised.value.cause == "it is built by this node and never pulled"

    trio.run(main)
    assert not [c for c in api.calls if c[0] == "pull"]
    assert api.store[labels.SANDBOX_IMAGE].id == "sha256:sandbox"


def test_an_image_above_the_size_cap_is_removed_again_and_refused() -> None:
    api = FakeApi(registry={"big:1": Image("sha256:big", size=5000)})
    runtime = runtime_over(api, max_image_bytes=4096)

    async def main() -> None:
        with pytest.raises(ImageTooLarge) as raised:
            await runtime.create(request("big:1"))
        assert str(raised.value) == (
            "image 'big:1' is too large for this node: 5000 bytes, above its cap of 4096 bytes "
            "(ImageTooLarge)"
        )
        assert raised.value.reason == "ImageTooLarge"
        assert isinstance(raised.value, ImageUnavailable)

    trio.run(main)
    assert "big:1" not in api.store
    assert ("create", "big:1") not in api.calls
    assert "sha256:big" not in runtime.image_usage


def test_an_image_at_the_cap_is_accepted_and_recorded_for_the_gc() -> None:
    api = FakeApi(registry={"ok:1": Image("sha256:ok", size=4096)})
    runtime = runtime_over(api, max_image_bytes=4096)
    trio.run(runtime.create, request("ok:1"))
    entry = runtime.image_usage.get("sha256:ok")
    assert entry is not None and entry.references == {"ok:1"}
