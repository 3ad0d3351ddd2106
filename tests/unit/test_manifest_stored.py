"""Manifests read back from the chain's state: the stored canonical form reads back as the very
manifest the runtime checked, without checking it again, and anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from chain.runtime.manifest import ManifestError, read_stored_manifest, validate_manifest
from chain.runtime.manifest import validate as validation
from node.commands.manifest_file import parse_manifest
from orchestrator.manifest_cache import ManifestCache
from tests.factories import ALICE
from tests.unit.test_apps import CREATE, WEB, active_chain, web
from tests.unit.test_manifest import base, manifests

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "web.yaml"


def rich() -> dict[str, Any]:
    """Every part a manifest can have, each kind of probe, volume and reference among them."""
    data = base()
    spec = data["spec"]
    spec["nodeClass"] = "gpu"
    spec["restartPolicy"] = "OnFailure"
    spec["strategy"] = {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": "10%"}}
    spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": 4}
    spec["securityContext"] = {"runAsUser": 1000, "runAsNonRoot": True}
    spec["volumes"] = [
        {"name": "data", "persistent": {"size": "1Gi"}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "100M"}},
        {
            "name": "keys",
            "secret": {
                "secretName": "db",
                "items": [
                    {"key": "id", "path": "ssh/id", "mode": 0o600},
                    {"key": "pw", "path": "pw"},
                ],
            },
        },
        {"name": "conf", "configMap": {"name": "app", "defaultMode": 0o444}},
    ]
    first = spec["containers"][0]
    first["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"},
        {"name": "cache", "mountPath": "/cache"},
        {"name": "keys", "mountPath": "/keys"},
        {"name": "conf", "mountPath": "/etc/app"},
    ]
    first["command"] = ["httpd", "-f"]
    first["args"] = ["-p", "8080"]
    first["env"] = [
        {"name": "MODE", "value": "fast"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "level"}}},
    ]
    first["envFrom"] = [{"configMapRef": {"name": "app"}}, {"secretRef": {"name": "db"}}]
    first["ports"].append({"containerPort": 5353, "protocol": "UDP"})
    first["resources"] = {
        "requests": {"cpu": "0.25", "memory": "64Mi", "ephemeral-storage": "1Gi", "gpu": 1},
        "limits": {"cpu": 2, "memory": "1Gi", "ephemeral-storage": "2Gi", "gpu": 1, "pids": 100},
    }
    first["livenessProbe"] = {"httpGet": {"port": "http", "path": "/healthz"}}
    first["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 3}
    first["startupProbe"] = {"exec": {"command": ["true"]}, "failureThreshold": 30}
    first["securityContext"] = {
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    spec["containers"].append(
        {
            "name": "sidecar",
            "image": "busybox",
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        }
    )
    return data


@pytest.mark.parametrize("data", [base(), rich()], ids=["small", "rich"])
def test_the_stored_form_reads_back_as_the_checked_manifest(data: dict[str, Any]) -> None:
    manifest = validate_manifest(data)
    assert read_stored_manifest(manifest.canonical_json()) == manifest


def test_the_example_reads_back() -> None:
    manifest = parse_manifest(EXAMPLE.read_text())
    assert read_stored_manifest(manifest.canonical_json()) == manifest


@settings(max_examples=60, deadline=None)
@given(manifests())
def test_any_checked_manifest_reads_back(data: dict[str, Any]) -> None:
    manifest = validate_manifest(data)
    assert read_stored_manifest(manifest.canonical_json()) == manifest


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (b"not json", (("manifest", "is not a stored manifest (JSONDecodeError)"),)),
        (b"[]", (("manifest", "is not a stored manifest (TypeError)"),)),
        (b'{"metadata": {"name": "web"}}', (("manifest", "is not a stored manifest (KeyError)"),)),
    ],
)
def test_what_is_not_a_stored_form_is_refused(
    stored: bytes, expected: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(ManifestError) as caught:
        read_stored_manifest(stored)
    assert caught.value.issues == expected


def test_a_form_that_is_not_canonical_is_refused() -> None:
    canonical = validate_manifest(base()).canonical_json()
    spaced = json.dumps(json.loads(canonical), indent=1).encode()
    with pytest.raises(ManifestError) as caught:
        read_stored_manifest(spaced)
    assert caught.value.issues == (("manifest", "is not in its canonical form"),)


def test_a_node_reads_the_manifests_the_chain_accepted_without_checking_them_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    accepted = validate_manifest(json.loads(web(1)))

    def checked_again(data: object) -> list[tuple[tuple[str | int, ...], str]]:
        raise AssertionError("a stored manifest was checked again")

    monkeypatch.setattr(validation, "schema_issues", checked_again)
    cache = ManifestCache()
    assert cache.get(chain.state, "web", 1) == accepted
    assert cache.get(chain.state, "web", 1) == accepted
    assert cache.get(chain.state, "web", 2) is None
    assert accepted.spec.containers == WEB.spec.containers
