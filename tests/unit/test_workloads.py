"""The node's desired state: what the finalized state assigns to this node, read once per
finalized block, and a change told apart from a block that changes nothing for this node."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import trio

from chain.primitives import Hash32
from chain.runtime.apps import ReplicaEntry, get_app
from chain.runtime.configs import Configs, encode_data
from chain.runtime.manifest import validate_manifest
from chain.state import TrieState
from orchestrator.replica_specs import replica_spec
from orchestrator.spec import CAPABILITIES_KEPT, DEFAULT_PIDS_LIMIT, ReplicaSpec
from orchestrator.workloads import ChainDesiredState
from tests.factories import ALICE
from tests.unit.test_apps import CREATE, DELETE, SCALE, WEB, active_chain, nodes_of, web
from tests.unit.test_towers import TowerChain

CONFIG_CREATE = Configs().calls()[0]


@dataclass
class FinalizedStore:
    """The two things the desired state reads of the store: every block of the chain is final
    as soon as it is executed, and a block's hash is its state root."""

    chain: TowerChain

    @property
    def finalized_header(self) -> SimpleNamespace:
        return SimpleNamespace(hash=self.chain.root)

    def state_at(self, block_hash: bytes) -> TrieState:
        return TrieState(self.chain.nodes, Hash32(block_hash))


def desired_state(chain: TowerChain, node: bytes) -> ChainDesiredState:
    return ChainDesiredState(SimpleNamespace(store=FinalizedStore(chain)), node, "dev")  # type: ignore[arg-type]


def replicas(desired: ChainDesiredState) -> list[ReplicaSpec]:
    return list(trio.run(desired.replicas))


def test_a_change_is_reported_only_when_what_the_node_runs_changes() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    (node,) = nodes_of(chain, "web")
    desired = desired_state(chain, node)
    assert desired.refresh()
    (spec,) = replicas(desired)
    assert (spec.app, spec.replica, spec.revision, spec.chain) == ("web", 0, 1, "dev")
    assert not desired.refresh()  # the same finalized block
    chain.execute([])
    assert not desired.refresh()  # a new block that assigns nothing new
    chain.send(ALICE, SCALE.call(app="web", replicas=3))
    assert not desired.refresh()  # the new replicas went to the other nodes
    assert replicas(desired) == [spec]
    chain.send(ALICE, DELETE.call(app="web"))
    assert desired.refresh()
    assert replicas(desired) == []


def test_a_replica_the_node_cannot_run_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    data = WEB.to_json()
    data["spec"]["replicas"] = 1
    data["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "BINARY"}}}
    ]
    chain = active_chain()
    chain.send(ALICE, CONFIG_CREATE.call(name=b"site", data=encode_data({"BINARY": b"\xff"})))
    chain.send(ALICE, CREATE.call(manifest=validate_manifest(data).canonical_json()))
    (node,) = nodes_of(chain, "web")
    desired = desired_state(chain, node)
    with caplog.at_level(logging.WARNING, logger="statemesh.workloads"):
        for _ in range(3):
            assert replicas(desired) == []
            chain.execute([])
    assert [r.getMessage() for r in caplog.records] == [
        "not running web replica 0: key 'BINARY' of config 'site' is not UTF-8 text: mount it "
        "as a file"
    ]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        # A request weighs; it caps memory (no eviction on a node) but not CPU.
        ({"requests": {"cpu": "250m", "memory": "64Mi"}}, (None, 250, 64 * 2**20)),
        # A limit caps; alone, it is also the request, as in Kubernetes.
        ({"limits": {"cpu": "500m", "memory": "128Mi"}}, (500, 500, 128 * 2**20)),
        (
            {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
            (2000, 100, 2**30),
        ),
    ],
)
def test_cpu_requests_weigh_and_limits_cap(
    resources: dict[str, object], expected: tuple[int | None, int, int]
) -> None:
    data = WEB.to_json()
    data["spec"]["containers"][0]["resources"] = resources
    spec = replica_spec("dev", "web", ReplicaEntry(0, 1, b"", 0), validate_manifest(data))
    got = spec.containers[0].resources
    assert (got.cpu_millicores, got.cpu_request_millicores, got.memory_bytes) == expected


def test_security_contexts_reach_the_container_pod_level_under_container_level() -> None:
    data = WEB.to_json()
    data["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True}
    data["spec"]["containers"][0]["securityContext"] = {
        "runAsUser": 2000,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    spec = replica_spec("dev", "web", ReplicaEntry(0, 1, b"", 0), validate_manifest(data))
    security = spec.containers[0].security
    assert (security.run_as_user, security.run_as_group, security.run_as_non_root) == (
        2000,
        1000,
        True,
    )
    assert security.read_only_root_filesystem
    assert security.capabilities() == ("NET_BIND_SERVICE",)
    assert spec.containers[0].resources.pids_limit == DEFAULT_PIDS_LIMIT


def test_without_a_security_context_a_container_keeps_only_the_few_capabilities() -> None:
    spec = replica_spec("dev", "web", ReplicaEntry(0, 1, b"", 0), WEB)
    assert spec.containers[0].security.capabilities() == CAPABILITIES_KEPT
    assert "NET_RAW" not in CAPABILITIES_KEPT and "SYS_ADMIN" not in CAPABILITIES_KEPT


def test_replicas_carry_their_owner_and_instance_and_deleted_ones_stay_kept() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    (node,) = nodes_of(chain, "web")
    desired = desired_state(chain, node)
    assert desired.kept_instances() is None  # nothing read yet: every volume stays
    (first,) = replicas(desired)
    assert first.owner == ALICE.address and first.instance >= 1
    assert desired.kept_instances() == {"dev": {first.instance}}
    chain.send(ALICE, DELETE.call(app="web"))
    assert desired.refresh()  # the kept instances changed, though nothing runs here
    assert replicas(desired) == []
    assert desired.kept_instances() == {"dev": {first.instance}}  # within its retention
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    replicas(desired)
    record = get_app(TrieState(chain.nodes, chain.root), "web")
    assert record is not None and record.instance != first.instance
    assert desired.kept_instances() == {"dev": {first.instance, record.instance}}
