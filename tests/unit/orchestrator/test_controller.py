"""The reconcile loop over the in-memory engine, under trio's mock clock."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from orchestrator import labels
from orchestrator.backoff import BackoffPolicy
from orchestrator.controller import Controller, ControllerConfig
from orchestrator.engine import ContainerState
from orchestrator.events import EventKind
from orchestrator.spec import ExecAction, Probe, ReplicaSpec, RestartPolicy
from orchestrator.status import ContainerPhase, ContainerStatus, ReplicaStatus
from testkit.trio_clock import TrioClock
from tests.unit.orchestrator.builders import (
    NODE,
    InMemoryDesired,
    container,
    ephemeral,
    persistent,
    replica,
)
from tests.unit.orchestrator.fake_engine import FakeContainer, FakeEngine, FakeFirewall, no_rootfs

OWNER = labels.owner_labels(NODE)
CONFIG = ControllerConfig(node=NODE, resync_seconds=5.0, metering_seconds=5.0)


Scenario = Callable[[Controller, FakeEngine, InMemoryDesired], Awaitable[None]]


def scenario(
    test: Scenario,
    *specs: ReplicaSpec,
    engine: FakeEngine | None = None,
    config: ControllerConfig = CONFIG,
    firewall: FakeFirewall | None = None,
) -> None:
    engine = engine or FakeEngine()

    async def main() -> None:
        desired = InMemoryDesired(*specs)
        controller = Controller(
            engine,
            desired,
            config,
            firewall=firewall or FakeFirewall(),
            sandbox_rootfs=no_rootfs,
            clock=TrioClock(),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            with trio.fail_after(3600):
                await test(controller, engine, desired)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def until(controller: Controller, predicate: Callable[[], bool]) -> None:
    while not predicate():
        await controller.changed()


def status_of(controller: Controller, spec: ReplicaSpec) -> ReplicaStatus | None:
    return controller.status().get(spec.key)


def main_status(controller: Controller, spec: ReplicaSpec) -> ContainerStatus:
    status = status_of(controller, spec)
    assert status is not None
    return status.containers[0]


def restarts(controller: Controller, spec: ReplicaSpec) -> int:
    status = status_of(controller, spec)
    return 0 if status is None else status.restart_count


def running(controller: Controller, spec: ReplicaSpec) -> bool:
    status = status_of(controller, spec)
    return status is not None and status.running


def reason(controller: Controller, spec: ReplicaSpec) -> str | None:
    status = status_of(controller, spec)
    return None if status is None else status.containers[0].reason


def kinds(controller: Controller, spec: ReplicaSpec) -> list[str]:
    return [e.kind.value for e in controller.events.for_replica(spec.key)]


def is_ready(controller: Controller, spec: ReplicaSpec) -> Callable[[], bool]:
    return lambda: bool((s := status_of(controller, spec)) and s.ready)


WEB = replica()


def started_again(c: FakeContainer) -> Callable[[], bool]:
    starts = c.starts
    return lambda: c.starts > starts


def all_ready(controller: Controller, count: int) -> Callable[[], bool]:
    return lambda: controller.statistics().ready_replicas == count


def test_a_desired_replica_runs_and_is_ready() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (c,) = engine.running(OWNER)
        assert c.labels[labels.APP] == "web" and c.labels[labels.REVISION] == "1"
        assert c.request is not None and c.request.args == ("sleep", "1000")
        assert main_status(controller, WEB) == ContainerStatus(
            "main", ContainerPhase.RUNNING, "", "", True, 0, c.id
        )
        assert kinds(controller, WEB) == ["Scheduled", "Created", "Started", "Ready"]
        stats = controller.statistics()
        assert (stats.desired_replicas, stats.running_containers, stats.ready_replicas) == (1, 1, 1)
        assert stats.engine_available and stats.actions_failed == 0

    scenario(test, WEB)


def test_passes_are_idempotent() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        before = list(engine.operations)
        for _round in range(5):
            controller.trigger()
            await controller.changed()
        await trio.sleep(30)
        assert engine.operations == before
        assert controller.statistics().passes > 5

    scenario(test, WEB)


def test_a_crash_restarts_at_once_then_with_growing_backoff() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (c,) = engine.running(OWNER)
        restarts_at = []
        for _round in range(4):
            engine.exit(c.id, 1)
            await until(controller, started_again(c))
            restarts_at.append(trio.current_time())
        gaps = [round(b - a) for a, b in itertools.pairwise(restarts_at)]
        assert gaps == [10, 20, 40]
        assert main_status(controller, WEB).restart_count == 4

    scenario(test, WEB)


def test_while_held_back_the_reason_is_crash_loop_backoff() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (c,) = engine.running(OWNER)
        engine.exit(c.id, 3)
        await until(controller, lambda: c.starts == 2)
        engine.exit(c.id, 3)
        await until(controller, lambda: "BackOff" in kinds(controller, WEB))
        status = main_status(controller, WEB)
        assert status.message == (
            "back-off 10s restarting failed container; last exit code 3 (Error)"
        )
        assert (status.phase, status.last_termination_reason, status.exit_code) == (
            ContainerPhase.WAITING,
            "Error",
            3,
        )
        assert status.reason == "CrashLoopBackOff"

    scenario(test, WEB)


def test_a_missing_image_is_image_pull_backoff_without_a_hot_loop() -> None:
    spec = replica(containers=(container(image="nope:1"),))

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: reason(controller, spec) == "ImagePullBackOff")
        assert main_status(controller, spec).message == (
            "image 'nope:1' is not present and could not be pulled: pull access denied: no registry"
        )
        await trio.sleep(100)
        failures = [
            e.at for e in controller.events.for_replica(spec.key) if e.kind.value == "Failed"
        ]
        # Attempts at 0, 10, 30, 70: the back-off doubles.
        assert [round(t) for t in failures] == [0, 10, 30, 70]
        engine.images.add("nope:1")
        await until(controller, is_ready(controller, spec))

    scenario(test, spec)


def test_a_failing_create_is_create_container_error() -> None:
    spec = replica(containers=(container(args=()),))

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: reason(controller, spec) == "CreateContainerError")
        status = main_status(controller, spec)
        assert status.message.endswith(": no command specified")
        assert status.phase is ContainerPhase.WAITING and not status.ready
        await trio.sleep(60)
        assert controller.statistics().actions_failed <= 4

    scenario(test, spec)


def test_a_start_failure_is_run_container_error_and_backs_off() -> None:
    spec = replica(containers=(container(args=("nosuch",)),))

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: reason(controller, spec) == "RunContainerError")
        assert "executable file not found" in main_status(controller, spec).message
        await trio.sleep(60)
        assert engine.count("create") == 1
        assert engine.count("start") <= 4

    scenario(test, spec, engine=FakeEngine(missing_executables={"nosuch"}))


def test_scale_down_removes_the_container_and_its_ephemeral_volume() -> None:
    spec = replica(volumes=(ephemeral(),))

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, spec))
        assert len(engine.volumes) == 1
        desired.specs = []
        controller.trigger()
        await until(controller, lambda: not engine.with_labels(OWNER) and not engine.volumes)
        assert controller.status() == {}
        assert kinds(controller, spec)[-1] == "Removed"

    scenario(test, spec)


def test_a_new_revision_replaces_the_container_and_keeps_the_persistent_volume() -> None:
    v1 = replica(volumes=(persistent(),))
    v2 = replica(revision=2, volumes=(persistent(),))

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, v1))
        (old,) = engine.running(OWNER)
        volumes = dict(engine.volumes)
        desired.specs = [v2]
        controller.trigger()
        await until(
            controller, lambda: (s := status_of(controller, v2)) is not None and s.revision == 2
        )
        await until(controller, is_ready(controller, v2))
        (new,) = engine.with_labels(OWNER)
        assert new.id != old.id and new.labels[labels.REVISION] == "2"
        assert engine.volumes == volumes
        assert engine.operations[-4:] == [
            ("stop", old.id),
            ("remove", old.id),
            ("create", new.id),
            ("start", new.id),
        ]

    scenario(test, v1)


def test_volumes_are_listed_only_while_a_replica_may_have_one() -> None:
    plain, stateful = replica("web"), replica("db", volumes=(ephemeral(),))
    engine = FakeEngine()
    left = labels.volume_identity(replica("gone", volumes=(ephemeral(),)), ephemeral())
    engine.volumes[labels.volume_name(NODE, left)] = dict(labels.volume_labels(NODE, left))

    async def passes(controller: Controller, count: int) -> None:
        done = controller.statistics().passes + count
        while controller.statistics().passes < done:
            controller.trigger()
            await controller.changed()

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        # The first pass lists, and finds what an earlier controller left behind.
        await until(controller, lambda: is_ready(controller, plain)() and not engine.volumes)
        await passes(controller, 1)
        listed = engine.volume_listings
        await passes(controller, 3)
        assert engine.volume_listings == listed
        desired.specs = [plain, stateful]
        await passes(controller, 1)
        await until(controller, is_ready(controller, stateful))
        assert len(engine.volumes) == 1 and engine.volume_listings > listed
        desired.specs = [plain]
        controller.trigger()
        await until(controller, lambda: not engine.volumes)
        await passes(controller, 1)
        listed = engine.volume_listings
        await passes(controller, 3)
        assert engine.volume_listings == listed

    scenario(test, plain, engine=engine)


def test_a_new_controller_adopts_instead_of_duplicating() -> None:
    async def main() -> None:
        engine, desired = FakeEngine(), InMemoryDesired(WEB, replica("api", 1))
        for generation in range(2):
            controller = Controller(
                engine,
                desired,
                CONFIG,
                firewall=FakeFirewall(),
                sandbox_rootfs=no_rootfs,
                clock=TrioClock(),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(controller.run)
                await until(controller, all_ready(controller, 2))
                nursery.cancel_scope.cancel()
            assert len(engine.with_labels(OWNER)) == 2
            assert engine.count("create") == 2, generation

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_containers_without_our_labels_are_never_touched() -> None:
    engine = FakeEngine()
    strangers = [
        engine.add_foreign("db", {"com.example": "x"}),
        engine.add_foreign("other-node", {**OWNER, labels.NODE: "node-b", labels.APP: "web"}),
        engine.add_foreign("half-ours", {**OWNER, labels.APP: "web"}),
        engine.add_foreign("dead-stranger", {}, running=False),
    ]

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        desired.specs = []
        controller.trigger()
        await until(
            controller,
            lambda: not engine.running(labels.container_labels(NODE, WEB, WEB.containers[0])),
        )
        await trio.sleep(30)
        assert all(cid in engine.containers for cid in strangers)
        touched = {cid for _, cid in engine.operations}
        assert touched.isdisjoint(strangers)

    scenario(test, WEB, engine=engine)


def test_an_unreachable_engine_is_a_reason_and_is_retried_with_backoff() -> None:
    engine = FakeEngine(down=True)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: not controller.statistics().engine_available)
        status = main_status(controller, WEB)
        assert (status.reason, status.message) == (
            "EngineUnavailable",
            "no container engine answers at fake://engine: connection refused; "
            "this node offers no compute",
        )
        passes = controller.statistics().passes
        await trio.sleep(60)
        assert controller.statistics().passes == passes  # failed passes are not counted
        engine.down = False
        await until(controller, is_ready(controller, WEB))

    scenario(test, WEB, engine=engine)


def exec_liveness() -> Probe:
    return Probe(ExecAction(("alive",)), period_seconds=1, failure_threshold=2)


def test_a_failing_liveness_probe_restarts_the_container_with_backoff() -> None:
    spec = replica(containers=(container(liveness=exec_liveness()),))
    engine = FakeEngine(exec_handler=lambda cid, cmd: 1)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: restarts(controller, spec) >= 3)
        times = [
            e.at for e in controller.events.for_replica(spec.key) if e.kind is EventKind.RESTARTED
        ]
        gaps = [round(b - a) for a, b in itertools.pairwise(times)]
        assert gaps == [10, 20]
        unhealthy = [
            e for e in controller.events.for_replica(spec.key) if e.kind is EventKind.UNHEALTHY
        ]
        assert unhealthy[0].reason == "LivenessProbeFailed"
        assert unhealthy[0].message == (
            "liveness probe failed: exec ['alive']: exit code 1; the container will be restarted"
        )
        assert engine.count("stop") >= 3

    scenario(test, spec, engine=engine)


def test_readiness_gates_the_ready_flag_without_restarts() -> None:
    probe = Probe(ExecAction(("ready",)), period_seconds=1, failure_threshold=1)
    spec = replica(containers=(container(readiness=probe),))
    answers = {"ready": 1}
    engine = FakeEngine(exec_handler=lambda cid, cmd: answers[cmd[0]])

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, lambda: running(controller, spec))
        await trio.sleep(10)
        assert not main_status(controller, spec).ready
        answers["ready"] = 0
        await until(controller, is_ready(controller, spec))
        answers["ready"] = 1
        await until(controller, lambda: not main_status(controller, spec).ready)
        assert engine.count("stop") == 0 and main_status(controller, spec).restart_count == 0

    scenario(test, spec, engine=engine)


def test_an_oom_kill_is_reported() -> None:
    spec = replica(restart_policy=RestartPolicy.NEVER)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, spec))
        (c,) = engine.running(OWNER)
        engine.exit(c.id, 137, oom=True)
        await until(
            controller, lambda: main_status(controller, spec).phase is ContainerPhase.TERMINATED
        )
        assert main_status(controller, spec) == ContainerStatus(
            "main",
            ContainerPhase.TERMINATED,
            "OOMKilled",
            "exit code 137",
            False,
            0,
            c.id,
            "OOMKilled",
            137,
        )
        (oom,) = [e for e in controller.events.for_replica(spec.key) if e.kind.value == "OOMKilled"]
        assert (oom.container, oom.reason, oom.message) == ("main", "OOMKilled", "exit code 137")
        await trio.sleep(60)
        assert c.starts == 1 and c.state is ContainerState.EXITED

    scenario(test, spec)


def test_usage_is_metered_across_restarts() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (c,) = engine.running(OWNER)
        c.cpu_ns, c.memory_bytes = 2_000_000_000, 5_000_000
        await trio.sleep(6)  # one metering period
        usage = controller.usage()[WEB.key]
        assert (usage.cpu_ns, usage.memory_bytes, usage.samples) == (2_000_000_000, 5_000_000, 1)
        engine.exit(c.id, 1)  # the run ends at t=6 after 6 s; the engine resets the counter
        await until(controller, lambda: c.starts == 2)
        c.cpu_ns, c.memory_bytes = 1_000_000_000, 3_000_000
        await trio.sleep(5)
        usage = controller.usage()[WEB.key]
        assert usage.cpu_ns == 3_000_000_000
        assert usage.memory_bytes == 3_000_000 and usage.peak_memory_bytes == 5_000_000
        assert 10_000 <= usage.uptime_ms <= 11_000

    scenario(test, WEB)


def test_the_highest_revision_wins_when_a_replica_is_desired_twice() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        v3 = replica(revision=3)
        await until(controller, is_ready(controller, v3))
        (c,) = engine.with_labels(OWNER)
        assert c.labels[labels.REVISION] == "3"

    scenario(test, replica(revision=3), replica(revision=2))


def test_every_container_of_a_replica_is_run_and_reported() -> None:
    spec = replica(containers=(container("main"), container("side")))

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, spec))
        names = sorted(c.labels[labels.CONTAINER] for c in engine.running(OWNER))
        assert names == ["main", "side"]
        status = status_of(controller, spec)
        assert status is not None
        assert [c.name for c in status.containers] == ["main", "side"]

    scenario(test, spec)


def test_fast_policies_make_the_backoff_short() -> None:
    fast = BackoffPolicy(initial_seconds=0.2, max_seconds=1.0, reset_after_seconds=5.0)
    config = ControllerConfig(node=NODE, crash_backoff=fast, resync_seconds=5.0)

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (c,) = engine.running(OWNER)
        times: list[float] = []
        for _round in range(5):
            engine.exit(c.id, 1)
            await until(controller, started_again(c))
            times.append(trio.current_time())
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
        assert gaps == [0.2, 0.4, 0.8, 1.0]

    scenario(test, WEB, config=config)


# -- pods -----------------------------------------------------------------------------------


def test_a_replica_runs_in_a_pod_of_its_own_behind_host_rules_set_first() -> None:
    engine = FakeEngine()
    firewall = FakeFirewall(observe=lambda: len(engine.operations))

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (pod,) = engine.sandboxes()
        (c,) = engine.running(OWNER)
        network = labels.network_name(NODE, WEB.chain, WEB.app, WEB.instance)
        assert c.network_mode == f"container:{pod.id}"
        assert c.request is not None and c.request.join == pod.name
        assert pod.request is not None and pod.request.network == network
        assert engine.networks[network] == labels.network_labels(
            NODE, WEB.chain, WEB.app, WEB.instance
        )
        status = status_of(controller, WEB)
        assert status is not None and status.address == pod.addresses[network]
        assert controller.pod_address(WEB.key) == pod.addresses[network]
        # The rules (over every workload bridge, so the app's) were in place before anything
        # was created, and are asserted again at every resync.
        assert firewall.applied >= 1 and firewall.operations_seen[0] == 0
        asserted = firewall.applied
        await trio.sleep(CONFIG.resync_seconds * 2.5)
        assert firewall.applied >= asserted + 2
        assert engine.operations[:4] == [
            ("try_network", network),
            ("create_network", network),
            ("import_image", labels.SANDBOX_IMAGE),
            ("create", pod.id),
        ]

    scenario(test, WEB, engine=engine, firewall=firewall)


def test_nothing_runs_while_the_host_rules_cannot_be_set() -> None:
    firewall = FakeFirewall(failure="iptables: Permission denied (you must be root)")

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await trio.sleep(30)
        assert engine.containers == {} and engine.networks == {}
        stats = controller.statistics()
        assert not stats.engine_available
        assert stats.engine_error == "iptables: Permission denied (you must be root)"
        firewall.failure = ""
        await until(controller, is_ready(controller, WEB))

    scenario(test, WEB, firewall=firewall)


def test_a_dead_sandbox_makes_the_pod_anew_with_its_containers() -> None:
    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await until(controller, is_ready(controller, WEB))
        (old_pod,) = engine.sandboxes()
        (old,) = engine.running(OWNER)
        engine.exit(old_pod.id, 137)
        await until(controller, lambda: old.id not in engine.containers)
        await until(controller, is_ready(controller, WEB))
        (pod,) = engine.sandboxes()
        (c,) = engine.running(OWNER)
        assert pod.id != old_pod.id and c.network_mode == f"container:{pod.id}"

    scenario(test, WEB)


def test_an_apps_network_goes_with_its_last_replica() -> None:
    second = replica(index=1)

    async def test(controller: Controller, engine: FakeEngine, desired: InMemoryDesired) -> None:
        await until(controller, lambda: controller.statistics().ready_replicas == 2)
        assert len(engine.networks) == 1 and len(engine.sandboxes()) == 2
        desired.specs = [second]
        controller.trigger()
        await until(controller, lambda: len(engine.sandboxes()) == 1)
        assert len(engine.networks) == 1
        desired.specs = []
        controller.trigger()
        await until(controller, lambda: not engine.networks and not engine.sandboxes())
        assert engine.count("remove_network") == 1

    scenario(test, WEB, second)


def test_a_network_the_engine_cannot_create_is_tried_again_with_back_off() -> None:
    engine = FakeEngine(network_failure="could not find an available address pool")

    async def test(controller: Controller, engine: FakeEngine, _: InMemoryDesired) -> None:
        await trio.sleep(60)
        tries = engine.count("try_network")
        # 10 s, then 20 s, then 40 s apart: not a retry at every pass.
        assert 2 <= tries <= 4
        assert engine.containers == {}
        failed = [e for e in controller.events.for_replica(WEB.key) if e.kind is EventKind.FAILED]
        assert failed and "address pool" in failed[0].message
        engine.network_failure = ""
        await until(controller, is_ready(controller, WEB))

    scenario(test, WEB, engine=engine)
