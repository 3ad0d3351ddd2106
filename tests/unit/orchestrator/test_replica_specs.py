"""From a manifest to the engine's replica spec: one translation per type, each pinned by a table
over every value of the manifest's vocabulary, so a new value cannot be forgotten."""

from __future__ import annotations

from typing import Any

import pytest

from chain.runtime import manifest as m
from chain.runtime.apps import ReplicaEntry
from orchestrator import spec as o
from orchestrator.replica_specs import (
    VOLUME_KINDS,
    UnsupportedManifest,
    container_port,
    env_var,
    probe,
    probe_action,
    replica_spec,
    security_context,
    volume_kind,
)


def document(**spec: Any) -> dict[str, Any]:
    """One container mounting volume `data`, with `spec`'s fields over these."""
    return {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": "web"},
        "spec": {
            "containers": [
                {
                    "name": "httpd",
                    "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            **spec,
        },
    }


def translated(**spec: Any) -> o.ReplicaSpec:
    return replica_spec(
        "dev", "web", ReplicaEntry(0, 1, b"", 0), m.validate_manifest(document(**spec))
    )


def test_the_shared_enums_are_the_manifests() -> None:
    assert o.RestartPolicy is m.RestartPolicy
    assert o.PortProtocol is m.PortProtocol


@pytest.mark.parametrize("policy", list(m.RestartPolicy))
def test_every_restart_policy_reaches_the_replica(policy: m.RestartPolicy) -> None:
    assert translated(restartPolicy=policy.value).restart_policy is policy


@pytest.mark.parametrize("protocol", list(m.PortProtocol))
def test_every_port_protocol_reaches_the_container(protocol: m.PortProtocol) -> None:
    port = container_port(m.ContainerPort(53, protocol, "dns"))
    assert port == o.ContainerPort(53, "dns", protocol)
    # The engine's digests and port bindings write the text, as before the enum was shared.
    assert port.protocol == protocol.value


def test_every_data_volume_kind_has_one_engine_kind() -> None:
    """Secret and configMap volumes are files the node writes, not engine volumes."""
    files = {m.VolumeKind.SECRET, m.VolumeKind.CONFIG_MAP}
    assert set(VOLUME_KINDS) == set(m.VolumeKind) - files
    assert sorted(k.value for k in VOLUME_KINDS.values()) == sorted(k.value for k in o.VolumeKind)


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        ({"name": "data", "emptyDir": {}}, o.Volume("data", "/data", o.VolumeKind.EPHEMERAL)),
        (
            {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            o.Volume("data", "/data", o.VolumeKind.EPHEMERAL, size_bytes=8 * 2**20, memory=True),
        ),
        (
            {"name": "data", "persistent": {"size": "1Gi"}},
            o.Volume("data", "/data", o.VolumeKind.PERSISTENT, size_bytes=2**30),
        ),
    ],
)
def test_volumes_keep_their_kind_size_and_medium(
    volume: dict[str, Any], expected: o.Volume
) -> None:
    assert translated(volumes=[volume]).volumes == (expected,)
    assert volume_kind(m.VolumeKind.PERSISTENT) is o.VolumeKind.PERSISTENT


def test_a_volume_no_container_mounts_is_left_out() -> None:
    data = document(volumes=[{"name": "data", "emptyDir": {}}, {"name": "spare", "emptyDir": {}}])
    spec = replica_spec("dev", "web", ReplicaEntry(0, 1, b"", 0), m.validate_manifest(data))
    assert [v.name for v in spec.volumes] == ["data"]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (m.HttpGetAction(8080, "/healthz"), o.HTTPGetAction(8080, "/healthz")),
        (m.TcpSocketAction(8080), o.TCPSocketAction(8080)),
        (m.ExecAction(("true",)), o.ExecAction(("true",))),
    ],
)
def test_every_probe_action_has_its_engine_action(
    action: m.ProbeAction, expected: o.ProbeAction
) -> None:
    assert probe_action(action) == expected
    assert probe(m.Probe(action, 1, 2, 3, 1, 4)) == o.Probe(expected, 1, 2, 3, 1, 4)


def test_every_probe_action_type_is_in_the_table() -> None:
    assert set(m.ProbeAction.__args__) == {m.HttpGetAction, m.TcpSocketAction, m.ExecAction}


def test_no_probe_stays_no_probe() -> None:
    assert probe(None) is None


def test_an_unset_security_context_is_the_engines_default() -> None:
    assert security_context(m.NO_SECURITY_CONTEXT) == o.SecurityContext()
    full = m.SecurityContext(1000, 1000, True, True, ("NET_BIND_SERVICE",), ("ALL",))
    assert security_context(full) == o.SecurityContext(
        run_as_user=1000,
        run_as_group=1000,
        run_as_non_root=True,
        read_only_root_filesystem=True,
        capabilities_drop=("ALL",),
        capabilities_add=("NET_BIND_SERVICE",),
    )


def test_env_values_pass_and_references_are_not_run_yet() -> None:
    c = m.validate_manifest(document()).spec.containers[0]
    assert env_var(c, m.EnvVar("MODE", "fast")) == o.EnvVar("MODE", "fast")
    for ref in (
        m.EnvVar("TOKEN", secret_ref=m.KeyRef("s", "k")),
        m.EnvVar("TOKEN", config_ref=m.KeyRef("c", "k")),
    ):
        with pytest.raises(UnsupportedManifest) as caught:
            env_var(c, ref)
        assert str(caught.value) == "container httpd: env TOKEN refers to a secret or config"
