"""The benchmarks that start node processes or a Docker engine, each run in its smoke mode (the
others, and the check that every benchmark is listed, are in tests/unit/test_bench_smoke.py)."""

from __future__ import annotations

import pytest

from tests.unit.test_bench_smoke import WITH_NODES, run_smoke

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", WITH_NODES)
def test_benchmark_smoke_with_nodes(name: str) -> None:
    run_smoke(name, timeout=600)
