"""A local testnet of real validator processes on loopback (`statemesh testnet`'s layout),
shared by the network tests."""

from __future__ import annotations

from pathlib import Path

from node.commands.testnet import create, load, validator_arguments
from testkit.nodes import NodeProcess, free_port

SLOT_MS = 500


class LocalNetwork:
    def __init__(self, folder: Path, count: int) -> None:
        ports = [(free_port(), free_port()) for _ in range(count)]
        create(folder, count, 0, 0, SLOT_MS, ports=ports)
        self.folder = folder
        self.layout = load(folder)
        self.nodes = [
            NodeProcess(
                n.base_path, args=self.arguments(n.index), port=n.rpc_port, p2p_port=n.p2p_port
            )
            for n in self.layout
        ]

    def arguments(self, index: int, *, bootnodes: bool = True) -> list[str]:
        node = self.layout[index]
        boot = self.layout[1 if index == 0 else 0]
        extra = ["--bootnodes", boot.multiaddr] if bootnodes else []
        return [*validator_arguments(self.folder, node), *extra]

    def full_node(self, base: Path) -> NodeProcess:
        return NodeProcess(
            base,
            args=[
                "--chain",
                str(self.folder / "genesis.json"),
                "--bootnodes",
                self.layout[0].multiaddr,
            ],
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def start(self) -> LocalNetwork:
        for node in self.nodes:
            node.start()
        return self


def finalized_hashes(node: NodeProcess, upto: int) -> dict[int, str]:
    return {n: node.call("chain_getBlockHash", n) for n in range(upto + 1)}


def assert_no_conflicting_finality(nodes: list[NodeProcess]) -> None:
    """At every height finalized on two nodes, they finalized the same block."""
    finalized = [(node, node.finalized_number()) for node in nodes]
    common = min(number for _, number in finalized)
    views = [finalized_hashes(node, common) for node, _ in finalized]
    for height in range(common + 1):
        assert len({view[height] for view in views}) == 1, f"conflict at #{height}"
