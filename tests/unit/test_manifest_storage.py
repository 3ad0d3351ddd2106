"""Manifest storage fields: an emptyDir in memory, and registry credentials asked for before the
chain can hold them."""

from __future__ import annotations

import pytest

from chain.runtime.manifest import ManifestError
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


def test_image_pull_secrets_are_refused_until_the_chain_holds_secrets() -> None:
    extra = "  imagePullSecrets: [{name: registry}]\n"
    with pytest.raises(ManifestError, match="spec.imagePullSecrets: registry credentials"):
        parse_manifest(manifest("emptyDir: {}", extra))
    with pytest.raises(ManifestError, match="imagePullSecrets"):
        parse_manifest(manifest("emptyDir: {}", "  imagePullSecrets: [{nom: x}]\n"))
