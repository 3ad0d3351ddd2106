"""Images pulled for the tenant, on a real engine and a real registry (Debian's docker-registry):
an image only the operator has is never run; a name the operator has is pulled fresh from the
registry (as the digest the registry resolves it to: the operator's tag stays); a digest is
taken from the store only if the node pulled it; the operator's registry logins are never sent;
an image above the size cap is refused and removed; the image GC removes unused images the node
pulled, least recently used first, and nothing else."""

from __future__ import annotations

import base64
import contextlib
import crypt
import json
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import trio

from orchestrator import labels
from orchestrator.docker_engine import DockerAdapter
from orchestrator.engine import CreateRequest
from orchestrator.errors import ImageTooLarge, ImageUnavailable
from orchestrator.image_gc import ImageCollector, ImageGcPolicy, disk_usage
from orchestrator.registry import LocalRegistry
from orchestrator.spec import EnforcedResources, ImagePullPolicy
from tests.integration.docker_harness import (
    DockerEngine,
    ensure_busybox_image,
    image_with,
    publish,
    session_registry,
    start_private_engine,
    stop_engine,
)

pytestmark = pytest.mark.integration


def unique(what: str) -> str:
    return f"statemesh-test/{what}-{uuid.uuid4().hex[:8]}"


def request(node_id: str, name: str, image: str, *args: str) -> CreateRequest:
    return CreateRequest(
        name=f"{node_id}-{name}",
        image=image,
        command=(),
        args=args or ("sh", "-c", "cat /content"),
        env=(),
        labels=labels.owner_labels(node_id),
        resources=EnforcedResources(),
        image_pull_policy=ImagePullPolicy.IF_NOT_PRESENT,
    )


async def output_of(adapter: DockerAdapter, client: docker.DockerClient, cid: str) -> bytes:
    await adapter.start(cid)
    await trio.to_thread.run_sync(lambda: client.api.wait(cid, timeout=30))
    return await adapter.logs(cid)


def pull_failed(cause: str) -> bool:
    """The engine's words for a pull that found nothing: past the mirror it asks Docker Hub,
    which these machines cannot reach."""
    return any(s in cause for s in ("registry-1.docker.io", "not found", "manifest unknown"))


def present(client: docker.DockerClient, reference: str) -> bool:
    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def names_of(client: docker.DockerClient, node_id: str) -> list[str]:
    rows = client.api.containers(all=True, filters={"label": f"statemesh.node={node_id}"})
    return [str(r["Names"][0]).lstrip("/") for r in rows]


@pytest.fixture
def images(docker_engine: DockerEngine) -> Iterator[list[str]]:
    """References a test makes; removed (untagged) afterwards."""
    made: list[str] = []
    yield made
    for reference in made:
        with contextlib.suppress(docker.errors.APIError):
            docker_engine.client.images.remove(reference, force=True)


def test_an_image_only_in_the_engines_store_is_refused_and_never_run(
    docker_engine: DockerEngine, busybox_image: str, node_id: str, images: list[str]
) -> None:
    client = docker_engine.client
    secret = f"{unique('operator-only')}:1"
    images.append(secret)
    image_with(client, busybox_image, secret, "operator-private")

    async def main() -> None:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            with pytest.raises(ImageUnavailable) as raised:
                await adapter.create(request(node_id, "secret", secret))
        finally:
            adapter.close()
        assert raised.value.reason == "ImagePullBackOff"
        assert str(raised.value).startswith(
            f"image {secret!r} is not present and could not be pulled: "
        )
        # Neither the mirror nor Docker Hub (unreachable here) has it: the pull's error says so.
        assert pull_failed(raised.value.cause), raised.value.cause

    trio.run(main)
    assert names_of(client, node_id) == []
    assert present(client, secret)  # the operator's copy stays


def test_a_name_the_operator_has_is_pulled_fresh_and_the_tenant_sees_the_registrys_content(
    docker_engine: DockerEngine, busybox_image: str, node_id: str, images: list[str]
) -> None:
    client = docker_engine.client
    name = f"{unique('shadowed')}:1"
    images.append(name)
    image_with(client, busybox_image, name, "from-the-registry")
    publish(client, name)
    operators = image_with(client, busybox_image, name, "operator-private")  # retagged locally

    async def main() -> bytes:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            cid = await adapter.create(request(node_id, "reader", name))
            return await output_of(adapter, client, cid)
        finally:
            adapter.close()

    assert trio.run(main).strip() == b"from-the-registry"
    # The tenant's pull was by digest: the operator's tag still names the operator's image.
    assert client.images.get(name).id == operators


def _delete_manifest(registry: LocalRegistry, repository: str, digest: str) -> None:
    url = f"{registry.url}/v2/{repository}/manifests/{digest}"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10) as r:
        assert r.status == 202


def test_a_digest_is_taken_from_the_store_only_if_the_node_pulled_it(
    docker_engine: DockerEngine, busybox_image: str, node_id: str, images: list[str]
) -> None:
    client = docker_engine.client
    repository = unique("by-digest")
    images.append(f"{repository}:1")
    image_with(client, busybox_image, f"{repository}:1", "by-digest")
    digest = session_registry().push(client, f"{repository}:1", f"{repository}:1")
    pinned = f"{repository}@{digest}"
    client.images.remove(f"{repository}:1")
    # The operator pulls it by digest: the engine's store has it under that reference ...
    client.images.pull(repository, tag=digest)
    images.append(pinned)
    assert present(client, pinned)
    # ... and the registry no longer serves it.
    _delete_manifest(session_registry(), repository, digest)

    async def main() -> None:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            with pytest.raises(ImageUnavailable) as raised:
                await adapter.create(request(node_id, "pinned", pinned))
            # The node pulled it (and failed): the operator's copy was not used.
            assert pull_failed(raised.value.cause), raised.value.cause
            assert names_of(client, node_id) == []
        finally:
            adapter.close()

    trio.run(main)

    # A digest the node pulled itself, through a tag, is used from the store without a pull.
    again = unique("pulled-tag")
    images.append(f"{again}:1")
    image_with(client, busybox_image, f"{again}:1", "pulled-by-the-node")
    publish(client, f"{again}:1")

    async def pulled_first() -> bytes:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            await adapter.create(request(node_id, "by-tag", f"{again}:1"))
            digests = client.images.get(f"{again}:1").attrs["RepoDigests"]
            own = next(d for d in digests if d.startswith(f"{again}@"))
            images.append(own)
            _delete_manifest(session_registry(), again, own.split("@", 1)[1])
            cid = await adapter.create(request(node_id, "by-digest", own))
            return await output_of(adapter, client, cid)
        finally:
            adapter.close()

    assert trio.run(pulled_first).strip() == b"pulled-by-the-node"


def _htpasswd(folder: Path, user: str, password: str) -> Path:
    path = folder / "htpasswd"
    path.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    return path


@pytest.fixture
def private_registry() -> Iterator[tuple[LocalRegistry, dict[str, str]]]:
    """A registry that answers only with basic auth, and its user and password."""
    root = Path(tempfile.mkdtemp(prefix="smr-auth-", dir="/tmp"))
    auth = {"username": "operator", "password": uuid.uuid4().hex}
    registry = LocalRegistry(root, htpasswd=_htpasswd(root, auth["username"], auth["password"]))
    registry.start()
    try:
        yield registry, auth
    finally:
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_operators_registry_logins_are_never_sent(
    docker_engine: DockerEngine,
    busybox_image: str,
    node_id: str,
    images: list[str],
    private_registry: tuple[LocalRegistry, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry, auth = private_registry
    client = docker_engine.client
    repository = unique("private")
    images.append(f"{repository}:1")
    image_with(client, busybox_image, f"{repository}:1", "operator-private")
    registry.push(client, f"{repository}:1", f"{repository}:1", auth=auth)
    client.images.remove(f"{repository}:1")
    reference = f"{registry.address}/{repository}:1"
    images.append(reference)
    # The operator is logged in to that registry, as `docker login` leaves it.
    login = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
    config = {"auths": {registry.address: {"auth": login}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))

    async def main() -> None:
        adapter = await DockerAdapter.connect(docker_engine.host)
        adapter.allow_private_registries = True  # the registry is on loopback
        try:
            with pytest.raises(ImageUnavailable) as raised:
                await adapter.create(request(node_id, "private", reference))
        finally:
            adapter.close()
        assert "no basic auth credentials" in raised.value.cause, raised.value.cause

    trio.run(main)
    assert names_of(client, node_id) == []
    assert not present(client, reference)
    # The same client configuration pulls it with the SDK's defaults: the login would work.
    with contextlib.closing(docker.DockerClient(base_url=docker_engine.host)) as operator:
        operator.images.pull(f"{registry.address}/{repository}", tag="1")
    assert present(client, reference)


def test_an_image_above_the_nodes_size_cap_is_refused_and_removed(
    docker_engine: DockerEngine, busybox_image: str, node_id: str, images: list[str]
) -> None:
    client = docker_engine.client
    name = f"{unique('big')}:1"
    images.append(name)
    publish(client, busybox_image, name)
    size = int(client.images.get(busybox_image).attrs["Size"])
    cap = size // 2

    async def main() -> None:
        adapter = await DockerAdapter.connect(docker_engine.host)
        adapter.max_image_bytes = cap
        try:
            with pytest.raises(ImageTooLarge) as raised:
                await adapter.create(request(node_id, "big", name, "true"))
        finally:
            adapter.close()
        assert str(raised.value) == (
            f"image {name!r} is too large for this node: {size} bytes, above its cap of "
            f"{cap} bytes (ImageTooLarge)"
        )

    trio.run(main)
    assert names_of(client, node_id) == []
    assert not present(client, name)
    repository = name.rsplit(":", 1)[0]
    assert client.api.images(name=repository, all=True) == []  # nor its digest
    assert present(client, busybox_image)  # another name of the same image keeps it


def test_image_gc_removes_unused_pulled_images_least_recently_used_first(
    docker_engine: DockerEngine, busybox_image: str, node_id: str, images: list[str]
) -> None:
    client = docker_engine.client
    names = {what: f"{unique(what)}:1" for what in ("old", "recent", "running", "foreign")}
    for what, name in names.items():
        images.append(name)
        image_with(client, busybox_image, name, what)
        publish(client, name)
        client.images.remove(name)
    operators = f"{unique('operators')}:1"
    images.append(operators)
    operators_id = image_with(client, busybox_image, operators, "operators")

    async def main() -> tuple[list[str], dict[str, str], list[str]]:
        adapter = await DockerAdapter.connect(docker_engine.host)
        try:
            ids = {what: await adapter.pull(name) for what, name in names.items()}
            # Pulled, used, then unused (their containers are gone), oldest first.
            for what in ("old", "recent"):
                cid = await adapter.create(request(node_id, what, names[what]))
                await adapter.remove(cid)
            running = await adapter.create(
                request(node_id, "running", names["running"], "sleep", "60")
            )
            await adapter.start(running)
            # A container that is not the node's uses an image the node pulled: it stays too.
            foreign = client.containers.create(ids["foreign"], ["true"], network_mode="none")
            try:
                # High mark 100 %: nothing to do.
                idle = ImageCollector(adapter, ImageGcPolicy(100, 100, min_age_seconds=0))
                assert await idle.collect() == []
                # Marks at 0 %: everything that may go goes, in order of last use.
                policy = ImageGcPolicy(high_percent=0, low_percent=0, min_age_seconds=0)
                removed = await ImageCollector(adapter, policy).collect()
                # And once more: the rest stays.
                again = await ImageCollector(adapter, policy).collect()
            finally:
                foreign.remove(force=True)
            return removed, ids, again
        finally:
            adapter.close()

    removed, ids, again = trio.run(main)
    assert removed == [ids["old"], ids["recent"]]
    assert again == []
    # The node pulled digests, never tags: the images are known by their ids.
    assert not present(client, ids["old"]) and not present(client, ids["recent"])
    assert present(client, ids["running"]) and present(client, ids["foreign"])
    assert client.images.get(operators).id == operators_id
    assert present(client, busybox_image)


def test_image_gc_above_the_high_mark_stops_below_the_low_mark(busybox_image: str) -> None:
    """On an engine whose data root is a tmpfs of its own: with the high mark just under the
    current use, a pass removes the least recently used unused image, which is enough to get
    below the low mark, and nothing more."""
    engine = start_private_engine(data_size="96m")
    client = engine.client
    try:
        ensure_busybox_image(client)
        names = {what: f"{unique(what)}:1" for what in ("old", "recent", "running")}
        for name in names.values():
            # 8 MiB of its own, so that removing it frees that much.
            container = client.containers.create(
                busybox_image,
                ["sh", "-c", "head -c 8388608 /dev/urandom > /filler"],
                network_mode="none",
            )
            container.start()
            container.wait(timeout=30)
            container.commit(repository=name.rsplit(":", 1)[0], tag="1")
            container.remove()
            publish(client, name)
            client.images.remove(name)
        operators = f"{unique('operators')}:1"
        operators_id = image_with(client, busybox_image, operators, "operators")

        async def main() -> tuple[list[str], dict[str, str], float, float, float]:
            adapter = await DockerAdapter.connect(engine.host)
            try:
                ids = {what: await adapter.pull(name) for what, name in names.items()}
                await adapter.start(
                    await adapter.create(request("gc", "running", names["running"], "sleep", "60"))
                )
                root = await adapter.data_root()
                before = disk_usage(root)
                one_image = 100 * 8 * 2**20 / before.capacity_bytes
                policy = ImageGcPolicy(
                    high_percent=before.used_percent - 0.5,
                    low_percent=before.used_percent - one_image / 2,
                    min_age_seconds=0,
                )
                removed = await ImageCollector(adapter, policy).collect()
                after = disk_usage(root).used_percent
                return removed, ids, before.used_percent, policy.low_percent, after
            finally:
                adapter.close()

        removed, ids, before, low, after = trio.run(main)
        assert removed == [ids["old"]], (before, low, after)
        assert after < low < before
        assert not present(client, ids["old"])
        assert present(client, ids["recent"]) and present(client, ids["running"])
        assert client.images.get(operators).id == operators_id
    finally:
        stop_engine(engine)
