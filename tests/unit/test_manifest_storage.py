"""Manifest storage fields: an emptyDir in memory, and registry credentials from the owner's
secrets (`imagePullSecrets`)."""

from __future__ import annotations

import pytest

from chain.runtime.manifest import (
    DOCKER_CONFIG_KEY,
    ManifestError,
    read_stored_manifest,
    references,
)
from node.commands.manifest_file import parse_manifest

BASE = """\
apiVersion: statemesh/v1
kind: Application
metadata: {name: web}
spec:
  containers:
    - name: a
      image: busybox
      volumeMounts: [{name: cache, mountPath: /cache}]
"""


def manifest(volume: str, extra: str = "") -> str:
    return BASE + extra + f"  volumes:\n    - name: cache\n      {volume}\n"


def test_an_empty_dir_in_memory_counts_as_memory_not_disk() -> None:
    on_disk = parse_manifest(manifest("emptyDir: {sizeLimit: 64Mi}"))
    in_memory = parse_manifest(manifest("emptyDir: {medium: Memory, sizeLimit: 64Mi}"))
    (volume,) = in_memory.spec.volumes
    assert volume.memory and volume.size_bytes == 64 * 2**20
    assert b'"medium":"Memory"' in in_memory.canonical_json()
    assert b"medium" not in on_disk.canonical_json()
    assert in_memory.replica_resources().memory_mib == on_disk.replica_resources().memory_mib + 64
    assert in_memory.hash() != on_disk.hash()
    # The empty medium is the default: the same manifest as none.
    assert parse_manifest(manifest('emptyDir: {medium: "", sizeLimit: 64Mi}')).hash() == (
        on_disk.hash()
    )


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ("emptyDir: {medium: Memory}", "needs a sizeLimit"),
        ("emptyDir: {medium: Disk, sizeLimit: 1Mi}", "medium"),
        ("emptyDir: {medium: [Memory], sizeLimit: 1Mi}", "medium"),
        ("persistent: {size: 1Mi, medium: Memory}", "medium"),
    ],
)
def test_a_bad_medium_is_refused_with_its_place(volume: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(manifest(volume))


def test_image_pull_secrets_name_the_owners_secrets_and_keep_the_hash_of_manifests_without() -> (
    None
):
    plain = parse_manifest(manifest("emptyDir: {}"))
    pulled = parse_manifest(
        manifest("emptyDir: {}", "  imagePullSecrets: [{name: registry}, {name: other}]\n")
    )
    assert pulled.spec.image_pull_secrets == ("registry", "other")
    assert plain.spec.image_pull_secrets == ()
    assert b"imagePullSecrets" not in plain.canonical_json()
    assert b'"imagePullSecrets":[{"name":"registry"},{"name":"other"}]' in pulled.canonical_json()
    assert pulled.hash() != plain.hash()
    # Read like every other secret: the vault members deliver it, deleting it is refused.
    found = references(pulled.spec)
    assert found.secrets == {
        "registry": frozenset({DOCKER_CONFIG_KEY}),
        "other": frozenset({DOCKER_CONFIG_KEY}),
    }
    assert read_stored_manifest(pulled.canonical_json()) == pulled


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  imagePullSecrets: [{nom: x}]\n", "imagePullSecrets"),
        ("  imagePullSecrets: [{name: Bad_Name}]\n", "imagePullSecrets"),
        ("  imagePullSecrets: [{name: a}, {name: a}]\n", r"already named by imagePullSecrets\[0\]"),
        ("  imagePullSecrets: {name: a}\n", "imagePullSecrets"),
        ("  imagePullSecrets: [" + ", ".join(f"{{name: s{i}}}" for i in range(9)) + "]\n", "8"),
    ],
)
def test_bad_image_pull_secrets_are_refused_with_their_place(extra: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(manifest("emptyDir: {}", extra))
