"""Configuration of the p2p service: network id, listen address, bootnodes, gossip, scoring, limits.

Defaults suit a small validator set; every value is checked when the config is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2p.addresses import Bootnode, listen_multiaddr, parse_bootnode
from p2p.errors import InvalidConfig
from p2p.names import check_name

MIB = 1024 * 1024

GOSSIP_FRAME_LIMIT = MIB
"""libp2p 0.8.1 silently drops any gossip RPC frame over 1 MiB, on send and on receive."""

GOSSIP_ENVELOPE_ALLOWANCE = 16 * 1024
"""Room in a frame for what wraps the payload: topic, origin, seqno, key, signature and the
sender's signed peer record (a few hundred bytes on loopback; more with many addresses)."""

MAX_GOSSIP_PAYLOAD = GOSSIP_FRAME_LIMIT - GOSSIP_ENVELOPE_ALLOWANCE


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise InvalidConfig(f"{name} must be > 0, got {value}")


@dataclass(frozen=True, slots=True)
class GossipConfig:
    mesh_degree: int = 8
    """GossipSub D. Keep it >= n-1 for small validator sets: pruned peers get no gossip."""
    mesh_degree_low: int = 6
    """D_low: below this the heartbeat grafts peers."""
    mesh_degree_high: int = 12
    """D_high: above this the heartbeat prunes peers."""
    heartbeat_seconds: int = 1
    max_message_bytes: int = MAX_GOSSIP_PAYLOAD
    """Largest payload `publish` accepts; bigger ones are refused before anything is sent."""
    delivery_buffer: int = 1024
    """Accepted messages waiting per topic for the node to read; beyond that they are dropped
    and counted, because a slow reader must not stall validation for every other topic."""
    queue_high_water: int = 16
    """`publish` waits while a peer's outbound queue (32 deep, overflow silently dropped by
    libp2p) holds more than this many frames."""
    backpressure_timeout: float = 1.0
    """How long `publish` waits for one slow peer before marking it stalled and going on."""
    stall_timeout: float = 10.0
    """A peer whose outbound queue stays over the high-water mark this long is disconnected:
    a hung peer is otherwise never dropped and silently loses everything sent meanwhile."""

    def __post_init__(self) -> None:
        if not 1 <= self.mesh_degree_low <= self.mesh_degree <= self.mesh_degree_high:
            raise InvalidConfig(
                "gossip mesh degrees must satisfy 1 <= D_low <= D <= D_high, got "
                f"D_low={self.mesh_degree_low} D={self.mesh_degree} D_high={self.mesh_degree_high}"
            )
        if self.heartbeat_seconds < 1:
            raise InvalidConfig(f"heartbeat_seconds must be >= 1, got {self.heartbeat_seconds}")
        if not 1 <= self.max_message_bytes <= MAX_GOSSIP_PAYLOAD:
            raise InvalidConfig(
                f"max_message_bytes must be within 1-{MAX_GOSSIP_PAYLOAD} (a gossip frame is "
                f"at most {GOSSIP_FRAME_LIMIT} bytes), got {self.max_message_bytes}"
            )
        if not 1 <= self.queue_high_water < 32:
            raise InvalidConfig(
                f"queue_high_water must be within 1-31 (libp2p queues 32), "
                f"got {self.queue_high_water}"
            )
        _positive("delivery_buffer", self.delivery_buffer)
        _positive("backpressure_timeout", self.backpressure_timeout)
        _positive("stall_timeout", self.stall_timeout)


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Scores start at 0, fall with penalties and climb back towards 0 over time."""

    ban_threshold: float = -100.0
    """At or below this score a peer is disconnected and banned."""
    ban_seconds: float = 60.0
    recovery_per_second: float = 1.0
    """Points a penalized peer regains each second, so rare faults are forgiven."""
    reject_penalty: int = 20
    """A gossip message the validator REJECTed."""
    bad_request_penalty: int = 20
    """An oversize, truncated or refused (`BadRequest`) request."""
    bad_response_penalty: int = 20
    """An oversize or malformed response."""
    malformed_frame_penalty: int = 100
    """Bytes on the gossip protocol that do not decode: only a broken or hostile peer sends them."""

    def __post_init__(self) -> None:
        if self.ban_threshold >= 0:
            raise InvalidConfig(f"ban_threshold must be < 0, got {self.ban_threshold}")
        _positive("ban_seconds", self.ban_seconds)
        if self.recovery_per_second < 0:
            raise InvalidConfig(f"recovery_per_second must be >= 0, got {self.recovery_per_second}")
        for name in (
            "reject_penalty",
            "bad_request_penalty",
            "bad_response_penalty",
            "malformed_frame_penalty",
        ):
            if getattr(self, name) < 0:
                raise InvalidConfig(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class DialConfig:
    """How bootnodes are redialed: libp2p's own bootstrap gives up on a peer forever."""

    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    dial_timeout: float = 5.0

    def __post_init__(self) -> None:
        _positive("initial_backoff", self.initial_backoff)
        _positive("dial_timeout", self.dial_timeout)
        if self.max_backoff < self.initial_backoff:
            raise InvalidConfig(
                f"max_backoff ({self.max_backoff}) must be >= initial_backoff "
                f"({self.initial_backoff})"
            )


@dataclass(frozen=True, slots=True)
class StreamReuseConfig:
    """Request/response streams carry one exchange after another, as HTTP keep-alive does:
    opening a stream and negotiating its protocol cost more than the exchange itself."""

    pooled_per_peer: int = 4
    """Idle streams a requester keeps per peer and protocol for its next requests; more are
    closed when their exchange ends."""
    requester_idle_seconds: float = 20.0
    """A requester closes a stream idle this long and never reuses an older one. Shorter than
    `server_idle_seconds`, so the requester ends a stream before the server does and seldom
    writes a request into a stream the server is closing."""
    server_idle_seconds: float = 45.0
    """How long a server waits for the next request on a stream before closing it."""
    idle_per_peer: int = 8
    """Streams a server keeps waiting for a next request, per peer and protocol. A peer whose
    streams would exceed it has the extra ones closed after their answer."""
    idle_total: int = 1024
    """The same bound over all peers and protocols: what idle streams cost us (a task and a
    muxer entry each) stays bounded however many peers connect."""

    def __post_init__(self) -> None:
        for name in (
            "pooled_per_peer",
            "requester_idle_seconds",
            "server_idle_seconds",
            "idle_per_peer",
            "idle_total",
        ):
            _positive(name, getattr(self, name))
        if self.requester_idle_seconds >= self.server_idle_seconds:
            raise InvalidConfig(
                f"requester_idle_seconds ({self.requester_idle_seconds}) must be shorter than "
                f"server_idle_seconds ({self.server_idle_seconds})"
            )
        if self.pooled_per_peer > self.idle_per_peer:
            raise InvalidConfig(
                f"pooled_per_peer ({self.pooled_per_peer}) must not exceed idle_per_peer "
                f"({self.idle_per_peer}): peers keep what this node would keep"
            )


@dataclass(frozen=True, slots=True)
class P2PConfig:
    network_id: str
    """Scopes every protocol id and topic; the node passes its genesis hash hex prefix."""
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    """0 picks a free port; the service reports the real one when it starts."""
    bootnodes: tuple[str, ...] = ()
    """`/ip4/HOST/tcp/PORT/p2p/PEER_ID` multiaddrs, redialed for as long as the node runs."""
    gossip: GossipConfig = field(default_factory=GossipConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    dial: DialConfig = field(default_factory=DialConfig)
    stream_reuse: StreamReuseConfig = field(default_factory=StreamReuseConfig)
    status_timeout: float = 5.0
    """The status handshake on connect must finish within this, or the peer is dropped."""
    status_interval: float = 10.0
    """How often statuses are exchanged again with every connected peer."""
    max_status_bytes: int = 4096
    default_request_timeout: float = 10.0
    """For requests on protocols this node did not register itself."""
    default_max_response_bytes: int = 16 * MIB
    max_inbound_requests: int = 32
    """Requests served at once per protocol; more are answered `busy`."""
    event_buffer: int = 256
    """Peer events waiting for the node to read; beyond that they are dropped and counted."""

    def __post_init__(self) -> None:
        check_name("network id", self.network_id)
        listen_multiaddr(self.listen_host, self.listen_port)
        if isinstance(self.bootnodes, str) or not isinstance(self.bootnodes, tuple):
            raise InvalidConfig("bootnodes must be a tuple of multiaddr strings")
        for text in self.bootnodes:
            parse_bootnode(text)
        _positive("status_timeout", self.status_timeout)
        _positive("status_interval", self.status_interval)
        _positive("max_status_bytes", self.max_status_bytes)
        _positive("default_request_timeout", self.default_request_timeout)
        _positive("default_max_response_bytes", self.default_max_response_bytes)
        _positive("max_inbound_requests", self.max_inbound_requests)
        _positive("event_buffer", self.event_buffer)

    def parsed_bootnodes(self) -> tuple[Bootnode, ...]:
        return tuple(parse_bootnode(text) for text in self.bootnodes)
