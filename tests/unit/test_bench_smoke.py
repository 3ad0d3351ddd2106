"""Every benchmark runs in its smoke mode (`python -m bench.NAME --smoke`: tiny sizes, seconds,
the same figures and ratios), so that none breaks unnoticed. Those that run in one process (or a
few plain ones) run here; those that start nodes or a Docker engine run in
tests/integration/test_bench_smoke.py. A benchmark listed in neither place fails
`test_every_benchmark_has_a_smoke_run`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IN_PROCESS = (
    "autoscaling",
    "billing_settlement",
    "block_import",
    "frost_sign",
    "ingress_proxy",
    "metrics_scrape",
    "payout_signing",
    "scheduler",
    "signature_threads",
    "storage",
    "trie_update",
    "vdf_prover",
    "vdf_verify",
)
WITH_NODES_BY_FILE = {
    # The longest each run from a file of its own, so that the suite's workers share them.
    "test_bench_smoke": ("end_to_end", "p2p_gossip", "rpc_floods", "rpc_header"),
    "test_bench_smoke_network": ("network",),
    "test_bench_smoke_sync": ("sync_lying_peer",),
    "test_bench_smoke_wallets": ("wallet_network",),
}
"""The benchmarks that start node processes, by the file of tests/integration that runs them."""
WITH_NODES = tuple(name for names in WITH_NODES_BY_FILE.values() for name in names)
WITH_DOCKER = ("compute_start", "orchestrator_start", "secret_delivery")


def benchmarks() -> set[str]:
    """The modules of bench/ that run as a program: every one of them is a benchmark."""
    return {
        path.stem
        for path in (ROOT / "bench").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }


def run_smoke(name: str, timeout: float) -> str:
    """Runs benchmark `name` in its smoke mode as the README runs it; its output."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"bench.{name} --smoke exited with {done.returncode}:\n{output}"
    assert done.stdout.strip(), f"bench.{name} --smoke printed no figures:\n{output}"
    return done.stdout


def test_every_benchmark_has_a_smoke_run() -> None:
    listed = [*IN_PROCESS, *WITH_NODES, *WITH_DOCKER]
    assert len(listed) == len(set(listed))
    assert benchmarks() == set(listed)
    for stem in WITH_NODES_BY_FILE:
        assert (ROOT / "tests" / "integration" / f"{stem}.py").is_file(), stem


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


@pytest.mark.parametrize("package", ["bench", "testkit"])
def test_benchmarks_and_their_harnesses_import_no_test_code(package: str) -> None:
    for path in sorted((ROOT / package).glob("*.py")):
        from_tests = {m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")}
        assert not from_tests, f"{path.relative_to(ROOT)} imports {sorted(from_tests)}"
        assert "sys.path" not in path.read_text(), f"{path.relative_to(ROOT)} edits sys.path"


@pytest.mark.parametrize("name", IN_PROCESS)
def test_benchmark_smoke(name: str) -> None:
    run_smoke(name, timeout=60)
