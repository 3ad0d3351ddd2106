"""The benchmarks that run replicas on a private Docker engine, each in its smoke mode (see
tests/unit/test_bench_smoke.py)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.unit.test_bench_smoke import WITH_DOCKER, run_smoke

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    shutil.which("dockerd") is None or shutil.which("docker-registry") is None or os.geteuid() != 0,
    reason="the benchmarks start a private Docker engine and registry (as root)",
)
@pytest.mark.parametrize("name", WITH_DOCKER)
def test_benchmark_smoke_with_docker(name: str) -> None:
    run_smoke(name, timeout=600)
