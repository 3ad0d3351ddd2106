"""Registry credentials from a tenant's `imagePullSecrets`, on a real engine and a real registry
(Debian's docker-registry with htpasswd basic auth): without the login the pull fails with the
registry's reason, with it the image runs; the login is of that pull only (another tenant naming
the digest pulled with it is refused, not served from the store); a wrong password fails; the
password is in no log, label or error."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging

import pytest
import trio

from orchestrator.docker_engine import DockerAdapter
from orchestrator.errors import ImageUnavailable
from orchestrator.pull_auth import auth_for
from orchestrator.registry import LocalRegistry
from tests.integration.docker_harness import DockerEngine, image_with
from tests.integration.orchestrator.test_images import (
    images,
    names_of,
    output_of,
    private_registry,
    request,
    unique,
)

__all__ = ["images", "private_registry"]  # fixtures

pytestmark = pytest.mark.integration


def docker_config(registry: str, username: str, password: str) -> dict[str, dict[str, bytes]]:
    """An imagePullSecret named `regcred`, as the vault delivers it."""
    login = base64.b64encode(f"{username}:{password}".encode()).decode()
    data = json.dumps({"auths": {registry: {"auth": login}}}).encode()
    return {"regcred": {".dockerconfigjson": data}}


def test_a_private_image_is_pulled_with_the_tenants_login_and_only_for_that_pull(
    docker_engine: DockerEngine,
    busybox_image: str,
    node_id: str,
    images: list[str],
    private_registry: tuple[LocalRegistry, dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    registry, auth = private_registry
    client = docker_engine.client
    repository = unique("tenant-private")
    images.append(f"{repository}:1")
    image_with(client, busybox_image, f"{repository}:1", "tenant-private")
    registry.push(client, f"{repository}:1", f"{repository}:1", auth=auth)
    client.images.remove(f"{repository}:1")
    reference = f"{registry.address}/{repository}:1"
    images.append(reference)
    login = auth_for(reference, docker_config(registry.address, **auth))
    wrong = auth_for(reference, docker_config(registry.address, auth["username"], "wrong"))
    other = auth_for(reference, docker_config("other.example:5000", **auth))
    assert login is not None and wrong is not None and other is None

    async def main() -> tuple[str, ImageUnavailable, ImageUnavailable, ImageUnavailable]:
        adapter = await DockerAdapter.connect(docker_engine.host)
        adapter.allow_private_registries = True  # the registry is on loopback
        try:
            with pytest.raises(ImageUnavailable) as anonymous:
                await adapter.create(request(node_id, "anonymous", reference))
            with pytest.raises(ImageUnavailable) as refused:
                await adapter.create(
                    dataclasses.replace(request(node_id, "wrong", reference), registry_auth=wrong)
                )
            cid = await adapter.create(
                dataclasses.replace(request(node_id, "tenant", reference), registry_auth=login)
            )
            out = await output_of(adapter, client, cid)
            pinned = str(client.api.inspect_container(cid)["Config"]["Image"])
            assert "@sha256:" in pinned, pinned
            # Another tenant names the digest the login pulled: asked of the registry, refused.
            with pytest.raises(ImageUnavailable) as stolen:
                await adapter.create(request(node_id, "other-tenant", pinned))
            return out.decode(), anonymous.value, refused.value, stolen.value
        finally:
            adapter.close()

    out, anonymous, refused, stolen = trio.run(main)
    assert out.strip() == "tenant-private"
    assert "no basic auth credentials" in anonymous.cause, anonymous.cause
    assert "unauthorized" in refused.cause.lower() or "denied" in refused.cause.lower(), (
        refused.cause
    )
    assert "no basic auth credentials" in stolen.cause, stolen.cause
    assert sorted(names_of(client, node_id)) == [f"{node_id}-tenant"]
    shown = caplog.text + str(anonymous) + str(refused) + str(stolen)
    (row,) = client.api.containers(all=True, filters={"label": f"statemesh.node={node_id}"})
    shown += json.dumps(client.api.inspect_container(row["Id"]))
    assert auth["password"] not in shown
