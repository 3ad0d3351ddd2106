"""The in-memory engine passes the engine conformance checks (so the unit tests' engine
behaves like the real one where the controller can tell)."""

from __future__ import annotations

import pytest
import trio

from tests.unit.orchestrator.engine_conformance import CHECKS, Check
from tests.unit.orchestrator.fake_engine import FakeEngine


@pytest.mark.parametrize("check", CHECKS.values(), ids=list(CHECKS))
def test_fake_engine_conforms(check: Check) -> None:
    async def main() -> None:
        await check(FakeEngine(), "img:1", {"conformance": "unit"})

    trio.run(main)
