"""The replica scheduler: eligibility, capacity, spread, preference, stability, pending reasons,
determinism, and the rolling-update step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.primitives import AccountId
from chain.runtime.manifest import validate_manifest
from chain.runtime.nodes import NodeRecord, NodeStatus
from chain.runtime.scheduler import (
    AppDemand,
    NodeInfo,
    Placement,
    ReplicaId,
    Resources,
    RolloutStep,
    ScheduleError,
    capacity_of,
    rollout_step,
    schedule,
)

ACTIVE, STANDBY, JAILED = NodeStatus.ACTIVE, NodeStatus.STANDBY, NodeStatus.JAILED


def nid(i: int) -> bytes:
    return bytes([i]) * 32


def node(
    i: int,
    *,
    operator: int | None = None,
    klass: str = "cpu",
    cpu: int = 4000,
    memory: int = 8192,
    disk: int = 100,
    gpus: int = 0,
    height: int = 10,
    status: NodeStatus = ACTIVE,
) -> NodeInfo:
    op = bytes([100 + (i if operator is None else operator)]) * 32
    return NodeInfo(nid(i), op, klass, Resources(cpu, memory, disk, gpus), height, status)


def app(
    name: str,
    replicas: int,
    *,
    klass: str = "cpu",
    cpu: int = 1000,
    memory: int = 1024,
    disk: int = 1,
    gpus: int = 0,
) -> AppDemand:
    return AppDemand(name, 1, replicas, klass, Resources(cpu, memory, disk, gpus))


def nodes_of(placement: Placement, name: str) -> list[bytes]:
    return [n for r, n in placement.assignments.items() if r.app == name]


# -- unit cases ------------------------------------------------------------------------------


def test_replicas_spread_over_nodes_by_tower_then_id() -> None:
    nodes = [node(3, height=5), node(2, height=9), node(1, height=5), node(4, height=1)]
    placement = schedule([app("web", 3)], nodes, {})
    assert dict(placement.assignments) == {
        ReplicaId("web", 0): nid(2),
        ReplicaId("web", 1): nid(1),
        ReplicaId("web", 2): nid(3),
    }
    assert placement.pending == {}


def test_operators_not_yet_used_are_preferred() -> None:
    nodes = [node(1, operator=1, height=10), node(2, operator=1, height=9), node(3, height=1)]
    placement = schedule([app("web", 2)], nodes, {})
    assert nodes_of(placement, "web") == [nid(1), nid(3)]


def test_a_node_takes_a_second_replica_only_when_no_other_has_room() -> None:
    nodes = [node(1, cpu=4000), node(2, cpu=1500)]
    placement = schedule([app("web", 3)], nodes, {})
    assert Counter(nodes_of(placement, "web")) == {nid(1): 2, nid(2): 1}


@pytest.mark.parametrize(
    ("status", "klass", "placed"),
    [
        (ACTIVE, "cpu", True),
        (STANDBY, "cpu", False),
        (JAILED, "cpu", False),
        (ACTIVE, "gpu", False),
        (ACTIVE, "storage", False),
    ],
)
def test_only_active_nodes_of_the_class(status: NodeStatus, klass: str, placed: bool) -> None:
    placement = schedule([app("web", 1)], [node(1, status=status, klass=klass)], {})
    assert (ReplicaId("web", 0) in placement.assignments) is placed
    if not placed:
        assert placement.pending == {ReplicaId("web", 0): "no active node of class cpu"}


@pytest.mark.parametrize(
    ("nodes", "demand", "reason"),
    [
        ([], app("ml", 1, klass="gpu"), "no active node of class gpu"),
        ([node(1, cpu=500)], app("web", 1), "insufficient cpu on every eligible node"),
        (
            [node(1, cpu=500, memory=512)],
            app("web", 1),
            "insufficient cpu and memory on every eligible node",
        ),
        (
            [node(1, cpu=1, memory=1, disk=0)],
            app("web", 1, gpus=1),
            "insufficient cpu, memory, disk and gpus on every eligible node",
        ),
        (
            [node(1, cpu=500), node(2, memory=512)],
            app("web", 1),
            "no eligible node has room for cpu 1000m, memory 1024 MiB, disk 1 GiB, gpus 0 at once",
        ),
    ],
)
def test_pending_reasons(nodes: list[NodeInfo], demand: AppDemand, reason: str) -> None:
    placement = schedule([demand], nodes, {})
    assert placement.assignments == {}
    assert placement.pending == {ReplicaId(demand.app, 0): reason}


def test_the_capacity_left_decides_the_reason() -> None:
    placement = schedule([app("a", 1, cpu=3000), app("b", 1, cpu=2000)], [node(1)], {})
    assert placement.assignments == {ReplicaId("a", 0): nid(1)}
    assert placement.pending == {ReplicaId("b", 0): "insufficient cpu on every eligible node"}


def listening_on_8080(name: str, replicas: int) -> AppDemand:
    """The demand of a manifest whose one container listens on port 8080 and asks for 1 core."""
    manifest = validate_manifest(
        {
            "apiVersion": "statemesh/v1",
            "kind": "Application",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "containers": [
                    {
                        "name": "httpd",
                        "image": "busybox",
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": 1, "memory": "1Gi"}},
                    }
                ],
            },
        }
    )
    return manifest.demand(name, 1)


def test_replicas_listening_on_one_port_share_a_node_while_it_has_room() -> None:
    # Each replica has a network namespace of its own: only capacity limits a node (4 cores).
    apps = [listening_on_8080("a", 2), listening_on_8080("b", 1), listening_on_8080("c", 2)]
    placement = schedule(apps, [node(1)], {})
    assert placement.pending == {
        ReplicaId("c", 1): "insufficient cpu on every eligible node",
    }
    assert placement.on_node(nid(1)) == (
        ReplicaId("a", 0), ReplicaId("a", 1), ReplicaId("b", 0), ReplicaId("c", 0),
    )  # fmt: skip


def test_existing_placements_stay_even_when_a_better_node_appears() -> None:
    current = {ReplicaId("web", 0): nid(1), ReplicaId("web", 1): nid(2)}
    nodes = [node(1, height=1), node(2, height=1), node(3, height=100)]
    placement = schedule([app("web", 2)], nodes, current)
    assert dict(placement.assignments) == current


@pytest.mark.parametrize(
    "lost",
    [
        node(1, status=JAILED),
        node(1, status=STANDBY),
        node(1, cpu=500),
        node(1, cpu=0, memory=0, disk=0),
        node(1, klass="storage"),
        None,
    ],
    ids=["jailed", "demoted", "shrunk", "offers nothing", "other class", "deregistered"],
)
def test_replicas_leave_nodes_that_can_no_longer_hold_them(lost: NodeInfo | None) -> None:
    current = {ReplicaId("web", 0): nid(1), ReplicaId("web", 1): nid(2)}
    nodes = [node(2), node(3, height=1), node(4, height=2)] + ([lost] if lost else [])
    placement = schedule([app("web", 2)], nodes, current)
    assert dict(placement.assignments) == {
        ReplicaId("web", 0): nid(4),
        ReplicaId("web", 1): nid(2),
    }


def test_a_node_that_offers_nothing_takes_nothing() -> None:
    # Not even replicas that request nothing, which fit any node with room for nothing.
    idle = node(1, cpu=0, memory=0, disk=0, height=100)
    nothing = app("tiny", 2, cpu=0, memory=0, disk=0)
    alone = schedule([nothing], [idle], {ReplicaId("tiny", 0): nid(1)})
    assert alone.assignments == {}
    assert alone.pending == {
        ReplicaId("tiny", 0): "no active node of class cpu offers compute",
        ReplicaId("tiny", 1): "no active node of class cpu offers compute",
    }
    beside = schedule([nothing, app("web", 1)], [idle, node(2, cpu=1000)], {})
    assert dict(beside.assignments) == {
        ReplicaId("tiny", 0): nid(2),
        ReplicaId("tiny", 1): nid(2),
        ReplicaId("web", 0): nid(2),
    }
    assert beside.pending == {}


def test_an_overfull_node_keeps_the_first_replicas_in_app_then_index_order() -> None:
    current = {ReplicaId("a", 0): nid(1), ReplicaId("b", 0): nid(1), ReplicaId("b", 1): nid(2)}
    nodes = [node(1, cpu=1500), node(2), node(3, height=0)]
    placement = schedule([app("b", 2), app("a", 1)], nodes, current)
    assert dict(placement.assignments) == {
        ReplicaId("a", 0): nid(1),
        ReplicaId("b", 0): nid(3),
        ReplicaId("b", 1): nid(2),
    }


def test_scaling_drops_the_highest_indices_and_adds_new_ones() -> None:
    current = {ReplicaId("web", i): nid(i + 1) for i in range(3)}
    current[ReplicaId("gone", 0)] = nid(1)
    nodes = [node(i) for i in range(1, 6)]
    down = schedule([app("web", 2)], nodes, current)
    assert dict(down.assignments) == {ReplicaId("web", 0): nid(1), ReplicaId("web", 1): nid(2)}
    up = schedule([app("web", 4)], nodes, current)
    assert up.assignments[ReplicaId("web", 3)] == nid(4)


def test_doubled_up_replicas_move_to_a_node_with_room() -> None:
    current = {ReplicaId("web", 0): nid(1), ReplicaId("web", 1): nid(1)}
    placement = schedule([app("web", 2)], [node(1), node(2, height=1)], current)
    assert dict(placement.assignments) == {
        ReplicaId("web", 0): nid(1),
        ReplicaId("web", 1): nid(2),
    }


def test_a_replica_that_becomes_placeable_after_a_spread_move_is_placed() -> None:
    # "b" fits nowhere until one of the two replicas "a" keeps on node 1 moves to node 2.
    current = {ReplicaId("a", 0): nid(1), ReplicaId("a", 1): nid(1)}
    nodes = [node(1, cpu=2500, height=5), node(2, cpu=1000, height=1)]
    apps = [app("a", 2), app("b", 1, cpu=1500)]
    placement = schedule(apps, nodes, current)
    assert dict(placement.assignments) == {
        ReplicaId("a", 0): nid(1),
        ReplicaId("a", 1): nid(2),
        ReplicaId("b", 0): nid(1),
    }


def test_reserved_room_is_not_used() -> None:
    reserved = {nid(1): Resources(cpu_millicores=3500)}
    placement = schedule([app("web", 1)], [node(1, height=9), node(2)], {}, reserved)
    assert placement.assignments == {ReplicaId("web", 0): nid(2)}


def test_capacity_of_a_node_record() -> None:
    record = NodeRecord(AccountId(b"\x01" * 32), "gpu", 8, 16384, 200, 2, b"", 0, 0, ACTIVE)
    assert capacity_of(record) == Resources(8000, 16384, 200, 2)
    info = NodeInfo.from_record(nid(9), record, 42)
    assert info == NodeInfo(nid(9), b"\x01" * 32, "gpu", Resources(8000, 16384, 200, 2), 42, ACTIVE)


def test_on_node_lists_a_nodes_replicas() -> None:
    placement = schedule([app("a", 1), app("b", 1)], [node(1)], {})
    assert placement.on_node(nid(1)) == (ReplicaId("a", 0), ReplicaId("b", 0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: schedule([], [node(1), node(1)], {}), f"node 0x{nid(1).hex()} is listed twice"),
        (lambda: schedule([app("a", 1), app("a", 2)], [], {}), "app 'a' is listed twice"),
        (lambda: app("a", -1), "app 'a' asks for -1 replicas"),
        (lambda: Resources(memory_mib=-1), "memory is -1, resources cannot be negative"),
        (
            lambda: rollout_step({}, {}, {}, 1, -1, 0),
            "replicas, max_surge and max_unavailable cannot be negative",
        ),
    ],
)
def test_bad_inputs(call: object, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        call()  # type: ignore[operator]
    assert str(caught.value) == message


# -- properties ------------------------------------------------------------------------------

CLASSES = ("cpu", "cpu", "gpu")
Cluster = tuple[list[AppDemand], list[NodeInfo], dict[ReplicaId, bytes], dict[bytes, Resources]]
STATUSES = (ACTIVE, ACTIVE, ACTIVE, STANDBY, JAILED)


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    node_count = draw(st.integers(0, 10))
    sizes = st.builds(
        Resources,
        st.integers(0, 8).map(lambda n: n * 500),
        st.integers(0, 8).map(lambda n: n * 512),
        st.integers(0, 4),
        st.integers(0, 2),
    )
    # One node in five or so offers nothing at all.
    sizes = st.one_of(st.just(Resources()), sizes, sizes, sizes, sizes)
    nodes = [
        NodeInfo(
            nid(i),
            bytes([draw(st.integers(0, 3))]) * 32,
            draw(st.sampled_from(CLASSES)),
            draw(sizes),
            draw(st.integers(0, 3)),
            draw(st.sampled_from(STATUSES)),
        )
        for i in range(node_count)
    ]
    apps = [
        AppDemand(
            f"app{i}",
            1,
            draw(st.integers(0, 5)),
            draw(st.sampled_from(CLASSES)),
            Resources(
                draw(st.integers(0, 4)) * 250,
                draw(st.integers(0, 4)) * 256,
                draw(st.integers(0, 1)),
                draw(st.integers(0, 1)),
            ),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    # Existing placements, often several of an app on one node (its favourite), sometimes on
    # a node that is gone (id node_count) or for a replica index beyond the app's count.
    current: dict[ReplicaId, bytes] = {}
    if node_count:
        for demand in apps:
            favourite = draw(st.integers(0, node_count))
            for index in range(demand.replicas + 1):
                choice = draw(st.sampled_from(["none", "favourite", "favourite", "any"]))
                if choice == "favourite":
                    current[ReplicaId(demand.app, index)] = nid(favourite)
                elif choice == "any":
                    current[ReplicaId(demand.app, index)] = nid(draw(st.integers(0, node_count)))
    reserved = {nid(i): Resources(cpu_millicores=500) for i in range(node_count) if i % 3 == 0}
    return apps, nodes, current, reserved


def free_after(
    placement: Placement,
    apps: list[AppDemand],
    nodes: list[NodeInfo],
    reserved: Mapping[bytes, Resources],
) -> dict[bytes, list[int]]:
    demands = {a.app: a.resources.amounts() for a in apps}
    free = {}
    for n in nodes:
        held = reserved.get(n.node_id, Resources()).amounts()
        free[n.node_id] = [c - r for c, r in zip(n.capacity.amounts(), held, strict=True)]
    for replica, node_id in placement.assignments.items():
        for dim, amount in enumerate(demands[replica.app]):
            free[node_id][dim] -= amount
    return free


def has_room(free: dict[bytes, list[int]], demand: AppDemand, node_id: bytes) -> bool:
    need = demand.resources.amounts()
    return all(f >= n for f, n in zip(free[node_id], need, strict=True))


def eligible(nodes: list[NodeInfo], demand: AppDemand) -> list[NodeInfo]:
    return [
        n
        for n in nodes
        if n.status == ACTIVE and n.node_class == demand.node_class and n.capacity != Resources()
    ]


@st.composite
def crowded_clusters(draw: st.DrawFn) -> Cluster:
    """Active nodes of one class, and every app's existing replicas doubled up on one node:
    the runs where replicas move to spread out, and unplaced ones then find room."""
    node_count = draw(st.integers(2, 8))
    nodes = [
        node(i, operator=draw(st.integers(0, 2)), cpu=draw(st.integers(0, 8)) * 500,
             height=draw(st.integers(0, 2)))
        for i in range(node_count)
    ]  # fmt: skip
    apps = [
        app(f"app{i}", draw(st.integers(2, 5)), cpu=draw(st.integers(1, 4)) * 250, memory=0)
        for i in range(draw(st.integers(1, 4)))
    ]
    current = {
        ReplicaId(demand.app, index): nid(draw(st.integers(0, node_count - 1)))
        for demand in apps
        for index in range(demand.replicas)
    }
    if draw(st.booleans()):
        favourite = nid(draw(st.integers(0, node_count - 1)))
        current = dict.fromkeys(current, favourite)
    return apps, nodes, current, {}


@settings(max_examples=300, deadline=None)
@given(st.one_of(clusters(), crowded_clusters()))
def test_placements_respect_capacity_eligibility_and_spread(cluster: Cluster) -> None:
    apps, nodes, current, reserved = cluster
    placement = schedule(apps, nodes, current, reserved)
    free = free_after(placement, apps, nodes, reserved)
    by_id = {n.node_id: n for n in nodes}
    # Capacity: never exceeded, whatever held the node before.
    for node_id, amounts in free.items():
        if any(placement.on_node(node_id)):
            assert min(amounts) >= 0, (node_id, amounts)
    for demand in apps:
        mine = {r.index: n for r, n in placement.assignments.items() if r.app == demand.app}
        waiting = {r.index for r in placement.pending if r.app == demand.app}
        # Every replica is placed or pending, once.
        assert set(mine) | waiting == set(range(demand.replicas))
        assert not set(mine) & waiting
        # Only active nodes of the app's class.
        for node_id in mine.values():
            assert by_id[node_id].status == ACTIVE
            assert by_id[node_id].node_class == demand.node_class
            assert by_id[node_id].capacity != Resources()
        # Spread: a node holds two only while no eligible node holding none has room.
        counts = Counter(mine.values())
        if counts and max(counts.values()) > 1:
            for other in eligible(nodes, demand):
                if other.node_id not in counts:
                    assert not has_room(free, demand, other.node_id)
        # Pending only when no eligible node has room.
        if waiting:
            for other in eligible(nodes, demand):
                assert not has_room(free, demand, other.node_id)


@settings(max_examples=200, deadline=None)
@given(st.one_of(clusters(), crowded_clusters()), st.randoms(use_true_random=False))
def test_same_inputs_in_any_order_give_the_same_placement(cluster: Cluster, rng: object) -> None:
    apps, nodes, current, reserved = cluster
    first = schedule(apps, nodes, current, reserved)
    shuffled_apps, shuffled_nodes, items = list(apps), list(nodes), list(current.items())
    rng.shuffle(shuffled_apps)  # type: ignore[attr-defined]
    rng.shuffle(shuffled_nodes)  # type: ignore[attr-defined]
    rng.shuffle(items)  # type: ignore[attr-defined]
    again = schedule(shuffled_apps, shuffled_nodes, dict(items), dict(reversed(reserved.items())))
    assert again == first
    assert list(again.assignments) == sorted(again.assignments)
    assert list(again.pending) == sorted(again.pending)


@settings(max_examples=300, deadline=None)
@given(st.one_of(clusters(), crowded_clusters()))
def test_running_again_on_the_output_changes_nothing(cluster: Cluster) -> None:
    apps, nodes, current, reserved = cluster
    placement = schedule(apps, nodes, current, reserved)
    assert schedule(apps, nodes, placement.assignments, reserved) == placement


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_inactive_nodes_and_nodes_offering_nothing_hold_nothing_after_a_run(
    cluster: Cluster,
) -> None:
    apps, nodes, current, reserved = cluster
    placement = schedule(apps, nodes, current, reserved)
    for n in nodes:
        if n.status != ACTIVE or n.capacity == Resources():
            assert placement.on_node(n.node_id) == ()


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_one_app_prefers_operators_it_does_not_use_yet(cluster: Cluster) -> None:
    apps, nodes, _, _ = cluster
    for demand in apps:
        placement = schedule([demand], nodes, {})
        free = free_after(placement, [demand], nodes, {})
        operator_of = {n.node_id: n.operator for n in nodes}
        used = Counter(operator_of[n] for n in nodes_of(placement, demand.app))
        if used and max(used.values()) > 1:
            for other in eligible(nodes, demand):
                if other.operator not in used:
                    assert not has_room(free, demand, other.node_id)


# -- rolling updates -------------------------------------------------------------------------

A, B, C, D = nid(1), nid(2), nid(3), nid(4)


@pytest.mark.parametrize(
    ("old", "new", "target", "replicas", "surge", "unavailable", "step"),
    [
        # Replicas that change node surge; those that stay are replaced in place.
        ({0: A, 1: B}, {}, {0: C, 1: B}, 2, 1, 1, RolloutStep(start=(0, 1), stop=(1,))),
        # The surge budget spent, the rest wait.
        ({0: A, 1: B, 2: C}, {}, {0: B, 1: C, 2: D}, 3, 1, 0, RolloutStep(start=(0,), stop=())),
        # Last step's surges finish (their old copies stop) and the next one starts.
        ({0: A, 1: B, 2: C}, {0: B}, {0: B, 1: C, 2: D}, 3, 1, 0, RolloutStep((1,), (0,))),
        # With no surge budget, a moving replica is replaced.
        ({0: A, 1: B}, {}, {0: C, 1: D}, 2, 0, 1, RolloutStep(start=(0,), stop=(0,))),
        # maxUnavailable 0 and a replica that stays on its node: one at a time, once quiet.
        ({0: A, 1: B}, {}, {0: A, 1: B}, 2, 1, 0, RolloutStep(start=(0,), stop=(0,))),
        ({0: A, 1: B}, {2: C}, {0: A, 1: B, 2: C}, 3, 1, 0, RolloutStep((0,), (0,))),
        ({0: A, 1: B}, {0: A}, {0: A, 1: B}, 2, 1, 0, RolloutStep(start=(), stop=(0,))),
        # Scale-up starts at once; scale-down stops at once; a pending target waits.
        ({0: A}, {}, {0: A, 1: B, 2: C}, 3, 0, 1, RolloutStep(start=(0, 1, 2), stop=(0,))),
        ({0: A, 1: B, 2: C}, {}, {0: A}, 1, 0, 1, RolloutStep(start=(0,), stop=(0, 1, 2))),
        ({0: A, 1: B}, {}, {1: C}, 2, 1, 1, RolloutStep(start=(1,), stop=())),
        # Done.
        ({}, {0: A, 1: B}, {0: A, 1: B}, 2, 1, 1, RolloutStep(start=(), stop=())),
    ],
)
def test_rollout_step(
    old: dict[int, bytes],
    new: dict[int, bytes],
    target: dict[int, bytes],
    replicas: int,
    surge: int,
    unavailable: int,
    step: RolloutStep,
) -> None:
    assert rollout_step(old, new, target, replicas, surge, unavailable) == step


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(0, 3),
    st.integers(0, 3),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_a_rollout_finishes_within_its_budgets(
    replicas: int, surge: int, unavailable: int, moves: list[bool]
) -> None:
    old = {i: nid(i) for i in range(replicas)}
    target = {i: nid(100 + i) if moves[i] else nid(i) for i in range(replicas)}
    new: dict[int, bytes] = {}
    for _ in range(2 * replicas + 2):
        if not old:
            break
        step = rollout_step(old, new, target, replicas, surge, unavailable)
        started = set(step.start)
        replaced = started & set(step.stop)
        assert len(replaced) <= max(unavailable, 1)
        surging = started - set(step.stop)
        assert len(surging) <= surge
        assert all(target[i] != old[i] for i in surging)
        for i in step.stop:
            del old[i]
        for i in step.start:
            new[i] = target[i]
    assert old == {}
    assert new == target
