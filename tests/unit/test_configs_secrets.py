"""The `configs` and `secrets` modules: owned and versioned, typed errors that store nothing, an
envelope sealed to the owner's vault key and nothing else, key names and sizes in clear but
never values, manifests that read only their owner's configs and secrets, and deletion refused
while an application reads one."""

from __future__ import annotations

import os
from typing import Any

import pytest

from chain import codec
from chain.keys import Keypair
from chain.runtime import configs, references, secrets
from chain.runtime.apps import Apps
from chain.runtime.configs import Configs, encode_data
from chain.runtime.manifest import validate_manifest
from chain.runtime.secrets import Secrets, encode_key_sizes, secret_record
from tests.unit.test_towers import OPERATORS, TowerChain
from tests.unit.test_vaults import VAULT, request_vault, vault_registration
from tests.unit.test_wallets import LOGIN, wallet_chain
from wallet.vault import seal

(CONFIG_CREATE, CONFIG_UPDATE, CONFIG_DELETE) = Configs().calls()
(SECRET_CREATE, SECRET_UPDATE, SECRET_DELETE) = Secrets().calls()
APP_CREATE, APP_UPDATE, _, APP_DELETE = Apps().calls()[:4]
OTHER = Keypair.from_seed(b"\x71" * 32)
PASSWORD = b"hunter2-not-in-clear"


def sealed(name: str, version: int, data: dict[str, bytes], *, key: bytes = VAULT) -> Any:
    envelope = seal(key, LOGIN.public, name, version, data, os.urandom)
    keys = encode_key_sizes(tuple((k, len(v)) for k, v in data.items()))
    return keys, envelope


def secret_call(call: Any, name: str, version: int, data: dict[str, bytes], **kw: Any) -> Any:
    keys, envelope = sealed(name, version, data, **kw)
    return call.call(name=name.encode(), keys=keys, envelope=envelope)


@pytest.fixture
def chain() -> TowerChain:
    """LOGIN and OTHER funded; LOGIN has a vault key (VAULT), OTHER none."""
    chain = wallet_chain(funded=(LOGIN, OTHER))
    request_id, _ = request_vault(chain)
    chain.send(OPERATORS[1], vault_registration(request_id, [0, 2]))
    return chain


def app(name: str = "web", **changes: Any) -> bytes:
    container: dict[str, Any] = {
        "name": "httpd",
        "image": "busybox",
        "env": [
            {
                "name": "PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
            },
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "site", "key": "GREETING"}},
            },
        ],
    }
    container.update(changes)
    return validate_manifest(
        {
            "apiVersion": "statemesh/v1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {"replicas": 0, "containers": [container]},
        }
    ).canonical_json()


def test_a_config_is_created_updated_listed_and_deleted(chain: TowerChain) -> None:
    chain.send(LOGIN, CONFIG_CREATE.call(name=b"site", data=encode_data({"GREETING": b"hello"})))
    record = configs.get_config(chain.state, LOGIN.public, "site")
    assert (
        record is not None and record.version == 1 and dict(record.data) == {"GREETING": b"hello"}
    )
    chain.send(LOGIN, CONFIG_UPDATE.call(name=b"site", data=encode_data({"GREETING": b"hi"})))
    record = configs.get_config(chain.state, LOGIN.public, "site")
    assert record is not None and record.version == 2 and dict(record.data) == {"GREETING": b"hi"}
    assert configs.config_names(chain.state, LOGIN.public) == ["site"]
    # Names are per owner: another owner's "site" is another config.
    assert configs.get_config(chain.state, OTHER.public, "site") is None
    chain.send(OTHER, CONFIG_CREATE.call(name=b"site", data=encode_data({"A": b"b"})))
    chain.send(LOGIN, CONFIG_DELETE.call(name=b"site"))
    assert configs.get_config(chain.state, LOGIN.public, "site") is None
    assert configs.config_names(chain.state, LOGIN.public) == []
    assert configs.config_names(chain.state, OTHER.public) == ["site"]


def test_config_refusals_store_nothing(chain: TowerChain) -> None:
    data = encode_data({"A": b"1"})
    chain.send(LOGIN, CONFIG_CREATE.call(name=b"site", data=data))
    root = chain.root
    unsorted = codec.encode([[b"b", b"1"], [b"a", b"2"]])
    cases = [
        (
            CONFIG_CREATE.call(name=b"site", data=data),
            "configs.NameTaken: you already have a config named 'site'",
        ),
        (
            CONFIG_CREATE.call(name=b"Bad_Name", data=data),
            "configs.BadName: 'Bad_Name' is not a DNS label (lower-case letters, digits and '-', "
            "starting with a letter and not ending with '-', at most 63 characters)",
        ),
        (
            CONFIG_CREATE.call(name=b"x", data=unsorted),
            "configs.BadData: key 'a' is not after the one before it",
        ),
        (
            CONFIG_CREATE.call(name=b"x", data=codec.encode([[b"a b", b"1"]])),
            "configs.BadData: key 'a b' is not 1 to 253 letters, digits, '-', '_' and '.'",
        ),
        (
            CONFIG_CREATE.call(name=b"x", data=codec.encode([])),
            "configs.BadData: config data has 1 to 64 keys",
        ),
        (
            CONFIG_CREATE.call(
                name=b"x", data=encode_data({"a": b"x" * 16_500, "b": b"y" * 16_500})
            ),
            "configs.TooLarge: 33002 bytes of keys and values, at most 32768",
        ),
        (
            CONFIG_UPDATE.call(name=b"nope", data=data),
            "configs.UnknownConfig: you have no config named 'nope'",
        ),
        (
            CONFIG_DELETE.call(name=b"nope"),
            "configs.UnknownConfig: you have no config named 'nope'",
        ),
    ]
    for call, expected in cases:
        assert chain.refuse(LOGIN, call) == expected
        assert chain.root == root


def test_a_secret_stores_its_envelope_and_key_sizes_never_a_value(chain: TowerChain) -> None:
    data = {"password": PASSWORD, "user": b"app"}
    execution: Any = chain.send(LOGIN, secret_call(SECRET_CREATE, "db", 1, data))
    record = secret_record(chain.state, LOGIN.public, "db")
    assert record is not None and record.version == 1
    assert record.keys == (("password", len(PASSWORD)), ("user", 3))
    assert secrets.envelope_shape(record.envelope).vault_key == VAULT
    assert PASSWORD not in record.encode()
    assert [(e.name, dict(e.data)) for e in execution.events if e.module == "secrets"] == [
        ("SecretCreated", {"owner": LOGIN.public, "name": "db", "version": 1})
    ]
    chain.send(LOGIN, secret_call(SECRET_UPDATE, "db", 2, {"password": b"new"}))
    record = secret_record(chain.state, LOGIN.public, "db")
    assert record is not None and record.version == 2 and record.keys == (("password", 3),)
    assert secrets.secret_names(chain.state, LOGIN.public) == ["db"]
    chain.send(LOGIN, SECRET_DELETE.call(name=b"db"))
    assert secret_record(chain.state, LOGIN.public, "db") is None


def test_secret_refusals_store_nothing(chain: TowerChain) -> None:
    chain.send(LOGIN, secret_call(SECRET_CREATE, "db", 1, {"password": PASSWORD}))
    root = chain.root
    keys, envelope = sealed("x", 1, {"password": PASSWORD})
    fields = codec.decode(envelope)
    assert isinstance(fields, list)
    short_nonce = codec.encode([*fields[:3], b"\x00" * 11, fields[4]])
    other_vault = Keypair.from_seed(b"\x09" * 32).public
    lying = encode_key_sizes((("password", 2),))
    cases = [
        (
            secret_call(SECRET_CREATE, "db", 1, {"a": b"b"}),
            "secrets.NameTaken: you already have a secret named 'db'",
        ),
        (
            SECRET_CREATE.call(name=b"x", keys=keys, envelope=short_nonce),
            "secrets.BadEnvelope: the nonce is 11 bytes, not 12",
        ),
        (
            SECRET_CREATE.call(name=b"x", keys=keys, envelope=codec.encode([b"\x02", *fields[1:]])),
            "secrets.BadEnvelope: envelope version 0x02 is not 0x01",
        ),
        (
            SECRET_CREATE.call(name=b"x", keys=lying, envelope=envelope),
            "secrets.BadKeys: the sizes stated do not fit the ciphertext's length",
        ),
        (
            secret_call(SECRET_CREATE, "x", 1, {"a": b"b"}, key=other_vault),
            "secrets.WrongVaultKey: the envelope is not sealed to your vault key",
        ),
        (
            SECRET_CREATE.call(
                name=b"x", keys=encode_key_sizes((("a", 40_000),)), envelope=envelope
            ),
            "secrets.BadKeys: 'a' is over 32768 bytes",
        ),
        (
            secret_call(SECRET_UPDATE, "nope", 1, {"a": b"b"}),
            "secrets.UnknownSecret: you have no secret named 'nope'",
        ),
        (
            SECRET_DELETE.call(name=b"nope"),
            "secrets.UnknownSecret: you have no secret named 'nope'",
        ),
    ]
    for call, expected in cases:
        assert chain.refuse(LOGIN, call) == expected
        assert chain.root == root
    # An owner without a vault key cannot store a secret.
    assert chain.refuse(OTHER, secret_call(SECRET_CREATE, "db", 1, {"a": b"b"})) == (
        "secrets.NoVault: you have no vault key yet: ask for one (wallets.request_vault) first"
    )


def test_an_app_reads_only_its_owners_configs_and_secrets_with_their_keys(
    chain: TowerChain,
) -> None:
    root = chain.root
    assert chain.refuse(LOGIN, APP_CREATE.call(manifest=app())) == (
        "apps.UnknownReference: the owner has no config 'site'"
    )
    chain.send(LOGIN, CONFIG_CREATE.call(name=b"site", data=encode_data({"OTHER": b"x"})))
    assert chain.refuse(LOGIN, APP_CREATE.call(manifest=app())) == (
        "apps.UnknownReference: config 'site' has no key 'GREETING'"
    )
    chain.send(LOGIN, CONFIG_UPDATE.call(name=b"site", data=encode_data({"GREETING": b"hi"})))
    assert chain.refuse(LOGIN, APP_CREATE.call(manifest=app())) == (
        "apps.UnknownReference: the owner has no secret 'db'"
    )
    # Another owner's secret of that name is not the owner's.
    chain.send(OTHER, CONFIG_CREATE.call(name=b"site", data=encode_data({"GREETING": b"x"})))
    assert chain.refuse(OTHER, APP_CREATE.call(manifest=app())) == (
        "apps.UnknownReference: the owner has no secret 'db'"
    )
    assert chain.root != root
    chain.send(LOGIN, secret_call(SECRET_CREATE, "db", 1, {"password": PASSWORD}))
    chain.send(LOGIN, APP_CREATE.call(manifest=app()))
    assert references.users_of(chain.state, references.Kind.SECRET, LOGIN.public, "db") == ["web"]


def test_what_an_app_reads_cannot_be_deleted_or_lose_a_key_it_names(chain: TowerChain) -> None:
    chain.send(LOGIN, CONFIG_CREATE.call(name=b"site", data=encode_data({"GREETING": b"hi"})))
    chain.send(LOGIN, secret_call(SECRET_CREATE, "db", 1, {"password": PASSWORD}))
    chain.send(LOGIN, APP_CREATE.call(manifest=app()))
    root = chain.root
    assert chain.refuse(LOGIN, SECRET_DELETE.call(name=b"db")) == (
        "secrets.InUse: secret 'db' is used by application 'web'"
    )
    assert chain.refuse(LOGIN, CONFIG_DELETE.call(name=b"site")) == (
        "configs.InUse: config 'site' is read by application 'web'"
    )
    assert chain.refuse(LOGIN, secret_call(SECRET_UPDATE, "db", 2, {"other": b"x"})) == (
        "secrets.InUse: application 'web' reads key 'password' of secret 'db'"
    )
    assert chain.refuse(LOGIN, CONFIG_UPDATE.call(name=b"site", data=encode_data({"X": b"1"}))) == (
        "configs.InUse: application 'web' reads key 'GREETING' of config 'site'"
    )
    assert chain.root == root
    # An update of the app that no longer reads the secret releases it.
    chain.send(LOGIN, APP_UPDATE.call(manifest=app(env=[{"name": "A", "value": "b"}])))
    chain.send(LOGIN, SECRET_DELETE.call(name=b"db"))
    chain.send(LOGIN, APP_DELETE.call(app=b"web"))
    chain.send(LOGIN, CONFIG_DELETE.call(name=b"site"))
    assert references.users_of(chain.state, references.Kind.CONFIG, LOGIN.public, "site") == []
