"""Application manifests: schema and semantic errors with their paths, YAML and JSON, defaults,
canonical form and hash, quantities, securityContext, and what the scheduler is told."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.runtime import manifest as mf
from chain.runtime.manifest import (
    SCHEMA,
    IntOrPercent,
    Manifest,
    ManifestError,
    RollingUpdate,
    SecurityContext,
    decode_manifest,
    effective_security_context,
    validate_manifest,
)
from chain.runtime.scheduler import AppDemand, Resources
from node.commands.manifest_file import parse_manifest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "web.yaml"


def base() -> dict[str, Any]:
    """A small valid manifest to break one way at a time."""
    return {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "containers": [
                {
                    "name": "httpd",
                    "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "service": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
            "ingress": {"host": "web.statemesh.internal", "rules": [{"servicePort": "web"}]},
        },
    }


def issues_of(data: object) -> tuple[tuple[str, str], ...]:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(data)
    return caught.value.issues


def mutated(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = base()
    change(data)
    return data


def container(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["spec"]["containers"][0]
    return result


# -- the example and the canonical form ------------------------------------------------------


def test_the_example_parses_and_its_canonical_form_reads_back_the_same() -> None:
    # The published schema alone, as an editor would use it, accepts the example too.
    jsonschema.Draft202012Validator(SCHEMA).validate(yaml.safe_load(EXAMPLE.read_text()))
    manifest = parse_manifest(EXAMPLE.read_text())
    assert manifest.name == "web"
    assert manifest.spec.replicas == 3
    again = parse_manifest(manifest.canonical_json())
    assert again == manifest
    assert again.canonical_json() == manifest.canonical_json()
    assert decode_manifest(manifest.canonical_json()) == manifest


def test_defaults_are_filled_in_and_names_resolved() -> None:
    minimal = {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": "app"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"port": "http"}},
                    "resources": {"limits": {"cpu": "1", "memory": "128Mi"}},
                }
            ]
        },
    }
    assert json.loads(validate_manifest(minimal).canonical_json()) == {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": "app"},
        "spec": {
            "replicas": 1,
            "nodeClass": "cpu",
            "restartPolicy": "Always",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": [],
                    "args": [],
                    "env": [],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": 8080},
                        "initialDelaySeconds": 0,
                        "periodSeconds": 10,
                        "timeoutSeconds": 1,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                    },
                    # Requests default to the limits, as in Kubernetes.
                    "resources": {
                        "requests": {
                            "cpu": "1000m",
                            "memory": 134217728,
                            "ephemeral-storage": 0,
                            "gpu": 0,
                        },
                        "limits": {"cpu": "1000m", "memory": 134217728},
                    },
                    "volumeMounts": [],
                }
            ],
            "volumes": [],
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        },
    }


def test_without_requests_or_limits_a_container_requests_the_defaults() -> None:
    data = base()
    del container(data)["resources"]
    requests = validate_manifest(data).spec.containers[0].resources.requests
    assert (requests.cpu_millicores, requests.memory_bytes, requests.disk_bytes, requests.gpus) == (
        mf.DEFAULT_CPU_REQUEST_MILLICORES,
        mf.DEFAULT_MEMORY_REQUEST_BYTES,
        0,
        0,
    )


CANONICAL = (
    b'{"apiVersion":"statemesh/v1","kind":"Application","metadata":{"name":"web"},"spec":'
    b'{"containers":[{"args":[],"command":[],"env":[],"image":"busybox","name":"httpd",'
    b'"ports":[{"containerPort":8080,"name":"http","protocol":"TCP"}],"resources":{"limits":{},'
    b'"requests":{"cpu":"250m","ephemeral-storage":0,"gpu":0,"memory":67108864}},'
    b'"volumeMounts":[{"mountPath":"/data","name":"data"}]}],"ingress":{"host":'
    b'"web.statemesh.internal","rules":[{"path":"/","servicePort":80}]},"nodeClass":"cpu",'
    b'"replicas":2,"restartPolicy":"Always","service":{"ports":[{"name":"web","port":80,'
    b'"protocol":"TCP","targetPort":8080}]},"strategy":{"rollingUpdate":{"maxSurge":"25%",'
    b'"maxUnavailable":"25%"}},"volumes":[{"emptyDir":{},"name":"data"}]}}'
)
HASH = "3e7d72fc678d89c573aa8d20c2f85fe65c36f954637a9e56d8fc0a2c23799e3d"


def test_canonical_bytes_and_hash_are_pinned() -> None:
    manifest = validate_manifest(base())
    assert manifest.canonical_json() == CANONICAL
    assert manifest.hash().hex() == HASH
    assert hashlib.blake2b(CANONICAL, digest_size=32).hexdigest() == HASH


def test_equivalent_texts_have_one_canonical_form() -> None:
    yaml_text = """
# key order, comments, quoting and units differ; the application does not
kind: Application
apiVersion: statemesh/v1
metadata: {name: web}
spec:
  replicas: 2
  containers:
    - image: busybox
      name: httpd
      ports: [{containerPort: 8080, name: http, protocol: TCP}]
      resources: {requests: {cpu: 0.25, memory: 67108864}}
      volumeMounts: [{mountPath: /data, name: data}]
  volumes: [{name: data, emptyDir: {}}]
  service: {ports: [{name: web, port: 80, targetPort: 8080}]}
  ingress: {host: web.statemesh.internal, rules: [{path: /, servicePort: 80}]}
  strategy: {rollingUpdate: {maxSurge: 25%}}
"""
    from_yaml = parse_manifest(yaml_text)
    from_json = parse_manifest(json.dumps(base(), indent=2).encode())
    assert from_yaml == from_json == validate_manifest(base())
    assert from_yaml.hash().hex() == HASH


def test_a_change_changes_the_hash() -> None:
    data = base()
    data["spec"]["replicas"] = 3
    assert validate_manifest(data).hash().hex() != HASH


# -- errors of the schema --------------------------------------------------------------------

SCHEMA_CASES: list[tuple[str, Callable[[dict[str, Any]], object], list[tuple[str, str]]]] = [
    (
        "missing field",
        lambda d: d["metadata"].pop("name"),
        [("metadata.name", "is required")],
    ),
    (
        "two missing fields",
        lambda d: (container(d).pop("name"), container(d).pop("image")),
        [("spec.containers[0].image", "is required"), ("spec.containers[0].name", "is required")],
    ),
    (
        "unknown field",
        lambda d: container(d).update(imagePullSecrets=[], tty=True),
        [
            ("spec.containers[0].imagePullSecrets", "is not a known field"),
            ("spec.containers[0].tty", "is not a known field"),
        ],
    ),
    (
        "wrong type",
        lambda d: d["spec"].update(replicas="2"),
        [("spec.replicas", "must be an integer")],
    ),
    (
        "a boolean is not an integer",
        lambda d: d["spec"].update(replicas=True),
        [("spec.replicas", "must be an integer")],
    ),
    (
        "a decimal is not an integer",
        lambda d: d["spec"].update(replicas=Decimal("2.0")),
        [("spec.replicas", "must be an integer")],
    ),
    (
        "wrong type of a union",
        lambda d: container(d)["resources"]["requests"].update(cpu=[1]),
        [("spec.containers[0].resources.requests.cpu", "must be a string or a number")],
    ),
    (
        "an item of the wrong type says only that",
        lambda d: container(d).update(env=[5]),
        [("spec.containers[0].env[0]", "must be an object")],
    ),
    (
        "wrong constant",
        lambda d: d.update(apiVersion="apps/v1"),
        [("apiVersion", "must be statemesh/v1")],
    ),
    (
        "not in the enumeration",
        lambda d: d["spec"].update(restartPolicy="Sometimes"),
        [("spec.restartPolicy", "'Sometimes' is not one of Always, OnFailure, Never")],
    ),
    (
        "unknown node class",
        lambda d: d["spec"].update(nodeClass="tpu"),
        [("spec.nodeClass", "'tpu' is not one of cpu, gpu, storage")],
    ),
    (
        "name starting with a digit",
        lambda d: d["metadata"].update(name="1web"),
        [
            (
                "metadata.name",
                "'1web' is not a DNS label (lower-case letters, digits and '-', starting with a "
                "letter and not ending with '-', at most 63 characters)",
            )
        ],
    ),
    (
        "name with a trailing newline",
        lambda d: d["metadata"].update(name="web\n"),
        [
            (
                "metadata.name",
                "'web\\n' is not a DNS label (lower-case letters, digits and '-', starting with a "
                "letter and not ending with '-', at most 63 characters)",
            )
        ],
    ),
    (
        "name too long",
        lambda d: d["metadata"].update(name="a" * 64),
        [("metadata.name", "must be at most 63 characters")],
    ),
    (
        "empty image",
        lambda d: container(d).update(image=""),
        [("spec.containers[0].image", "must not be empty")],
    ),
    (
        "image with a space",
        lambda d: container(d).update(image="busy box"),
        [
            (
                "spec.containers[0].image",
                "'busy box' is not an image reference (no whitespace, at most 512 characters)",
            )
        ],
    ),
    (
        "below the minimum",
        lambda d: d["spec"].update(replicas=-1),
        [("spec.replicas", "-1 is less than 0")],
    ),
    (
        "above the maximum",
        lambda d: container(d)["ports"][0].update(containerPort=70000),
        [("spec.containers[0].ports[0].containerPort", "70000 is more than 65535")],
    ),
    (
        "no containers",
        lambda d: d["spec"].update(containers=[]),
        [("spec.containers", "needs at least 1 item")],
    ),
    (
        "too many containers",
        lambda d: d["spec"].update(containers=[copy.deepcopy(container(d))] * 9),
        [("spec.containers", "has more than 8 items")],
    ),
    (
        "env with a value and a secret",
        lambda d: container(d).update(
            env=[
                {
                    "name": "A",
                    "value": "x",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                }
            ]
        ),
        [("spec.containers[0].env[0]", "needs exactly one of value, valueFrom")],
    ),
    (
        "probe with no action",
        lambda d: container(d).update(livenessProbe={"periodSeconds": 5}),
        [("spec.containers[0].livenessProbe", "needs exactly one of httpGet, tcpSocket, exec")],
    ),
    (
        "volume with two sources",
        lambda d: d["spec"]["volumes"][0].update(persistent={"size": "1Gi"}),
        [("spec.volumes[0]", "needs exactly one of emptyDir, persistent, secret, configMap")],
    ),
    (
        "percent above 100",
        lambda d: d["spec"].update(strategy={"rollingUpdate": {"maxSurge": "150%"}}),
        [
            (
                "spec.strategy.rollingUpdate.maxSurge",
                '\'150%\' is not a count or a percentage from "0%" to "100%"',
            )
        ],
    ),
    (
        "several at once, in path order",
        lambda d: (
            d["spec"].update(replicas=-1, bogus=1),
            d.update(kind="Deployment"),
            container(d)["ports"][0].update(protocol="SCTP"),
        ),
        [
            ("kind", "must be Application"),
            ("spec.bogus", "is not a known field"),
            ("spec.containers[0].ports[0].protocol", "'SCTP' is not one of TCP, UDP"),
            ("spec.replicas", "-1 is less than 0"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [(change, expected) for _, change, expected in SCHEMA_CASES],
    ids=[name for name, _, _ in SCHEMA_CASES],
)
def test_schema_errors(
    change: Callable[[dict[str, Any]], object], expected: list[tuple[str, str]]
) -> None:
    assert issues_of(mutated(change)) == tuple(expected)


def test_the_document_must_be_an_object() -> None:
    assert issues_of([1, 2]) == (("manifest", "must be an object"),)


def test_every_schema_keyword_has_a_message_and_every_pattern_a_description() -> None:
    messages = {
        "type", "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum",
        "minItems", "maxItems", "oneOf", "required", "additionalProperties",
    }  # fmt: skip
    annotations = {"$schema", "$id", "$comment", "title", "description", "default", "$defs"}
    structure = {"properties", "items", "$ref"}
    seen: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "pattern" in node:
                assert "description" in node, node
            for key, value in node.items():
                seen.add(key)
                walk(value if key not in ("properties", "$defs") else list(value.values()))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(SCHEMA)
    assert seen - messages - annotations - structure == set()


# -- errors the schema cannot express --------------------------------------------------------

SEMANTIC_CASES: list[tuple[str, Callable[[dict[str, Any]], object], list[tuple[str, str]]]] = [
    (
        "duplicate container name",
        lambda d: d["spec"]["containers"].append({"name": "httpd", "image": "busybox"}),
        [("spec.containers[1].name", "'httpd' is already the name of spec.containers[0]")],
    ),
    (
        "duplicate container port",
        lambda d: d["spec"]["containers"].append(
            {"name": "side", "image": "busybox", "ports": [{"containerPort": 8080}]}
        ),
        [
            (
                "spec.containers[1].ports[0].containerPort",
                "8080/TCP is already declared at spec.containers[0].ports[0]",
            )
        ],
    ),
    (
        "the same number over UDP is another port",
        lambda d: d["spec"]["containers"].append(
            {
                "name": "side",
                "image": "busybox",
                "ports": [{"containerPort": 8080, "protocol": "UDP"}],
            }
        ),
        [],
    ),
    (
        "duplicate port name",
        lambda d: container(d)["ports"].append({"name": "http", "containerPort": 9090}),
        [
            (
                "spec.containers[0].ports[1].name",
                "'http' is already the name of spec.containers[0].ports[0]",
            )
        ],
    ),
    (
        "duplicate environment variable",
        lambda d: container(d).update(
            env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
        ),
        [("spec.containers[0].env[1].name", "'A' is already set by env[0]")],
    ),
    (
        "duplicate volume name",
        lambda d: d["spec"]["volumes"].append({"name": "data", "persistent": {"size": "1Gi"}}),
        [("spec.volumes[1].name", "'data' is already the name of spec.volumes[0]")],
    ),
    (
        "volume mount of an unknown volume",
        lambda d: container(d)["volumeMounts"].append({"name": "logs", "mountPath": "/logs"}),
        [("spec.containers[0].volumeMounts[1].name", "no volume named 'logs' in spec.volumes")],
    ),
    (
        "volume mounted twice in a container",
        lambda d: container(d)["volumeMounts"].append({"name": "data", "mountPath": "/else"}),
        [("spec.containers[0].volumeMounts[1].name", "volume 'data' is already mounted here")],
    ),
    (
        "volume mounted at two paths",
        lambda d: d["spec"]["containers"].append(
            {
                "name": "side",
                "image": "busybox",
                "volumeMounts": [{"name": "data", "mountPath": "/other"}],
            }
        ),
        [
            (
                "spec.containers[1].volumeMounts[0].mountPath",
                "volume 'data' is mounted at /data by spec.containers[0].volumeMounts[0]; "
                "mount it at the same path in every container",
            )
        ],
    ),
    (
        "two volumes at one path",
        lambda d: (
            d["spec"]["volumes"].append({"name": "more", "emptyDir": {}}),
            container(d)["volumeMounts"].append({"name": "more", "mountPath": "/data"}),
        ),
        [
            (
                "spec.containers[0].volumeMounts[1].mountPath",
                "/data is where volume 'data' is mounted",
            )
        ],
    ),
    (
        "probe on an undeclared port",
        lambda d: container(d).update(readinessProbe={"httpGet": {"port": 9090}}),
        [
            (
                "spec.containers[0].readinessProbe.httpGet.port",
                "port 9090 is not declared by this container (it declares 8080/TCP)",
            )
        ],
    ),
    (
        "probe on an unknown port name",
        lambda d: container(d).update(livenessProbe={"tcpSocket": {"port": "admin"}}),
        [
            (
                "spec.containers[0].livenessProbe.tcpSocket.port",
                "no port of this container is named 'admin' (it declares 8080/TCP)",
            )
        ],
    ),
    (
        "probe on a UDP port",
        lambda d: (
            container(d)["ports"].append({"containerPort": 53, "protocol": "UDP"}),
            container(d).update(startupProbe={"tcpSocket": {"port": 53}}),
        ),
        [
            (
                "spec.containers[0].startupProbe.tcpSocket.port",
                "port 53 is UDP; probes connect over TCP",
            )
        ],
    ),
    (
        "liveness probe that must succeed twice",
        lambda d: container(d).update(
            livenessProbe={"exec": {"command": ["true"]}, "successThreshold": 2}
        ),
        [
            (
                "spec.containers[0].livenessProbe.successThreshold",
                "must be 1 for liveness and startup probes",
            )
        ],
    ),
    (
        "a readiness probe may need two successes",
        lambda d: container(d).update(
            readinessProbe={"exec": {"command": ["true"]}, "successThreshold": 2}
        ),
        [],
    ),
    (
        "service target that is not a container port",
        lambda d: d["spec"]["service"]["ports"][0].update(targetPort=9090),
        [("spec.service.ports[0].targetPort", "port 9090 is not a container port")],
    ),
    (
        "service target name that is not a container port",
        lambda d: d["spec"]["service"]["ports"][0].update(targetPort="admin"),
        [("spec.service.ports[0].targetPort", "no container port is named 'admin'")],
    ),
    (
        "service target defaults to the service port",
        lambda d: d["spec"]["service"]["ports"][0].pop("targetPort"),
        [("spec.service.ports[0].targetPort", "port 80 is not a container port")],
    ),
    (
        "service port over another protocol than its target",
        lambda d: d["spec"]["service"]["ports"][0].update(protocol="UDP"),
        [
            (
                "spec.ingress.rules[0].servicePort",
                "service port 80 is UDP; ingress routes HTTP over TCP",
            ),
            (
                "spec.service.ports[0].targetPort",
                "container port 8080 is TCP, the service port UDP",
            ),
        ],
    ),
    (
        "duplicate service port and name",
        lambda d: d["spec"]["service"]["ports"].append(
            {"name": "web", "port": 80, "targetPort": 8080}
        ),
        [
            ("spec.service.ports[1].name", "'web' is already the name of spec.service.ports[0]"),
            ("spec.service.ports[1].port", "80/TCP is already declared at spec.service.ports[0]"),
        ],
    ),
    (
        "ingress host outside the zone",
        lambda d: d["spec"]["ingress"].update(host="web.example.com"),
        [("spec.ingress.host", "'web.example.com' is not a name under statemesh.internal")],
    ),
    (
        "ingress host that is the zone itself",
        lambda d: d["spec"]["ingress"].update(host="statemesh.internal"),
        [("spec.ingress.host", "'statemesh.internal' is not a name under statemesh.internal")],
    ),
    (
        "ingress to an unknown service port",
        lambda d: d["spec"]["ingress"]["rules"].append({"path": "/api", "servicePort": 81}),
        [("spec.ingress.rules[1].servicePort", "port 81 is not a service port")],
    ),
    (
        "ingress to an unknown service port name",
        lambda d: d["spec"]["ingress"]["rules"][0].update(servicePort="api"),
        [("spec.ingress.rules[0].servicePort", "no service port is named 'api'")],
    ),
    (
        "ingress with one path twice",
        lambda d: d["spec"]["ingress"]["rules"].append({"path": "/", "servicePort": 80}),
        [("spec.ingress.rules[1].path", "/ matches what spec.ingress.rules[0] matches")],
    ),
    (
        "ingress with one path twice, once with a trailing slash",
        lambda d: d["spec"]["ingress"]["rules"].extend(
            [{"path": "/api", "servicePort": 80}, {"path": "/api/", "servicePort": 80}]
        ),
        [("spec.ingress.rules[2].path", "/api/ matches what spec.ingress.rules[1] matches")],
    ),
    (
        "ingress without a service",
        lambda d: d["spec"].pop("service"),
        [("spec.ingress", "routes to the service: spec.service is required")],
    ),
    (
        "replicas above the autoscaling range",
        lambda d: d["spec"].update(autoscaling={"minReplicas": 1, "maxReplicas": 1}),
        [("spec.replicas", "2 is outside the autoscaling range 1..1")],
    ),
    (
        "replicas below the autoscaling range",
        lambda d: d["spec"].update(autoscaling={"minReplicas": 3, "maxReplicas": 5}),
        [("spec.replicas", "2 is outside the autoscaling range 3..5")],
    ),
    (
        "autoscaling minimum above its maximum",
        lambda d: d["spec"].update(autoscaling={"minReplicas": 6, "maxReplicas": 5}),
        [("spec.autoscaling.minReplicas", "6 is above maxReplicas 5")],
    ),
    (
        "cpu limit below the request",
        lambda d: container(d)["resources"].update(limits={"cpu": "0.2"}),
        [("spec.containers[0].resources.limits.cpu", "the limit 200m is below the request 250m")],
    ),
    (
        "memory limit below the request",
        lambda d: container(d)["resources"].update(limits={"memory": "32Mi"}),
        [
            (
                "spec.containers[0].resources.limits.memory",
                "the limit 32Mi is below the request 64Mi",
            )
        ],
    ),
    (
        "disk limit below the request, named disk",
        lambda d: container(d)["resources"].update(
            requests={"disk": "2Gi"}, limits={"disk": "1Gi"}
        ),
        [("spec.containers[0].resources.limits.disk", "the limit 1Gi is below the request 2Gi")],
    ),
    (
        "memory limit below what the engine enforces",
        lambda d: container(d)["resources"].update(requests={}, limits={"memory": "4Mi"}),
        [
            (
                "spec.containers[0].resources.limits.memory",
                "4Mi is below the least memory limit, 6Mi",
            )
        ],
    ),
    (
        "both names of disk",
        lambda d: container(d)["resources"].update(
            requests={"disk": "1Gi", "ephemeral-storage": "1Gi"}
        ),
        [
            (
                "spec.containers[0].resources.requests.disk",
                "repeats ephemeral-storage; give only one of the two",
            )
        ],
    ),
    (
        "gpus outside the gpu class",
        lambda d: container(d)["resources"]["requests"].update(gpu=1),
        [
            (
                "spec.containers[0].resources.requests.gpu",
                "asks for gpus, which only nodeClass gpu offers (spec.nodeClass is cpu)",
            )
        ],
    ),
    (
        "gpus in the gpu class",
        lambda d: (
            container(d)["resources"]["requests"].update(gpu=1),
            d["spec"].update(nodeClass="gpu"),
        ),
        [],
    ),
    (
        "cpu that is not a quantity",
        lambda d: container(d)["resources"]["requests"].update(cpu="1Gi"),
        [
            (
                "spec.containers[0].resources.requests.cpu",
                "'1Gi' is not a cpu quantity (cores such as 2 or \"0.5\", or millicores such as "
                '"500m")',
            )
        ],
    ),
    (
        "cpu finer than a millicore",
        lambda d: container(d)["resources"]["requests"].update(cpu="0.0005"),
        [("spec.containers[0].resources.requests.cpu", "'0.0005' is finer than a millicore")],
    ),
    (
        "cpu above the bound",
        lambda d: container(d)["resources"]["requests"].update(cpu=300),
        [("spec.containers[0].resources.requests.cpu", "300 is more than 256 cores")],
    ),
    (
        "memory that is not a quantity",
        lambda d: container(d)["resources"]["requests"].update(memory="1.5XB"),
        [
            (
                "spec.containers[0].resources.requests.memory",
                "'1.5XB' is not a memory quantity (bytes, or a number with a suffix such as "
                '"256Mi", "1Gi" or "500M")',
            )
        ],
    ),
    (
        "memory in an exponent form",
        lambda d: container(d)["resources"]["requests"].update(memory=Decimal("1E+3")),
        [
            (
                "spec.containers[0].resources.requests.memory",
                "1E+3 is not a memory quantity (bytes, or a number with a suffix such as "
                '"256Mi", "1Gi" or "500M")',
            )
        ],
    ),
    (
        "memory above the bound",
        lambda d: container(d)["resources"]["requests"].update(memory="2Ti"),
        [("spec.containers[0].resources.requests.memory", "'2Ti' is more than 1Ti")],
    ),
    (
        "persistent volume of size zero",
        lambda d: d["spec"]["volumes"].append({"name": "db", "persistent": {"size": 0}}),
        [("spec.volumes[1].persistent.size", "must be more than 0")],
    ),
    (
        "emptyDir size that is not a quantity",
        lambda d: d["spec"]["volumes"][0].update(emptyDir={"sizeLimit": "big"}),
        [
            (
                "spec.volumes[0].emptyDir.sizeLimit",
                "'big' is not a disk quantity (bytes, or a number with a suffix such as "
                '"256Mi", "1Gi" or "500M")',
            )
        ],
    ),
    (
        "a rolling update that cannot move",
        lambda d: d["spec"].update(
            strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
        ),
        [("spec.strategy.rollingUpdate", "maxSurge and maxUnavailable cannot both be 0")],
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [(change, expected) for _, change, expected in SEMANTIC_CASES],
    ids=[name for name, _, _ in SEMANTIC_CASES],
)
def test_semantic_errors(
    change: Callable[[dict[str, Any]], object], expected: list[tuple[str, str]]
) -> None:
    data = mutated(change)
    if not expected:
        validate_manifest(data)
        return
    assert issues_of(data) == tuple(expected)


def test_every_semantic_issue_is_reported_at_once() -> None:
    def break_everything(d: dict[str, Any]) -> None:
        d["spec"]["containers"].append({"name": "httpd", "image": "busybox"})
        container(d)["resources"]["limits"] = {"cpu": "100m"}
        container(d)["readinessProbe"] = {"httpGet": {"port": 1}}
        d["spec"]["ingress"]["host"] = "web.example.com"

    with pytest.raises(ManifestError) as caught:
        validate_manifest(mutated(break_everything))
    error = caught.value
    assert error.issues == (
        ("spec.containers[0].readinessProbe.httpGet.port",
         "port 1 is not declared by this container (it declares 8080/TCP)"),
        ("spec.containers[0].resources.limits.cpu", "the limit 100m is below the request 250m"),
        ("spec.containers[1].name", "'httpd' is already the name of spec.containers[0]"),
        ("spec.ingress.host", "'web.example.com' is not a name under statemesh.internal"),
    )  # fmt: skip
    assert str(error) == (
        "invalid manifest: spec.containers[0].readinessProbe.httpGet.port: port 1 is not "
        "declared by this container (it declares 8080/TCP); spec.containers[0].resources."
        "limits.cpu: the limit 100m is below the request 250m; spec.containers[1].name: "
        "'httpd' is already the name of spec.containers[0]; spec.ingress.host: "
        "'web.example.com' is not a name under statemesh.internal"
    )


def test_the_zone_is_the_chains_to_choose() -> None:
    data = base()
    data["spec"]["ingress"]["host"] = "shop.apps.example.org"
    assert validate_manifest(data, zone="example.org").spec.ingress is not None
    assert issues_of(data) == (
        ("spec.ingress.host", "'shop.apps.example.org' is not a name under statemesh.internal"),
    )


def test_paths_sort_indices_as_numbers() -> None:
    data = base()
    container(data)["env"] = [{"name": f"V{i}", "value": "x"} for i in range(12)]
    container(data)["env"][10]["bogus"] = 1
    container(data)["env"][2]["bogus"] = 1
    assert issues_of(data) == (
        ("spec.containers[0].env[2].bogus", "is not a known field"),
        ("spec.containers[0].env[10].bogus", "is not a known field"),
    )


# -- text ------------------------------------------------------------------------------------

TEXT_CASES: list[tuple[str, str | bytes, tuple[tuple[str, str], ...]]] = [
    ("not UTF-8 JSON", b'{"kind": "\xff"}', (("manifest", "is not UTF-8 text"),)),
    (
        "not UTF-8 YAML",
        b"kind: \xff\n",
        (
            (
                "manifest",
                "is not valid YAML: unacceptable character #x00ff: invalid start byte in "
                '"<byte string>", position 6',
            ),
        ),
    ),
    (
        "broken JSON",
        b'{"apiVersion": }',
        (("manifest", "is not valid JSON: Expecting value at line 1 column 16"),),
    ),
    ("NaN", b'{"spec": NaN}', (("manifest", "is not valid JSON: NaN is not a number"),)),
    (
        "repeated JSON key",
        b'{"kind": "A", "kind": "B"}',
        (("manifest", "repeats the key 'kind' in one object"),),
    ),
    (
        "broken YAML",
        "kind: [Application",
        (
            (
                "manifest",
                "is not valid YAML: expected ',' or ']', but got '<stream end>' at line 1 "
                "column 19",
            ),
        ),
    ),
    ("repeated YAML key", "kind: A\nkind: B\n", (("manifest", "repeats the key 'kind'"),)),
    ("YAML alias", "a: &x [1, 2]\nb: *x\n", (("b", "uses a YAML alias; write the value out"),)),
    (
        "YAML date",
        "apiVersion: 2024-01-01\n",
        (("apiVersion", "is a date, not a JSON value (quote it)"),),
    ),
    ("YAML non-text key", "1: x\n", (("1", "is not a text key"),)),
    ("YAML infinity", "spec: .inf\n", (("spec", "is not a finite number"),)),
    (
        "deep JSON",
        b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}",
        (("a" + "[0]" * 32, "is nested more than 32 levels deep"),),
    ),
    (
        "deep YAML",
        "a:\n" + "".join(" " * i + "- \n" for i in range(1, 40)),
        (("a" + "[0]" * 32, "is nested more than 32 levels deep"),),
    ),
    ("too big", "#" * (mf.MAX_MANIFEST_BYTES + 1), (("manifest", "is more than 65536 bytes"),)),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in TEXT_CASES],
    ids=[name for name, _, _ in TEXT_CASES],
)
def test_bad_text(text: str | bytes, expected: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    assert caught.value.issues == expected


def test_deep_json_beyond_the_recursion_limit_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError) as caught:
        decode_manifest(b"[" * 30_000 + b"]" * 30_000)
    assert caught.value.issues == (("manifest", "is nested more than 32 levels deep"),)


def test_the_chain_reads_json_only() -> None:
    with pytest.raises(ManifestError) as caught:
        decode_manifest(EXAMPLE.read_bytes())
    assert caught.value.issues == (
        ("manifest", "is not valid JSON: Expecting value at line 1 column 1"),
    )


def test_bytes_are_bounded_before_parsing() -> None:
    text = json.dumps(base()) + " " * mf.MAX_MANIFEST_BYTES
    with pytest.raises(ManifestError) as caught:
        decode_manifest(text.encode())
    assert caught.value.issues == (
        ("manifest", f"is {len(text)} bytes, more than {mf.MAX_MANIFEST_BYTES}"),
    )


def test_the_canonical_form_is_bounded_too() -> None:
    data = base()
    data["spec"]["containers"] = [
        {
            "name": f"c{i}",
            "image": "busybox",
            "env": [{"name": f"V{j}", "value": "x" * 100} for j in range(64)],
        }
        for i in range(8)
    ]
    del data["spec"]["service"], data["spec"]["ingress"], data["spec"]["volumes"]
    with pytest.raises(ManifestError) as caught:
        validate_manifest(data)
    ((path, message),) = caught.value.issues
    assert path == "manifest"
    assert re.fullmatch(r"has a canonical form of \d+ bytes, more than 65536", message)


def test_lone_surrogates_are_refused() -> None:
    text = json.dumps(base()).replace('"busybox"', '"busy\\ud800box"')
    assert issues_of(json.loads(text)) == (
        ("spec.containers[0].image", "is not valid Unicode text"),
    )
    text = json.dumps(base()).replace('"replicas"', '"\\ud800"')
    assert issues_of(json.loads(text)) == (("spec.'\\ud800'", "is not a text key"),)


# -- quantities and what the scheduler needs -------------------------------------------------


@pytest.mark.parametrize(
    ("given", "millicores"),
    [("500m", 500), ("2", 2000), (2, 2000), ("0.5", 500), (Decimal("0.25"), 250), ("1.001", 1001),
     ("0", 0), ("256", 256_000)],
)  # fmt: skip
def test_cpu_quantities(given: object, millicores: int) -> None:
    data = base()
    container(data)["resources"]["requests"]["cpu"] = given
    assert (
        validate_manifest(data).spec.containers[0].resources.requests.cpu_millicores == millicores
    )


@pytest.mark.parametrize(
    ("given", "amount"),
    [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("500M", 5 * 10**8), ("1k", 1000),
     (1024, 1024), ("1.5Gi", 3 * 2**29), ("0.5", 1), (Decimal("1.5"), 2), ("1Ki", 1024)],
)  # fmt: skip
def test_memory_quantities(given: object, amount: int) -> None:
    data = base()
    container(data)["resources"]["requests"]["memory"] = given
    assert validate_manifest(data).spec.containers[0].resources.requests.memory_bytes == amount


def test_replica_resources_sum_containers_and_volumes_and_round_up() -> None:
    data = base()
    container(data)["resources"]["requests"] = {
        "cpu": "250m", "memory": "100Mi", "ephemeral-storage": "1Gi", "gpu": 1,
    }  # fmt: skip
    data["spec"]["nodeClass"] = "gpu"
    data["spec"]["containers"].append(
        {"name": "side", "image": "busybox",
         "resources": {"requests": {"cpu": "0.1", "memory": "1"}}}
    )  # fmt: skip
    data["spec"]["volumes"] = [
        {"name": "data", "persistent": {"size": "10G"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "512Mi"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    manifest = validate_manifest(data)
    # 100 MiB + 1 byte rounds up to 101 MiB; 1 GiB + 10 GB + 512 MiB rounds up to 11 GiB.
    assert manifest.replica_resources() == Resources(350, 101, 11, 1)
    assert manifest.demand("web", 4) == AppDemand("web", 4, 2, "gpu", Resources(350, 101, 11, 1))


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "resolved"),
    [
        (IntOrPercent(25, percent=True), IntOrPercent(25, percent=True), 10, (3, 2)),
        (IntOrPercent(25, percent=True), IntOrPercent(25, percent=True), 1, (1, 0)),
        (IntOrPercent(1, percent=False), IntOrPercent(0, percent=False), 5, (1, 0)),
        (IntOrPercent(0, percent=True), IntOrPercent(10, percent=True), 3, (0, 1)),
        (IntOrPercent(100, percent=True), IntOrPercent(50, percent=True), 3, (3, 1)),
        (IntOrPercent(2, percent=False), IntOrPercent(3, percent=False), 0, (2, 3)),
    ],
)
def test_rolling_update_rounds_as_kubernetes(
    surge: IntOrPercent, unavailable: IntOrPercent, replicas: int, resolved: tuple[int, int]
) -> None:
    assert RollingUpdate(surge, unavailable).resolve(replicas) == resolved


# -- securityContext -------------------------------------------------------------------------

ADDABLE = "CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE, SETGID, SETPCAP, SETUID"
POD_CONTEXT = "spec.securityContext"
CONTAINER_CONTEXT = "spec.containers[0].securityContext"


def with_contexts(pod: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any]:
    data = base()
    if pod is not None:
        data["spec"]["securityContext"] = pod
    if own is not None:
        container(data)["securityContext"] = own
    return data


def contexts_of(data: dict[str, Any]) -> tuple[SecurityContext, SecurityContext, SecurityContext]:
    """(pod level, container level, effective) of the first container."""
    manifest = validate_manifest(data)
    first = manifest.spec.containers[0]
    return (
        manifest.spec.security_context,
        first.security_context,
        effective_security_context(manifest.spec, first),
    )


@pytest.mark.parametrize(
    ("pod", "own", "pod_context", "own_context"),
    [
        (None, None, SecurityContext(), SecurityContext()),
        ({}, {"capabilities": {}}, SecurityContext(), SecurityContext()),
        (
            {"runAsUser": 1000, "runAsGroup": 2147483647, "runAsNonRoot": True},
            None,
            SecurityContext(run_as_user=1000, run_as_group=2**31 - 1, run_as_non_root=True),
            SecurityContext(),
        ),
        (
            None,
            {
                "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False,
                "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                "privileged": False,
                "capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN", "CHOWN"], "drop": ["ALL"]},
            },
            SecurityContext(),
            SecurityContext(0, 0, False, True, ("CHOWN", "NET_BIND_SERVICE"), ("ALL",)),
        ),
        (
            {"allowPrivilegeEscalation": False, "privileged": False,
             "capabilities": {"add": [], "drop": ["NET_RAW", "SYS_ADMIN", "MKNOD"]}},
            None,
            SecurityContext(
                capabilities_add=(), capabilities_drop=("MKNOD", "NET_RAW", "SYS_ADMIN")
            ),
            SecurityContext(),
        ),
    ],
    ids=["none", "empty", "pod level", "container level", "pod capabilities"],
)  # fmt: skip
def test_security_contexts_that_are_accepted(
    pod: dict[str, Any] | None,
    own: dict[str, Any] | None,
    pod_context: SecurityContext,
    own_context: SecurityContext,
) -> None:
    assert contexts_of(with_contexts(pod, own))[:2] == (pod_context, own_context)


@pytest.mark.parametrize(
    ("pod", "own", "effective"),
    [
        (None, None, SecurityContext()),
        (
            {"runAsUser": 1000, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            None,
            SecurityContext(run_as_user=1000, run_as_non_root=True, capabilities_drop=("ALL",)),
        ),
        (
            None,
            {"runAsGroup": 5, "readOnlyRootFilesystem": False},
            SecurityContext(run_as_group=5, read_only_root_filesystem=False),
        ),
        # The container wins field by field; what it leaves unset comes from the pod.
        (
            {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
             "capabilities": {"add": ["CHOWN"], "drop": ["ALL"]}},
            {"runAsUser": 2000, "readOnlyRootFilesystem": True,
             "capabilities": {"add": ["NET_BIND_SERVICE"]}},
            SecurityContext(2000, 1000, True, True, ("NET_BIND_SERVICE",), ("ALL",)),
        ),
        # Set to false or empty is set: it overrides the pod's true or its list.
        (
            {"runAsNonRoot": True, "capabilities": {"add": ["KILL"], "drop": ["MKNOD"]}},
            {"runAsNonRoot": False, "capabilities": {"add": [], "drop": []}},
            SecurityContext(run_as_non_root=False, capabilities_add=(), capabilities_drop=()),
        ),
    ],
    ids=["none", "pod only", "container only", "container wins", "false and empty win"],
)  # fmt: skip
def test_the_effective_security_context_is_the_container_s_over_the_pod_s(
    pod: dict[str, Any] | None, own: dict[str, Any] | None, effective: SecurityContext
) -> None:
    assert contexts_of(with_contexts(pod, own))[2] == effective


def test_each_container_merges_with_the_pod_on_its_own() -> None:
    data = with_contexts({"runAsUser": 1000}, {"runAsUser": 2000})
    data["spec"]["containers"].append({"name": "side", "image": "busybox"})
    spec = validate_manifest(data).spec
    users = [effective_security_context(spec, c).run_as_user for c in spec.containers]
    assert users == [2000, 1000]


SECURITY_CASES: list[tuple[str, Callable[[dict[str, Any]], object], list[tuple[str, str]]]] = [
    (
        "privilege escalation",
        lambda d: container(d).update(securityContext={"allowPrivilegeEscalation": True}),
        [(f"{CONTAINER_CONTEXT}.allowPrivilegeEscalation",
          "privilege escalation is never allowed: it may only be false")],
    ),
    (
        "privilege escalation at pod level",
        lambda d: d["spec"].update(securityContext={"allowPrivilegeEscalation": True}),
        [(f"{POD_CONTEXT}.allowPrivilegeEscalation",
          "privilege escalation is never allowed: it may only be false")],
    ),
    (
        "privileged",
        lambda d: container(d).update(securityContext={"privileged": True}),
        [(f"{CONTAINER_CONTEXT}.privileged",
          "privileged containers are never allowed: it may only be false")],
    ),
    (
        "capabilities that may not be added",
        lambda d: container(d).update(
            securityContext={"capabilities": {"add": ["CHOWN", "NET_RAW", "SYS_ADMIN", "ALL"]}}
        ),
        [
            (f"{CONTAINER_CONTEXT}.capabilities.add[1]",
             f"NET_RAW may not be added: a container may add only {ADDABLE}"),
            (f"{CONTAINER_CONTEXT}.capabilities.add[2]",
             f"SYS_ADMIN may not be added: a container may add only {ADDABLE}"),
            (f"{CONTAINER_CONTEXT}.capabilities.add[3]",
             f"ALL may not be added: a container may add only {ADDABLE}"),
        ],
    ),
    (
        "a capability that may not be added at pod level",
        lambda d: d["spec"].update(securityContext={"capabilities": {"add": ["NET_ADMIN"]}}),
        [(f"{POD_CONTEXT}.capabilities.add[0]",
          f"NET_ADMIN may not be added: a container may add only {ADDABLE}")],
    ),
    (
        "names that are not capabilities",
        lambda d: container(d).update(
            securityContext={"capabilities": {"add": ["CAP_CHOWN"], "drop": ["ALL", "NET_FOO"]}}
        ),
        [
            (f"{CONTAINER_CONTEXT}.capabilities.add[0]",
             "'CAP_CHOWN' is not a Linux capability (write it as Kubernetes does, without CAP_, "
             "such as NET_BIND_SERVICE)"),
            (f"{CONTAINER_CONTEXT}.capabilities.drop[1]",
             "'NET_FOO' is not a Linux capability (write it as Kubernetes does, without CAP_, "
             "such as NET_BIND_SERVICE)"),
        ],
    ),
    (
        "a capability name in lower case",
        lambda d: container(d).update(securityContext={"capabilities": {"drop": ["net_raw"]}}),
        [(f"{CONTAINER_CONTEXT}.capabilities.drop[0]",
          "'net_raw' is not a capability name (upper-case letters and '_', such as "
          "NET_BIND_SERVICE)")],
    ),
    (
        "unknown fields",
        lambda d: (
            d["spec"].update(securityContext={"fsGroup": 1}),
            container(d).update(
                securityContext={"seLinuxOptions": {}, "capabilities": {"keep": ["KILL"]}}
            ),
        ),
        [
            (f"{CONTAINER_CONTEXT}.capabilities.keep", "is not a known field"),
            (f"{CONTAINER_CONTEXT}.seLinuxOptions", "is not a known field"),
            (f"{POD_CONTEXT}.fsGroup", "is not a known field"),
        ],
    ),
    (
        "readOnlyRootFilesystem at pod level",
        lambda d: d["spec"].update(securityContext={"readOnlyRootFilesystem": True}),
        [(f"{POD_CONTEXT}.readOnlyRootFilesystem", "is not a known field")],
    ),
    (
        "ids out of range or of the wrong type",
        lambda d: (
            d["spec"].update(securityContext={"runAsUser": -1, "runAsGroup": 2**31}),
            container(d).update(
                securityContext={"runAsUser": "1000", "runAsGroup": True, "runAsNonRoot": 1}
            ),
        ),
        [
            (f"{CONTAINER_CONTEXT}.runAsGroup", "must be an integer"),
            (f"{CONTAINER_CONTEXT}.runAsNonRoot", "must be true or false"),
            (f"{CONTAINER_CONTEXT}.runAsUser", "must be an integer"),
            (f"{POD_CONTEXT}.runAsGroup", "2147483648 is more than 2147483647"),
            (f"{POD_CONTEXT}.runAsUser", "-1 is less than 0"),
        ],
    ),
    (
        "root and runAsNonRoot at pod level",
        lambda d: d["spec"].update(securityContext={"runAsUser": 0, "runAsNonRoot": True}),
        [(f"{POD_CONTEXT}.runAsUser",
          f"is 0 (root), but runAsNonRoot is true at {POD_CONTEXT}.runAsNonRoot")],
    ),
    (
        "root and runAsNonRoot in a container",
        lambda d: container(d).update(securityContext={"runAsUser": 0, "runAsNonRoot": True}),
        [(f"{CONTAINER_CONTEXT}.runAsUser",
          f"is 0 (root), but runAsNonRoot is true at {CONTAINER_CONTEXT}.runAsNonRoot")],
    ),
    (
        "a container runs as root under a pod's runAsNonRoot",
        lambda d: (
            d["spec"].update(securityContext={"runAsNonRoot": True}),
            container(d).update(securityContext={"runAsUser": 0}),
        ),
        [(f"{CONTAINER_CONTEXT}.runAsUser",
          f"is 0 (root), but runAsNonRoot is true at {POD_CONTEXT}.runAsNonRoot")],
    ),
    (
        "a container asks for runAsNonRoot under a pod's root",
        lambda d: (
            d["spec"].update(securityContext={"runAsUser": 0}),
            container(d).update(securityContext={"runAsNonRoot": True}),
        ),
        [(f"{POD_CONTEXT}.runAsUser",
          f"is 0 (root), but runAsNonRoot is true at {CONTAINER_CONTEXT}.runAsNonRoot")],
    ),
    (
        "a container that lifts the pod's runAsNonRoot may run as root",
        lambda d: (
            d["spec"].update(securityContext={"runAsNonRoot": True}),
            container(d).update(securityContext={"runAsUser": 0, "runAsNonRoot": False}),
        ),
        [],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"),
    [(change, expected) for _, change, expected in SECURITY_CASES],
    ids=[name for name, _, _ in SECURITY_CASES],
)
def test_security_context_errors(
    change: Callable[[dict[str, Any]], object], expected: list[tuple[str, str]]
) -> None:
    data = mutated(change)
    if not expected:
        validate_manifest(data)
        return
    assert issues_of(data) == tuple(expected)


def test_a_security_context_is_part_of_the_canonical_form_and_the_hash() -> None:
    data = with_contexts(
        {"runAsNonRoot": True, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]}},
        {"readOnlyRootFilesystem": True, "capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}},
    )
    manifest = validate_manifest(data)
    canonical = json.loads(manifest.canonical_json())
    assert canonical["spec"]["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert canonical["spec"]["containers"][0]["securityContext"] == {
        "readOnlyRootFilesystem": True, "capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]},
    }  # fmt: skip
    again = decode_manifest(manifest.canonical_json())
    assert again == manifest and again.canonical_json() == manifest.canonical_json()
    assert manifest.hash().hex() != HASH
    changed = copy.deepcopy(data)
    container(changed)["securityContext"]["runAsUser"] = 1001
    assert validate_manifest(changed).hash() != manifest.hash()


def test_what_changes_nothing_keeps_the_canonical_form() -> None:
    # Empty contexts, false where only false is allowed, the order and repeats of capabilities.
    plain = with_contexts({}, {"allowPrivilegeEscalation": False, "privileged": False})
    assert validate_manifest(plain).hash().hex() == HASH
    listed = with_contexts(None, {"capabilities": {"drop": ["NET_RAW", "MKNOD", "NET_RAW"]}})
    reordered = with_contexts(None, {"capabilities": {"drop": ["MKNOD", "NET_RAW"]}})
    assert validate_manifest(listed).hash() == validate_manifest(reordered).hash()


# -- properties ------------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
ports = st.integers(1, 65535)


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    container_names = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    port_numbers = draw(st.lists(ports, min_size=count, max_size=count, unique=True))
    containers = []
    for name, port in zip(container_names, port_numbers, strict=True):
        cpu = draw(st.integers(0, 4000))
        memory = draw(st.integers(0, 2**33))
        item: dict[str, Any] = {
            "name": name,
            "image": draw(st.sampled_from(["busybox", "nginx:1.27", "ghcr.io/x/y@sha256:ab"])),
            "command": draw(
                st.lists(st.text(max_size=8).filter(lambda s: "\0" not in s), max_size=3)
            ),
            "ports": [{"name": f"p{port}", "containerPort": port}],
            "resources": {
                "requests": {
                    "cpu": draw(
                        st.sampled_from([f"{cpu}m", Decimal(cpu) / 1000, str(Decimal(cpu) / 1000)])
                    ),
                    "memory": draw(st.sampled_from([memory, str(memory)])),
                }
            },
        }
        if draw(st.booleans()):
            item["readinessProbe"] = {
                "httpGet": {"port": draw(st.sampled_from([port, f"p{port}"]))},
                "periodSeconds": draw(st.integers(1, 60)),
            }
        if draw(st.booleans()):
            item["env"] = [
                {"name": "MODE", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
            ]
        if draw(st.booleans()):
            item["securityContext"] = draw(security_contexts(container_level=True))
        containers.append(item)
    replicas = draw(st.integers(0, 20))
    data: dict[str, Any] = {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": draw(names)},
        "spec": {
            "replicas": replicas,
            "restartPolicy": draw(st.sampled_from(["Always", "OnFailure", "Never"])),
            "containers": containers,
        },
    }
    if draw(st.booleans()):
        data["spec"]["service"] = {
            "ports": [{"port": 80, "targetPort": f"p{port_numbers[0]}", "name": "web"}]
        }
    if draw(st.booleans()):
        data["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": max(replicas, 1)}
        data["spec"]["replicas"] = max(replicas, 1)
    if draw(st.booleans()):
        data["spec"]["securityContext"] = draw(security_contexts(container_level=False))
    return data


@st.composite
def security_contexts(draw: st.DrawFn, *, container_level: bool) -> dict[str, Any]:
    """Valid ones: never root with runAsNonRoot true, at either level or merged."""
    fields: dict[str, Any] = {
        "runAsUser": st.integers(1, 2**31 - 1),
        "runAsGroup": st.integers(0, 2**31 - 1),
        "runAsNonRoot": st.booleans(),
        "allowPrivilegeEscalation": st.just(False),
        "privileged": st.just(False),
        "capabilities": st.fixed_dictionaries(
            {},
            optional={
                "add": st.lists(st.sampled_from(sorted(mf.ADDABLE_CAPABILITIES)), max_size=3),
                "drop": st.lists(st.sampled_from(["ALL", *sorted(mf.CAPABILITIES)]), max_size=3),
            },
        ),
    }
    if container_level:
        fields["readOnlyRootFilesystem"] = st.booleans()
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return {key: draw(fields[key]) for key in chosen}


@settings(max_examples=60, deadline=None)
@given(manifests())
def test_canonical_form_round_trips(data: dict[str, Any]) -> None:
    manifest = validate_manifest(data)
    canonical = manifest.canonical_json()
    again = decode_manifest(canonical)
    assert again == manifest
    assert again.canonical_json() == canonical
    assert again.hash() == manifest.hash()
    assert json.loads(canonical) == manifest.to_json()
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(canonical))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["spec", "metadata", "containers", "resources", "root"]),
    st.text(max_size=12),
    json_values,
)
def test_any_data_is_a_manifest_or_a_manifest_error(where: str, key: str, value: object) -> None:
    data = base()
    target: dict[str, Any] = {
        "spec": data["spec"],
        "metadata": data["metadata"],
        "containers": container(data),
        "resources": container(data)["resources"]["requests"],
        "root": data,
    }[where]
    target[key] = value
    try:
        result = validate_manifest(data)
    except ManifestError as exc:
        assert exc.issues
        assert all(path and message for path, message in exc.issues)
    else:
        assert isinstance(result, Manifest)
