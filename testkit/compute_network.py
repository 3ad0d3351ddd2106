"""A dev node and two full nodes joined to it that run replicas on one engine: what the
integration tests' `compute_nodes` and `bench.secret_delivery --nodes 3` share."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import trio

from chain.address import decode_address
from chain.keys import dev_keypair
from node.chain_spec import development_spec
from orchestrator.firewall import IptablesFirewall
from orchestrator.workloads import firewall_tag
from testkit.engines import DockerEngine, remove_labelled
from testkit.nodes import NodeProcess


def _active(node: NodeProcess, operator: str) -> Callable[[], bool]:
    def check() -> bool:
        return any(
            info["operator"] == operator and info["status"] == "active"
            for info in node.call("nodes_list")["nodes"]
        )

    return check


def three_node_chain(folder: Path) -> str:
    """The dev chain with a 2-of-3 wallet committee (the dev chain's own is its one node), as a
    spec file, for a dev node and the two nodes joined to it."""
    spec = development_spec()
    runtime = replace(spec.runtime, wallet_committee_size=3, wallet_threshold=2)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "three-nodes.json"
    path.write_text(json.dumps(replace(spec, runtime=runtime).to_json()))
    return str(path)


@contextmanager
def compute_network(
    folder: Path, engine: DockerEngine, chain: str, extra: Sequence[str] = ()
) -> Iterator[tuple[NodeProcess, list[NodeProcess]]]:
    """A dev node and two full nodes joined to it (operators dev-bob, dev-charlie), all three
    active and running replicas on `engine` (each with its own networks and host rules), with
    `extra` arguments each; on exit the nodes stop and their replicas and host rules go. The
    body of `compute_nodes`, shared with `bench.secret_delivery --nodes 3`."""
    engine_args = ["--docker-host", engine.host, *extra]
    dev = NodeProcess(folder / "dev", args=["--dev", "--chain", chain, *engine_args]).start()
    address = dev.call("system_localListenAddresses")[0]
    others = [
        NodeProcess(
            folder / name,
            args=[
                "--chain",
                chain,
                "--bootnodes",
                address,
                "--operator",
                f"dev-{name}",
                *engine_args,
            ],
        )
        for name in ("bob", "charlie")
    ]
    node_ids: list[bytes] = []
    try:
        for node in others:
            node.start()
        for name in ("bob", "charlie"):
            dev.wait_for(_active(dev, dev_keypair(name).address), timeout=60, what=name)
        node_ids = [decode_address(n["nodeId"]) for n in dev.call("nodes_list")["nodes"]]
        yield dev, others
    finally:
        for node in others:
            node.stop()
        dev.stop()
        # The nodes leave their replicas running, as they do on any restart: clean up here.
        remove_labelled(engine.client, {"statemesh.chain": "statemesh_dev"})
        if shutil.which("iptables") is not None:
            for node_id in node_ids:
                trio.run(IptablesFirewall(firewall_tag(node_id)).remove)
