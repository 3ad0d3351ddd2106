"""How the suite's files are spread over the `-n` worker processes (`make test`).

The multi-node integration files take minutes each and load the machine with several node
processes and containers. Left to pytest-xdist's default order (files with the most tests
first) they all ran last and side by side, four at once on two cores, where chains fell behind
the waits of the tests. Here they go first, longest first, at most `MAX_HEAVY_AT_ONCE` at a
time; the other workers meanwhile run the many short files."""

from __future__ import annotations

from typing import Any

import pytest

MAX_HEAVY_AT_ONCE = 2
HEAVY_FILES = (
    # Longest first, as measured on a clean clone (`--durations`).
    "tests/integration/test_billing.py",
    "tests/integration/test_testnet_command.py",
    "tests/integration/test_apps.py",
    "tests/integration/test_network_rejoin.py",
    "tests/integration/test_network.py",
    "tests/integration/test_bench_smoke_wallets.py",
    "tests/integration/workloads/test_autoscaling.py",
    "tests/integration/test_secrets.py",
    "tests/integration/test_bench_smoke_sync.py",
    "tests/integration/workloads/test_app_metrics.py",
    "tests/integration/test_towers.py",
    "tests/integration/workloads/test_ingress.py",
    "tests/integration/test_bench_smoke_network.py",
    "tests/integration/test_wallets.py",
    "tests/integration/test_endpoints_hostile.py",
    "tests/integration/workloads/test_images.py",
    "tests/integration/workloads/test_storage.py",
    "tests/integration/test_sync_crash.py",
    "tests/integration/test_network_hostile.py",
    "tests/integration/test_evidence_network.py",
)


def _heavy_rank(scope: str) -> int | None:
    try:
        return HEAVY_FILES.index(scope)
    except ValueError:
        return None


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadFileScheduling

    class HeavyFirst(LoadFileScheduling):  # type: ignore[misc]
        """`--dist loadfile`, picking the next file for a worker as the module docstring
        says; a worker left without work while the heavy files wait for a turn is offered one
        again whenever any test ends."""

        def _heavy_busy(self, node: Any) -> bool:
            """Whether a heavy file of `node` has tests left (running, or queued on it)."""
            return any(
                _heavy_rank(scope) is not None and not all(tests.values())
                for scope, tests in self.assigned_work.get(node, {}).items()
            )

        def _assign_work_unit(self, node: Any) -> None:
            assigned = self.assigned_work.setdefault(node, {})
            heavy = sorted(
                (rank, scope)
                for scope in self.workqueue
                if (rank := _heavy_rank(scope)) is not None
            )
            light = [scope for scope in self.workqueue if _heavy_rank(scope) is None]
            # A worker busy with a heavy file may queue the next one: it runs them one after
            # the other (and holds the last test of a file until it gets more work).
            busy = sum(1 for other in self.nodes if self._heavy_busy(other))
            if heavy and (self._heavy_busy(node) or busy < MAX_HEAVY_AT_ONCE):
                scope = heavy[0][1]
            elif light:
                scope = light[0]
            else:
                return  # only heavy files are left, and their turn has not come
            work_unit = self.workqueue.pop(scope)
            assigned[scope] = work_unit
            collection = self.registered_collections[node]
            node.send_runtest_some(
                [collection.index(nodeid) for nodeid, done in work_unit.items() if not done]
            )

        def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
            super().mark_test_complete(node, item_index, duration)
            # Others too: one may hold the last test of a heavy file, waiting for more work.
            for other in self.nodes:
                if other is not node:
                    self.assigned_work.setdefault(other, {})
                    self._reschedule(other)

    return HeavyFirst(config, log)
