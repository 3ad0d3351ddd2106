"""Orchestrator latency on a real Docker engine, against the same sandboxed pod made by hand with
the SDK (a bridge network, a sandbox container on it, and the busybox httpd joined to its network
namespace, hardened and limited as the node does), measured in the same run, interleaved:

- desired replica added -> container running, and -> ready (HTTP 200 from the pod's address),
  median and p95; target overhead ratio (controller / hand-made pod) <= 1.5 on running; both
  sides start from no network, so both create the application's network, the sandbox and the
  container (the controller also asserts its host rules for the new bridge);
- crash (SIGKILL to the app container, not its sandbox) -> running again, median, beside
  Docker's own `restart: always` on the app container of a hand-made pod;
- one controller pass (observe, diff, dispatch) with N busybox `httpd` replicas (N pods) on one
  node, beside a bare container list of the same 2N containers (sandboxes and httpds);
- the CPU the process uses while the controller keeps those N replicas running and nothing
  changes (HTTP readiness and liveness probes, metering and resyncs at their default periods),
  in CPU seconds per wall second, beside the same window with the controller stopped (the
  containers still running), and what the engine (dockerd and containerd) uses in both.

    .venv/bin/python -m bench.orchestrator_start [--runs 10] [--replicas 100] [--idle-seconds 20]
        [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import trio

from orchestrator import labels
from orchestrator.backoff import BackoffPolicy
from orchestrator.controller import Controller, ControllerConfig
from orchestrator.diff import SANDBOX_RESOURCES
from orchestrator.docker_engine import DockerAdapter
from orchestrator.firewall import IptablesFirewall
from orchestrator.images import busybox_rootfs_tar
from orchestrator.probes import http_get
from orchestrator.spec import (
    CAPABILITIES_KEPT,
    Container,
    EnforcedResources,
    HTTPGetAction,
    Probe,
    ReplicaSpec,
    Volume,
    VolumeKind,
)
from orchestrator.workloads import firewall_tag
from testkit.desired import InMemoryDesired
from testkit.engines import (
    BUSYBOX_IMAGE,
    DockerEngine,
    bridge_network,
    open_engine,
    remove_labelled,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

NODE = "bench-node"
BARE = {labels.NODE: NODE + "-bare"}
"""The label of everything made by hand, for the clean-up."""
CHAIN = "statemesh_dev"
PROBE_PERIOD = 0.05
PORT = 8080
"""Every pod has an address of its own, so every httpd listens on the same port."""
LIMITS = EnforcedResources(cpu_millicores=500, memory_bytes=64 * 2**20, pids_limit=64)
HARDENING: dict[str, Any] = {
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "init": True,
    "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
}
"""What the node gives every container of a pod, sandbox included (`DockerAdapter`)."""


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def httpd(port: int) -> list[str]:
    """Listens on every interface of its pod: the host reaches it at the pod's address."""
    return ["httpd", "-f", "-p", str(port), "-h", "/www"]


def web(app: str, index: int) -> ReplicaSpec:
    probe = Probe(HTTPGetAction(PORT), period_seconds=PROBE_PERIOD, timeout_seconds=1.0)
    container = Container(
        "main", BUSYBOX_IMAGE, args=tuple(httpd(PORT)), resources=LIMITS, readiness_probe=probe
    )
    return ReplicaSpec(CHAIN, app, 1, index, (container,), termination_grace_period_seconds=1.0)


def server(index: int) -> ReplicaSpec:
    """One of the N replicas of the pass and idle measurements: httpd with HTTP readiness and
    liveness probes at Kubernetes' default period (10 s), an ephemeral-storage limit and an
    emptyDir with a size limit (so that a disk measurement sizes a layer and a volume each)."""
    probe = Probe(HTTPGetAction(PORT))
    # Something to measure: 200 small files in the volume, 1 MiB in the writable layer.
    fill = (
        "mkdir -p /scratch/files && for i in $(seq 200); do echo $i > /scratch/files/$i; done"
        " && dd if=/dev/zero of=/layer bs=65536 count=16 2>/dev/null && exec "
    )
    container = Container(
        "main",
        BUSYBOX_IMAGE,
        command=("sh", "-c"),
        args=(fill + " ".join(httpd(PORT)),),
        resources=replace(LIMITS, disk_bytes=64 * 2**20),
        readiness_probe=probe,
        liveness_probe=probe,
    )
    scratch = Volume("scratch", "/scratch", VolumeKind.EPHEMERAL, size_bytes=64 * 2**20)
    return ReplicaSpec(
        CHAIN,
        "idle",
        1,
        index,
        (container,),
        volumes=(scratch,),
        termination_grace_period_seconds=0,
    )


def engine_limits(resources: EnforcedResources) -> dict[str, Any]:
    """The engine's arguments for `resources`, as `DockerAdapter` gives them."""
    cpu, request = resources.cpu_millicores, resources.cpu_request_millicores
    return {
        "nano_cpus": None if cpu is None else cpu * 1_000_000,
        "cpu_shares": None if request is None else max(2, request * 1024 // 1000),
        "mem_limit": resources.memory_bytes,
        "memswap_limit": resources.memory_bytes,
        "pids_limit": resources.pids_limit,
    }


class BarePod:
    """A pod made by hand as the node makes one: a bridge network (`smb...`), a sandbox that
    only sleeps on it (non-root, read-only, no capabilities, the sandbox's limits), and the
    httpd in its network namespace (the capabilities the node keeps, the replica's limits)."""

    def __init__(self, client: docker.DockerClient, kind: str, index: int) -> None:
        self._client = client
        self.name = f"bench-{kind}-{index}"
        self._bridge = f"smb{kind[:4]}{index}"
        if len(self._bridge) > 15:
            raise ValueError(f"bridge name {self._bridge!r} is longer than 15 characters")
        self.network: Any = None
        self.sandbox: Any = None
        self.container: Any = None

    def run(self, **container: Any) -> None:
        """Creates and starts the three; `container` adds to the httpd's arguments."""
        client = self._client
        self.network = bridge_network(
            client,
            self.name,
            options={
                "com.docker.network.bridge.name": self._bridge,
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
            },
            labels=BARE,
        )
        user = labels.SANDBOX_USER
        self.sandbox = client.containers.run(
            labels.SANDBOX_IMAGE,
            list(labels.SANDBOX_COMMAND),
            name=f"{self.name}-pod",
            hostname=self.name,
            network=self.name,
            user=f"{user}:{user}",
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            detach=True,
            labels=BARE,
            **HARDENING,
            **engine_limits(SANDBOX_RESOURCES),
        )
        self.container = client.containers.run(
            BUSYBOX_IMAGE,
            httpd(PORT),
            name=f"{self.name}-main",
            network_mode=f"container:{self.sandbox.id}",
            cap_add=list(CAPABILITIES_KEPT),
            detach=True,
            labels=BARE,
            **HARDENING,
            **engine_limits(LIMITS),
            **container,
        )

    def address(self) -> str:
        """The sandbox's address on its network (an inspection: `run` does not return it)."""
        self.sandbox.reload()
        return str(self.sandbox.attrs["NetworkSettings"]["Networks"][self.name]["IPAddress"])

    def remove(self) -> None:
        for container in (self.container, self.sandbox):
            if container is not None:
                container.remove(force=True)
        if self.network is not None:
            self.network.remove()


async def wait_http(address: str) -> None:
    """Polls the pod like the readiness probe does, at the same period."""
    while True:
        if (await http_get(HTTPGetAction(PORT, host=address), 1.0)).success:
            return
        await trio.sleep(PROBE_PERIOD)


async def until(controller: Controller, predicate: Callable[[], bool]) -> None:
    while not predicate():
        with trio.move_on_after(0.05):
            await controller.changed()


async def next_pass(controller: Controller) -> None:
    before = controller.statistics().passes
    await until(controller, lambda: controller.statistics().passes > before)


async def drained(controller: Controller, adapter: DockerAdapter) -> None:
    """Until the node has no container and no network left, and a pass has seen that (and
    asserted its host rules for no bridge), so that the next run starts from nothing."""
    await until(controller, lambda: controller.statistics().observed_containers == 0)
    while await adapter.list_networks(labels.owner_labels(NODE)):
        with trio.move_on_after(0.05):
            await controller.changed()
    await next_pass(controller)


async def bare_run(client: docker.DockerClient, index: int) -> tuple[float, float]:
    pod = BarePod(client, "bare", index)
    try:
        start = time.perf_counter()
        await trio.to_thread.run_sync(pod.run)
        running = time.perf_counter() - start
        await wait_http(await trio.to_thread.run_sync(pod.address))
        ready = time.perf_counter() - start
    finally:
        await trio.to_thread.run_sync(pod.remove)
    return running, ready


async def controlled_run(
    controller: Controller, adapter: DockerAdapter, desired: InMemoryDesired, index: int
) -> tuple[float, float]:
    spec = web("start", index)
    start = time.perf_counter()
    desired.specs = [spec]
    controller.trigger()
    await until(
        controller, lambda: (s := controller.status().get(spec.key)) is not None and s.running
    )
    running = time.perf_counter() - start
    await until(controller, lambda: controller.status()[spec.key].ready)
    ready = time.perf_counter() - start
    desired.specs = []
    controller.trigger()
    await drained(controller, adapter)
    return running, ready


async def crash(client: docker.DockerClient, container_id: str) -> None:
    """SIGKILL to the container's first process from the host, as a crash would: an API kill
    counts as a manual stop, which Docker's own restart policy then leaves alone."""
    pid = (await trio.to_thread.run_sync(client.api.inspect_container, container_id))["State"]
    os.kill(int(pid["Pid"]), signal.SIGKILL)


async def controlled_crash(
    client: docker.DockerClient,
    controller: Controller,
    adapter: DockerAdapter,
    desired: InMemoryDesired,
    index: int,
) -> float:
    spec = web("crash", index)
    desired.specs = [spec]
    controller.trigger()
    await until(
        controller, lambda: (s := controller.status().get(spec.key)) is not None and s.running
    )
    # The replica's own container: its pod's sandbox lives on, as after a crash of the app.
    container_id = controller.status()[spec.key].containers[0].container_id
    start = time.perf_counter()
    await crash(client, container_id)
    await until(
        controller, lambda: (s := controller.status()[spec.key]).restart_count == 1 and s.running
    )
    elapsed = time.perf_counter() - start
    desired.specs = []
    controller.trigger()
    await drained(controller, adapter)
    return elapsed


async def docker_restart(client: docker.DockerClient, index: int) -> float:
    """Docker's own restart manager, for reference: kill -> running again, of the app container
    of a hand-made pod."""
    pod = BarePod(client, "restart", index)
    try:
        await trio.to_thread.run_sync(lambda: pod.run(restart_policy={"Name": "always"}))
        container_id = pod.container.id
        inspected = await trio.to_thread.run_sync(client.api.inspect_container, container_id)
        first = inspected["State"]["StartedAt"]
        start = time.perf_counter()
        await crash(client, container_id)
        while True:
            inspected = await trio.to_thread.run_sync(client.api.inspect_container, container_id)
            state = inspected["State"]
            if state["Running"] and state["StartedAt"] != first:
                break
            await trio.sleep(0.005)
        return time.perf_counter() - start
    finally:
        await trio.to_thread.run_sync(pod.remove)


async def supervised(
    controller: Controller, *, task_status: TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
) -> None:
    """Runs the controller under a cancel scope of its own, handed back once it is ready."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(controller.run)
            task_status.started(scope)


def engine_cpu_seconds(engine: DockerEngine) -> float | None:
    """CPU seconds used so far by a dockerd started here and its containerd (None otherwise)."""
    if engine.process is None:
        return None
    pids = [engine.process.pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == engine.process.pid:
                    pids.append(int(entry))
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def cpu_share(engine: DockerEngine, seconds: float) -> tuple[float, float | None]:
    """(this process, the engine): CPU seconds per wall second over a window of `seconds`."""
    wall, cpu, engine_cpu = time.perf_counter(), time.process_time(), engine_cpu_seconds(engine)
    await trio.sleep(seconds)
    elapsed = time.perf_counter() - wall
    process = (time.process_time() - cpu) / elapsed
    engine_after = engine_cpu_seconds(engine)
    if engine_cpu is None or engine_after is None:
        return process, None
    return process, (engine_after - engine_cpu) / elapsed


async def many_replicas(
    engine: DockerEngine,
    nursery: trio.Nursery,
    adapter: DockerAdapter,
    firewall: IptablesFirewall,
    replicas: int,
    idle_seconds: float,
) -> dict[str, object]:
    """Converge to N replicas (N pods on one network), time passes and disk measurements,
    measure the idle CPU with the controller running (disk measured), running without disk
    measurement (another controller adopts the containers) and stopped, then remove everything
    with a new controller. The controllers have the node's default configuration (resync,
    metering and disk measurement every 10 s)."""
    client = engine.client
    desired = InMemoryDesired(*(server(i) for i in range(replicas)))

    def new_controller(config: ControllerConfig) -> Controller:
        return Controller(
            adapter, desired, config, firewall=firewall, sandbox_rootfs=busybox_rootfs_tar
        )

    controller = new_controller(ControllerConfig(node=NODE))
    scope = await nursery.start(supervised, controller)
    start = time.perf_counter()
    controller.trigger()
    await until(
        controller,
        lambda: (
            controller.statistics().ready_replicas == replicas
            and controller.statistics().busy_replicas == 0
        ),
    )
    converge = time.perf_counter() - start
    passes = []
    for _ in range(20):
        controller.trigger()
        await next_pass(controller)
        passes.append(controller.statistics().last_pass_seconds)
    lists = []
    for _ in range(20):
        t = time.perf_counter()
        await trio.to_thread.run_sync(
            lambda: client.api.containers(all=True, filters={"label": [f"{labels.NODE}={NODE}"]})
        )
        lists.append(time.perf_counter() - t)

    owner = labels.owner_labels(NODE)
    measurements = []
    for _ in range(10):
        t = time.perf_counter()
        usage = await adapter.disk_usage(owner)
        measurements.append(time.perf_counter() - t)
    assert len(usage.volumes) == replicas, "every replica's volume is measured"
    assert sum(usage.containers.values()) >= replicas * 2**20
    assert min(usage.volumes.values()) > 200 * 1024

    running_process, running_engine = await cpu_share(engine, idle_seconds)
    scope.cancel()
    blind = new_controller(replace(controller.config, disk_seconds=None))
    scope = await nursery.start(supervised, blind)
    await next_pass(blind)
    blind_process, blind_engine = await cpu_share(engine, idle_seconds)
    blind_passes = []
    for _ in range(20):
        blind.trigger()
        await next_pass(blind)
        blind_passes.append(blind.statistics().last_pass_seconds)
    scope.cancel()
    stopped_process, stopped_engine = await cpu_share(engine, idle_seconds)

    adopter = new_controller(controller.config)
    scope = await nursery.start(supervised, adopter)
    await next_pass(adopter)
    desired.specs = []
    start = time.perf_counter()
    adopter.trigger()
    await until(adopter, lambda: adopter.statistics().observed_containers == 0)
    teardown = time.perf_counter() - start
    await drained(adopter, adapter)
    scope.cancel()
    engine_shares: dict[str, float] = {}
    if running_engine is not None and stopped_engine is not None:
        engine_shares = {"engine_running": running_engine, "engine_stopped": stopped_engine}
    return {
        "converge_s": converge,
        "pass_median_ms": statistics.median(passes) * 1000,
        "pass_p95_ms": p95(passes) * 1000,
        "list_median_ms": statistics.median(lists) * 1000,
        "disk": {
            "measurement_median_ms": statistics.median(measurements) * 1000,
            "pass_median_ms_without": statistics.median(blind_passes) * 1000,
            "pass_ratio": statistics.median(passes) / statistics.median(blind_passes),
            "idle_cpu_without": blind_process,
            "idle_cpu_ratio": running_process / blind_process if blind_process else None,
            # The engine sizes the writable layers: count its CPU too.
            "idle_cpu_with_engine_ratio": (
                (running_process + running_engine) / (blind_process + blind_engine)
                if running_engine is not None and blind_engine is not None
                else None
            ),
        },
        "teardown_s": teardown,
        "idle_cpu": {
            "seconds": idle_seconds,
            "process_running": running_process,
            "process_stopped": stopped_process,
            "ratio": running_process / stopped_process if stopped_process else None,
            "per_replica": running_process / replicas,
            **engine_shares,
        },
    }


async def bench(
    engine: DockerEngine, runs: int, replicas: int, idle_seconds: float
) -> dict[str, object]:
    client = engine.client
    adapter = await DockerAdapter.connect(engine.host)
    firewall = IptablesFirewall(firewall_tag(NODE.encode()))
    desired = InMemoryDesired()
    config = ControllerConfig(
        node=NODE,
        crash_backoff=BackoffPolicy(),
        resync_seconds=10.0,
        metering_seconds=60.0,
        max_parallel_replicas=8,
    )
    controller = Controller(
        adapter, desired, config, firewall=firewall, sandbox_rootfs=busybox_rootfs_tar
    )
    bare: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    crashes: list[float] = []
    restarts: list[float] = []
    try:
        # The hand-made pods need the sandbox image, which the node builds before its first pod.
        await adapter.ensure_local_image(labels.SANDBOX_IMAGE, busybox_rootfs_tar)
        async with trio.open_nursery() as nursery:
            scope = await nursery.start(supervised, controller)
            # Warm-up: page cache, first-container set-up, the node's first host rules.
            await bare_run(client, -1)
            await controlled_run(controller, adapter, desired, 10_000)
            for i in range(runs):
                bare.append(await bare_run(client, i))
                ours.append(await controlled_run(controller, adapter, desired, i))
                crashes.append(await controlled_crash(client, controller, adapter, desired, i))
                restarts.append(await docker_restart(client, i))
            scope.cancel()
            passes = await many_replicas(engine, nursery, adapter, firewall, replicas, idle_seconds)
            nursery.cancel_scope.cancel()
    finally:
        adapter.close()
        await firewall.remove()

    def med(values: list[float]) -> float:
        return statistics.median(values) * 1000

    bare_running, bare_ready = [r for r, _ in bare], [r for _, r in bare]
    ours_running, ours_ready = [r for r, _ in ours], [r for _, r in ours]
    return {
        "engine": {
            "started_here": engine.started_here,
            "start_seconds": round(engine.start_seconds, 3),
            "storage_driver": engine.storage_driver,
        },
        "runs": runs,
        "running_ms": {
            "ours_median": med(ours_running),
            "ours_p95": p95(ours_running) * 1000,
            "bare_median": med(bare_running),
            "bare_p95": p95(bare_running) * 1000,
            "ratio": statistics.median(ours_running) / statistics.median(bare_running),
        },
        "ready_ms": {
            "ours_median": med(ours_ready),
            "ours_p95": p95(ours_ready) * 1000,
            "bare_median": med(bare_ready),
            "bare_p95": p95(bare_ready) * 1000,
            "ratio": statistics.median(ours_ready) / statistics.median(bare_ready),
        },
        "crash_to_running_ms": {
            "ours_median": med(crashes),
            "ours_p95": p95(crashes) * 1000,
            "docker_restart_always_median": med(restarts),
        },
        "replicas": replicas,
        "pass": passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true", help="2 runs, 2 replicas, 2 idle seconds")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.replicas, args.idle_seconds = 2, 2, 2.0
    with open_engine() as engine:
        try:
            result = trio.run(bench, engine, args.runs, args.replicas, args.idle_seconds)
        finally:
            # Containers, then the networks they were on (the node's carry its label too).
            for owner in (labels.owner_labels(NODE), BARE):
                remove_labelled(engine.client, owner)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
