from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from chain.keys import dev_keypair
from orchestrator.firewall import IptablesFirewall
from orchestrator.workloads import firewall_tag
from testkit.compute_network import compute_network, three_node_chain
from testkit.local_network import LocalNetwork
from tests.integration import docker_harness, harness
from tests.integration.docker_harness import DockerEngine
from tests.integration.harness import NodeProcess
from tests.integration.test_towers import status_is

# The session's engine and busybox image (a private dockerd when none is reachable), shared by
# every test that runs replicas.
docker_engine = docker_harness.docker_engine
docker_client = docker_harness.docker_client
busybox_image = docker_harness.busybox_image


@pytest.fixture(scope="session", autouse=True)
def host_rules_removed() -> Iterator[None]:
    """Test nodes leave their replicas' host rules behind when they exit with replicas running,
    as nodes do: the rules of the nodes this session started go when it ends (and only theirs,
    so that sessions can run side by side)."""
    yield
    if shutil.which("iptables") is None:
        return
    for node in harness.STARTED:
        node_id = node.node_id()
        if node_id is not None:
            trio.run(IptablesFirewall(firewall_tag(node_id)).remove)


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[LocalNetwork]:
    """Four validators of a fresh local testnet, started."""
    net = LocalNetwork(tmp_path / "testnet", 4).start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def dev_node(tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node").start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def node_chain(tmp_path: Path) -> str:
    """The chain spec of `registered_nodes` and `compute_nodes` (a test module may override it)."""
    return three_node_chain(tmp_path)


@pytest.fixture
def registered_nodes(
    tmp_path: Path, node_chain: str
) -> Iterator[tuple[NodeProcess, list[NodeProcess]]]:
    """A dev node and two full nodes joined to it whose operators (dev-bob, dev-charlie)
    registered them: three active nodes, the dev node's own included, a wallet committee."""
    chain = node_chain
    dev = NodeProcess(tmp_path / "dev", args=["--dev", "--chain", chain]).start()
    address = dev.call("system_localListenAddresses")[0]
    others = [
        NodeProcess(
            tmp_path / name,
            args=["--chain", chain, "--bootnodes", address, "--operator", f"dev-{name}"],
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


@pytest.fixture
def compute_nodes(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str, node_chain: str
) -> Iterator[tuple[NodeProcess, list[NodeProcess]]]:
    """`registered_nodes` that run replicas: all three on the session's engine (each with its
    own networks and host rules), which pulls `busybox`, as the README's example names it, from
    the session's registry (`busybox_image` published it)."""
    with compute_network(tmp_path, docker_engine, node_chain) as nodes:
        yield nodes
