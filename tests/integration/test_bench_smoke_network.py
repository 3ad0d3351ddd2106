"""Benchmarks that start node processes, each run in its smoke mode: those that
`WITH_NODES_BY_FILE` gives this file (the others, and the check that every benchmark is
listed, are in tests/unit/test_bench_smoke.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_bench_smoke import WITH_NODES_BY_FILE, run_smoke

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", WITH_NODES_BY_FILE[Path(__file__).stem])
def test_benchmark_smoke_with_nodes(name: str) -> None:
    run_smoke(name, timeout=600)
