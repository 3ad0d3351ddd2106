"""Deterministic replica placement: which active node runs which replica of which application,
and how far a rolling update may advance in one step. Pure and integer-only: the same inputs give
the same placement on every node, whatever order they come in."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chain.errors import ChainError
from chain.runtime.nodes import NodeRecord, NodeStatus


class ScheduleError(ChainError, ValueError):
    """Inputs the scheduler cannot work from: a repeated node or application, a negative amount."""


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of each resource a node offers or a replica requests, in the units node
    records use (cores become millicores)."""

    cpu_millicores: int = 0
    memory_mib: int = 0
    disk_gib: int = 0
    gpus: int = 0

    def __post_init__(self) -> None:
        for name, amount in zip(_DIMENSIONS, self.amounts(), strict=True):
            if amount < 0:
                raise ScheduleError(f"{name} is {amount}, resources cannot be negative")

    def amounts(self) -> tuple[int, int, int, int]:
        return (self.cpu_millicores, self.memory_mib, self.disk_gib, self.gpus)

    def describe(self) -> str:
        return (
            f"cpu {self.cpu_millicores}m, memory {self.memory_mib} MiB, "
            f"disk {self.disk_gib} GiB, gpus {self.gpus}"
        )


_DIMENSIONS = ("cpu", "memory", "disk", "gpus")


def capacity_of(record: NodeRecord) -> Resources:
    """What a registered node declared it offers."""
    return Resources(record.cores * 1000, record.memory_mb, record.disk_gb, record.gpus)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the scheduler sees it."""

    node_id: bytes
    operator: bytes
    node_class: str
    capacity: Resources
    tower_height: int
    """Longer towers are preferred: the node has proven presence for longer."""
    status: NodeStatus
    """Only ACTIVE nodes hold replicas."""

    @classmethod
    def from_record(cls, node_id: bytes, record: NodeRecord, tower_height: int) -> NodeInfo:
        return cls(
            node_id, record.operator, record.node_class, capacity_of(record), tower_height,
            record.status,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AppDemand:
    """What one application asks for: `replicas` copies of `resources` on nodes of one class."""

    app: str
    revision: int
    replicas: int
    node_class: str
    resources: Resources
    """Per replica. Each replica has a network namespace of its own, so the ports it listens on
    never conflict with another replica's on the same node: capacity is the only limit."""

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ScheduleError(f"app {self.app!r} asks for {self.replicas} replicas")


@dataclass(frozen=True, slots=True, order=True)
class ReplicaId:
    """One replica of one application: stable across revisions."""

    app: str
    index: int


@dataclass(frozen=True, slots=True)
class Placement:
    """The outcome of a run. Both mappings are in replica order."""

    assignments: Mapping[ReplicaId, bytes]
    """Replica -> the node that runs it."""
    pending: Mapping[ReplicaId, str]
    """Replica -> why no node could take it."""

    def on_node(self, node_id: bytes) -> tuple[ReplicaId, ...]:
        return tuple(r for r, n in self.assignments.items() if n == node_id)


class _Pool:
    """The active nodes of one class in order of preference (longest tower, then lowest id),
    their free capacity, and a max-tree over it that finds the first node that fits."""

    __slots__ = ("free", "hints", "ids", "n", "operator_count", "operators", "size", "tree")

    def __init__(self, nodes: list[NodeInfo], reserved: Mapping[bytes, Resources]) -> None:
        nodes = sorted(nodes, key=lambda info: (-info.tower_height, info.node_id))
        self.n = len(nodes)
        self.ids = [info.node_id for info in nodes]
        self.operators = [info.operator for info in nodes]
        self.operator_count = len(set(self.operators))
        self.free: list[list[int]] = [[] for _ in _DIMENSIONS]
        for info in nodes:
            held = reserved.get(info.node_id, _NOTHING).amounts()
            for dim, amount in enumerate(info.capacity.amounts()):
                self.free[dim].append(amount - held[dim])
        size = 1
        while size < self.n:
            size *= 2
        self.size = size
        # Leaf size+i holds node i; padding leaves hold -1, which no request (>= 0) fits.
        self.tree: list[list[int]] = []
        for dim in range(len(_DIMENSIONS)):
            column = [-1] * (2 * size)
            column[size : size + self.n] = self.free[dim]
            for v in range(size - 1, 0, -1):
                column[v] = max(column[2 * v], column[2 * v + 1])
            self.tree.append(column)
        self.hints: dict[tuple[int, ...], int] = {}
        """Request -> a position before which no node has room for it. Room only shrinks while
        replicas are placed, so the hint stays true until some room is given back."""

    def fits(self, pos: int, need: tuple[int, int, int, int]) -> bool:
        free = self.free
        return (
            free[0][pos] >= need[0]
            and free[1][pos] >= need[1]
            and free[2][pos] >= need[2]
            and free[3][pos] >= need[3]
        )

    def change(self, pos: int, need: tuple[int, int, int, int], sign: int) -> None:
        """Take (`sign` -1) or give back (+1) `need` on node `pos`."""
        if sign > 0:
            self.hints.clear()
        for dim in range(len(_DIMENSIONS)):
            if not need[dim]:
                continue
            value = self.free[dim][pos] + sign * need[dim]
            self.free[dim][pos] = value
            column = self.tree[dim]
            v = self.size + pos
            column[v] = value
            v //= 2
            while v:
                column[v] = max(column[2 * v], column[2 * v + 1])
                v //= 2

    def first_fit(self, lo: int, need: tuple[int, int, int, int]) -> int:
        """The first node at or after position `lo` with room for `need`, or -1."""
        known = self.hints.get(need, 0)
        start = max(lo, known)
        found = -1 if start >= self.n else self._descend(start, need)
        if start == known:
            # The search began at the first possible position: where it ended is the next hint.
            self.hints[need] = found if found >= 0 else self.n
        return found

    def _descend(self, lo: int, need: tuple[int, int, int, int]) -> int:
        """Depth-first, left to right, skipping every subtree whose largest free amount of
        some resource is short (a subtree may still pass with no single node that fits)."""
        cpu, memory, disk, gpus = need
        tc, tm, td, tg = self.tree
        stack = [(1, 0, self.size)]
        while stack:
            v, left, right = stack.pop()
            if right <= lo or tc[v] < cpu or tm[v] < memory or td[v] < disk or tg[v] < gpus:
                continue
            if right - left == 1:
                return left
            mid = (left + right) // 2
            stack.append((2 * v + 1, mid, right))
            stack.append((2 * v, left, mid))
        return -1

    def most_free(self) -> tuple[int, ...]:
        """The largest free amount of each resource on any one node."""
        return tuple(self.tree[dim][1] for dim in range(len(_DIMENSIONS)))


_NOTHING = Resources()


class _App:
    """Working state of one application during a run."""

    __slots__ = ("demand", "need", "node_count", "operator_count", "pool", "slots")

    def __init__(self, demand: AppDemand, pool: _Pool) -> None:
        self.demand = demand
        self.need = demand.resources.amounts()
        self.pool = pool
        self.slots: list[int] = [-1] * demand.replicas
        """Replica index -> node position in the pool, -1 while unplaced."""
        self.node_count: dict[int, int] = {}
        self.operator_count: dict[bytes, int] = {}

    def room(self, pos: int) -> bool:
        """Whether node `pos` of the app's pool can take one more replica of it."""
        return self.pool.fits(pos, self.need)

    def stacked(self) -> bool:
        return any(count > 1 for count in self.node_count.values())


class _Run:
    """One scheduling run: the pools, the applications, and every move made."""

    def __init__(
        self,
        apps: list[AppDemand],
        nodes: list[NodeInfo],
        reserved: Mapping[bytes, Resources],
    ) -> None:
        by_class: dict[str, list[NodeInfo]] = {}
        self.idle_classes: set[str] = set()
        """Classes with an active node that offers no compute."""
        for info in nodes:
            if info.status != NodeStatus.ACTIVE:
                continue
            if info.capacity == _NOTHING:
                # It validates and proves presence only: it holds nothing, not even a replica
                # that requests nothing.
                self.idle_classes.add(info.node_class)
                continue
            by_class.setdefault(info.node_class, []).append(info)
        self.pools = {klass: _Pool(members, reserved) for klass, members in by_class.items()}
        self.position: dict[bytes, tuple[_Pool, int]] = {}
        for pool in self.pools.values():
            for pos, node_id in enumerate(pool.ids):
                self.position[node_id] = (pool, pos)
        for demand in apps:
            if demand.node_class not in self.pools:
                # No active node of the class: an empty pool, where the app stays pending.
                self.pools[demand.node_class] = _Pool([], reserved)
        self.apps = [_App(demand, self.pools[demand.node_class]) for demand in apps]

    def assign(self, app: _App, index: int, pos: int) -> None:
        pool = app.pool
        pool.change(pos, app.need, -1)
        app.slots[index] = pos
        app.node_count[pos] = app.node_count.get(pos, 0) + 1
        operator = pool.operators[pos]
        app.operator_count[operator] = app.operator_count.get(operator, 0) + 1

    def unassign(self, app: _App, index: int) -> None:
        pool = app.pool
        pos = app.slots[index]
        pool.change(pos, app.need, +1)
        app.slots[index] = -1
        app.node_count[pos] -= 1
        if not app.node_count[pos]:
            del app.node_count[pos]
        operator = pool.operators[pos]
        app.operator_count[operator] -= 1
        if not app.operator_count[operator]:
            del app.operator_count[operator]

    def keep(self, current: Mapping[ReplicaId, bytes]) -> None:
        """Keep every existing placement that is still on an active node of the right class
        with room for it, in application then replica order."""
        for app in self.apps:
            for index in range(app.demand.replicas):
                node_id = current.get(ReplicaId(app.demand.app, index))
                if node_id is None or node_id not in self.position:
                    continue
                pool, pos = self.position[node_id]
                if pool is app.pool and app.room(pos):
                    self.assign(app, index, pos)

    def choose(self, app: _App, stacking: bool) -> int:
        """The best node with room for one more replica of `app`, or -1: fewest replicas of the
        app on the node, then on the node's operator, then the pool's order. With `stacking`
        false, only nodes holding none of the app's replicas qualify."""
        pool = app.pool
        need = app.need
        pos = pool.first_fit(0, need)
        if pos < 0:
            return -1
        first = pos
        # No node can have fewer of the app's replicas on its operator than `floor`: when it
        # is met by a node holding none, nothing beats the first such node in pool order.
        counts = app.operator_count
        floor = 0 if len(counts) < pool.operator_count else min(counts.values())
        while pos >= 0:
            if pos not in app.node_count and counts.get(pool.operators[pos], 0) == floor:
                return pos
            pos = pool.first_fit(pos + 1, need)
        best = -1
        best_key = (0, 0)
        for pos in range(first, pool.n):
            if not app.room(pos):
                continue
            on_node = app.node_count.get(pos, 0)
            if on_node and not stacking:
                continue
            key = (on_node, counts.get(pool.operators[pos], 0))
            if best < 0 or key < best_key:
                best, best_key = pos, key
        return best

    def place_pending(self) -> bool:
        placed = False
        for app in self.apps:
            for index, pos in enumerate(app.slots):
                if pos >= 0:
                    continue
                target = self.choose(app, stacking=True)
                if target >= 0:
                    self.assign(app, index, target)
                    placed = True
        return placed

    def spread(self) -> bool:
        """Move replicas off nodes that hold two or more of one app while a node holding none
        of it has room. Each move lowers that app's doubled-up count and raises no other's."""
        moved = False
        for app in self.apps:
            while app.stacked():
                target = self.choose(app, stacking=False)
                if target < 0:
                    break
                # The most crowded node, the later in pool order on a tie, gives up its
                # highest replica index.
                source = max(app.node_count, key=lambda p: (app.node_count[p], p))
                index = max(i for i, pos in enumerate(app.slots) if pos == source)
                self.unassign(app, index)
                self.assign(app, index, target)
                moved = True
        return moved

    def reason(self, app: _App) -> str:
        demand = app.demand
        pool = app.pool
        if not pool.n:
            if demand.node_class in self.idle_classes:
                return f"no active node of class {demand.node_class} offers compute"
            return f"no active node of class {demand.node_class}"
        short = [
            name
            for name, most, need in zip(_DIMENSIONS, pool.most_free(), app.need, strict=True)
            if most < need
        ]
        if short:
            named = short[0] if len(short) == 1 else ", ".join(short[:-1]) + " and " + short[-1]
            return f"insufficient {named} on every eligible node"
        return f"no eligible node has room for {demand.resources.describe()} at once"


def schedule(
    apps: Iterable[AppDemand],
    nodes: Iterable[NodeInfo],
    current: Mapping[ReplicaId, bytes],
    reserved: Mapping[bytes, Resources] | None = None,
) -> Placement:
    """Place every replica of every application on an active node of its class.

    A node that offers nothing (zero of every resource) takes no replica.

    1. Keep each replica of `current` whose node is still active, of the app's class, and has
       room for it (applications in name order, which for text is code point and so UTF-8
       byte order; replicas in index order; the first take room first).
    2. Place the others one by one (same order) on the best node with capacity left for them:
       fewest replicas of the app on the node, then on the node's operator, then the longest
       tower, then the lowest node id (byte order). Replicas listening on the same port share a
       node freely: each has a network namespace of its own.
    3. While a node holds two replicas of an app and a node holding none of it has room, move
       one there; then try the unplaced replicas again, until neither changes anything.

    So no node exceeds its capacity (minus `reserved`, room held outside these replicas), no
    node holds two replicas of an app while another eligible node with room holds none, and
    running again on the result changes nothing. Replicas no node can take are `pending`."""
    node_list = sorted(nodes, key=lambda info: info.node_id)
    for a, b in itertools.pairwise(node_list):
        if a.node_id == b.node_id:
            raise ScheduleError(f"node 0x{a.node_id.hex()} is listed twice")
    app_list = sorted(apps, key=lambda demand: demand.app)
    for x, y in itertools.pairwise(app_list):
        if x.app == y.app:
            raise ScheduleError(f"app {x.app!r} is listed twice")
    run = _Run(app_list, node_list, reserved or {})
    run.keep(current)
    run.place_pending()
    while run.spread():
        run.place_pending()
    assignments: dict[ReplicaId, bytes] = {}
    pending: dict[ReplicaId, str] = {}
    for app in run.apps:
        why = ""
        for index, pos in enumerate(app.slots):
            replica = ReplicaId(app.demand.app, index)
            if pos >= 0:
                assignments[replica] = app.pool.ids[pos]
            else:
                why = why or run.reason(app)
                pending[replica] = why
    return Placement(assignments, pending)


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """What one step of a rolling update does. Apply `stop` and `start` together."""

    start: tuple[int, ...]
    """Replicas whose new revision starts now, on its place in the new placement."""
    stop: tuple[int, ...]
    """Replicas whose old revision stops now."""


def rollout_step(
    old: Mapping[int, bytes],
    new: Mapping[int, bytes],
    target: Mapping[int, bytes],
    replicas: int,
    max_surge: int,
    max_unavailable: int,
) -> RolloutStep:
    """One step of a rolling update, applied once per block or epoch.

    `old`: replica index -> node still running the old revision; `new`: index -> node already
    running the new one; `target`: the scheduler's placement of the new revision. A node runs
    one copy of a replica index, so a replica that stays on its node is replaced in place
    (stopped, then started: unavailable meanwhile), while one that changes node can surge (its
    new copy starts while the old one keeps serving until the next step). The rule:

    1. An old copy stops when its new copy already runs (started at least one step ago), or
       when its index is no longer below `replicas`.
    2. A replica with a place in `target` and no copy at all starts (scale-up): nothing that
       served stops.
    3. The other old replicas, in index order, each with a place in `target`:
       - on another node, while fewer than `max_surge` surged in this step: start (surge);
       - otherwise, while fewer than `max_unavailable` were replaced in this step: start and
         stop (replace);
       - otherwise wait for a later step.
       With `max_unavailable` 0 the update must still finish: when nothing else moved in this
       step and no surge is in flight, one replica is replaced.
    A replica that has no place in `target` keeps its old copy."""
    if max_surge < 0 or max_unavailable < 0 or replicas < 0:
        raise ScheduleError("replicas, max_surge and max_unavailable cannot be negative")
    start: list[int] = []
    stop: list[int] = []
    in_flight = False
    for index in sorted(old):
        if index in new:
            stop.append(index)
            in_flight = True
        elif index >= replicas:
            stop.append(index)
    for index in sorted(target):
        if index < replicas and index not in old and index not in new:
            start.append(index)
    surged = replaced = 0
    waiting: list[int] = []
    for index in sorted(old):
        if index in new or index >= replicas or index not in target:
            continue
        if target[index] != old[index] and surged < max_surge:
            start.append(index)
            surged += 1
        elif replaced < max_unavailable:
            start.append(index)
            stop.append(index)
            replaced += 1
        else:
            waiting.append(index)
    if waiting and max_unavailable == 0 and not in_flight and not surged:
        start.append(waiting[0])
        stop.append(waiting[0])
    return RolloutStep(tuple(sorted(start)), tuple(sorted(stop)))
