"""Container status as a matrix: the engine's view and the controller's facts -> what is shown."""

from __future__ import annotations

import pytest

from orchestrator.engine import ContainerInfo, ContainerState
from orchestrator.spec import RestartPolicy
from orchestrator.status import ContainerFacts, ContainerPhase, ContainerStatus, container_status
from tests.unit.orchestrator.builders import observed, replica

S = ContainerState
P = ContainerPhase
R = RestartPolicy
WEB = replica()
PULL = ("ImagePullBackOff", "image 'x:1' is not present and could not be pulled: no registry")
NOW = 1000.0


def seen(state: ContainerState, code: int = 0, *, oom: bool = False) -> ContainerInfo:
    return observed(WEB, state=state, exit_code=code, oom=oom)


CASES: dict[str, tuple[RestartPolicy, ContainerInfo | None, ContainerFacts, ContainerStatus]] = {
    "nothing yet": (
        R.ALWAYS, None, ContainerFacts(),
        ContainerStatus("main", P.WAITING, "ContainerCreating", "", False, 0, ""),
    ),
    "image missing": (
        R.ALWAYS, None, ContainerFacts(failure=PULL),
        ContainerStatus("main", P.WAITING, *PULL, False, 0, ""),
    ),
    "engine down": (
        R.ALWAYS, None, ContainerFacts(failure=PULL, engine_error="no engine"),
        ContainerStatus("main", P.WAITING, "EngineUnavailable", "no engine", False, 0, ""),
    ),
    "running and ready": (
        R.ALWAYS, seen(S.RUNNING), ContainerFacts(ready=True, restart_count=2),
        ContainerStatus("main", P.RUNNING, "", "", True, 2, "c1"),
    ),
    "running, not ready": (
        R.ALWAYS, seen(S.RUNNING), ContainerFacts(),
        ContainerStatus("main", P.RUNNING, "", "", False, 0, "c1"),
    ),
    "created, start failed": (
        R.ALWAYS, seen(S.CREATED), ContainerFacts(failure=("RunContainerError", "no such file")),
        ContainerStatus("main", P.WAITING, "RunContainerError", "no such file", False, 0, "c1"),
    ),
    "crashed, held back": (
        R.ALWAYS, seen(S.EXITED, 2), ContainerFacts(restart_due=NOW + 5, restart_delay=20),
        ContainerStatus("main", P.WAITING, "CrashLoopBackOff",
                        "back-off 20s restarting failed container; last exit code 2 (Error)",
                        False, 0, "c1", "Error", 2),
    ),
    "crashed, about to restart": (
        R.ALWAYS, seen(S.EXITED, 2), ContainerFacts(restart_due=NOW - 1, restart_delay=20),
        ContainerStatus("main", P.WAITING, "Error", "exit code 2; restarting", False, 0, "c1",
                        "Error", 2),
    ),
    "OnFailure, completed": (
        R.ON_FAILURE, seen(S.EXITED, 0), ContainerFacts(),
        ContainerStatus("main", P.TERMINATED, "Completed", "exit code 0", False, 0, "c1",
                        "Completed", 0),
    ),
    "Never, OOM-killed": (
        R.NEVER, seen(S.EXITED, 137, oom=True), ContainerFacts(),
        ContainerStatus("main", P.TERMINATED, "OOMKilled", "exit code 137", False, 0, "c1",
                        "OOMKilled", 137),
    ),
    "Never, failed": (
        R.NEVER, seen(S.EXITED, 1), ContainerFacts(),
        ContainerStatus("main", P.TERMINATED, "Error", "exit code 1", False, 0, "c1", "Error", 1),
    ),
}  # fmt: skip


@pytest.mark.parametrize("policy, container, facts, expected", CASES.values(), ids=list(CASES))
def test_container_status_matrix(
    policy: RestartPolicy,
    container: ContainerInfo | None,
    facts: ContainerFacts,
    expected: ContainerStatus,
) -> None:
    assert container_status("main", policy, container, facts, NOW) == expected
