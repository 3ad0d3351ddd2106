"""Pulls a hostile tenant asks for, on a real engine: an image whose layers are far above the
node's cap is cancelled as soon as the engine reports their size (the engine stops downloading,
nothing is kept); pulls from registries that stall time out, are cancelled and free their slots,
so other tenants' pulls go on; a registry only the node reaches (loopback) is refused unless the
node allows private registries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from orchestrator.docker_engine import MAX_CONCURRENT_PULLS, DockerAdapter
from orchestrator.errors import ImageTooLarge, ImageUnavailable
from tests.integration.docker_harness import DockerEngine, session_registry
from tests.integration.orchestrator.hostile_registry import HostileRegistry, Mode
from tests.integration.orchestrator.test_images import names_of, output_of, request

pytestmark = pytest.mark.integration

CAP = 32 * 2**20
HUGE = 64 * 2**30
"""Declared by the hostile registry's layer: far more than this machine's disk."""


def references_of(engine: DockerEngine, repository: str) -> list[str]:
    rows = engine.client.api.images(name=repository, all=True)
    return [
        str(r) for row in rows for r in (row.get("RepoTags") or []) + (row.get("RepoDigests") or [])
    ]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_a_pull_whose_layers_pass_the_cap_is_cancelled_before_it_fills_the_disk(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    data_root = Path(str(docker_engine.client.info()["DockerRootDir"]))
    with HostileRegistry("flood", HUGE) as registry:
        image = f"{registry.address}/tenant/huge:1"

        async def main() -> tuple[ImageTooLarge, float]:
            adapter = await DockerAdapter.connect(docker_engine.host)
            adapter.max_image_bytes = CAP
            adapter.allow_private_registries = True  # the hostile registry is on loopback
            try:
                started = time.monotonic()
                with pytest.raises(ImageTooLarge) as raised:
                    await adapter.create(request(node_id, "huge", image, "true"))
                return raised.value, time.monotonic() - started
            finally:
                adapter.close()

        refused, seconds = trio.run(main)
        refused_at = time.monotonic()
        # The size of the layer, as the engine reported it with its first bytes.
        assert refused.size_bytes >= HUGE
        assert refused.cap_bytes == CAP
        deadline = time.monotonic() + 10
        while not registry.blob.closed_at and time.monotonic() < deadline:
            time.sleep(0.05)
        assert registry.blob.requests == 1
        # The engine hung up on the blob: it cancelled the pull.
        assert registry.blob.closed_at, registry.blob
        sent = registry.blob.bytes_sent
        time.sleep(1)
        assert registry.blob.bytes_sent == sent  # and it does not come back for more
    print(
        f"\nrefused after {seconds:.2f} s; the engine hung up "
        f"{registry.blob.closed_at[0] - refused_at:+.2f} s after the refusal, "
        f"having read {sent / 2**20:.1f} MiB of a {HUGE / 2**30:.0f} GiB layer"
    )
    assert sent < 4 * CAP
    assert names_of(docker_engine.client, node_id) == []
    # Nothing kept: no reference of the repository, no partial download left behind.
    assert references_of(docker_engine, f"{registry.address}/tenant/huge") == []
    if data_root.exists():
        assert folder_bytes(data_root / "tmp") < 2**20


def test_pulls_from_stalling_registries_time_out_are_cancelled_and_free_their_slots(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    # Two answer a manifest and trickle its layer, two accept and never answer anything: the
    # engine's call then has not even answered with headers when the pull times out.
    modes: list[Mode] = ["trickle", "silent"] * (MAX_CONCURRENT_PULLS // 2)
    registries = [HostileRegistry(mode, 2**20) for mode in modes]
    for registry in registries:
        registry.__enter__()
    timeout = 3.0
    try:

        async def main() -> tuple[list[str], float, float, bytes]:
            adapter = await DockerAdapter.connect(docker_engine.host)
            adapter.pull_timeout_seconds = timeout
            adapter.allow_private_registries = True
            causes: list[str] = []

            async def pull(registry: HostileRegistry) -> None:
                try:
                    await adapter.pull(f"{registry.address}/tenant/stalled:1")
                except ImageUnavailable as e:
                    causes.append(e.cause)

            try:
                started = time.monotonic()
                async with trio.open_nursery() as nursery:
                    for registry in registries:
                        nursery.start_soon(pull, registry)
                stalled = time.monotonic() - started
                # Every slot is free again: another tenant's pull goes ahead at once.
                with trio.fail_after(2):
                    while adapter._pull_limiter.borrowed_tokens:  # noqa: ASYNC110
                        await trio.sleep(0.02)
                started = time.monotonic()
                with trio.fail_after(timeout):
                    cid = await adapter.create(request(node_id, "next", "busybox", "echo", "ok"))
                next_pull = time.monotonic() - started
                return (
                    causes,
                    stalled,
                    next_pull,
                    await output_of(adapter, docker_engine.client, cid),
                )
            finally:
                adapter.close()

        causes, stalled, next_pull, output = trio.run(main)
        assert causes == [f"the pull did not finish within {timeout:g} s"] * len(registries)
        assert stalled < timeout + 2
        assert output.strip() == b"ok"
        # The engine cancelled each pull: it hung up on every trickling blob.
        trickling = [r for r in registries if r.mode == "trickle"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(r.blob.closed_at for r in trickling):
            time.sleep(0.05)
        assert all(r.blob.closed_at for r in trickling), [r.blob for r in trickling]
        assert all(r.held for r in registries if r.mode == "silent")
        print(
            f"\n{len(registries)} stalled pulls refused after {stalled:.2f} s; "
            f"the next pull took {next_pull:.2f} s"
        )
        for registry in registries:
            assert references_of(docker_engine, f"{registry.address}/tenant/stalled") == []
    finally:
        for registry in registries:
            registry.__exit__()


def test_a_registry_only_the_node_reaches_is_refused_unless_private_registries_are_allowed(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    # The session registry at 127.0.0.1 serves this image to anyone on this host.
    port = session_registry().port
    names = [
        f"127.0.0.1:{port}/{busybox_image}",
        f"localhost:{port}/{busybox_image}",
        f"[::ffff:127.0.0.1]:{port}/{busybox_image}",
    ]

    async def main() -> tuple[list[str], bytes]:
        adapter = await DockerAdapter.connect(docker_engine.host)
        causes = []
        try:
            for i, name in enumerate(names):
                with pytest.raises(ImageUnavailable) as raised:
                    await adapter.create(request(node_id, f"private-{i}", name, "echo", "ok"))
                causes.append(raised.value.cause)
            adapter.allow_private_registries = True
            cid = await adapter.create(request(node_id, "allowed", names[0], "echo", "ok"))
            return causes, await output_of(adapter, docker_engine.client, cid)
        finally:
            adapter.close()

    causes, output = trio.run(main)
    assert causes[0].startswith(
        "its registry 127.0.0.1 is a loopback address, which only this node"
    )
    assert causes[1].startswith("its registry localhost (")
    assert causes[2].startswith("its registry ::ffff:127.0.0.1 is a loopback address")
    assert all("is a loopback address" in c and "--allow-private-registries" in c for c in causes)
    assert output.strip() == b"ok"
    assert names_of(docker_engine.client, node_id) == [f"{node_id}-allowed"]
    for name in names[1:]:
        repository = name.rsplit(":", 1)[0]
        assert references_of(docker_engine, repository) == []
