"""The JSON-RPC methods about what this node itself runs: its containers' logs (read and
followed), the orchestrator's events merged with the chain's, each replica's state and metered
usage, and an application's metrics. A node without compute answers each with a clear error.

An application's logs, its containers' events and its metrics are its owner's: they are served
only with `auth`, the owner's signed request for that application on this node
(`node.workload_access`); the events that come from chain state are public."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chain.address import encode_address
from chain.clock import Clock
from chain.keys import Keypair
from chain.ledger import Ledger
from chain.runtime import apps
from node.rpc.errors import RpcError
from node.rpc.methods import recent_app_events
from node.rpc.registry import Params, Registry
from node.workload_access import (
    ACCESS_DENIED,
    AccessDenied,
    AccessGrant,
    challenge_param,
    check_access,
    prove_identity,
)
from orchestrator.controller import Controller
from orchestrator.errors import ContainerNotFound, EngineFailure, EngineUnavailable
from orchestrator.events import EventKind, ReplicaEvent
from orchestrator.ingress_metrics import AppTraffic
from orchestrator.labels import ContainerKey
from orchestrator.logs import LogFollow, LogLine, LogsEnded, TooManyFollows, WorkloadLogs
from orchestrator.metering import ReplicaUsage
from orchestrator.spec import ReplicaKey
from orchestrator.status import ContainerPhase, ReplicaStatus
from orchestrator.workloads import WorkloadService

NO_COMPUTE = 5000
"""The node runs no workloads: not a compute node, or no container engine answers."""
UNKNOWN_APP = 5001
NOT_ON_THIS_NODE = 5002
"""The replica asked for runs elsewhere (the message names the node), or nowhere yet."""
ENGINE_FAILURE = 5003
TOO_MANY_FOLLOWS = 5004

MAX_LOG_BYTES = 4 * 1024 * 1024
"""An `app_logs` answer holds at most this much log text, shared among its containers; each
container's text keeps its newest lines."""


# -- parameter converters (their ValueError messages reach the client as -32602) ------------


def replica_index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected a replica index (an integer >= 0)")
    return int(value)


def tail_lines(value: Any) -> int | None:
    """A number of lines (an integer >= 0), or "all" (None)."""
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError('expected a number of lines (an integer >= 0) or "all"')
    return int(value)


# -- JSON views ---------------------------------------------------------------------------------


def usage_json(usage: ReplicaUsage) -> dict[str, Any]:
    return {
        "cpuSeconds": round(usage.cpu_seconds, 3),
        "memoryBytes": usage.memory_bytes,
        "peakMemoryBytes": usage.peak_memory_bytes,
        "uptimeSeconds": round(usage.uptime_seconds, 3),
        "diskBytes": usage.disk_bytes,
        "peakDiskBytes": usage.peak_disk_bytes,
    }


def workload_json(status: ReplicaStatus, usage: ReplicaUsage) -> dict[str, Any]:
    waiting = next((c for c in status.containers if c.phase is not ContainerPhase.RUNNING), None)
    return {
        "app": status.key.app,
        "replica": status.key.replica,
        "revision": status.revision,
        "state": ContainerPhase.RUNNING.value if waiting is None else waiting.phase.value,
        "ready": status.ready,
        "restartCount": status.restart_count,
        "reason": status.reason or None,
        "message": None if waiting is None else waiting.message or None,
        "containerId": status.containers[0].container_id or None,
        "containers": [
            {
                "name": c.name,
                "containerId": c.container_id or None,
                "state": c.phase.value,
                "ready": c.ready,
                "restartCount": c.restart_count,
                "reason": c.reason or None,
                "message": c.message or None,
                "exitCode": c.exit_code,
            }
            for c in status.containers
        ],
        "usage": usage_json(usage),
    }


def replica_metrics_json(status: ReplicaStatus, usage: ReplicaUsage) -> dict[str, Any]:
    """One replica's line of `app_metrics`: its state, restarts and metered usage."""
    waiting = next((c for c in status.containers if c.phase is not ContainerPhase.RUNNING), None)
    return {
        "replica": status.key.replica,
        "revision": status.revision,
        "state": ContainerPhase.RUNNING.value if waiting is None else waiting.phase.value,
        "ready": status.ready,
        "restarts": status.restart_count,
        "cpuSeconds": round(usage.cpu_seconds, 3),
        "memoryBytes": usage.memory_bytes,
        "peakMemoryBytes": usage.peak_memory_bytes,
        "uptimeSeconds": round(usage.uptime_seconds, 3),
    }


def traffic_json(traffic: AppTraffic) -> dict[str, Any]:
    """An application's requests through this node's ingress proxy."""

    def rounded(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds, 6)

    return {
        "requests": traffic.requests,
        "errors": traffic.errors,
        "byCode": dict(traffic.by_code),
        "latencyP50Seconds": rounded(traffic.p50_seconds),
        "latencyP95Seconds": rounded(traffic.p95_seconds),
    }


def line_json(line: LogLine) -> dict[str, Any]:
    return {
        "replica": line.container.replica.replica,
        "container": line.container.container,
        "text": line.text,
    }


def node_event_json(event: ReplicaEvent, revision: int | None) -> dict[str, Any]:
    return {
        "source": "node",
        "time": event.at,
        "block": None,
        "kind": event.kind.value,
        "reason": event.reason or None,
        "message": event.message or None,
        "replica": event.replica.replica,
        "revision": revision,
        "container": event.container or None,
    }


def chain_event_json(
    number: int, timestamp_ms: int, data: Mapping[str, Any], name: str
) -> dict[str, Any]:
    shown = {k: v for k, v in data.items() if k not in ("app", "replica", "revision", "reason")}
    return {
        "source": "chain",
        "time": timestamp_ms / 1000,
        "block": number,
        "kind": name,
        "reason": data.get("reason") or None,
        "message": ", ".join(f"{k}={v}" for k, v in shown.items()) or None,
        "replica": data.get("replica"),
        "revision": data.get("revision"),
        "container": None,
    }


def with_revisions(
    events: Iterable[ReplicaEvent], current: Mapping[ReplicaKey, int]
) -> list[tuple[ReplicaEvent, int | None]]:
    """Each event with the revision its replica ran then. The controller names a replica's
    revision in the message of its Scheduled event ("revision N"); events before the first one
    kept are of an unknown revision, unless none is kept: then the replica has not changed
    revision since, and runs the `current` one."""
    by_replica: dict[ReplicaKey, list[ReplicaEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.sequence):
        by_replica[event.replica].append(event)
    found = []
    for replica, kept in by_replica.items():
        scheduled = any(e.kind is EventKind.SCHEDULED for e in kept)
        revision = None if scheduled else current.get(replica)
        for event in kept:
            if event.kind is EventKind.SCHEDULED:
                number = event.message.removeprefix("revision ")
                revision = int(number) if number.isdigit() else None
            found.append((event, revision))
    return found


class _LogNotifications:
    """A follow's batches as `app_log` notifications; its end as an error notification."""

    def __init__(self, follow: LogFollow) -> None:
        self._follow = follow

    def __aiter__(self) -> _LogNotifications:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        try:
            batch = await self._follow.__anext__()
        except LogsEnded as e:
            raise RpcError(NOT_ON_THIS_NODE, f"log follow ended: {e}") from None
        return [line_json(line) for line in batch]

    async def aclose(self) -> None:
        await self._follow.aclose()


# -- the methods --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compute:
    node_id: bytes
    controller: Controller
    logs: WorkloadLogs


def register_workload_methods(
    registry: Registry,
    chain: Ledger,
    workloads: WorkloadService | None,
    *,
    node_key: Keypair,
    clock: Clock,
    traffic: Callable[[str], AppTraffic] | None = None,
) -> None:
    """`app_logs`, `app_subscribeLogs`, `app_events`, `app_metrics`, `node_identity` and
    `node_workloads`; `node_key` is the key this node's id is the public key of, which proves
    that id to the clients about to sign requests for it; `clock` is the one that owners'
    requests expire by (the node's); `traffic` reads an application's requests through this
    node's ingress proxy (None: the node serves no ingress)."""
    store = chain.store

    def service() -> WorkloadService:
        if workloads is None:
            raise RpcError(
                NO_COMPUTE,
                "this node offers no compute: it runs no workloads "
                "(it has no --operator key, or was started with --no-compute)",
            )
        return workloads

    def compute() -> _Compute:
        running = service()
        if running.engine_error is not None:
            raise RpcError(NO_COMPUTE, _no_engine(running.engine_error))
        if running.controller is None or running.logs is None:
            raise RpcError(
                NO_COMPUTE, "this node offers no compute: its container engine is not connected yet"
            )
        return _Compute(running.node_id, running.controller, running.logs)

    def authorize(
        grant: AccessGrant | None,
        found: _Compute,
        app: str,
        what: str = "the logs and container events",
    ) -> apps.AppRecord:
        """The record of `app` (in finalized state, else in the best one for an app not
        finalized yet) if `grant` is its owner's signed request for it on this node; else
        ACCESS_DENIED."""
        record = apps.get_app(store.state_at(store.finalized_header.hash), app) or apps.get_app(
            store.best_state(), app
        )
        if record is None:
            raise RpcError(UNKNOWN_APP, f"no application {app!r} in finalized state")
        genesis = store.genesis_hash or b""
        try:
            check_access(
                grant,
                genesis=genesis,
                app=app,
                node=found.node_id,
                owner=record.owner,
                now=clock.now_ms() / 1000,
                what=what,
            )
        except AccessDenied as e:
            raise RpcError(ACCESS_DENIED, e.message, {"reason": e.reason.value}) from None
        return record

    def local(found: _Compute, app: str, replica: int | None) -> list[ReplicaStatus]:
        """This node's replicas of `app` (or its replica `replica`); else why not, naming the
        node that runs it."""
        statuses = {k.replica: s for k, s in found.controller.status().items() if k.app == app}
        if replica is None and statuses:
            return [statuses[i] for i in sorted(statuses)]
        if replica is not None and replica in statuses:
            return [statuses[replica]]
        state = store.state_at(store.finalized_header.hash)
        if apps.get_app(state, app) is None:
            raise RpcError(UNKNOWN_APP, f"no application {app!r} in finalized state")
        raise RpcError(
            NOT_ON_THIS_NODE, not_here(app, replica, apps.placement(state, app), found.node_id)
        )

    @registry.method("app_logs", params=["app", "replica?", "tail?", "auth?"], unsafe=False)
    async def app_logs(params: Params) -> list[dict[str, Any]]:
        app = params.required("app", str)
        replica = params.optional("replica", replica_index)
        tail = params.optional("tail", tail_lines)
        grant = params.optional("auth", AccessGrant.from_json)
        found = compute()
        authorize(grant, found, app)
        targets = [(s, c) for s in local(found, app, replica) for c in s.containers]
        budget = MAX_LOG_BYTES // max(1, len(targets))
        answer = []
        for status, container in targets:
            raw = b""
            if container.container_id:
                try:
                    raw = await found.logs.read(container.container_id, tail=tail)
                except ContainerNotFound:
                    raw = b""  # removed since the last pass; its replacement has no log yet
                except EngineUnavailable as e:
                    raise RpcError(NO_COMPUTE, _no_engine(e)) from None
                except EngineFailure as e:
                    raise RpcError(
                        ENGINE_FAILURE, f"{status.key}/{container.name}: {e.message}"
                    ) from None
            truncated = len(raw) > budget
            if truncated:
                raw = raw[-budget:]
                raw = raw[raw.find(b"\n") + 1 :]  # whole lines only
            answer.append(
                {
                    "replica": status.key.replica,
                    "revision": status.revision,
                    "container": container.name,
                    "containerId": container.container_id or None,
                    "state": container.phase.value,
                    "text": raw.decode(errors="replace"),
                    "truncated": truncated,
                }
            )
        return answer

    @registry.subscription(
        "app_subscribeLogs",
        unsubscribe="app_unsubscribeLogs",
        notification="app_log",
        params=["app", "replica?", "tail?", "auth?"],
        unsafe=False,
    )
    def subscribe_logs(params: Params) -> AsyncIterator[Any]:
        """The request is checked when the follow starts: it then lasts until unsubscribed or
        until the replicas leave this node, past the request's expiry."""
        app = params.required("app", str)
        replica = params.optional("replica", replica_index)
        tail = params.optional("tail", tail_lines, 0)
        grant = params.optional("auth", AccessGrant.from_json)
        found = compute()
        authorize(grant, found, app)
        containers = [
            ContainerKey(s.key, c.name) for s in local(found, app, replica) for c in s.containers
        ]
        try:
            return _LogNotifications(found.logs.follow(containers, tail=tail))
        except TooManyFollows as e:
            raise RpcError(TOO_MANY_FOLLOWS, str(e)) from None

    @registry.method("app_events", params=["app", "auth?"], unsafe=False)
    def app_events(params: Params) -> list[dict[str, Any]]:
        """The chain's events of `app` for anyone; with the owner's `auth`, merged with this
        node's events of its containers: those of the instance the owner owns only, never those
        of an earlier application of the same name, someone else's."""
        app = params.required("app", str)
        grant = params.optional("auth", AccessGrant.from_json)
        merged = []
        if grant is not None:
            found = compute()
            record = authorize(grant, found, app)
            controller = found.controller
            current = {k: s.revision for k, s in controller.status().items()}
            mine = [
                e
                for e in controller.events.recent(len(controller.events))
                if e.replica.app == app and e.instance == record.instance
            ]
            merged = [node_event_json(e, r) for e, r in with_revisions(mine, current)]
        for number, block_hash, event in recent_app_events(store, app):
            timestamp = store.require_header(block_hash).timestamp
            merged.append(chain_event_json(number, timestamp, event.to_json()["data"], event.name))
        merged.sort(key=lambda e: e["time"])
        return merged

    @registry.method("app_metrics", params=["app", "auth?"], unsafe=False)
    def app_metrics(params: Params) -> dict[str, Any]:
        """Per replica of `app` on this node, its state, restarts, CPU time and memory (from the
        usage metering); and the application's requests through this node's ingress proxy, its
        5xx answers and their latency (None where the node serves no ingress)."""
        app = params.required("app", str)
        grant = params.optional("auth", AccessGrant.from_json)
        found = compute()
        authorize(grant, found, app, "the metrics")
        usage = found.controller.usage()
        return {
            "app": app,
            "node": encode_address(found.node_id),
            "replicas": [
                replica_metrics_json(status, usage.get(status.key, ReplicaUsage()))
                for status in local(found, app, None)
            ],
            "ingress": None if traffic is None else traffic_json(traffic(app)),
        }

    @registry.method("node_identity", params=["challenge"], unsafe=False)
    def node_identity(params: Params) -> dict[str, Any]:
        """The node id and chain that owners' requests for this node's workload data are signed
        for, proven by the node key's signature of the client's fresh `challenge` with them: a
        node cannot name another's id and obtain a request to use there."""
        service()
        challenge = params.required("challenge", challenge_param)
        genesis = store.genesis_hash or b""
        return prove_identity(node_key, genesis=genesis, challenge=challenge).to_json()

    @registry.method("node_workloads", unsafe=True)
    def node_workloads(params: Params) -> dict[str, Any]:
        found = compute()
        controller = found.controller
        usage = controller.usage()
        return {
            "node": encode_address(found.node_id),
            "replicas": [
                workload_json(status, usage.get(key, ReplicaUsage()))
                for key, status in sorted(controller.status().items())
            ],
        }


def _no_engine(error: EngineUnavailable) -> str:
    return (
        f"this node offers no compute: no container engine answers at {error.host}: {error.cause}"
    )


def not_here(
    app: str, replica: int | None, placement: list[apps.ReplicaEntry], node_id: bytes
) -> str:
    entries = [e for e in placement if replica is None or e.index == replica]
    placed = sorted(
        {(e.index, encode_address(e.node)) for e in entries if e.node not in (b"", node_id)}
    )
    here = any(e.node == node_id for e in entries)
    if replica is not None:
        if not entries:
            return f"application {app!r} has no replica {replica}"
        if placed:
            nodes = " and ".join(n for _, n in placed)
            return f"replica {replica} of {app!r} runs on node {nodes}, not on this node"
        if here:
            return f"replica {replica} of {app!r} is assigned to this node but does not run yet"
        reason = next((e.reason for e in entries if e.reason), "no node can take it")
        return f"replica {replica} of {app!r} is pending: {reason}"
    if placed:
        where = "; ".join(f"replica {i} runs on node {n}" for i, n in placed)
        return f"no replica of {app!r} runs on this node: {where}"
    if here:
        return f"the replicas of {app!r} are assigned to this node but do not run yet"
    return f"no replica of {app!r} runs on any node"
