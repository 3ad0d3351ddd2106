"""From a manifest to the engine's replica spec: one translation per type, each pinned by a table
over every value of the manifest's vocabulary, so a new value cannot be forgotten."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from chain.runtime import manifest as m
from chain.runtime.apps import ReplicaEntry
from chain.runtime.configs import ConfigRecord
from chain.runtime.secrets import SecretRecord
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


@dataclass
class FakeSources:
    """Alice's config `site` (version 3) and secret `db` (version 7): key sizes, no values."""

    config_data: dict[str, bytes] = field(
        default_factory=lambda: {"GREETING": b"hello", "bad key": b"x", "BINARY": b"\xff"}
    )

    def config(self, name: str) -> ConfigRecord | None:
        return ConfigRecord(3, 10, self.config_data) if name == "site" else None

    def secret(self, name: str) -> SecretRecord | None:
        keys = (("id_ed25519", 400), ("password", 6))
        return SecretRecord(7, 11, keys, b"") if name == "db" else None


SITE = o.SourceRef(o.SourceKind.CONFIG, "site", 3)
DB = o.SourceRef(o.SourceKind.SECRET, "db", 7)
ENTRY = ReplicaEntry(0, 1, b"", 0)


def test_env_values_configs_and_secrets() -> None:
    sources = FakeSources()
    assert env_var(m.EnvVar("MODE", "fast"), sources) == o.EnvVar("MODE", "fast")
    assert env_var(m.EnvVar("G", config_ref=m.KeyRef("site", "GREETING")), sources) == (
        o.EnvVar("G", "hello", source=SITE, key="GREETING")
    )
    # A secret's value is filled in only when the container is created.
    assert env_var(m.EnvVar("PW", secret_ref=m.KeyRef("db", "password")), sources) == (
        o.EnvVar("PW", "", secret=True, source=DB, key="password")
    )
    for ref, message in (
        (m.EnvVar("T", secret_ref=m.KeyRef("s", "k")), "the owner has no secret 's'"),
        (m.EnvVar("T", config_ref=m.KeyRef("c", "k")), "the owner has no config 'c'"),
        (m.EnvVar("T", secret_ref=m.KeyRef("db", "k")), "secret 'db' has no key 'k'"),
        (
            m.EnvVar("T", config_ref=m.KeyRef("site", "BINARY")),
            "key 'BINARY' of config 'site' is not UTF-8 text: mount it as a file",
        ),
    ):
        with pytest.raises(UnsupportedManifest) as caught:
            env_var(ref, sources)
        assert str(caught.value) == message


def test_env_from_comes_first_in_order_and_env_wins() -> None:
    data = document()
    container = data["spec"]["containers"][0]
    container["envFrom"] = [{"secretRef": {"name": "db"}}, {"configMapRef": {"name": "site"}}]
    container["env"] = [{"name": "password", "value": "plain"}]
    sources = FakeSources({"GREETING": b"hello", "bad key": b"x", "id_ed25519": b"from-config"})
    spec = replica_spec("dev", "web", ENTRY, m.validate_manifest(data), sources=sources)
    (c,) = spec.containers
    # "bad key" is no variable name: left out, as Kubernetes does.
    assert [(e.name, e.source, e.value) for e in c.env] == [
        ("GREETING", SITE, "hello"),
        ("id_ed25519", SITE, "from-config"),
        ("password", None, "plain"),
    ]


def test_secret_and_config_volumes_become_files_with_modes_and_versions() -> None:
    data = document()
    data["spec"]["volumes"] += [
        {
            "name": "keys",
            "secret": {"secretName": "db", "items": [{"key": "id_ed25519", "path": "ssh/id"}]},
        },
        {
            "name": "conf",
            "configMap": {
                "name": "site",
                "items": [{"key": "GREETING", "path": "g", "mode": 0o444}],
            },
        },
        {"name": "all", "secret": {"secretName": "db", "defaultMode": 0o440}},
    ]
    data["spec"]["containers"][0]["volumeMounts"] += [
        {"name": "keys", "mountPath": "/keys"},
        {"name": "conf", "mountPath": "/etc/site"},
        {"name": "all", "mountPath": "/all"},
    ]
    spec = replica_spec("dev", "web", ENTRY, m.validate_manifest(data), sources=FakeSources())
    assert [v.name for v in spec.volumes] == ["data"]
    keys, conf, every = spec.files
    assert keys == o.FilesVolume(
        "keys", "/keys", DB, (o.FileItem("id_ed25519", "ssh/id", 0o400),), (), ("httpd",)
    )
    assert conf == o.FilesVolume(
        "conf",
        "/etc/site",
        SITE,
        (o.FileItem("GREETING", "g", 0o444),),
        (("GREETING", b"hello"),),
        ("httpd",),
    )
    assert every.items == (
        o.FileItem("id_ed25519", "id_ed25519", 0o440),
        o.FileItem("password", "password", 0o440),
    )
    assert spec.secrets() == [DB]
    # Nothing of a secret's value is in the spec, and only versions are in the digests.
    assert "hello" not in repr(spec.files[0]) and b"hello" not in repr(spec).encode()
