"""Running a real controller against the test engine, and the specs the scenarios use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from orchestrator.backoff import BackoffPolicy
from orchestrator.controller import Controller, ControllerConfig
from orchestrator.docker_engine import DockerAdapter
from orchestrator.firewall import IptablesFirewall
from orchestrator.images import busybox_rootfs_tar
from orchestrator.spec import (
    Container,
    EnforcedResources,
    HTTPGetAction,
    Probe,
    ReplicaSpec,
    RestartPolicy,
    Volume,
)
from orchestrator.status import ReplicaStatus
from orchestrator.workloads import firewall_tag
from tests.integration.docker_harness import BUSYBOX_IMAGE
from tests.unit.orchestrator.builders import CHAIN, InMemoryDesired

FAST = BackoffPolicy(initial_seconds=0.3, max_seconds=2.4, reset_after_seconds=30.0)


def fast_config(node: str) -> ControllerConfig:
    return ControllerConfig(
        node=node,
        crash_backoff=FAST,
        failure_backoff=FAST,
        resync_seconds=2.0,
        metering_seconds=0.5,
    )


def httpd(port: int) -> tuple[str, ...]:
    return ("httpd", "-f", "-p", str(port), "-h", "/www")


def web(
    port: int,
    *,
    app: str = "web",
    index: int = 0,
    revision: int = 1,
    args: tuple[str, ...] | None = None,
    image: str = BUSYBOX_IMAGE,
    readiness: Probe | None = None,
    liveness: Probe | None = None,
    resources: EnforcedResources | None = None,
    volumes: tuple[Volume, ...] = (),
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS,
) -> ReplicaSpec:
    return ReplicaSpec(
        chain=CHAIN,
        app=app,
        revision=revision,
        replica=index,
        containers=(
            Container(
                name="main",
                image=image,
                args=httpd(port) if args is None else args,
                resources=resources or EnforcedResources(),
                readiness_probe=readiness,
                liveness_probe=liveness,
            ),
        ),
        restart_policy=restart_policy,
        volumes=volumes,
        termination_grace_period_seconds=2.0,
    )


def http_probe(port: int, path: str = "/", **kwargs: float) -> Probe:
    return Probe(
        HTTPGetAction(port, path),
        period_seconds=kwargs.get("period_seconds", 0.2),
        timeout_seconds=0.5,
        failure_threshold=int(kwargs.get("failure_threshold", 2)),
        initial_delay_seconds=kwargs.get("initial_delay_seconds", 0.0),
    )


Test = Callable[[Controller, InMemoryDesired, DockerAdapter], Awaitable[None]]


def run_controller(
    host: str,
    node: str,
    specs: list[ReplicaSpec],
    test: Test,
    *,
    config: ControllerConfig | None = None,
    timeout: float = 60.0,
) -> None:
    async def main() -> None:
        adapter = await DockerAdapter.connect(host)
        desired = InMemoryDesired(*specs)
        config_ = config or fast_config(node)
        firewall = IptablesFirewall(firewall_tag(config_.node.encode()))
        controller = Controller(
            adapter, desired, config_, firewall=firewall, sandbox_rootfs=busybox_rootfs_tar
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(controller.run)
                with trio.fail_after(timeout):
                    await test(controller, desired, adapter)
                nursery.cancel_scope.cancel()
        finally:
            adapter.close()
            await firewall.remove()

    trio.run(main)


async def until(controller: Controller, predicate: Callable[[], bool]) -> None:
    """Waits for the predicate, re-checking at every change and at least every 0.1 s."""
    while not predicate():
        with trio.move_on_after(0.1):
            await controller.changed()


def status(controller: Controller, spec: ReplicaSpec) -> ReplicaStatus | None:
    found = controller.status().get(spec.key)
    return found if found is not None and found.revision == spec.revision else None


def ready(controller: Controller, spec: ReplicaSpec) -> Callable[[], bool]:
    return lambda: (s := status(controller, spec)) is not None and s.ready


def reason(controller: Controller, spec: ReplicaSpec) -> Callable[[], str]:
    def get() -> str:
        s = status(controller, spec)
        return "" if s is None else s.reason

    return get
