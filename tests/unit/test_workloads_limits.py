"""A container's process limit as the node gives it to the engine: the manifest's, else the
default, never past the node's cap (a tenant cannot lift it), and never unlimited."""

from __future__ import annotations

import pytest
import trio

from chain.runtime.apps import ReplicaEntry
from chain.runtime.manifest import MAX_PIDS_LIMIT, Manifest, validate_manifest
from node.workloads import DEFAULT_MAX_PIDS, replica_spec
from orchestrator.spec import DEFAULT_PIDS_LIMIT
from tests.factories import ALICE
from tests.unit.test_apps import CREATE, WEB, active_chain, nodes_of
from tests.unit.test_workloads import desired_state


def with_pids(*pids: int | None) -> Manifest:
    """The example with one container per entry, each with that pids limit (None: none)."""
    data = WEB.to_json()
    first = data["spec"]["containers"][0]
    containers = []
    for i, limit in enumerate(pids):
        container = {**first, "name": f"c{i}", "ports": first["ports"] if i == 0 else []}
        container["resources"] = {
            "requests": {"cpu": "100m", "memory": "32Mi"},
            "limits": {} if limit is None else {"pids": limit},
        }
        if i:
            container.pop("readinessProbe", None)
            container.pop("livenessProbe", None)
        containers.append(container)
    data["spec"]["containers"] = containers
    return validate_manifest(data)


def limits(manifest: Manifest, **cap: int) -> list[int | None]:
    spec = replica_spec("dev", "web", ReplicaEntry(0, 1, b"", 0), manifest, **cap)
    return [c.resources.pids_limit for c in spec.containers]


@pytest.mark.parametrize(
    ("pids", "cap", "expected"),
    [
        (None, DEFAULT_MAX_PIDS, DEFAULT_PIDS_LIMIT),
        (100, DEFAULT_MAX_PIDS, 100),
        (1, DEFAULT_MAX_PIDS, 1),
        (DEFAULT_MAX_PIDS, DEFAULT_MAX_PIDS, DEFAULT_MAX_PIDS),
        (DEFAULT_MAX_PIDS + 1, DEFAULT_MAX_PIDS, DEFAULT_MAX_PIDS),  # asks past the cap
        (MAX_PIDS_LIMIT, DEFAULT_MAX_PIDS, DEFAULT_MAX_PIDS),
        (None, 256, 256),  # the cap is below the default: the default is capped too
        (100, 256, 100),
        (2000, 256, 256),
        (MAX_PIDS_LIMIT, 100_000, MAX_PIDS_LIMIT),
    ],
)
def test_the_manifest_limit_or_the_default_capped_by_the_node(
    pids: int | None, cap: int, expected: int
) -> None:
    assert limits(with_pids(pids), max_pids=cap) == [expected]


def test_without_a_cap_given_the_node_default_cap_applies() -> None:
    assert limits(with_pids(MAX_PIDS_LIMIT)) == [DEFAULT_MAX_PIDS]
    assert DEFAULT_PIDS_LIMIT <= DEFAULT_MAX_PIDS


def test_each_container_gets_its_own_limit() -> None:
    assert limits(with_pids(50, None, 9000), max_pids=2048) == [50, DEFAULT_PIDS_LIMIT, 2048]


def test_the_desired_state_applies_its_nodes_cap() -> None:
    """What a node runs from the chain: a tenant's manifest asking for the most gets the cap."""
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=with_pids(MAX_PIDS_LIMIT).canonical_json()))
    node = nodes_of(chain, "web")[0]
    desired = desired_state(chain, node)
    desired.max_pids = 300
    (spec,) = trio.run(desired.replicas)
    assert spec.containers[0].resources.pids_limit == 300
