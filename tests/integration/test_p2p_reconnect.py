"""Killed nodes come back: leaves redial a restarted bootnode through their reconnect loop
(past libp2p's 60 s negative cache), and a restarted leaf dials its bootnode again."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import pytest

from testkit.p2p_processes import P2PNode, wait_until

pytestmark = pytest.mark.integration


def gossip_arrives(
    sender: P2PNode, receiver: P2PNode, text: str, via: P2PNode | None = None
) -> None:
    """Publish once both hops are in the gossip mesh (a reconnected peer joins it at the
    next heartbeat) and see the text arrive."""
    hops = [sender, receiver] if via is None else [sender, via, receiver]
    for one, other in itertools.pairwise(hops):
        one.wait_mesh(other)
    sender.ok("publish", data=text)
    receiver.wait_event(lambda e: e.get("event") == "gossip" and e["data"] == text, 10, text)


def test_a_killed_bootnode_and_a_killed_leaf_both_reconnect(tmp_path: Path) -> None:
    boot = P2PNode(tmp_path / "boot", status="first life").start()
    leaves = [P2PNode(tmp_path / n, bootnodes=(boot.address,)).launch() for n in ("b", "c")]
    b, c = (leaf.ready() for leaf in leaves)
    nodes = [boot, b, c]
    try:
        boot.wait_peers({b.peer_id, c.peer_id})
        gossip_arrives(b, c, "relayed by the bootnode", via=boot)

        boot.kill9()
        wait_until(lambda: boot.peer_id not in b.peer_ids(), 10, "b to notice the bootnode died")
        # Its dials now fail and land in libp2p's negative cache for 60 s.
        wait_until(lambda: b.stats()["dials"]["failures"] >= 2, 10, "failed redials")

        # Same base path: same key file, same peer id; same port: same bootnode address.
        reborn = P2PNode(tmp_path / "boot", port=boot.port, status="second life").start()
        nodes[0] = reborn
        assert reborn.peer_id == boot.peer_id
        for leaf in (b, c):
            leaf.wait_peers({reborn.peer_id}, timeout=15)
        assert [p["status"] for p in b.ok("peers")["peers"]] == ["second life"]
        gossip_arrives(b, c, "relayed by the reborn bootnode", via=reborn)

        b.kill9()
        wait_until(lambda: b.peer_id not in reborn.peer_ids(), 10, "the bootnode to notice")
        b2 = P2PNode(tmp_path / "b", bootnodes=(reborn.address,)).start()
        nodes[1] = b2
        assert b2.peer_id == b.peer_id
        reborn.wait_peers({b2.peer_id})
        gossip_arrives(c, b2, "to the restarted leaf", via=reborn)
        gossip_arrives(b2, c, "from the restarted leaf", via=reborn)
    finally:
        assert [node.stop() for node in nodes] == [0, 0, 0]


def test_a_hung_peer_is_dropped_by_the_status_refresh_and_returns_when_it_resumes(
    tmp_path: Path,
) -> None:
    # libp2p never drops a stopped peer by itself: its TCP connection stays open.
    watcher = P2PNode(
        tmp_path / "watcher", extra=("--status-interval", "0.5", "--status-timeout", "1")
    ).start()
    sleeper = P2PNode(tmp_path / "sleeper", bootnodes=(watcher.address,)).start()
    try:
        watcher.wait_peers({sleeper.peer_id})
        assert sleeper.process is not None
        sleeper.process.send_signal(signal.SIGSTOP)
        wait_until(lambda: sleeper.peer_id not in watcher.peer_ids(), 10, "the hung peer dropped")

        sleeper.process.send_signal(signal.SIGCONT)
        watcher.wait_peers({sleeper.peer_id}, timeout=15)
        gossip_arrives(sleeper, watcher, "awake again")
    finally:
        if sleeper.process is not None:
            sleeper.process.send_signal(signal.SIGCONT)
        assert (watcher.stop(), sleeper.stop()) == (0, 0)
