"""The pure diff as a matrix: desired replicas and observed containers -> actions, in order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from orchestrator import labels
from orchestrator.diff import (
    Action,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    RemoveContainer,
    RemoveNetwork,
    RemoveVolume,
    StartContainer,
    create_request,
    diff,
    sandbox_request,
)
from orchestrator.engine import ContainerInfo, ContainerState, NetworkInfo, VolumeInfo
from orchestrator.spec import ReplicaSpec, RestartPolicy
from tests.unit.orchestrator.builders import (
    NODE,
    container,
    ephemeral,
    observed,
    observed_network,
    observed_pod,
    observed_volume,
    persistent,
    pod_id,
    replica,
)

S = ContainerState
WEB = replica()
WEB_V2 = replica(revision=2)
WEB_ONFAIL = replica(restart_policy=RestartPolicy.ON_FAILURE)
WEB_NEVER = replica(restart_policy=RestartPolicy.NEVER)
WEB_EPH = replica(volumes=(ephemeral(),))
WEB_EPH_V2 = replica(revision=2, volumes=(ephemeral(),))
WEB_PV = replica(volumes=(persistent(),))
WEB_PV_V2 = replica(revision=2, volumes=(persistent(),))
PAIR = replica(containers=(container("main"), container("side")))
API = replica("api", 3)


@dataclass(frozen=True)
class Case:
    desired: tuple[ReplicaSpec, ...]
    containers: tuple[ContainerInfo | NetworkInfo, ...] = ()
    volumes: tuple[VolumeInfo, ...] = ()
    expected: tuple[str, ...] = field(default=())
    pods: bool = True
    """Whether every desired replica's sandbox and network are observed running (the case
    then lists only what it is about)."""


def describe(action: Action) -> str:
    """A short, readable form of an action for the matrix."""
    if isinstance(action, CreateContainer) and action.key.container == labels.SANDBOX:
        return f"create-pod {action.replica}"
    if isinstance(action, CreateContainer):
        return f"create {action.key} r{action.request.labels[labels.REVISION]}"
    if isinstance(action, CreateNetwork):
        return f"create-network {action.labels[labels.APP]}"
    if isinstance(action, RemoveNetwork):
        return f"remove-network {action.replica.app}"
    if isinstance(action, StartContainer):
        return f"{'restart' if action.restart else 'start'} {action.container_id}"
    if isinstance(action, RemoveContainer):
        return f"remove {action.container_id} {action.reason.name}"
    if isinstance(action, CreateVolume):
        return f"create-volume {action.labels[labels.VOLUME]}"
    assert isinstance(action, RemoveVolume)
    return f"remove-volume {action.name}"


CASES = {
    "new replica is created": Case((WEB,), expected=("create web/0/main r1",)),
    "running with the same spec: nothing": Case((WEB,), (observed(WEB),)),
    "paused counts as live: nothing": Case((WEB,), (observed(WEB, state=S.PAUSED),)),
    "new revision replaces the old": Case(
        (WEB_V2,), (observed(WEB),), expected=("remove c1 REPLACED", "create web/0/main r2")
    ),
    "not desired is removed": Case((), (observed(WEB),), expected=("remove c1 NOT_DESIRED",)),
    "Always restarts a clean exit": Case(
        (WEB,), (observed(WEB, state=S.EXITED),), expected=("restart c1",)
    ),
    "OnFailure leaves a clean exit": Case((WEB_ONFAIL,), (observed(WEB_ONFAIL, state=S.EXITED),)),
    "OnFailure restarts a failure": Case(
        (WEB_ONFAIL,),
        (observed(WEB_ONFAIL, state=S.EXITED, exit_code=1),),
        expected=("restart c1",),
    ),
    "OnFailure restarts an OOM kill": Case(
        (WEB_ONFAIL,), (observed(WEB_ONFAIL, state=S.EXITED, oom=True),), expected=("restart c1",)
    ),
    "Never leaves a failure": Case(
        (WEB_NEVER,), (observed(WEB_NEVER, state=S.EXITED, exit_code=1),)
    ),
    "created but never started is started": Case(
        (WEB_NEVER,), (observed(WEB_NEVER, state=S.CREATED),), expected=("start c1",)
    ),
    "dead is removed and created again": Case(
        (WEB,), (observed(WEB, state=S.DEAD),), expected=("remove c1 DEAD", "create web/0/main r1")
    ),
    "an old one being removed holds the create back": Case(
        (WEB_V2,), (observed(WEB, state=S.REMOVING),)
    ),
    "a duplicate is removed, the live one kept": Case(
        (WEB,),
        (observed(WEB, state=S.EXITED, cid="c1"), observed(WEB, cid="c2")),
        expected=("remove c1 DUPLICATE",),
    ),
    "containers with incomplete labels are never touched": Case(
        (),
        (ContainerInfo("x1", "someone", {labels.NODE: NODE, labels.APP: "web"}, S.RUNNING),),
    ),
    "a volume is created before its container": Case(
        (WEB_EPH,), expected=("create-volume scratch", "create web/0/main r1")
    ),
    "present volume and running container: nothing": Case(
        (WEB_EPH,), (observed(WEB_EPH),), (observed_volume(WEB_EPH, ephemeral()),)
    ),
    "scale-down removes an ephemeral volume after its container": Case(
        (),
        (observed(WEB_EPH),),
        (observed_volume(WEB_EPH, ephemeral()),),
        expected=(
            "remove c1 NOT_DESIRED",
            f"remove-volume {observed_volume(WEB_EPH, ephemeral()).name}",
        ),
    ),
    "scale-down retains a persistent volume": Case(
        (),
        (observed(WEB_PV),),
        (observed_volume(WEB_PV, persistent()),),
        expected=("remove c1 NOT_DESIRED",),
    ),
    "a new revision gets a fresh ephemeral volume": Case(
        (WEB_EPH_V2,),
        (observed(WEB_EPH),),
        (observed_volume(WEB_EPH, ephemeral()),),
        expected=(
            "remove c1 REPLACED",
            "create-volume scratch",
            "create web/0/main r2",
            f"remove-volume {observed_volume(WEB_EPH, ephemeral()).name}",
        ),
    ),
    "a new revision keeps its persistent volume": Case(
        (WEB_PV_V2,),
        (observed(WEB_PV),),
        (observed_volume(WEB_PV, persistent()),),
        expected=("remove c1 REPLACED", "create web/0/main r2"),
    ),
    "only the missing container of a pair is created": Case(
        (PAIR,), (observed(PAIR, "main"),), expected=("create web/0/side r1",)
    ),
    "replicas come out in key order, each in its own order": Case(
        (WEB_V2, API),
        (observed(WEB),),
        expected=("create api/3/main r1", "remove c1 REPLACED", "create web/0/main r2"),
    ),
    "another node's containers are not observed, so not removed": Case(
        (WEB,), (), expected=("create web/0/main r1",)
    ),
    "a new replica gets its network, then its pod, then its containers": Case(
        (WEB_EPH,),
        pods=False,
        expected=(
            "create-network web",
            "create-pod web/0",
            "create-volume scratch",
            "create web/0/main r1",
        ),
    ),
    "a second replica of an app reuses its network": Case(
        (WEB, replica(index=1)),
        (observed(WEB), observed_network(WEB)),
        pods=False,
        expected=(
            "remove c1 POD_GONE",
            "create-pod web/0",
            "create web/0/main r1",
            "create-pod web/1",
            "create web/1/main r1",
        ),
    ),
    "a stopped sandbox takes its pod's containers with it": Case(
        (PAIR,),
        (
            observed_pod(PAIR, S.EXITED),
            observed(PAIR, "main", cid="c1"),
            observed(PAIR, "side", cid="c2"),
            observed_network(PAIR),
        ),
        pods=False,
        expected=(
            "remove c1 POD_GONE",
            "remove c2 POD_GONE",
            f"remove {pod_id(PAIR)} POD_GONE",
            "create-pod web/0",
            "create web/0/main r1",
            "create web/0/side r1",
        ),
    ),
    "a container outside its pod's current sandbox is replaced": Case(
        (WEB,),
        (observed(WEB, pod="p-old"),),
        expected=("remove c1 POD_GONE", "create web/0/main r1"),
    ),
    "a sandbox being removed holds the new pod back": Case(
        (WEB,), (observed_pod(WEB, S.REMOVING), observed_network(WEB)), pods=False
    ),
    "a replica's pod goes after its containers; the network once the app is gone": Case(
        (),
        (observed(WEB), observed_pod(WEB), observed_network(WEB)),
        pods=False,
        expected=("remove c1 NOT_DESIRED", f"remove {pod_id(WEB)} NOT_DESIRED"),
    ),
    "an app's network is removed when nothing of it is left": Case(
        (API,), (observed(API), observed_network(WEB)), expected=("remove-network web",)
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_diff_matrix(case: Case) -> None:
    desired = {spec.key: spec for spec in case.desired}
    containers, networks = with_pods(case)
    actions = diff(NODE, desired, containers, list(case.volumes), networks)
    assert [describe(a) for a in actions] == list(case.expected)


def with_pods(case: Case) -> tuple[list[ContainerInfo], list[NetworkInfo]]:
    containers = list(case.containers)
    networks = [c for c in containers if isinstance(c, NetworkInfo)]
    containers = [c for c in containers if isinstance(c, ContainerInfo)]
    if case.pods:
        containers += [observed_pod(spec) for spec in case.desired]
        networks += [observed_network(spec) for spec in case.desired]
    return containers, list({n.name: n for n in networks}.values())


def test_diff_is_idempotent_once_applied() -> None:
    desired = {WEB_EPH.key: WEB_EPH}
    after = diff(
        NODE,
        desired,
        [observed(WEB_EPH), observed_pod(WEB_EPH)],
        [observed_volume(WEB_EPH, ephemeral())],
        [observed_network(WEB_EPH)],
    )
    assert after == []


def test_restart_carries_how_long_the_last_run_lasted() -> None:
    (action,) = diff(
        NODE,
        {WEB.key: WEB},
        [observed(WEB, state=S.EXITED), observed_pod(WEB)],
        [],
        [observed_network(WEB)],
    )
    assert isinstance(action, StartContainer)
    assert (action.restart, action.ran_for) == (True, 60.0)


def test_create_request_carries_labels_limits_and_mounts() -> None:
    spec = replica(volumes=(persistent(),))
    request = create_request(NODE, spec, spec.containers[0])
    assert request.labels == {
        labels.NODE: NODE,
        labels.CHAIN: "statemesh_dev",
        labels.APP: "web",
        labels.INSTANCE: "0",
        labels.REPLICA: "0",
        labels.REVISION: "1",
        labels.CONTAINER: "main",
        labels.SPEC_HASH: labels.spec_hash(spec, spec.containers[0]),
    }
    (mount,) = request.mounts
    assert mount.target == "/data"
    assert mount.volume == observed_volume(spec, persistent()).name
    assert request.name.startswith("sm-web-0-main-")
    assert (request.network, request.join) == (None, labels.sandbox_name(NODE, spec.key))


def test_a_sandbox_sleeps_unprivileged_on_its_apps_network() -> None:
    request = sandbox_request(NODE, WEB)
    assert request.network == labels.network_name(NODE, WEB.chain, WEB.app, WEB.instance)
    assert request.join is None
    assert request.hostname == "web-0"
    assert request.image == labels.SANDBOX_IMAGE
    assert request.security.capabilities() == ()
    assert request.security.read_only_root_filesystem
    assert request.security.run_as_user == labels.SANDBOX_USER
    assert request.resources.pids_limit is not None


def test_networks_and_bridges_are_per_node_and_app_instance() -> None:
    names = {
        labels.network_name(n, "c", a, i)
        for n in ("n1", "n2")
        for a in ("web", "api")
        for i in (1, 2)
    }
    bridges = {
        labels.bridge_name(n, "c", a, i)
        for n in ("n1", "n2")
        for a in ("web", "api")
        for i in (1, 2)
    }
    assert len(names) == len(bridges) == 8
    assert all(len(b) <= 15 and b.startswith(labels.BRIDGE_PREFIX) for b in bridges)


def test_spec_hash_ignores_probes_and_restart_policy_but_not_revision() -> None:
    base = replica()
    assert labels.spec_hash(base, base.containers[0]) == labels.spec_hash(
        WEB_NEVER, WEB_NEVER.containers[0]
    )
    assert labels.spec_hash(base, base.containers[0]) != labels.spec_hash(
        WEB_V2, WEB_V2.containers[0]
    )
