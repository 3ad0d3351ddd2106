"""A checked manifest: a name and its application spec, its canonical bytes and hash, and what
one replica asks of the scheduler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.primitives import Hash32, blake2_256
from chain.runtime.manifest.canonical import canonical_bytes, manifest_json
from chain.runtime.manifest.quantities import GIB, MIB
from chain.runtime.manifest.types import ApplicationSpec
from chain.runtime.scheduler import AppDemand, Resources


@dataclass(frozen=True, slots=True)
class Manifest:
    """A checked manifest. Build it with `decode_manifest` or `validate_manifest` (or, from a
    YAML file, the CLI's `parse_manifest`), which guarantee every cross-reference holds."""

    name: str
    spec: ApplicationSpec

    def to_json(self) -> dict[str, Any]:
        return manifest_json(self.name, self.spec)

    def canonical_json(self) -> bytes:
        """Sorted keys, no whitespace, ASCII, every default filled in, names resolved to port
        numbers and quantities to integers: equal manifests have equal bytes."""
        return canonical_bytes(self.to_json())

    def hash(self) -> Hash32:
        """blake2b-256 of the canonical JSON."""
        return blake2_256(self.canonical_json())

    def replica_resources(self) -> Resources:
        """What one replica requests, rounded up to the scheduler's units: millicores, MiB,
        GiB (container disk plus every volume's size) and gpus."""
        containers = self.spec.containers
        memory = sum(c.resources.requests.memory_bytes for c in containers)
        memory += sum(v.size_bytes or 0 for v in self.spec.volumes if v.memory)
        disk = sum(c.resources.requests.disk_bytes for c in containers)
        disk += sum(v.size_bytes or 0 for v in self.spec.volumes if not v.memory)
        return Resources(
            cpu_millicores=sum(c.resources.requests.cpu_millicores for c in containers),
            memory_mib=-(-memory // MIB),
            disk_gib=-(-disk // GIB),
            gpus=sum(c.resources.requests.gpus for c in containers),
        )

    def demand(self, app: str, revision: int) -> AppDemand:
        """What the scheduler needs to place this manifest's replicas as application `app`."""
        return AppDemand(
            app,
            revision,
            self.spec.replicas,
            self.spec.node_class.value,
            self.replica_resources(),
        )
