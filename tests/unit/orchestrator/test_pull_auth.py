"""Registry credentials from `imagePullSecrets`: a .dockerconfigjson read strictly (hostile input
is a clear reason naming the secret, never a value), the login of the image's registry only,
handed to the create of the container that pulls, digests covering the secret's version."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from chain.address import encode_address
from chain.runtime import manifest as m
from chain.runtime.apps import ReplicaEntry
from chain.runtime.configs import ConfigRecord
from chain.runtime.secrets import SecretRecord
from orchestrator import labels
from orchestrator.controller import Controller
from orchestrator.diff import create_request
from orchestrator.pull_auth import (
    DOCKER_HUB,
    MAX_DOCKER_CONFIG_BYTES,
    BadPullSecret,
    RegistryAuth,
    auth_for,
    image_registry,
    parse_docker_config,
    registry_key,
)
from orchestrator.replica_specs import UnsupportedManifest, replica_spec
from orchestrator.secrets import FileStore, project
from orchestrator.spec import ReplicaSpec, SourceKind, SourceRef
from tests.unit.orchestrator.builders import NODE, InMemoryDesired, container, replica
from tests.unit.orchestrator.fake_engine import FakeEngine
from tests.unit.orchestrator.test_controller import OWNER, reason, running, until
from tests.unit.orchestrator.test_secrets import ALICE, run

PASSWORD = "pa55-never-shown"
KEY = ".dockerconfigjson"


def config(auths: Any) -> bytes:
    return json.dumps({"auths": auths}).encode()


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_both_forms_of_an_entry_are_read_and_keyed_by_host_and_port() -> None:
    found = parse_docker_config(
        "regcred",
        config(
            {
                "registry.example:5000": {"username": "alice", "password": PASSWORD},
                "https://Other.Example/v1/": {"auth": basic("bob", "x:y")},
                "https://index.docker.io/v1/": {"auth": basic("carol", "z")},
            }
        ),
    )
    assert found["registry.example:5000"] == RegistryAuth(
        "registry.example:5000", "alice", PASSWORD
    )
    # The password is all that follows the first ':'.
    assert found["other.example"] == RegistryAuth("other.example", "bob", "x:y")
    assert found[DOCKER_HUB].username == "carol"
    assert PASSWORD not in repr(found)
    assert found["registry.example:5000"].auth_config() == {
        "username": "alice",
        "password": PASSWORD,
        "serveraddress": "registry.example:5000",
    }


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("busybox", DOCKER_HUB),
        ("library/busybox:1", DOCKER_HUB),
        ("docker.io/library/busybox", DOCKER_HUB),
        ("index.docker.io/x/y", DOCKER_HUB),
        ("registry.example:5000/team/app:1", "registry.example:5000"),
        ("registry.example/team/app@sha256:" + "0" * 64, "registry.example"),
        ("localhost:5000/app", "localhost:5000"),
        ("Registry.Example/app", "registry.example"),
        ("team/app", DOCKER_HUB),
    ],
)
def test_an_image_names_its_registry(image: str, registry: str) -> None:
    assert image_registry(image) == registry


def test_only_the_images_registry_gets_a_login_and_the_port_counts() -> None:
    secrets = {"regcred": {KEY: config({"registry.example:5000": {"auth": basic("a", "b")}})}}
    login = auth_for("registry.example:5000/app:1", secrets)
    assert login is not None and login.username == "a"
    # Another registry, another port of the same host, a look-alike name, Docker Hub: anonymous.
    for image in (
        "other.example:5000/app",
        "registry.example/app",
        "registry.example:5001/app",
        "registry.example.evil:5000/app",
        "evil.example/registry.example:5000/app",
        "busybox",
    ):
        assert auth_for(image, secrets) is None, image
    assert registry_key("registry.example:5000") == "registry.example:5000"


def test_the_first_secret_with_the_registry_wins_and_every_one_is_checked() -> None:
    first = {KEY: config({"r.example": {"username": "one", "password": "1"}})}
    second = {KEY: config({"r.example": {"username": "two", "password": "2"}})}
    login = auth_for("r.example/app", {"a": first, "b": second})
    assert login is not None and login.username == "one"
    with pytest.raises(BadPullSecret, match="imagePullSecret 'bad'"):
        auth_for("r.example/app", {"a": first, "bad": {KEY: b"{"}})
    with pytest.raises(BadPullSecret, match="has no key '.dockerconfigjson'"):
        auth_for("r.example/app", {"a": {"password": b"x"}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x" * (MAX_DOCKER_CONFIG_BYTES + 1), "larger than 65536 bytes"),
        (b'{"auths": {"r": {"auth": "\xff\xfe"}}}', "not UTF-8"),
        (PASSWORD.encode() + b"{", "is not JSON$"),
        (b"[" * 100_000 + b"]" * 100_000, "is not JSON$|larger than"),
        (b"[" * 30_000, "is not JSON$"),
        (b"[]", 'no "auths" object'),
        (b'{"auths": []}', 'no "auths" object'),
        (b"null", 'no "auths" object'),
        (config({"r": "alice:" + PASSWORD}), "the entry of 'r' is no object"),
        (config({"r": {"username": "alice"}}), "neither an auth nor a username and a password"),
        (config({"r": {"username": 1, "password": PASSWORD}}), "the username of 'r' is not text"),
        (config({"r": {"username": "a", "password": [PASSWORD]}}), "password of 'r' is not text"),
        (config({"r": {"username": "a", "password": ""}}), "password of 'r' is empty"),
        (config({"r": {"auth": 12}}), "the auth of 'r' is not text"),
        (config({"r": {"auth": "not base64!" + PASSWORD}}), "not base64"),
        (config({"r": {"auth": base64.b64encode(b"\xff:\xfe").decode()}}), "not base64"),
        (config({"r": {"auth": basic("alice", "")}}), "password of 'r' is empty"),
        (config({"r": {"auth": base64.b64encode(PASSWORD.encode()).decode()}}), "no ':'"),
        (config({f"r{i}.example": {"auth": basic("a", "b")} for i in range(65)}), "more than 64"),
    ],
)
def test_a_malformed_docker_config_is_a_clear_reason_without_its_values(
    data: bytes, message: str
) -> None:
    with pytest.raises(BadPullSecret, match=message) as caught:
        parse_docker_config("regcred", data)
    assert caught.value.message.startswith("imagePullSecret 'regcred'")
    assert caught.value.reason == "InvalidImagePullSecret"
    assert PASSWORD not in str(caught.value) and "alice" not in str(caught.value)


REGCRED = SourceRef(SourceKind.SECRET, "regcred", 3)


def pulling(image: str, version: int = 3) -> ReplicaSpec:
    return dataclasses.replace(
        replica(containers=(dataclasses.replace(container(), image=image),)),
        owner=encode_address(ALICE),
        pull_secrets=(dataclasses.replace(REGCRED, version=version),),
    )


class Source:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[tuple[str, int]] = []

    async def secret_data(
        self, owner: bytes, name: str, version: int, app: str, replica: int
    ) -> Mapping[str, bytes]:
        await trio.lowlevel.checkpoint()
        self.asked.append((name, version))
        return {KEY: self.data}


def test_the_create_of_a_container_carries_the_login_of_its_registry_only() -> None:
    data = config({"registry.example:5000": {"username": "alice", "password": PASSWORD}})

    async def main() -> None:
        spec = pulling("registry.example:5000/app:1")
        source = Source(data)
        request = await project(
            create_request(NODE, spec, spec.containers[0]), spec, "main", "h", source, None
        )
        assert source.asked == [("regcred", 3)]
        assert request.registry_auth == RegistryAuth("registry.example:5000", "alice", PASSWORD)
        assert PASSWORD not in repr(request)
        other = pulling("elsewhere.example/app:1")
        anonymous = await project(
            create_request(NODE, other, other.containers[0]), other, "main", "h", source, None
        )
        assert anonymous.registry_auth is None
        with pytest.raises(BadPullSecret, match="not JSON"):
            await project(
                create_request(NODE, spec, spec.containers[0]),
                spec,
                "main",
                "h",
                Source(b"{"),
                None,
            )

    trio.run(main)


def test_the_digest_covers_the_pull_secrets_version_and_nothing_without_one() -> None:
    one, two = pulling("r.example/app"), pulling("r.example/app", version=4)
    plain = dataclasses.replace(one, pull_secrets=())
    hashes = {labels.spec_hash(s, s.containers[0]) for s in (one, two, plain)}
    assert len(hashes) == 3
    assert REGCRED in one.secrets()


def test_a_malformed_pull_secret_keeps_the_replica_waiting_with_the_reason(tmp_path: Path) -> None:
    spec = pulling("img:1")
    source = Source(b'{"auths": {"img": "' + PASSWORD.encode() + b'"}}')

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, lambda: reason(controller, spec) == "InvalidImagePullSecret")
        status = controller.status()[spec.key]
        assert status.containers[0].message == (
            "imagePullSecret 'regcred': the entry of 'img' is no object"
        )
        assert not engine.running(OWNER)
        # Fixed: the next attempt pulls anonymously ("img" is Docker Hub's, the login is not).
        source.data = config({"other.example": {"username": "a", "password": PASSWORD}})
        await until(controller, lambda: running(controller, spec))
        (created,) = engine.running(OWNER)
        assert created.request is not None and created.request.registry_auth is None
        shown = "".join(e.message for e in controller.events.for_replica(spec.key))
        assert PASSWORD not in shown and PASSWORD not in repr(created.request)

    run(test, FileStore(tmp_path), source, spec)  # type: ignore[arg-type]


class PullSources:
    """The owner's secrets `regcred` (version 5, with .dockerconfigjson) and `db` (without)."""

    def config(self, name: str) -> ConfigRecord | None:
        return None

    def secret(self, name: str) -> SecretRecord | None:
        if name == "regcred":
            return SecretRecord(5, 1, ((KEY, 120),), b"")
        return SecretRecord(2, 1, (("password", 6),), b"") if name == "db" else None


def manifest_pulling(*names: str) -> m.Manifest:
    return m.validate_manifest(
        {
            "apiVersion": "statemesh/v1",
            "kind": "Application",
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{"name": "a", "image": "r.example/app:1"}],
                "imagePullSecrets": [{"name": n} for n in names],
            },
        }
    )


def test_a_replica_spec_carries_the_versions_of_its_pull_secrets() -> None:
    entry = ReplicaEntry(0, 1, b"", 0)
    spec = replica_spec("dev", "web", entry, manifest_pulling("regcred"), sources=PullSources())
    assert spec.pull_secrets == (SourceRef(SourceKind.SECRET, "regcred", 5),)
    for name, message in (
        ("db", "secret 'db' has no key '.dockerconfigjson'"),
        ("gone", "the owner has no secret 'gone'"),
    ):
        with pytest.raises(UnsupportedManifest, match=message):
            replica_spec("dev", "web", entry, manifest_pulling(name), sources=PullSources())
