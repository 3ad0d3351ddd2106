"""The event log keeps a bounded number of events per replica, and of replicas."""

from __future__ import annotations

from orchestrator.events import EventKind, EventLog, ReplicaEvent
from orchestrator.spec import ReplicaKey

A = ReplicaKey("c", "a", 0)
B = ReplicaKey("c", "b", 0)
C = ReplicaKey("c", "c", 0)


def test_events_are_kept_per_replica_newest_last() -> None:
    log = EventLog(per_replica=3)
    for i in range(5):
        log.record(
            float(i), A, EventKind.RESTARTED, instance=1, container="main", message=f"restart {i}"
        )
    log.record(
        9.0, B, EventKind.FAILED, instance=2, reason="ImagePullBackOff", message="no such image"
    )
    assert [e.message for e in log.for_replica(A)] == ["restart 2", "restart 3", "restart 4"]
    assert log.for_replica(B) == (
        ReplicaEvent(6, 9.0, B, 2, EventKind.FAILED, "", "ImagePullBackOff", "no such image"),
    )
    assert [e.sequence for e in log.recent(2)] == [5, 6]
    assert len(log) == 4


def test_the_least_recently_active_replica_is_forgotten_first() -> None:
    log = EventLog(per_replica=2, max_replicas=2)
    log.record(0.0, A, EventKind.SCHEDULED, instance=1)
    log.record(1.0, B, EventKind.SCHEDULED, instance=1)
    log.record(2.0, A, EventKind.STARTED, instance=1)
    log.record(3.0, C, EventKind.SCHEDULED, instance=1)
    assert log.for_replica(B) == ()
    assert [e.kind for e in log.for_replica(A)] == [EventKind.SCHEDULED, EventKind.STARTED]
