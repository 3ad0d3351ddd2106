"""Replica and container status as Kubernetes reports it (phase, reason, message, ready),
derived purely from the engine's view of a container and what the controller knows about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orchestrator.diff import should_restart
from orchestrator.engine import ContainerInfo, ContainerState, RunState
from orchestrator.spec import ReplicaKey, RestartPolicy

LIVE = (ContainerState.RUNNING, ContainerState.PAUSED, ContainerState.RESTARTING)


class ContainerPhase(enum.Enum):
    WAITING = "Waiting"
    RUNNING = "Running"
    TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """Like a Kubernetes container status."""

    name: str
    phase: ContainerPhase
    reason: str
    """Why it is waiting or terminated: ContainerCreating, ImagePullBackOff, CrashLoopBackOff,
    CreateContainerError, RunContainerError, EngineUnavailable, Completed, Error, OOMKilled."""
    message: str
    ready: bool
    restart_count: int
    container_id: str
    last_termination_reason: str = ""
    """Completed, Error or OOMKilled for the last run that ended."""
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    key: ReplicaKey
    revision: int
    containers: tuple[ContainerStatus, ...]
    address: str | None = None
    """The pod's address on its application's network, while its sandbox runs."""

    @property
    def ready(self) -> bool:
        """Every container ready, in a pod that has an address to be reached at."""
        return self.address is not None and all(c.ready for c in self.containers)

    @property
    def running(self) -> bool:
        return all(c.phase is ContainerPhase.RUNNING for c in self.containers)

    @property
    def reason(self) -> str:
        """The first container's reason for not running, or ''."""
        for c in self.containers:
            if c.phase is not ContainerPhase.RUNNING:
                return c.reason
        return ""

    @property
    def restart_count(self) -> int:
        return sum(c.restart_count for c in self.containers)


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    """What the controller knows about one desired container beyond the engine's view."""

    restart_count: int = 0
    failure: tuple[str, str] | None = None
    """(reason, message) of the last create or start that failed, until one succeeds."""
    ready: bool = False
    """The readiness its prober reports for the live container."""
    restart_due: float | None = None
    """When the next restart may run, if the crash back-off holds it."""
    restart_delay: float = 0.0
    engine_error: str = ""


def termination_reason(run: RunState | None) -> str:
    if run is None:
        return ""
    if run.oom_killed:
        return "OOMKilled"
    return "Completed" if run.exit_code == 0 else "Error"


def container_status(
    name: str,
    policy: RestartPolicy,
    observed: ContainerInfo | None,
    facts: ContainerFacts,
    now: float,
) -> ContainerStatus:
    """The status of a desired container, given the container that runs its spec (if any)."""
    count = facts.restart_count
    if observed is None:
        reason, message = facts.failure or ("ContainerCreating", "")
        if facts.engine_error:
            reason, message = "EngineUnavailable", facts.engine_error
        return ContainerStatus(name, ContainerPhase.WAITING, reason, message, False, count, "")
    cid = observed.id
    if observed.state in LIVE:
        return ContainerStatus(name, ContainerPhase.RUNNING, "", "", facts.ready, count, cid)
    run = observed.run
    if run is None or run.started_at is None:
        reason, message = facts.failure or ("ContainerCreating", "")
        return ContainerStatus(name, ContainerPhase.WAITING, reason, message, False, count, cid)
    ended = termination_reason(run)
    code = run.exit_code
    if not should_restart(policy, observed):
        message = f"exit code {code}"
        return ContainerStatus(
            name, ContainerPhase.TERMINATED, ended, message, False, count, cid, ended, code
        )
    if facts.failure is not None:
        reason, message = facts.failure
    elif facts.restart_due is not None and facts.restart_due > now:
        reason = "CrashLoopBackOff"
        message = (
            f"back-off {facts.restart_delay:g}s restarting failed container; "
            f"last exit code {code} ({ended})"
        )
    else:
        reason, message = ended, f"exit code {code}; restarting"
    return ContainerStatus(
        name, ContainerPhase.WAITING, reason, message, False, count, cid, ended, code
    )
