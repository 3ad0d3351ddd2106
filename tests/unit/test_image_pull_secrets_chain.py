"""`imagePullSecrets` on chain: an application may name only its owner's secrets that hold a
.dockerconfigjson, and such a secret cannot be deleted, or lose that key, while it is named."""

from __future__ import annotations

import json

from chain.runtime.manifest import validate_manifest
from chain.runtime.secrets import secret_record
from tests.unit.test_configs_secrets import (
    APP_CREATE,
    APP_DELETE,
    OTHER,
    SECRET_CREATE,
    SECRET_DELETE,
    SECRET_UPDATE,
    chain,
    secret_call,
)
from tests.unit.test_towers import TowerChain
from tests.unit.test_wallets import LOGIN

__all__ = ["chain"]  # the fixture

DOCKER_CONFIG = json.dumps(
    {"auths": {"registry.example:5000": {"username": "alice", "password": "pa55"}}}
).encode()


def app(*pull_secrets: str) -> bytes:
    return validate_manifest(
        {
            "apiVersion": "statemesh/v1",
            "kind": "Application",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "containers": [{"name": "a", "image": "registry.example:5000/app:1"}],
                "imagePullSecrets": [{"name": n} for n in pull_secrets],
            },
        }
    ).canonical_json()


def test_an_app_names_only_its_owners_pull_secrets_with_registry_credentials(
    chain: TowerChain,
) -> None:
    root = chain.root
    assert chain.refuse(LOGIN, APP_CREATE.call(manifest=app("regcred"))).endswith(
        "the owner has no secret 'regcred'"
    )
    chain.send(LOGIN, secret_call(SECRET_CREATE, "plain", 1, {"password": b"x"}))
    assert chain.refuse(LOGIN, APP_CREATE.call(manifest=app("plain"))).endswith(
        "secret 'plain' has no key '.dockerconfigjson'"
    )
    chain.send(
        LOGIN, secret_call(SECRET_CREATE, "regcred", 1, {".dockerconfigjson": DOCKER_CONFIG})
    )
    root = chain.root
    # Another owner cannot use it.
    assert chain.refuse(OTHER, APP_CREATE.call(manifest=app("regcred"))).endswith(
        "the owner has no secret 'regcred'"
    )
    assert chain.root == root
    chain.send(LOGIN, APP_CREATE.call(manifest=app("regcred")))
    assert chain.refuse(LOGIN, SECRET_DELETE.call(name=b"regcred")) == (
        "secrets.InUse: secret 'regcred' is used by application 'web'"
    )
    assert chain.refuse(LOGIN, secret_call(SECRET_UPDATE, "regcred", 2, {"x": b"y"})) == (
        "secrets.InUse: application 'web' reads key '.dockerconfigjson' of secret 'regcred'"
    )
    # A new version with the key is fine (the replicas are rolled: the digest covers it).
    chain.send(LOGIN, secret_call(SECRET_UPDATE, "regcred", 2, {".dockerconfigjson": b"{}"}))
    record = secret_record(chain.state, LOGIN.public, "regcred")
    assert record is not None and record.version == 2
    chain.send(LOGIN, APP_DELETE.call(app=b"web"))
    chain.send(LOGIN, SECRET_DELETE.call(name=b"regcred"))
