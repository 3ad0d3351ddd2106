"""The controller on a real Docker engine: busybox httpd workloads on loopback ports."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import docker
import pytest
import trio

from orchestrator import labels
from orchestrator.controller import Controller
from orchestrator.docker_engine import DockerAdapter
from orchestrator.events import EventKind
from orchestrator.probes import http_get
from orchestrator.spec import (
    EnforcedResources,
    ExecAction,
    HTTPGetAction,
    Probe,
    ReplicaSpec,
    RestartPolicy,
    SecurityContext,
    Volume,
    VolumeKind,
)
from orchestrator.status import ContainerPhase
from tests.integration.docker_harness import DockerEngine, free_port
from tests.integration.orchestrator.scenario import (
    http_probe,
    httpd,
    ready,
    reason,
    run_controller,
    status,
    until,
    web,
)
from tests.unit.orchestrator.builders import InMemoryDesired

pytestmark = pytest.mark.integration


def ours(client: docker.DockerClient, node: str) -> list[dict[str, object]]:
    """The replicas' own containers of this node (not their pods' sandboxes)."""
    rows = client.api.containers(all=True, filters={"label": [f"{labels.NODE}={node}"]})
    return [row for row in rows if labels.ROLE not in (row.get("Labels") or {})]


def pod(controller: Controller, spec: ReplicaSpec) -> str:
    address = controller.pod_address(spec.key)
    assert address is not None
    return address


def event_times(controller: Controller, spec_key: object, kind: EventKind) -> list[float]:
    return [e.at for e in controller.events.recent(1000) if e.kind is kind]


def test_a_desired_replica_runs_with_its_limits_and_becomes_ready(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    spec = web(
        port,
        readiness=http_probe(port),
        resources=EnforcedResources(cpu_millicores=250, memory_bytes=64 * 2**20, pids_limit=32),
    )
    client = docker_engine.client

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, ready(controller, spec))
        result = await http_get(HTTPGetAction(port, host=pod(controller, spec)), 2.0)
        assert result.success, result.message
        (row,) = ours(client, node_id)
        attrs = client.api.inspect_container(row["Id"])
        host = attrs["HostConfig"]
        sandbox = client.api.inspect_container(labels.sandbox_name(node_id, spec.key))
        assert (host["NetworkMode"], host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (
            f"container:{sandbox['Id']}",
            250_000_000,
            64 * 2**20,
            32,
        )
        assert host["MemorySwap"] == 64 * 2**20 and host["Init"] is True
        assert host["CapDrop"] == ["ALL"] and "NET_RAW" not in host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert attrs["Config"]["Labels"] == labels.container_labels(
            node_id, spec, spec.containers[0]
        )
        assert attrs["Config"]["Cmd"] == list(httpd(port))
        kinds = [e.kind.value for e in controller.events.for_replica(spec.key)]
        assert kinds == ["Scheduled", "Created", "Started", "Ready"]

    run_controller(docker_engine.host, node_id, [spec], test)


def restarted_and_ready(
    controller: Controller, spec: ReplicaSpec, count: int
) -> Callable[[], bool]:
    def check() -> bool:
        s = status(controller, spec)
        return s is not None and s.restart_count == count and s.ready

    return check


def test_a_killed_container_is_restarted_with_backoff(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    spec = web(port, readiness=http_probe(port))
    client = docker_engine.client

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, ready(controller, spec))
        (row,) = ours(client, node_id)
        first_restart = None
        for count in (1, 2, 3):
            killed = trio.current_time()
            await trio.to_thread.run_sync(client.api.kill, row["Id"])
            await until(controller, restarted_and_ready(controller, spec, count))
            if first_restart is None:
                first_restart = trio.current_time() - killed
        # The first restart is at once; each later one waits its back-off (0.3 s, then 0.6 s)
        # after the restart before it. Measured on the controller's own events, not from the
        # kill: under load a replica may take longer than its back-off to become ready.
        assert first_restart is not None and first_restart < 1.0
        restarts = [
            e.at for e in controller.events.for_replica(spec.key) if e.kind is EventKind.RESTARTED
        ]
        gaps = [b - a for a, b in itertools.pairwise(restarts)]
        assert len(gaps) >= 2
        assert gaps[0] >= 0.3 - 0.05 and gaps[1] >= 0.6 - 0.05
        assert len(ours(client, node_id)) == 1

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_failing_liveness_probe_restarts_with_growing_backoff(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    spec = web(port, liveness=http_probe(port, "/no-such-page", failure_threshold=2))

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(
            controller, lambda: (s := status(controller, spec)) is not None and s.restart_count >= 4
        )
        events = controller.events.for_replica(spec.key)
        unhealthy = [e for e in events if e.kind is EventKind.UNHEALTHY]
        assert unhealthy[0].reason == "LivenessProbeFailed"
        assert unhealthy[0].message == (
            f"liveness probe failed: GET http://{pod(controller, spec)}:{port}/no-such-page: "
            "HTTP 404; "
            "the container will be restarted"
        )
        restarts = [e.at for e in events if e.kind is EventKind.RESTARTED]
        gaps = [b - a for a, b in itertools.pairwise(restarts)]
        # Each restart waits at least its back-off (0.3, 0.6, 1.2 s) after the one before: the
        # floors grow. (The gaps themselves also hold probe periods, which a loaded machine
        # stretches: the first can outlast the second.)
        assert len(gaps) >= 2, gaps
        for gap, backoff in zip(gaps, (0.3, 0.6, 1.2), strict=False):
            assert gap >= backoff - 0.05, gaps

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_failing_readiness_probe_keeps_the_replica_out_of_service(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    spec = web(port, readiness=http_probe(free_port()))

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, lambda: (s := status(controller, spec)) is not None and s.running)
        await trio.sleep(1.5)
        s = status(controller, spec)
        assert s is not None and s.running and not s.ready and s.restart_count == 0
        assert (await http_get(HTTPGetAction(port, host=pod(controller, spec)), 2.0)).success

    run_controller(docker_engine.host, node_id, [spec], test)


def test_scale_down_removes_the_container(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    spec = web(port, volumes=(Volume("scratch", "/scratch", VolumeKind.EPHEMERAL),))
    client = docker_engine.client

    async def test(controller: Controller, desired: InMemoryDesired, _: DockerAdapter) -> None:
        await until(controller, ready(controller, spec))
        assert len(ours(client, node_id)) == 1
        desired.specs = []
        controller.trigger()
        await until(controller, lambda: not ours(client, node_id))
        await until(
            controller,
            lambda: (
                not client.api.volumes(filters={"label": [f"{labels.NODE}={node_id}"]})["Volumes"]
            ),
        )
        assert controller.events.for_replica(spec.key)[-1].kind is EventKind.REMOVED

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_new_revision_replaces_the_replica_and_its_persistent_volume_survives(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    volumes = (
        Volume("data", "/data", VolumeKind.PERSISTENT),
        Volume("scratch", "/scratch", VolumeKind.EPHEMERAL),
    )

    def revision(n: int) -> ReplicaSpec:
        script = f"echo r{n} >> /data/log; echo r{n} >> /scratch/log; exec {' '.join(httpd(port))}"
        return web(
            port, revision=n, args=("sh", "-c", script), volumes=volumes, readiness=http_probe(port)
        )

    v1, v2 = revision(1), revision(2)
    client = docker_engine.client

    async def test(controller: Controller, desired: InMemoryDesired, _: DockerAdapter) -> None:
        await until(controller, ready(controller, v1))
        (old,) = ours(client, node_id)
        desired.specs = [v2]
        controller.trigger()
        await until(controller, ready(controller, v2))
        (new,) = ours(client, node_id)
        assert new["Id"] != old["Id"]
        assert new["Labels"][labels.REVISION] == "2"  # type: ignore[index]

        def cat(path: str) -> bytes:
            return bytes(client.api.exec_start(client.api.exec_create(new["Id"], ["cat", path])))

        assert await trio.to_thread.run_sync(cat, "/data/log") == b"r1\nr2\n"
        assert await trio.to_thread.run_sync(cat, "/scratch/log") == b"r2\n"

    run_controller(docker_engine.host, node_id, [v1], test)


def test_a_new_controller_adopts_running_containers_without_duplicates(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    ports = [free_port(), free_port()]
    specs = [web(p, index=i, readiness=http_probe(p)) for i, p in enumerate(ports)]
    client = docker_engine.client
    seen: list[dict[str, str]] = []

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, lambda: all(ready(controller, s)() for s in specs))
        rows = ours(client, node_id)
        seen.append(
            {
                str(r["Id"]): str(client.api.inspect_container(r["Id"])["State"]["StartedAt"])
                for r in rows
            }
        )
        assert controller.statistics().passes >= 1

    run_controller(docker_engine.host, node_id, specs, test)
    run_controller(docker_engine.host, node_id, specs, test)
    assert len(seen[0]) == 2
    assert seen[0] == seen[1]  # same containers, never restarted


def test_containers_without_our_labels_are_never_touched(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    client = docker_engine.client
    strangers = [
        client.api.create_container(
            busybox_image,
            ["sleep", "60"],
            labels=tag,
            host_config=client.api.create_host_config(network_mode="host"),
        )["Id"]
        for tag in ({"test.owner": node_id}, {labels.NODE: node_id, labels.APP: "web"})
    ]
    for cid in strangers:
        client.api.start(cid)
    port = free_port()
    spec = web(port)

    async def test(controller: Controller, desired: InMemoryDesired, _: DockerAdapter) -> None:
        await until(controller, ready(controller, spec))
        desired.specs = []
        controller.trigger()
        await until(
            controller, lambda: not status(controller, spec) and len(ours(client, node_id)) == 1
        )
        await trio.sleep(0.5)

    try:
        run_controller(docker_engine.host, node_id, [spec], test)
        for cid in strangers:
            assert client.api.inspect_container(cid)["State"]["Running"] is True
    finally:
        for cid in strangers:
            client.api.remove_container(cid, force=True)


def test_an_image_that_does_not_exist_is_image_pull_backoff(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    spec = web(free_port(), image="statemesh-test/no-such-image:1")

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, lambda: reason(controller, spec)() == "ImagePullBackOff")
        s = status(controller, spec)
        assert s is not None
        message = s.containers[0].message
        assert message.startswith(
            "image 'statemesh-test/no-such-image:1' is not present and could not be pulled: "
        )
        await trio.sleep(2.0)
        failed = event_times(controller, spec.key, EventKind.FAILED)
        assert 2 <= len(failed) <= 5  # 0.3, 0.6, 1.2 s apart: retried, never in a hot loop

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_command_that_exits_at_once_is_crash_loop_backoff(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    spec = web(free_port(), args=("sh", "-c", "echo bye; exit 3"))

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, lambda: reason(controller, spec)() == "CrashLoopBackOff")
        await until(
            controller, lambda: (s := status(controller, spec)) is not None and s.restart_count >= 3
        )
        s = status(controller, spec)
        assert s is not None and not s.ready
        (c,) = s.containers
        assert (c.last_termination_reason, c.exit_code) == ("Error", 3)
        await trio.sleep(1.0)
        s = status(controller, spec)
        assert s is not None and s.restart_count <= 6

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_memory_hog_past_its_limit_is_reported_oom_killed(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    hog = ("sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done")
    spec = web(
        free_port(),
        args=hog,
        resources=EnforcedResources(memory_bytes=16 * 2**20),
        restart_policy=RestartPolicy.NEVER,
    )

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(
            controller,
            lambda: (
                (s := status(controller, spec)) is not None
                and s.containers[0].phase is ContainerPhase.TERMINATED
            ),
        )
        s = status(controller, spec)
        assert s is not None
        (c,) = s.containers
        assert (c.reason, c.last_termination_reason, c.exit_code) == ("OOMKilled", "OOMKilled", 137)
        kinds = [e.kind for e in controller.events.for_replica(spec.key)]
        assert EventKind.OOM_KILLED in kinds

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_failing_create_and_a_missing_program_are_reasons_not_crashes(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    no_command = web(free_port(), app="nocmd", args=())
    no_program = web(free_port(), app="noprog", args=("/bin/no-such-program",))

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, lambda: reason(controller, no_command)() == "CreateContainerError")
        created = status(controller, no_command)
        assert created is not None
        assert created.containers[0].message == (
            f"cannot create {engine_container_name(no_command, node_id)}: No command specified"
        )
        # The engine's init process starts, then cannot run the program: exit code 127.
        await until(controller, lambda: reason(controller, no_program)() == "CrashLoopBackOff")
        started = status(controller, no_program)
        assert started is not None
        assert started.containers[0].exit_code == 127

    run_controller(docker_engine.host, node_id, [no_command, no_program], test)


def engine_container_name(spec: ReplicaSpec, node: str) -> str:
    return labels.container_name(node, spec, spec.containers[0])


def test_usage_is_metered_from_the_engine(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    burn = ("sh", "-c", "while true; do :; done")
    spec = web(free_port(), args=burn, resources=EnforcedResources(cpu_millicores=500))

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        began = trio.current_time()
        await until(controller, lambda: (s := status(controller, spec)) is not None and s.running)
        # A loaded machine gives the loop less than its half CPU, never more, and may sample it
        # late: wait for some CPU time to accrue over two samples at least, then check it
        # against the quota over the uptime metered with it.
        with trio.fail_after(60):
            await until(
                controller,
                lambda: (
                    (u := controller.usage().get(spec.key)) is not None
                    and u.cpu_seconds >= 0.3
                    and u.samples >= 2
                ),
            )
        usage = controller.usage()[spec.key]
        assert usage.memory_bytes > 0
        # The container started after the test began (the engine's clock and this one may
        # differ by a little), and half a CPU, give or take one 100 ms period of the quota.
        assert 0 < usage.uptime_seconds <= trio.current_time() - began + 1.0, usage
        assert usage.cpu_seconds <= 0.5 * usage.uptime_seconds + 0.1, usage

    run_controller(docker_engine.host, node_id, [spec], test)


def test_an_exec_readiness_probe_runs_inside_the_container(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    port = free_port()
    probe = Probe(ExecAction(("test", "-f", "/tmp/ready")), period_seconds=0.2)
    spec = web(port, readiness=probe)
    client = docker_engine.client

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, lambda: (s := status(controller, spec)) is not None and s.running)
        await trio.sleep(0.6)
        assert not ready(controller, spec)()
        (row,) = ours(client, node_id)
        exec_id = client.api.exec_create(row["Id"], ["touch", "/tmp/ready"])
        await trio.to_thread.run_sync(client.api.exec_start, exec_id)
        await until(controller, ready(controller, spec))

    run_controller(docker_engine.host, node_id, [spec], test)


def test_a_security_context_holds_in_the_container(
    docker_engine: DockerEngine, busybox_image: str, node_id: str
) -> None:
    base = web(8080, args=("sleep", "600"))
    locked = dataclasses.replace(
        base,
        containers=(
            dataclasses.replace(
                base.containers[0],
                security=SecurityContext(
                    run_as_user=65534,
                    run_as_group=65534,
                    read_only_root_filesystem=True,
                    capabilities_drop=("ALL",),
                ),
            ),
        ),
    )
    root_refused = dataclasses.replace(
        base,
        app="asroot",
        containers=(
            dataclasses.replace(base.containers[0], security=SecurityContext(run_as_non_root=True)),
        ),
    )
    client = docker_engine.client

    async def test(controller: Controller, _: InMemoryDesired, adapter: DockerAdapter) -> None:
        await until(controller, ready(controller, locked))
        await until(
            controller, lambda: reason(controller, root_refused)() == "CreateContainerError"
        )
        (row,) = [r for r in ours(client, node_id) if r["Labels"][labels.APP] == "web"]
        container = client.containers.get(row["Id"])

        def run(*command: str) -> tuple[int, str]:
            result = container.exec_run(list(command))
            return result.exit_code, result.output.decode().strip()

        assert run("id", "-u") == (0, "65534")
        assert run("touch", "/written")[0] != 0  # the image's filesystem is read-only
        assert run("touch", "/tmp/written")[0] == 0  # /tmp is a small writable tmpfs
        status = run("cat", "/proc/self/status")[1]
        assert "CapEff:\t0000000000000000" in status
        failure = status_of_reason(controller, root_refused)
        assert "runs as root and run_as_non_root is set" in failure

    run_controller(docker_engine.host, node_id, [locked, root_refused], test)


def status_of_reason(controller: Controller, spec: ReplicaSpec) -> str:
    s = status(controller, spec)
    assert s is not None
    return s.containers[0].message
