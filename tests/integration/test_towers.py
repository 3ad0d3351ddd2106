"""Time Towers on a dev chain of real processes: two registered nodes prove; the one that stops
is demoted at the next epoch boundary and jailed after repeated misses; restarted, it returns
once its jail is over. (Dev genesis: 10-block epochs, 2 misses to jail, 1 epoch of jail.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chain.keys import dev_keypair
from tests.integration.harness import NodeProcess

pytestmark = pytest.mark.integration

BOB = dev_keypair("bob").address


def node_of(node: NodeProcess, operator: str) -> dict | None:  # type: ignore[type-arg]
    for info in node.call("nodes_list")["nodes"]:
        if info["operator"] == operator:
            return info  # type: ignore[no-any-return]
    return None


def status_is(node: NodeProcess, operator: str, status: str) -> Callable[[], bool]:
    def check() -> bool:
        info = node_of(node, operator)
        return info is not None and info["status"] == status

    return check


def test_a_node_that_stops_proving_is_demoted_jailed_and_comes_back(tmp_path: Path) -> None:
    dev = NodeProcess(tmp_path / "dev").start()
    address = dev.call("system_localListenAddresses")[0]
    bob = NodeProcess(
        tmp_path / "bob", args=["--chain", "dev", "--bootnodes", address, "--operator", "dev-bob"]
    )
    try:
        bob.start()
        dev.wait_for(status_is(dev, BOB, "active"), timeout=60, what="bob's node active")
        assert node_of(dev, dev_keypair("ferdie").address)["status"] == "active"  # type: ignore[index]
        height = node_of(dev, BOB)["tower"]["height"]  # type: ignore[index]
        assert height >= 1
        bob.stop()
        dev.wait_for(status_is(dev, BOB, "standby"), timeout=30, what="bob demoted")
        # A proof bob sent just before it stopped may land after the first reading.
        stopped_at = node_of(dev, BOB)["tower"]["height"]  # type: ignore[index]
        assert stopped_at >= height
        dev.wait_for(status_is(dev, BOB, "jailed"), timeout=30, what="bob jailed")
        epoch = dev.call("epochs_current")
        assert any(c["change"] == "jailed" for c in epoch["lastChanges"])
        assert node_of(dev, BOB)["tower"]["height"] == stopped_at  # type: ignore[index]
        bob.start()
        dev.wait_for(status_is(dev, BOB, "active"), timeout=60, what="bob back after the jail")
        assert node_of(dev, BOB)["tower"]["height"] > stopped_at  # type: ignore[index]
    finally:
        bob.stop()
        dev.stop()
