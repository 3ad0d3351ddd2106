"""A desired state held in memory, for the orchestrator's tests and benchmarks."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import trio

from orchestrator.spec import ReplicaSpec


class InMemoryDesired:
    """A `DesiredState` the caller edits: a plain list of specs."""

    def __init__(self, *specs: ReplicaSpec) -> None:
        self.specs = list(specs)
        self.kept: dict[str, set[int]] | None = None
        """Chain -> the instances whose persistent volumes stay; None keeps every one."""

    async def replicas(self) -> Collection[ReplicaSpec]:
        await trio.lowlevel.checkpoint()
        return list(self.specs)

    def kept_instances(self) -> Mapping[str, Collection[int]] | None:
        return self.kept
