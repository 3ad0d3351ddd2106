"""A manifest's references to its owner's secrets and configurations, in Kubernetes' shapes:
`env[].valueFrom`, `envFrom`, and `secret` / `configMap` volumes with `items` and modes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chain.runtime.manifest import (
    DEFAULT_CONFIG_MODE,
    DEFAULT_SECRET_MODE,
    EnvFromSource,
    KeyRef,
    KeyToPath,
    ManifestError,
    VolumeKind,
    read_stored_manifest,
    references,
    validate_manifest,
)
from node.commands.manifest_file import parse_manifest


def document() -> dict[str, Any]:
    return {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "containers": [
                {
                    "name": "httpd",
                    "image": "busybox",
                    "env": [
                        {"name": "PLAIN", "value": "x"},
                        {
                            "name": "PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                        },
                        {
                            "name": "GREETING",
                            "valueFrom": {"configMapKeyRef": {"name": "site", "key": "GREETING"}},
                        },
                    ],
                    "envFrom": [{"configMapRef": {"name": "defaults"}}],
                    "volumeMounts": [
                        {"name": "keys", "mountPath": "/keys"},
                        {"name": "conf", "mountPath": "/etc/site"},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "keys",
                    "secret": {
                        "secretName": "ssh",
                        "items": [{"key": "id_ed25519", "path": "ssh/id", "mode": 0o440}],
                    },
                },
                {"name": "conf", "configMap": {"name": "site"}},
            ],
        },
    }


def issues_after(change: Callable[[dict[str, Any]], object]) -> tuple[tuple[str, str], ...]:
    data = document()
    change(data)
    with pytest.raises(ManifestError) as caught:
        validate_manifest(data)
    return caught.value.issues


def test_references_are_typed_with_modes_filled_in_and_read_back() -> None:
    manifest = validate_manifest(document())
    c = manifest.spec.containers[0]
    assert c.env[1].secret_ref == KeyRef("db", "password")
    assert c.env[2].config_ref == KeyRef("site", "GREETING")
    assert c.env_from == (EnvFromSource(config="defaults"),)
    keys, conf = manifest.spec.volumes
    assert (keys.kind, keys.source, keys.default_mode) == (
        VolumeKind.SECRET,
        "ssh",
        DEFAULT_SECRET_MODE,
    )
    assert keys.items == (KeyToPath("id_ed25519", "ssh/id", 0o440),)
    assert (conf.kind, conf.source, conf.items, conf.default_mode) == (
        VolumeKind.CONFIG_MAP,
        "site",
        (),
        DEFAULT_CONFIG_MODE,
    )
    assert read_stored_manifest(manifest.canonical_json()) == manifest
    assert references(manifest.spec).secrets == {
        "db": frozenset({"password"}),
        "ssh": frozenset({"id_ed25519"}),
    }
    assert references(manifest.spec).configs == {
        "site": frozenset({"GREETING"}),
        "defaults": frozenset(),
    }


def test_the_stored_form_writes_kubernetes_shapes() -> None:
    text = validate_manifest(document()).canonical_json().decode()
    assert '"valueFrom":{"secretKeyRef":{"key":"password","name":"db"}}' in text
    assert '"envFrom":[{"configMapRef":{"name":"defaults"}}]' in text
    assert '"secret":{"defaultMode":256,' in text
    assert "secretRef" not in text.replace('"envFrom"', "")


def test_a_manifest_without_references_keeps_its_canonical_form() -> None:
    data = document()
    data["spec"]["containers"][0].pop("envFrom")
    assert '"envFrom"' not in validate_manifest(data).canonical_json().decode()


def secret_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = data["spec"]["volumes"][0]["secret"]["items"]
    return items


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: secret_items(d).__setitem__(0, {"key": "k", "path": "../etc/passwd"}),
            ("spec.volumes[0].secret.items[0].path", "'../etc/passwd' has a '.' or '..' part"),
        ),
        (
            lambda d: secret_items(d).__setitem__(0, {"key": "k", "path": "/abs"}),
            (
                "spec.volumes[0].secret.items[0].path",
                "'/abs' is not a relative file path (letters, digits, '-', '_', '.' and '/', "
                "no '.' or '..' part, at most 253 characters)",
            ),
        ),
        (
            lambda d: secret_items(d).extend([{"key": "b", "path": "ssh/id"}]),
            ("spec.volumes[0].secret.items[1].path", "'ssh/id' is already the path of items[0]"),
        ),
        (
            lambda d: secret_items(d).extend([{"key": "b", "path": "ssh"}]),
            ("spec.volumes[0].secret.items[0].path", "'ssh' is the file of items[1]"),
        ),
        (
            lambda d: secret_items(d)[0].update(mode=0o1777),
            ("spec.volumes[0].secret.items[0].mode", "1023 is more than 511"),
        ),
        (
            lambda d: d["spec"]["containers"][0]["env"][1]["valueFrom"].update(
                configMapKeyRef={"name": "a", "key": "b"}
            ),
            (
                "spec.containers[0].env[1].valueFrom",
                "needs exactly one of secretKeyRef, configMapKeyRef",
            ),
        ),
        (
            lambda d: d["spec"]["containers"][0]["envFrom"].append({}),
            (
                "spec.containers[0].envFrom[1]",
                "needs exactly one of secretRef, configMapRef",
            ),
        ),
        (
            lambda d: d["spec"]["volumes"][1]["configMap"].update(name="Not_A_Label"),
            (
                "spec.volumes[1].configMap.name",
                "'Not_A_Label' is not a DNS label (lower-case letters, digits and '-', starting "
                "with a letter and not ending with '-', at most 63 characters)",
            ),
        ),
        (
            lambda d: d["spec"]["containers"][0]["env"].append(
                {"name": "OLD", "secretRef": {"name": "db", "key": "password"}}
            ),
            (
                ("spec.containers[0].env[3]", "needs exactly one of value, valueFrom"),
                ("spec.containers[0].env[3].secretRef", "is not a known field"),
            ),
        ),
    ],
)
def test_bad_references(change: Callable[[dict[str, Any]], object], expected: Any) -> None:
    """`expected`: one issue, or a tuple of them."""
    assert issues_after(change) == (expected if isinstance(expected[0], tuple) else (expected,))


def test_the_example_reads_a_config_and_a_secret() -> None:
    example = Path(__file__).resolve().parents[2] / "docs/examples/web-secrets.yaml"
    manifest = parse_manifest(example.read_text())
    found = references(manifest.spec)
    assert found.configs == {"web-config": frozenset({"GREETING"})}
    assert found.secrets == {"db": frozenset({"password"})}
