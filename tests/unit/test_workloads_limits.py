"""A container's process limit as the node gives it to the engine: the manifest's, else the
default, within its share of the node's cap, which holds for a replica's containers together (a
tenant cannot lift it, nor multiply it with containers), and never unlimited."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from chain.runtime.apps import ReplicaEntry
from chain.runtime.manifest import MAX_PIDS_LIMIT, Manifest, validate_manifest
from orchestrator.replica_specs import DEFAULT_MAX_PIDS, pids_limits, replica_spec
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


def test_each_container_gets_its_own_limit_within_the_replicas_cap() -> None:
    assert limits(with_pids(50, None, 9000), max_pids=4096) == [50, DEFAULT_PIDS_LIMIT, 3022]
    # The cap is shared: 50 asked, the other two split the rest.
    assert limits(with_pids(50, None, 9000), max_pids=2048) == [50, 999, 999]


def test_a_replica_of_many_containers_never_gets_more_than_the_cap() -> None:
    """Eight containers each asking the most a manifest allows: together the node's cap, not
    eight times it (which is a host's whole pid_max)."""
    got = limits(with_pids(*[MAX_PIDS_LIMIT] * 8))
    assert got == [DEFAULT_MAX_PIDS // 8] * 8
    assert sum(got) == DEFAULT_MAX_PIDS
    assert limits(with_pids(*[None] * 8)) == [DEFAULT_MAX_PIDS // 8] * 8  # not 8 x 1024


@pytest.mark.parametrize(
    ("asked", "cap", "expected"),
    [
        ([], 100, []),
        ([None], 100, [100]),
        ([10, 10], 100, [10, 10]),  # within the cap: as asked
        ([1000, 1000], 100, [50, 50]),
        ([1000, 1000, 1000], 100, [33, 33, 34]),  # the remainder to the last served
        ([10, 1000], 100, [10, 90]),  # a small ask leaves the rest to the other
        ([1000, 10], 100, [90, 10]),  # whatever the order
        ([60, 60], 100, [50, 50]),
        ([30, 60, 1000], 100, [30, 35, 35]),
        ([1, 1, 1, 1000], 8, [1, 1, 1, 5]),
        ([1000] * 8, 4, [1] * 8),  # more containers than the cap: at least one each
        ([None] * 8, DEFAULT_MAX_PIDS, [DEFAULT_MAX_PIDS // 8] * 8),
    ],
)
def test_the_cap_is_shared_fairly(asked: list[int | None], cap: int, expected: list[int]) -> None:
    assert pids_limits(asked, cap) == expected


@given(
    asked=st.lists(st.none() | st.integers(1, MAX_PIDS_LIMIT), max_size=8),
    cap=st.integers(1, 100_000),
)
def test_a_replica_stays_within_the_cap_and_no_container_past_its_ask(
    asked: list[int | None], cap: int
) -> None:
    got = pids_limits(asked, cap)
    wanted = [DEFAULT_PIDS_LIMIT if a is None else a for a in asked]
    assert len(got) == len(asked)
    assert all(1 <= g <= w for g, w in zip(got, wanted, strict=True))
    assert sum(got) <= max(cap, len(asked))
    if sum(wanted) <= cap:
        assert got == wanted  # nothing to share: each gets what it asks


def test_the_desired_state_applies_its_nodes_cap() -> None:
    """What a node runs from the chain: a tenant's manifest asking for the most gets the cap."""
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=with_pids(MAX_PIDS_LIMIT).canonical_json()))
    node = nodes_of(chain, "web")[0]
    desired = desired_state(chain, node)
    desired.max_pids = 300
    (spec,) = trio.run(desired.replicas)
    assert spec.containers[0].resources.pids_limit == 300
