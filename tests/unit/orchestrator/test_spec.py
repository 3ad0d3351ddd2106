"""Replica specs: Kubernetes defaults, validation with whole error messages, hidden secrets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import (
    Container,
    ContainerPort,
    EnforcedResources,
    EnvVar,
    ExecAction,
    HTTPGetAction,
    Probe,
    ReplicaSpec,
    RestartPolicy,
    Volume,
)
from tests.unit.orchestrator.builders import container, replica


def test_probe_defaults_are_kubernetes_ones() -> None:
    probe = Probe(HTTPGetAction(8080))
    assert (
        probe.initial_delay_seconds,
        probe.period_seconds,
        probe.timeout_seconds,
        probe.success_threshold,
        probe.failure_threshold,
    ) == (0.0, 10.0, 1.0, 1, 3)
    assert probe.action == HTTPGetAction(8080, "/", "127.0.0.1")
    assert replica().restart_policy is RestartPolicy.ALWAYS
    assert ReplicaSpec("c", "a", 1, 0, (container(),)).termination_grace_period_seconds == 30.0


def test_secret_values_never_appear_in_repr() -> None:
    plain = EnvVar("MODE", "fast")
    secret = EnvVar("TOKEN", "hunter2", secret=True)
    c = Container("main", "img:1", args=("x",), env=(plain, secret))
    spec = replica(containers=(c,))
    for text in (repr(secret), repr(c), repr(spec), str(spec)):
        assert "hunter2" not in text
    assert repr(secret) == "EnvVar(name='TOKEN', value=<secret>, secret=True)"
    assert repr(plain) == "EnvVar(name='MODE', value='fast', secret=False)"


BAD: dict[str, tuple[Callable[[], object], str]] = {
    "app name": (
        lambda: replica("Web_1"),
        "invalid replica spec: app: 'Web_1' is not a DNS label (lower-case letters, digits and "
        "'-', at most 63)",
    ),
    "no containers": (
        lambda: ReplicaSpec("c", "a", 1, 0, ()),
        "invalid replica spec: containers: a replica needs at least one container",
    ),
    "same container twice": (
        lambda: replica(containers=(container(), container())),
        "invalid replica spec: containers.name: two containers have the same name",
    ),
    "port": (
        lambda: ContainerPort(70000),
        "invalid replica spec: ports.container_port: port 70000 is outside 1..65535",
    ),
    "memory": (
        lambda: EnforcedResources(memory_bytes=1024),
        "invalid replica spec: resources.memory_bytes: 1024 is below 6 MiB",
    ),
    "cpu": (
        lambda: EnforcedResources(cpu_millicores=0),
        "invalid replica spec: resources.cpu_millicores: 0 is below 1",
    ),
    "probe period": (
        lambda: Probe(ExecAction(("true",)), period_seconds=0),
        "invalid replica spec: probe.period_seconds: must be positive",
    ),
    "liveness success threshold": (
        lambda: container(liveness=Probe(ExecAction(("true",)), success_threshold=2)),
        "invalid replica spec: containers.liveness_probe.success_threshold: must be 1",
    ),
    "http path": (
        lambda: HTTPGetAction(80, "healthz"),
        "invalid replica spec: probe.http_get.path: 'healthz' is not an absolute URL path",
    ),
    "volume path": (
        lambda: Volume("data", "data"),
        "invalid replica spec: volumes.mount_path: 'data' is not an absolute path",
    ),
    "env name": (
        lambda: EnvVar("1X", "v"),
        "invalid replica spec: env: '1X' is not a valid environment variable name",
    ),
    "env value is not echoed": (
        lambda: Container("m", "img", env=(EnvVar("K", "s3cret", True), EnvVar("K", "x"))),
        "invalid replica spec: containers.env: container 'm' repeats a variable",
    ),
    "chain id": (
        lambda: ReplicaSpec("bad chain", "a", 1, 0, (container(),)),
        "invalid replica spec: chain: 'bad chain' is not a chain id",
    ),
}


@pytest.mark.parametrize("make, message", BAD.values(), ids=list(BAD))
def test_invalid_specs_are_rejected_with_a_clear_message(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(SpecError) as raised:
        make()
    assert str(raised.value) == message
