"""Four node processes on loopback (A is the bootnode of B, C and D): gossip reaches every
node, request/response works, and hostile or failing input leaves every node running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.p2p_processes import P2PNode, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, P2PNode]]:
    base = tmp_path_factory.mktemp("p2p-network")
    a = P2PNode(base / "a", status="A").start()
    others = {
        name: P2PNode(base / name, bootnodes=(a.address,), status=name.upper()).launch()
        for name in ("b", "c", "d")
    }
    nodes = {"a": a, **{name: node.ready() for name, node in others.items()}}
    try:
        a.wait_peers({nodes[name].peer_id for name in ("b", "c", "d")})
        for name in ("b", "c", "d"):
            nodes[name].wait_peers({a.peer_id})
        yield nodes
    finally:
        codes = {name: node.stop() for name, node in nodes.items()}
        assert codes == {"a": 0, "b": 0, "c": 0, "d": 0}, codes


def publish_and_collect(nodes: dict[str, P2PNode], sender: str, text: str) -> None:
    nodes[sender].ok("publish", data=text)
    for name, node in nodes.items():
        if name != sender:
            node.wait_event(
                lambda e: e.get("event") == "gossip" and e["data"] == text, 10, f"{text} at {name}"
            )


def test_gossip_from_every_node_reaches_every_other_node_and_never_its_sender(
    network: dict[str, P2PNode],
) -> None:
    for sender in network:
        publish_and_collect(network, sender, f"hello from {sender}")

    for name, node in network.items():
        texts = sorted(
            event["data"] for event in node.gossip() if event["data"].startswith("hello")
        )
        assert texts == sorted(f"hello from {other}" for other in network if other != name)
        origins = {event["origin"] for event in node.gossip()}
        assert node.peer_id not in origins


def test_status_handshake_reports_each_peers_status_bytes(network: dict[str, P2PNode]) -> None:
    peers = {peer["peer_id"]: peer for peer in network["a"].ok("peers")["peers"]}
    assert {peers[network[name].peer_id]["status"] for name in ("b", "c", "d")} == {"B", "C", "D"}
    assert network["b"].ok("peers")["peers"][0]["status"] == "A"
    assert network["b"].ok("peers")["peers"][0]["address"].startswith("/ip4/127.0.0.1/tcp/")


def test_request_response_round_trip_and_typed_failures(network: dict[str, P2PNode]) -> None:
    b, a = network["b"], network["a"]
    assert b.ok("request", peer=a.peer_id, proto="echo", data="ping")["response"] == "ping"

    refused = b.call("request", peer=a.peer_id, proto="refuse", data="x")
    assert refused["error"] == "RemoteError"
    assert refused["message"].endswith(
        "peer answered with an error: bad request: this protocol refuses everything"
    )

    crashed = b.call("request", peer=a.peer_id, proto="crash", data="x")
    assert (crashed["error"], crashed["message"].split(": ", 1)[1]) == (
        "RemoteError",
        "peer answered with an error: internal error",
    )

    slow = b.call("request", peer=a.peer_id, proto="slow", data="x", timeout=0.5)
    assert slow["error"] == "RequestTimeout"
    assert slow["message"].endswith("no response within 0.5 s")

    unknown = b.call("request", peer=a.peer_id, proto="nosuch", data="x")
    assert unknown["error"] == "ProtocolUnsupported"

    # The node that answered all of that still works.
    assert b.ok("request", peer=a.peer_id, proto="echo", data="again")["response"] == "again"


def test_a_raising_validator_counts_as_reject_and_the_node_keeps_working(
    network: dict[str, P2PNode],
) -> None:
    network["d"].ok("publish", data="boom: this makes every validator raise")
    wait_until(
        lambda: network["a"].stats()["gossip"]["validator_errors"] >= 1, 10, "validator error at A"
    )
    stats = network["a"].stats()
    assert stats["gossip"]["rejected"] >= 1
    assert network["d"].peer_id in network["a"].peer_ids()
    publish_and_collect(network, "d", "still gossiping after boom")


def test_ignored_messages_are_dropped_without_penalty(network: dict[str, P2PNode]) -> None:
    before = network["a"].stats()["penalties"]
    network["c"].ok("publish", data="meh: not judgeable yet")
    wait_until(lambda: network["a"].stats()["gossip"]["ignored"] >= 1, 10, "ignore at A")
    assert network["a"].stats()["penalties"] == before
    assert not [e for e in network["b"].gossip() if e["data"].startswith("meh")]


def test_oversize_publish_is_refused_before_sending(network: dict[str, P2PNode]) -> None:
    limit = 1_048_576 - 16_384
    reply = network["b"].call("publish_size", size=limit + 1)
    assert reply["error"] == "MessageTooLarge"
    assert reply["message"] == (
        f"gossip message of {limit + 1} bytes on topic 'blocks' exceeds the {limit}-byte limit; "
        "send large payloads over request/response"
    )
    assert network["b"].stats()["gossip"]["refused_oversize"] == 1


def test_largest_allowed_gossip_message_is_delivered(network: dict[str, P2PNode]) -> None:
    limit = 1_048_576 - 16_384
    network["b"].ok("publish_size", size=limit)
    wait_until(
        lambda: (
            network["c"].stats()["gossip"]["delivered"] > 0
            and any(len(e["data"]) == limit for e in network["c"].gossip())
        ),
        15,
        "the largest message at C",
    )


def test_nodes_still_serve_after_the_hostile_tests(network: dict[str, P2PNode]) -> None:
    publish_and_collect(network, "c", "final check")
    assert all(node.alive() for node in network.values())
