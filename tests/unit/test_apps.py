"""The `apps` module: deploy, scale, update (rolling), delete, ownership, manifest errors, and
replicas moving off a node that stopped proving, lowered its capacity, or left."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from chain import codec
from chain.blocks import Call
from chain.keys import Keypair
from chain.runtime import apps, nodes
from chain.runtime.apps import Apps
from chain.runtime.executive import BlockExecution
from chain.runtime.manifest import validate_manifest
from chain.runtime.nodes import NodeStatus
from node.commands.manifest_file import parse_manifest
from tests.factories import ALICE, BOB, CHARLIE
from tests.unit.test_nodes import ZERO
from tests.unit.test_nodes import update as update_node
from tests.unit.test_towers import (
    DEREGISTER,
    EPOCH,
    NODE_KEYS,
    OPERATORS,
    TowerChain,
    tower_spec,
)

ROOT = Path(__file__).resolve().parents[2]
WEB = parse_manifest((ROOT / "docs/examples/web.yaml").read_text())
(CREATE, UPDATE, SCALE, DELETE, *_) = Apps().calls()


def web(replicas: int = 3, image: str = "busybox") -> bytes:
    data = WEB.to_json()
    data["spec"]["replicas"] = replicas
    data["spec"]["containers"][0]["image"] = image
    return validate_manifest(data).canonical_json()


def active_chain() -> TowerChain:
    """Three active cpu nodes (operators bob, charlie, dave) after one epoch boundary."""
    chain = TowerChain(tower_spec(active=4))
    for i in range(3):
        chain.register(i)
    chain.execute([])
    for i in range(3):
        chain.prove(i)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert [chain.status(i) for i in range(3)] == [NodeStatus.ACTIVE] * 3
    return chain


def nodes_of(chain: TowerChain, name: str) -> list[bytes]:
    return [e.node for e in apps.placement(chain.state, name) if e.node]


def test_deploy_scale_and_delete() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(3)))
    placed = nodes_of(chain, "web")
    assert len(placed) == 3 and len(set(placed)) == 3  # spread: one per node
    record = apps.get_app(chain.state, "web")
    assert record is not None and record.owner == ALICE.public and record.revision == 1
    assert len(apps.assignments_for(chain.state, NODE_KEYS[0].public)) == 1
    # A fourth replica doubles up on a node, though every replica listens on port 8080: each
    # has a network namespace of its own.
    chain.send(ALICE, SCALE.call(app="web", replicas=4))
    placed = nodes_of(chain, "web")
    assert len(placed) == 4 and len(set(placed)) == 3
    chain.send(ALICE, SCALE.call(app="web", replicas=1))
    assert len(nodes_of(chain, "web")) == 1
    chain.send(ALICE, DELETE.call(app="web"))
    assert apps.get_app(chain.state, "web") is None
    assert apps.app_names(chain.state) == []
    assert apps.placement(chain.state, "web") == []


def test_owner_only_and_names_and_manifest_errors() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    assert chain.refuse(BOB, SCALE.call(app="web", replicas=2)) == (
        "apps.NotOwner: only the owner of 'web' may change it"
    )
    assert chain.refuse(BOB, DELETE.call(app="web")).startswith("apps.NotOwner")
    assert chain.refuse(BOB, CREATE.call(manifest=web(1))) == (
        "apps.NameTaken: an application named 'web' exists"
    )
    assert chain.refuse(ALICE, SCALE.call(app="nope", replicas=1)) == (
        "apps.UnknownApp: no application 'nope'"
    )
    bad = b'{"apiVersion": "statemesh/v1", "kind": "Application", "metadata": {"name": "x"}}'
    message = chain.refuse(CHARLIE, CREATE.call(manifest=bad))
    assert message.startswith("apps.BadManifest") and "spec" in message


def test_rolling_update_reaches_the_new_revision() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(3)))
    chain.send(ALICE, UPDATE.call(manifest=web(3, image="busybox:2")))
    assert apps.get_app(chain.state, "web").revision == 2  # type: ignore[union-attr]
    for _ in range(6):
        chain.execute([])
    entries = apps.placement(chain.state, "web")
    assert {e.revision for e in entries} == {2} and len(nodes_of(chain, "web")) == 3
    assert apps.manifest_bytes(chain.state, "web", 1) is not None


def test_replicas_leave_a_node_that_stops_proving() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(2)))
    before = set(nodes_of(chain, "web"))
    # Epoch 1: only nodes 0 and 2 prove; node 1 is demoted at the boundary.
    chain.prove(0)
    chain.prove(2)
    chain.skip_to_epoch_end()
    chain.execute([])
    assert chain.status(1) is NodeStatus.STANDBY
    after = set(nodes_of(chain, "web"))
    assert NODE_KEYS[1].public not in after and len(after) == 2
    assert after != before or NODE_KEYS[1].public not in before


def cores(replicas: int) -> bytes:
    """A manifest whose replicas each request one core: two fit on a node of `active_chain`."""
    data = WEB.to_json()
    data["metadata"]["name"] = "cores"
    data["spec"]["replicas"] = replicas
    data["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1", "memory": "64Mi"}}
    del data["spec"]["ingress"]
    return validate_manifest(data).canonical_json()


def test_replicas_leave_a_node_that_withdraws_its_compute_in_the_same_block() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=cores(3)))
    assert sorted(nodes_of(chain, "cores")) == sorted(k.public for k in NODE_KEYS[:3])
    chain.send(BOB, update_node(0, **ZERO))
    assert chain.number % EPOCH  # placed again at once, not at an epoch boundary
    assert nodes.offer_changed(chain.state)
    placed = nodes_of(chain, "cores")
    assert NODE_KEYS[0].public not in placed and len(placed) == 3
    assert chain.status(0) is NodeStatus.ACTIVE  # still validating and proving presence
    chain.execute([])
    assert not nodes.offer_changed(chain.state)  # a flag of one block
    # Back with compute, the node takes replicas again, here the ones a scale-up asks for.
    chain.send(BOB, update_node(0))
    chain.send(ALICE, SCALE.call(app="cores", replicas=6))
    assert Counter(nodes_of(chain, "cores"))[NODE_KEYS[0].public] == 2


def test_a_node_lowered_below_what_it_holds_gives_up_what_no_longer_fits() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=cores(4)))
    held = Counter(nodes_of(chain, "cores"))
    crowded = next(i for i in range(3) if held[NODE_KEYS[i].public] == 2)
    chain.send(OPERATORS[crowded], update_node(crowded, cores=1))
    held = Counter(nodes_of(chain, "cores"))
    assert held[NODE_KEYS[crowded].public] == 1 and sum(held.values()) == 4
    assert [e for e in apps.placement(chain.state, "cores") if not e.node] == []


def test_replicas_leave_a_node_that_deregisters_in_the_same_block() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=cores(3)))
    chain.send(BOB, DEREGISTER.call(node_id=NODE_KEYS[0].public))
    assert chain.number % EPOCH
    placed = nodes_of(chain, "cores")
    assert NODE_KEYS[0].public not in placed and len(placed) == 3


def test_a_deploy_that_cannot_pay_its_fees_is_refused() -> None:
    chain = active_chain()
    broke = Keypair.from_seed(b"\x42" * 32)
    message = chain.refuse(broke, CREATE.call(manifest=web(1)))
    assert message.startswith("fee ") and "exceeds the free balance 0" in message
    assert apps.get_app(chain.state, "web") is None


def named(name: str, host: str) -> bytes:
    data = WEB.to_json()
    data["metadata"]["name"] = name
    data["spec"]["replicas"] = 1
    data["spec"]["ingress"]["host"] = host
    return validate_manifest(data).canonical_json()


def test_an_ingress_host_belongs_to_one_application() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=named("web", "web.statemesh.internal")))
    assert apps.host_holder(chain.state, "web.statemesh.internal") == "web"
    assert chain.refuse(BOB, CREATE.call(manifest=named("shop", "web.statemesh.internal"))) == (
        "apps.HostTaken: ingress host web.statemesh.internal belongs to application 'web'"
    )
    assert apps.get_app(chain.state, "shop") is None
    # Moving to another host frees the old one; the same host again is no conflict.
    chain.send(ALICE, UPDATE.call(manifest=named("web", "www.statemesh.internal")))
    chain.send(ALICE, UPDATE.call(manifest=named("web", "www.statemesh.internal")))
    assert apps.host_holder(chain.state, "web.statemesh.internal") is None
    chain.send(BOB, CREATE.call(manifest=named("shop", "web.statemesh.internal")))
    assert chain.refuse(BOB, UPDATE.call(manifest=named("shop", "www.statemesh.internal"))) == (
        "apps.HostTaken: ingress host www.statemesh.internal belongs to application 'web'"
    )
    chain.send(ALICE, DELETE.call(app="web"))
    assert apps.host_holder(chain.state, "www.statemesh.internal") is None
    chain.send(BOB, UPDATE.call(manifest=named("shop", "www.statemesh.internal")))
    assert apps.host_holder(chain.state, "www.statemesh.internal") == "shop"
    assert apps.host_holder(chain.state, "web.statemesh.internal") is None


def send_together(chain: TowerChain, *sent: tuple[Keypair, Call]) -> BlockExecution:
    """Several transactions in one block, each signed at its sender's next nonce."""
    encoded = []
    for keypair, call in sent:
        nonce = chain.nonces.get(keypair.public, 0)
        encoded.append(chain.sign(keypair, call, nonce=nonce))
        chain.nonces[keypair.public] = nonce + 1
    execution: BlockExecution = chain.execute(encoded)
    assert len(execution.extrinsics) == len(sent)
    for outcome in execution.outcomes:
        assert outcome.error is None, outcome.error
    return execution


def instance_of(chain: TowerChain, name: str) -> int:
    record = apps.get_app(chain.state, name)
    assert record is not None
    return record.instance


def test_every_creation_of_a_name_is_a_new_instance() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    first = instance_of(chain, "web")
    assert first == 1 and apps.next_instance(chain.state) == 2
    # Updates and scaling keep the instance: the volumes are the same application's.
    chain.send(ALICE, UPDATE.call(manifest=web(1, image="busybox:2")))
    chain.send(ALICE, SCALE.call(app="web", replicas=2))
    assert instance_of(chain, "web") == first
    # Deleted by alice, created again under the same name by bob: another instance.
    chain.send(ALICE, DELETE.call(app="web"))
    chain.send(BOB, CREATE.call(manifest=web(1)))
    second = instance_of(chain, "web")
    assert second == 2
    # Deleted and created again in one block, by the same owner or by another one.
    send_together(chain, (BOB, DELETE.call(app="web")), (CHARLIE, CREATE.call(manifest=web(1))))
    third = instance_of(chain, "web")
    record = apps.get_app(chain.state, "web")
    assert third == 3 and record is not None and record.owner == CHARLIE.public
    execution = send_together(
        chain, (CHARLIE, DELETE.call(app="web")), (CHARLIE, CREATE.call(manifest=web(1)))
    )
    assert instance_of(chain, "web") == 4
    created = [e for e in execution.events if e.name == "AppCreated"]
    assert [dict(e.data)["instance"] for e in created] == [4]
    # A create that fails takes no instance.
    assert chain.refuse(ALICE, CREATE.call(manifest=web(1))).startswith("apps.NameTaken")
    assert apps.next_instance(chain.state) == 5


def test_an_app_record_round_trips_and_refuses_malformed_encodings() -> None:
    chain = active_chain()
    chain.send(ALICE, CREATE.call(manifest=web(1)))
    record = apps.get_app(chain.state, "web")
    assert record is not None
    assert apps.AppRecord.decode(record.encode()) == record
    fields = codec.decode(record.encode())
    assert isinstance(fields, list)
    cases: list[tuple[codec.RlpItem, str]] = [
        (fields[:10], "an app record has 11 fields"),
        ([*fields, b"\x01"], "an app record has 11 fields"),
        ([*fields[:10], b"\x00\x01"], "instance has a leading zero byte"),
        ([*fields[:10], [b"\x01"]], "instance must be an integer, got a list"),
    ]
    for bad, message in cases:
        with pytest.raises(codec.CodecError) as info:
            apps.AppRecord.decode(codec.encode(bad))
        assert str(info.value) == message
