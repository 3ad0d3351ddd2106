"""Applications on a dev chain of real processes with three registered nodes: deploy through the
CLI, scale, update, delete, and replicas moving off a node that stopped proving."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.keys import dev_keypair
from tests.integration.harness import ROOT, NodeProcess, cli, cli_json, ingress_page

pytestmark = pytest.mark.integration

WEB = str(ROOT / "docs/examples/web.yaml")


def placed(node: NodeProcess) -> list[str]:
    info = node.call("apps_get", "web")
    return [] if info is None else [r["node"] for r in info["placement"] if r["node"]]


def node_id_of(node: NodeProcess, operator: str) -> str:
    for info in node.call("nodes_list")["nodes"]:
        if info["operator"] == dev_keypair(operator).address:
            return info["nodeId"]  # type: ignore[no-any-return]
    raise AssertionError(f"no node of {operator}")


def test_deploy_scale_update_delete_and_failover(
    compute_nodes: tuple[NodeProcess, list[NodeProcess]], tmp_path: Path
) -> None:
    dev, others = compute_nodes
    rpc = ["--rpc", dev.url]
    assert cli("app", "deploy", WEB, "--from", "dev-alice", *rpc).returncode == 0
    dev.wait_for(lambda: len(set(placed(dev))) == 3, timeout=20, what="3 replicas on 3 nodes")
    # Each replica runs on its own node; the ingress of any node reaches all three.
    pages = {f"hello from web-{i}\n" for i in range(3)}
    for node in (dev, *others):
        seen: set[str] = set()
        node.wait_for(
            lambda n=node, s=seen: pages <= (s.add(ingress_page(n, "web.statemesh.internal")) or s),
            timeout=90,
            what="every replica through this node's ingress",
        )
    status = cli_json("app", "status", "web", *rpc)
    assert status["revision"] == 1 and any(e["name"] == "ReplicaAssigned" for e in status["events"])
    assert (
        cli("app", "scale", "web", "--replicas", "1", "--from", "dev-alice", *rpc).returncode == 0
    )
    dev.wait_for(lambda: len(placed(dev)) == 1, timeout=20, what="scaled down")
    refused = cli("app", "scale", "web", "--replicas", "2", "--from", "dev-eve", *rpc)
    assert refused.returncode == 1 and "apps.NotOwner" in refused.stderr
    updated = tmp_path / "web2.yaml"
    updated.write_text(Path(WEB).read_text().replace("value: hello", "value: hello again"))
    assert cli("app", "update", str(updated), "--from", "dev-alice", *rpc).returncode == 0
    dev.wait_for(
        lambda: {r["revision"] for r in dev.call("apps_get", "web")["placement"]} == {2},
        timeout=20,
        what="revision 2 rolled out",
    )
    assert (
        cli("app", "scale", "web", "--replicas", "2", "--from", "dev-alice", *rpc).returncode == 0
    )
    dev.wait_for(lambda: len(placed(dev)) == 2, timeout=20, what="scaled to 2")
    # The node holding a replica that is not the dev node stops: at the next epoch
    # boundary it is demoted and its replica moves.
    dev_node = node_id_of(dev, "ferdie")
    victim_id = next(n for n in placed(dev) if n != dev_node)
    victim = others[0] if node_id_of(dev, "bob") == victim_id else others[1]
    victim.stop()
    dev.wait_for(
        lambda: victim_id not in placed(dev) and len(placed(dev)) == 2,
        timeout=40,
        what="failover",
    )
    instance = dev.call("apps_get", "web")["instance"]
    assert cli("app", "delete", "web", "--from", "dev-alice", *rpc).returncode == 0
    dev.wait_for(lambda: dev.call("apps_get", "web") is None, timeout=20, what="deleted")
    assert dev.call("apps_forNode", dev_node) == []
    # Its volumes are retained for the dev chain's 30 s, which its status shows (their removal
    # at the end: tests/integration/workloads/test_storage.py; the pruning: unit tests).
    (kept,) = dev.call("apps_retained", "web")
    assert (kept["instance"], kept["owner"]) == (instance, dev_keypair("alice").address)
    shown = cli("app", "status", "web", *rpc)
    assert shown.returncode == 1
    assert f"deleted instance {instance} of {kept['owner']}" in shown.stdout, shown.stdout
    assert "its volumes are kept until" in shown.stdout
