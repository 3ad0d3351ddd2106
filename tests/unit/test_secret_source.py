"""The node's `SecretSource` over secret delivery: the values of a delivered secret, the
orchestrator's `SecretUnavailable` with the reason when it cannot be had, and no value in the
log of either."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from chain.clock import ManualClock
from node.secret_source import DeliveredSecrets
from orchestrator.secrets import SecretUnavailable
from tests.unit.test_secret_delivery import DATA, MEMBERS, OWNER, Link, World, delivery


def secret_data(source: DeliveredSecrets, version: int = 2) -> object:
    async def main() -> object:
        return await source.secret_data(OWNER, "db", version, "web", 0)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_delivered_secret_is_handed_over_and_logged_without_its_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = World(tmp_path)
    source = DeliveredSecrets(delivery(world, Link(world)), ManualClock())
    assert secret_data(source) == DATA
    assert source.statistics() == {"delivered": 1}
    assert "secret 'db' version 2" in caplog.text
    assert "delivered in" in caplog.text
    for value in DATA.values():
        assert value.decode() not in caplog.text


def test_an_undeliverable_secret_is_the_orchestrators_unavailable_with_its_reason(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    link = Link(world)
    link.down = {m.public for m in MEMBERS[1:]}
    source = DeliveredSecrets(delivery(world, link), ManualClock())
    with pytest.raises(SecretUnavailable) as caught:
        secret_data(source)
    assert str(caught.value).startswith("1 of 3 members gave a valid partial decryption")
    assert source.statistics() == {"unavailable": 1}
