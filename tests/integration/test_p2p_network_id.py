"""Nodes of different network ids (different chains) refuse each other."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from testkit.p2p_processes import P2PNode, wait_until

pytestmark = pytest.mark.integration


def test_a_peer_on_another_network_id_is_disconnected_and_hears_nothing(tmp_path: Path) -> None:
    alpha = P2PNode(tmp_path / "alpha", netid="alpha").start()
    beta = P2PNode(tmp_path / "beta", netid="beta", bootnodes=(alpha.address,)).start()
    try:
        wait_until(
            lambda: alpha.stats()["network_mismatches"] + beta.stats()["network_mismatches"] >= 1,
            10,
            "the mismatch detected",
        )
        wait_until(
            lambda: not alpha.peer_ids() and not beta.peer_ids(), 5, "both sides disconnected"
        )
        assert alpha.stats()["bans"] + beta.stats()["bans"] >= 1

        beta.ok("publish", data="beta block")
        time.sleep(0.5)
        assert alpha.gossip() == []
        refused = beta.call("request", peer=alpha.peer_id, proto="echo", data="x")
        assert refused["error"] == "PeerUnreachable"
        assert (
            refused["message"].endswith("peer is banned") or "not connected" in refused["message"]
        )
    finally:
        assert (alpha.stop(), beta.stop()) == (0, 0)
