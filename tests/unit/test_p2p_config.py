"""Configuration checks, and protocol ids and topics scoped by network id."""

from __future__ import annotations

import pytest

from p2p.config import (
    MAX_GOSSIP_PAYLOAD,
    GossipConfig,
    P2PConfig,
    ScoringConfig,
    StreamReuseConfig,
)
from p2p.errors import InvalidConfig
from p2p.names import protocol_id, topic_id


def test_protocols_and_topics_carry_the_network_id() -> None:
    assert protocol_id("3fa9c1d2", "sync") == "/statemesh/3fa9c1d2/sync/1"
    assert protocol_id("3fa9c1d2", "status", 2) == "/statemesh/3fa9c1d2/status/2"
    assert topic_id("3fa9c1d2", "blocks") == "/statemesh/3fa9c1d2/blocks/1"


@pytest.mark.parametrize("bad", ["", "a/b", "with space", "x" * 65, "ünïcode"])
def test_names_that_would_make_ambiguous_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        topic_id("net", bad)
    assert str(caught.value) == (
        f"topic name {bad!r} must be 1-64 characters of letters, digits, '-' or '_'"
    )


def test_defaults_suit_a_small_validator_set() -> None:
    config = P2PConfig(network_id="dev")
    assert (config.gossip.mesh_degree_low, config.gossip.mesh_degree) == (6, 8)
    assert config.gossip.mesh_degree_high == 12
    assert config.gossip.heartbeat_seconds == 1
    assert config.gossip.max_message_bytes == MAX_GOSSIP_PAYLOAD == 1_048_576 - 16_384
    assert config.gossip.queue_high_water == 16
    assert (config.dial.initial_backoff, config.dial.max_backoff) == (0.5, 10.0)
    assert config.scoring.ban_seconds == 60
    reuse = config.stream_reuse
    assert (reuse.pooled_per_peer, reuse.idle_per_peer, reuse.idle_total) == (4, 8, 1024)
    assert reuse.requester_idle_seconds < reuse.server_idle_seconds


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: GossipConfig(mesh_degree=4, mesh_degree_low=6),
            "gossip mesh degrees must satisfy 1 <= D_low <= D <= D_high, got D_low=6 D=4 D_high=12",
        ),
        (
            lambda: GossipConfig(max_message_bytes=1_048_576),
            "max_message_bytes must be within 1-1032192 (a gossip frame is at most 1048576 bytes),"
            " got 1048576",
        ),
        (
            lambda: GossipConfig(queue_high_water=32),
            "queue_high_water must be within 1-31 (libp2p queues 32), got 32",
        ),
        (lambda: ScoringConfig(ban_threshold=0), "ban_threshold must be < 0, got 0"),
        (
            lambda: P2PConfig(network_id="dev", listen_host="localhost"),
            "listen host 'localhost' is not an IPv4 address",
        ),
        (
            lambda: P2PConfig(network_id="dev", listen_port=70000),
            "listen port 70000 is outside 0-65535",
        ),
        (
            lambda: P2PConfig(network_id="dev", bootnodes="/ip4/1.2.3.4/tcp/1"),  # type: ignore[arg-type]
            "bootnodes must be a tuple of multiaddr strings",
        ),
        (
            lambda: P2PConfig(network_id="dev", bootnodes=("/ip4/1.2.3.4/tcp/1",)),
            "bootnode '/ip4/1.2.3.4/tcp/1' must end in /p2p/<peer id>",
        ),
        (
            lambda: StreamReuseConfig(requester_idle_seconds=45),
            "requester_idle_seconds (45) must be shorter than server_idle_seconds (45.0)",
        ),
        (
            lambda: StreamReuseConfig(pooled_per_peer=9),
            "pooled_per_peer (9) must not exceed idle_per_peer (8): peers keep what this node "
            "would keep",
        ),
        (lambda: StreamReuseConfig(idle_total=0), "idle_total must be > 0, got 0"),
        (
            lambda: P2PConfig(network_id="dev/x"),
            "network id 'dev/x' must be 1-64 characters of letters, digits, '-' or '_'",
        ),
    ],
)
def test_bad_values_are_refused_when_the_config_is_built(build: object, message: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        build()  # type: ignore[operator]
    assert str(caught.value) == message
