"""The in-memory runtime passes the runtime conformance checks (so the unit tests' engine
behaves like the real one where the controller can tell)."""

from __future__ import annotations

import pytest
import trio

from tests.unit.orchestrator.fake_runtime import FakeRuntime
from tests.unit.orchestrator.runtime_conformance import CHECKS, Check


@pytest.mark.parametrize("check", CHECKS.values(), ids=list(CHECKS))
def test_fake_runtime_conforms(check: Check) -> None:
    async def main() -> None:
        await check(FakeRuntime(), "img:1", {"conformance": "unit"})

    trio.run(main)
