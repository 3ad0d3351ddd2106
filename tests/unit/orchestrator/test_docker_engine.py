"""The Docker adapter's pulls for tenants, over a fake of the `docker` SDK's low-level client: a
tag is resolved to its digest by the registry and that digest pulled before every create,
anonymously, and the container created from it (no tag of the store is touched); a digest is
taken from the store only if this adapter pulled it; the node-built sandbox image is never
pulled; a pull whose layers pass the size cap is cancelled, an image above it removed again; a
pull that times out is cancelled and frees its slot; private registries are refused. A disk limit
is a quota of the writable layer where the engine has them, found out once per adapter."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests
import trio

from orchestrator import labels
from orchestrator.addresses import private_reason
from orchestrator.docker_engine import MAX_CONCURRENT_PULLS, DockerAdapter
from orchestrator.engine import CreateRequest
from orchestrator.errors import ImageTooLarge, ImageUnavailable
from orchestrator.registry import registry_host, resolve_host
from orchestrator.spec import EnforcedResources, ImagePullPolicy

QUOTA_REFUSAL = "--storage-opt is supported only for overlay over xfs with 'pquota'"
"""dockerd 20.10's refusal of `--storage-opt size` (its message goes on "mount option")."""


def engine_on(driver: str, backing: str) -> dict[str, Any]:
    """The engine's info, as far as quotas go."""
    return {"Driver": driver, "DriverStatus": [["Backing Filesystem", backing]]}


@dataclass
class Image:
    id: str
    size: int = 1000
    digest: str = ""
    progress: list[dict[str, Any]] = field(default_factory=list)
    """What the engine reports while pulling it (before its end)."""
    stalls: bool = False
    """Its registry stops answering in the middle of the pull."""

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = "sha256:" + hashlib.sha256(self.id.encode()).hexdigest()


def repository_of(reference: str) -> str:
    if "@" in reference:
        return reference.split("@", 1)[0]
    head, _, tail = reference.rpartition(":")
    return head if head and "/" not in tail else reference


@dataclass
class FakeApi:
    """The calls of `docker.APIClient` that creating a container makes. `store` is the engine's
    images by reference, `registry` what the registry serves (`NAME:TAG` -> image; its digest
    `NAME@DIGEST` is served too)."""

    store: dict[str, Image] = field(default_factory=dict)
    registry: dict[str, Image] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    auths: list[object] = field(default_factory=list)
    consumed: int = 0
    """Progress messages of pulls read so far."""
    aborted: threading.Event = field(default_factory=threading.Event)
    engine_info: dict[str, Any] = field(default_factory=lambda: engine_on("overlay2", "extfs"))
    """What `info` answers, or None to fail."""
    refuses_quotas: bool = False
    """overlay2 over xfs mounted without `pquota`: a create asking for a size is refused."""
    storage_opts: list[dict[str, str] | None] = field(default_factory=list)
    """The `storage_opt` of each container created."""

    def _missing(self, image: str) -> docker.errors.ImageNotFound:
        return docker.errors.ImageNotFound(f"No such image: {image}", explanation="no such image")

    def _find(self, reference: str) -> Image:
        if reference in self.store:
            return self.store[reference]
        for name, image in self.store.items():
            digest = f"{repository_of(name)}@{image.digest}"
            if reference == image.id or reference == digest:
                return image
        raise self._missing(reference)

    def _served(self, reference: str) -> Image | None:
        if reference in self.registry:
            return self.registry[reference]
        for name, image in self.registry.items():
            if reference == f"{repository_of(name)}@{image.digest}":
                return image
        return None

    def inspect_image(self, reference: str) -> dict[str, Any]:
        self.calls.append(("inspect", reference))
        image = self._find(reference)
        names = [r for r, i in self.store.items() if i.id == image.id]
        return {
            "Id": image.id,
            "Size": image.size,
            "RepoTags": [r for r in names if "@" not in r],
            "RepoDigests": [r for r in names if "@" in r],
        }

    def inspect_distribution(self, reference: str, *, auth_config: object) -> dict[str, Any]:
        self.calls.append(("distribution", reference))
        self.auths.append(auth_config)
        image = self._served(reference)
        if image is None:
            raise docker.errors.NotFound("manifest unknown", explanation="manifest unknown")
        return {"Descriptor": {"digest": image.digest}}

    def pull(
        self, repository: str, tag: str, *, stream: bool, decode: bool, auth_config: object
    ) -> Iterator[dict[str, Any]]:
        reference = f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"
        self.calls.append(("pull", reference))
        self.auths.append(auth_config)
        image = self._served(reference)
        if image is None:
            raise docker.errors.NotFound("pull access denied", explanation="pull access denied")
        return self._progress(reference, image)

    def _progress(self, reference: str, image: Image) -> Iterator[dict[str, Any]]:
        for message in image.progress:
            self.consumed += 1
            yield message
        if image.stalls:
            self.aborted.wait()  # as a read blocked on the engine's socket until it is shut
            raise requests.exceptions.ConnectionError("the connection was shut down")
        self.store[reference] = image
        yield {"status": "Downloaded newer image"}

    def remove_image(self, reference: str) -> None:
        self.calls.append(("remove", reference))
        image = self._find(reference)
        if reference == image.id:
            for name in [r for r, i in self.store.items() if i.id == image.id]:
                del self.store[name]
        else:
            del self.store[reference]

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        return options

    def create_container(self, image: str, **options: Any) -> dict[str, str]:
        self.calls.append(("create", image))
        self._find(image)
        storage_opt = options["host_config"]["storage_opt"]
        if storage_opt and self.refuses_quotas:
            raise docker.errors.APIError(
                "500 Server Error", explanation=f"{QUOTA_REFUSAL} mount option"
            )
        self.storage_opts.append(storage_opt)
        return {"Id": f"c{len(self.calls)}"}

    def info(self) -> dict[str, Any]:
        self.calls.append(("info", ""))
        if self.engine_info is None:
            raise docker.errors.APIError("500 Server Error", explanation="info failed")
        return self.engine_info


@dataclass
class FakePullClient:
    api: FakeApi

    def abort(self) -> None:
        self.api.aborted.set()

    def close(self) -> None:
        pass


def request(
    image: str,
    policy: ImagePullPolicy = ImagePullPolicy.IF_NOT_PRESENT,
    resources: EnforcedResources | None = None,
) -> CreateRequest:
    return CreateRequest(
        name="sm-web-0-main",
        image=image,
        command=(),
        args=("sleep", "1000"),
        env=(),
        labels={},
        resources=resources or EnforcedResources(),
        image_pull_policy=policy,
    )


def adapter_over(api: FakeApi, **options: Any) -> DockerAdapter:
    return DockerAdapter(
        SimpleNamespace(api=api),  # type: ignore[arg-type]
        "fake://engine",
        pull_client=lambda: FakePullClient(api),
        **options,
    )


@pytest.mark.parametrize("policy", list(ImagePullPolicy))
def test_every_create_of_a_tag_pulls_its_digest_first_anonymously_whatever_the_policy(
    policy: ImagePullPolicy,
) -> None:
    image = Image("sha256:a")
    api = FakeApi(registry={"img:1": image})
    adapter = adapter_over(api)

    async def main() -> None:
        for _ in range(3):
            await adapter.create(request("img:1", policy))

    trio.run(main)
    pinned = f"img@{image.digest}"
    # The registry resolves the tag; its digest is pulled and the container created from it.
    assert (
        api.calls
        == [
            ("distribution", "img:1"),
            ("pull", pinned),
            ("inspect", pinned),
            ("create", pinned),
        ]
        * 3
    )
    # An explicit empty auth: None would make the SDK send the operator's stored logins.
    assert api.auths == [{}, {}] * 3
    assert list(api.store) == [pinned]  # no tag made


def test_a_tenants_pull_of_a_name_the_operator_tagged_leaves_the_tag_alone() -> None:
    operators, registrys = Image("sha256:operator"), Image("sha256:registry")
    api = FakeApi(store={"app:1": operators}, registry={"app:1": registrys})
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request("app:1"))
        # The node's cap removal and image GC remove only what the node pulled.
        assert await adapter.remove_pulled_image("sha256:registry", [f"app@{registrys.digest}"])

    trio.run(main)
    assert ("create", f"app@{registrys.digest}") in api.calls
    assert api.store == {"app:1": operators}
    assert not [c for c in api.calls if c == ("remove", "app:1")]


def test_the_gc_leaves_an_image_the_operator_tagged_and_its_digest() -> None:
    shared = Image("sha256:shared")
    api = FakeApi(store={"app:1": shared}, registry={"app:1": shared, "other:2": shared})
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request("app:1"))
        await adapter.create(request("other:2"))
        references = [f"app@{shared.digest}", f"other@{shared.digest}"]
        assert not await adapter.remove_pulled_image("sha256:shared", references)

    trio.run(main)
    # The tag keeps the image and its own repository's digest; the other digest is removed.
    assert sorted(api.store) == ["app:1", f"app@{shared.digest}"]


def test_an_image_only_in_the_engines_store_is_refused_and_never_created() -> None:
    api = FakeApi(store={"operator/secret:1": Image("sha256:s")})
    adapter = adapter_over(api)

    async def main() -> None:
        with pytest.raises(ImageUnavailable) as raised:
            await adapter.create(request("operator/secret:1", ImagePullPolicy.NEVER))
        assert str(raised.value) == (
            "image 'operator/secret:1' is not present and could not be pulled: manifest unknown"
        )
        assert raised.value.reason == "ImagePullBackOff"

    trio.run(main)
    assert api.calls == [("distribution", "operator/secret:1")]


def test_a_digest_never_pulled_here_is_pulled_and_then_taken_from_the_store() -> None:
    digest = "sha256:" + "d" * 64
    api = FakeApi(
        store={f"app@{digest}": Image("sha256:x", digest=digest)},
        registry={f"app@{digest}": Image("sha256:x", digest=digest)},
    )
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request(f"app@{digest}"))
        await adapter.create(request(f"app@{digest}"))
        # Gone from the store since: pulled again.
        api.store.clear()
        await adapter.create(request(f"app@{digest}"))

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
    adapter = adapter_over(api)

    async def main() -> None:
        with pytest.raises(ImageUnavailable) as raised:
            await adapter.create(request(f"private@{digest}"))
        assert raised.value.cause == "manifest unknown"

    trio.run(main)
    assert api.calls == [("distribution", f"private@{digest}")]


def test_the_digest_of_a_tag_pulled_here_is_taken_from_the_store() -> None:
    digest = "sha256:" + "e" * 64
    api = FakeApi(registry={"app:1": Image("sha256:y", digest=digest)})
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request("app:1"))
        api.calls.clear()
        await adapter.create(request(f"app@{digest}"))

    trio.run(main)
    assert ("pull", f"app@{digest}") not in api.calls
    assert ("create", f"app@{digest}") in api.calls


def test_the_sandbox_image_is_never_pulled_even_when_a_tenant_names_it() -> None:
    api = FakeApi(
        store={labels.SANDBOX_IMAGE: Image("sha256:sandbox")},
        registry={labels.SANDBOX_IMAGE: Image("sha256:hostile")},
    )
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request(labels.SANDBOX_IMAGE, ImagePullPolicy.ALWAYS))
        with pytest.raises(ImageUnavailable) as raised:
            await adapter.pull(labels.SANDBOX_IMAGE)
        assert raised.value.cause == "it is built by this node and never pulled"

    trio.run(main)
    assert not [c for c in api.calls if c[0] == "pull"]
    assert api.store[labels.SANDBOX_IMAGE].id == "sha256:sandbox"


def test_an_image_above_the_size_cap_is_removed_again_and_refused() -> None:
    api = FakeApi(registry={"big:1": Image("sha256:big", size=5000)})
    adapter = adapter_over(api, max_image_bytes=4096)

    async def main() -> None:
        with pytest.raises(ImageTooLarge) as raised:
            await adapter.create(request("big:1"))
        assert str(raised.value) == (
            "image 'big:1' is too large for this node: 5000 bytes, above its cap of 4096 bytes "
            "(ImageTooLarge)"
        )
        assert raised.value.reason == "ImageTooLarge"
        assert isinstance(raised.value, ImageUnavailable)

    trio.run(main)
    assert api.store == {}
    assert not [c for c in api.calls if c[0] == "create"]
    assert "sha256:big" not in adapter.image_usage


def test_an_image_at_the_cap_is_accepted_and_recorded_for_the_gc() -> None:
    api = FakeApi(registry={"ok:1": Image("sha256:ok", size=4096)})
    adapter = adapter_over(api, max_image_bytes=4096)
    trio.run(adapter.create, request("ok:1"))
    entry = adapter.image_usage.get("sha256:ok")
    digest = api.registry["ok:1"].digest
    assert entry is not None and entry.references == {f"ok@{digest}"}


def downloading(layer: str, current: int, total: int) -> dict[str, Any]:
    return {
        "status": "Downloading",
        "progressDetail": {"current": current, "total": total},
        "id": layer,
    }


def test_a_pull_whose_layers_pass_the_cap_is_cancelled_as_soon_as_the_engine_reports_them() -> None:
    progress = [
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "a"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "b"},
        downloading("a", 100, 3000),
        downloading("a", 2000, 3000),
        downloading("b", 100, 3000),  # 6000 in all: above the cap
        downloading("b", 2000, 3000),
        downloading("a", 3000, 3000),
    ]
    api = FakeApi(registry={"huge:1": Image("sha256:huge", size=6000, progress=progress)})
    adapter = adapter_over(api, max_image_bytes=4096)

    async def main() -> None:
        with pytest.raises(ImageTooLarge) as raised:
            await adapter.create(request("huge:1"))
        assert str(raised.value) == (
            "image 'huge:1' is too large for this node: 6000 bytes, above its cap of 4096 bytes "
            "(ImageTooLarge)"
        )

    trio.run(main)
    assert api.consumed == 5  # nothing read after the message that passed the cap
    assert api.aborted.is_set()  # the connection is shut down: the engine cancels the pull
    assert api.store == {}
    assert "sha256:huge" not in adapter.image_usage


def test_a_registry_that_sends_more_than_its_manifest_says_is_counted_by_what_it_sent() -> None:
    progress = [downloading("a", 1000, 10), downloading("a", 5000, 10)]
    api = FakeApi(registry={"liar:1": Image("sha256:liar", progress=progress)})
    adapter = adapter_over(api, max_image_bytes=4096)

    async def main() -> None:
        with pytest.raises(ImageTooLarge) as raised:
            await adapter.create(request("liar:1"))
        assert raised.value.size_bytes == 5000

    trio.run(main)


def test_pulls_that_time_out_are_cancelled_and_free_their_slots() -> None:
    stalled = {f"stall{i}:1": Image(f"sha256:s{i}", stalls=True) for i in range(4)}
    api = FakeApi(registry={**stalled, "ok:1": Image("sha256:ok")})
    adapter = adapter_over(api, pull_timeout_seconds=0.5)

    async def main() -> float:
        failures: list[ImageUnavailable] = []

        async def pull(name: str) -> None:
            try:
                await adapter.pull(name)
            except ImageUnavailable as e:
                failures.append(e)

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name in stalled:
                nursery.start_soon(pull, name)
        assert [f.cause for f in failures] == ["the pull did not finish within 0.5 s"] * 4
        # Every pull's thread has ended: no slot is held, the next pull goes ahead.
        with trio.fail_after(2):
            while adapter._pull_limiter.borrowed_tokens:  # noqa: ASYNC110 (threads report back)
                await trio.sleep(0.01)
        assert adapter._pull_limiter.total_tokens == MAX_CONCURRENT_PULLS
        await adapter.pull("ok:1")
        return trio.current_time() - started

    elapsed = trio.run(main)
    assert elapsed < 3
    assert {f"stall{i}:1" for i in range(4)}.isdisjoint(api.store)


@pytest.mark.parametrize(
    ("image", "host"),
    [
        ("busybox", None),
        ("library/busybox:1", None),
        ("statemesh-test/busybox:1", None),
        ("docker.io/library/busybox", None),
        ("index.docker.io/x/y:1", None),
        ("localhost/app:1", "localhost"),
        ("localhost:5000/app", "localhost"),
        ("127.0.0.1:5000/app:1", "127.0.0.1"),
        ("10.1.2.3/app@sha256:" + "a" * 64, "10.1.2.3"),
        ("[::1]:5000/app:1", "::1"),
        ("registry.example.com/team/app:2", "registry.example.com"),
        ("Intranet/app:1", "Intranet"),
    ],
)
def test_the_registry_host_follows_dockers_reference_rules(image: str, host: str | None) -> None:
    assert registry_host(image) == host


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.9.9.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("0.0.0.0", "the unspecified address"),
        ("0.1.2.3", "the unspecified address"),
        ("::", "the unspecified address"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("100.64.0.1", "a private address"),
        ("fd00::1", "a private address"),
        ("2002:c0a8:0101::1", "a private address"),
        ("64:ff9b::a00:1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_which_registry_addresses_only_the_node_reaches(address: str, what: str | None) -> None:
    assert private_reason(address) == what


@pytest.mark.parametrize(
    ("image", "addresses", "shown", "what"),
    [
        ("127.0.0.1:5000/app:1", ["127.0.0.1"], "127.0.0.1", "a loopback address"),
        (
            "localhost:5000/app:1",
            ["::1", "127.0.0.1"],
            "localhost (::1)",
            "a loopback address",
        ),
        ("registry.corp/app:1", ["10.2.3.4"], "registry.corp (10.2.3.4)", "a private address"),
        (
            "rebound.example.com/app:1",
            ["93.184.216.34", "169.254.169.254"],
            "rebound.example.com (169.254.169.254)",
            "a link-local address",
        ),
    ],
)
def test_an_image_from_a_registry_only_the_node_reaches_is_refused(
    image: str, addresses: list[str], shown: str, what: str
) -> None:
    api = FakeApi(registry={image: Image("sha256:i")})
    adapter = adapter_over(api)
    adapter.resolve_host = lambda host: addresses

    async def main() -> None:
        with pytest.raises(ImageUnavailable) as raised:
            await adapter.create(request(image))
        assert raised.value.cause == (
            f"its registry {shown} is {what}, which only this node reaches; tenants' images "
            "come from public registries (a node may allow private ones with "
            "--allow-private-registries)"
        )
        assert raised.value.reason == "ImagePullBackOff"

    trio.run(main)
    assert api.calls == []  # the engine is never asked

    allowed = adapter_over(api, allow_private_registries=True)
    allowed.resolve_host = lambda host: addresses
    trio.run(allowed.create, request(image))


def test_a_registry_host_that_does_not_resolve_is_refused_and_hub_names_are_not_resolved() -> None:
    api = FakeApi(registry={"nowhere.invalid/app:1": Image("sha256:n"), "app:1": Image("sha256:a")})
    adapter = adapter_over(api)
    asked: list[str] = []

    def resolve(host: str) -> list[str]:
        asked.append(host)
        raise OSError("Name or service not known")

    adapter.resolve_host = resolve

    async def main() -> None:
        with pytest.raises(ImageUnavailable) as raised:
            await adapter.create(request("nowhere.invalid/app:1"))
        assert raised.value.cause == (
            "its registry host nowhere.invalid does not resolve: Name or service not known"
        )
        # A Docker Hub name goes to the engine, and through its mirror if it has one.
        await adapter.create(request("app:1"))

    trio.run(main)
    assert asked == ["nowhere.invalid"]


def test_the_real_resolver_reduces_numeric_forms_to_the_address_they_name() -> None:
    # No network needed: numeric hosts and /etc/hosts' localhost.
    assert resolve_host("0x7f.1") == ["127.0.0.1"]
    assert private_reason(resolve_host("2130706433")[0]) == "a loopback address"
    assert "127.0.0.1" in resolve_host("localhost")


LIMITED = EnforcedResources(disk_bytes=10 * 2**20)


@pytest.mark.parametrize(
    ("info", "refuses", "quota", "found", "said"),
    [
        # overlay2 over xfs with pquota: every limited container gets a quota of its limit.
        (engine_on("overlay2", "xfs"), False, [{"size": "10485760"}] * 2, True, "caps each"),
        # overlay2 over xfs without pquota: refused once, then never asked for again.
        (engine_on("overlay2", "xfs"), True, [None] * 2, False, f"refuses them: {QUOTA_REFUSAL}"),
        # This machine's engine, and drivers that are not overlay2: never asked for.
        (engine_on("overlay2", "extfs"), False, [None] * 2, False, "overlay2 on extfs"),
        (engine_on("vfs", "xfs"), False, [None] * 2, False, "vfs on xfs"),
        ({"Driver": "overlay2"}, False, [None] * 2, False, "overlay2 on an unknown filesystem"),
    ],
)
def test_a_disk_limit_is_a_quota_where_the_engine_has_them_and_creates_never_fail_without(
    info: dict[str, Any],
    refuses: bool,
    quota: list[dict[str, str] | None],
    found: bool,
    said: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The node-built image is created as it is: no pulls among the calls.
    pinned = labels.SANDBOX_IMAGE
    api = FakeApi(store={pinned: Image("sha256:a")}, engine_info=info, refuses_quotas=refuses)
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request(pinned, resources=LIMITED))
        await adapter.create(request(pinned, resources=LIMITED))
        await adapter.create(request(pinned))

    caplog.set_level(logging.INFO, logger="statemesh.docker")
    trio.run(main)
    assert api.storage_opts == [*quota, None]
    assert adapter.disk_quotas is found
    # The engine is asked once; a refused quota costs one create more, once.
    tried = [("create", pinned)] if refuses else []
    assert api.calls == [("info", ""), *tried] + [("create", pinned)] * 3
    # The node says once which enforcement it has.
    (line,) = [r.getMessage() for r in caplog.records if "disk limits" in r.getMessage()]
    assert said in line
    assert ("measures and evicts too" if found else "measurement and eviction only") in line


def test_an_unreadable_engine_info_creates_without_a_quota_and_asks_again_next_time() -> None:
    pinned = labels.SANDBOX_IMAGE
    api = FakeApi(store={pinned: Image("sha256:a")}, engine_info=None)
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request(pinned, resources=LIMITED))
        api.engine_info = engine_on("overlay2", "xfs")
        await adapter.create(request(pinned, resources=LIMITED))

    trio.run(main)
    assert api.storage_opts == [None, {"size": "10485760"}]
    assert adapter.disk_quotas is True


def test_a_create_that_fails_for_another_reason_decides_nothing_about_quotas() -> None:
    api = FakeApi(engine_info=engine_on("overlay2", "xfs"))  # the sandbox image is missing
    adapter = adapter_over(api)

    async def main() -> None:
        with pytest.raises(ImageUnavailable):
            await adapter.create(request(labels.SANDBOX_IMAGE, resources=LIMITED))

    trio.run(main)
    assert adapter.disk_quotas is None
    assert api.calls == [("info", ""), ("create", labels.SANDBOX_IMAGE)]


def test_an_engine_that_stops_having_quotas_still_creates_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Restarted on another data root: the quota it had is refused from then on.
    pinned = labels.SANDBOX_IMAGE
    api = FakeApi(store={pinned: Image("sha256:a")}, engine_info=engine_on("overlay2", "xfs"))
    adapter = adapter_over(api)

    async def main() -> None:
        await adapter.create(request(pinned, resources=LIMITED))
        api.refuses_quotas = True
        await adapter.create(request(pinned, resources=LIMITED))
        await adapter.create(request(pinned, resources=LIMITED))

    caplog.set_level(logging.INFO, logger="statemesh.docker")
    trio.run(main)
    assert api.storage_opts == [{"size": "10485760"}, None, None]
    assert adapter.disk_quotas is False
    said = [r.getMessage() for r in caplog.records if "disk limits" in r.getMessage()]
    assert [("caps each" in line, "eviction only" in line) for line in said] == [
        (True, False),
        (False, True),
    ]
