from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import NodeProcess
from tests.integration.test_towers import status_is
from wallet.keys import dev_keypair


@pytest.fixture
def dev_node(tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node").start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def registered_nodes(tmp_path: Path) -> Iterator[tuple[NodeProcess, list[NodeProcess]]]:
    """A dev node and two full nodes joined to it whose operators (dev-bob, dev-charlie)
    registered them: three active nodes, the dev node's own included."""
    dev = NodeProcess(tmp_path / "dev").start()
    address = dev.call("system_localListenAddresses")[0]
    others = [
        NodeProcess(
            tmp_path / name,
            args=["--chain", "dev", "--bootnodes", address, "--operator", f"dev-{name}"],
        )
        for name in ("bob", "charlie")
    ]
    try:
        for node in others:
            node.start()
        for name in ("bob", "charlie"):
            dev.wait_for(status_is(dev, dev_keypair(name).address, "active"), timeout=60, what=name)
        yield dev, others
    finally:
        for node in others:
            node.stop()
        dev.stop()
