"""The bounded log of what happened to each replica (scheduled, started, ready, OOM-killed, ...),
like the Events of a Kubernetes pod: the newest few per replica, for the fewest recent replicas."""

from __future__ import annotations

import enum
import itertools
import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

from orchestrator.spec import ReplicaKey

log = logging.getLogger("statemesh.orchestrator")


class EventKind(enum.Enum):
    SCHEDULED = "Scheduled"
    """The replica was assigned to this node."""
    CREATED = "Created"
    STARTED = "Started"
    READY = "Ready"
    UNHEALTHY = "Unhealthy"
    """A probe failed its threshold (readiness: out of service; liveness: about to restart)."""
    EXITED = "Exited"
    """The process ended by itself."""
    OOM_KILLED = "OOMKilled"
    RESTARTED = "Restarted"
    BACK_OFF = "BackOff"
    """A start or create is held back by the back-off."""
    FAILED = "Failed"
    """An operation failed; `reason` says which (ImagePullBackOff, CreateContainerError, ...)."""
    REMOVED = "Removed"
    EVICTED = "Evicted"
    """The replica used more disk than a limit allows: `message` says which and how much."""


@dataclass(frozen=True, slots=True)
class ReplicaEvent:
    """Something that happened to one replica on this node (a start, a restart, a failure),
    as the workload RPC shows it to the replica's owner."""

    sequence: int
    """Increases by one with every event of the log, across replicas."""
    at: float
    """Unix seconds."""
    replica: ReplicaKey
    instance: int | None
    """The application instance the event concerns (`AppRecord.instance`): a replica's key
    names an application by its name, which a deleted application leaves to the next one, and
    its events are its owner's alone. None when unknown (a container of an older version
    without the label): such an event is served to no one."""
    kind: EventKind
    container: str = ""
    reason: str = ""
    message: str = ""


class EventLog:
    """Keeps the last `per_replica` events of the last `max_replicas` replicas that had one.
    Replicas are keyed by application name, across instances: whoever serves the events picks
    those of the instance asked for."""

    def __init__(self, *, per_replica: int = 50, max_replicas: int = 1000) -> None:
        if per_replica < 1 or max_replicas < 1:
            raise ValueError("an event log keeps at least one event of one replica")
        self._per_replica = per_replica
        self._max_replicas = max_replicas
        self._logs: OrderedDict[ReplicaKey, deque[ReplicaEvent]] = OrderedDict()
        self._sequence = itertools.count(1)
        self.totals: Counter[EventKind] = Counter()
        """Every event recorded since start, by kind (the node's metrics count them)."""

    def record(
        self,
        at: float,
        replica: ReplicaKey,
        kind: EventKind,
        *,
        instance: int | None,
        container: str = "",
        reason: str = "",
        message: str = "",
    ) -> ReplicaEvent:
        event = ReplicaEvent(
            next(self._sequence), at, replica, instance, kind, container, reason, message
        )
        self.totals[kind] += 1
        entries = self._logs.get(replica)
        if entries is None:
            entries = self._logs[replica] = deque(maxlen=self._per_replica)
            while len(self._logs) > self._max_replicas:
                self._logs.popitem(last=False)
        else:
            self._logs.move_to_end(replica)
        entries.append(event)
        where = f"{replica}/{container}" if container else str(replica)
        log.info(
            "%s %s%s%s",
            where,
            kind.value,
            f" ({reason})" if reason else "",
            f": {message}" if message else "",
        )
        return event

    def for_replica(self, replica: ReplicaKey) -> tuple[ReplicaEvent, ...]:
        return tuple(self._logs.get(replica, ()))

    def recent(self, limit: int = 100) -> list[ReplicaEvent]:
        """The newest `limit` events across replicas, oldest first."""
        merged = sorted(
            (e for entries in self._logs.values() for e in entries), key=lambda e: e.sequence
        )
        return merged[-limit:]

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._logs.values())
