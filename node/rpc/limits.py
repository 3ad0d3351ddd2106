"""The resource limits of the JSON-RPC server (Substrate's defaults where it has them) and their
validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from node.errors import NodeError

MIB = 1024 * 1024

DEFAULT_MAX_CONNECTIONS = 100


class RpcLimitsError(NodeError, ValueError):
    """A limit that cannot be used (zero or negative)."""


@dataclass(frozen=True, slots=True)
class RpcLimits:
    max_request_bytes: int = 15 * MIB
    """Largest HTTP body or WebSocket message accepted; larger ones get -32007."""
    max_response_bytes: int = 15 * MIB
    """Largest response (a call's or a whole batch's); larger ones become -32008."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """HTTP calls being answered plus open WebSockets; beyond it HTTP 503 / WebSocket close 1013.
    HTTP bodies still arriving late are bounded by the same numbers, in a pool of their own."""
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS // 4
    """The same, from one client address (an IPv6 /64 counts as one): a quarter of the whole by
    default, so that one address cannot take every slot while the local tools (which all share
    127.0.0.1) still get plenty."""
    max_subscriptions_per_connection: int = 1024
    """Live subscriptions one WebSocket may hold; the next subscribe gets -32006."""
    max_subscriptions: int = 32 * 1024
    """Live subscriptions over the whole server: what its notification fan-out costs per block
    is bounded by this, not by connections times the per-connection limit (102,400)."""
    max_batch_size: int = 1000
    """Calls in one batch; a larger batch is refused as a whole with -32600."""
    subscription_buffer: int = 1024
    """Notifications of one subscription waiting for a slow client before it is told and
    dropped."""
    max_queued_bytes_per_connection: int = 2 * MIB
    """Notifications waiting for one WebSocket's client, all its subscriptions together; a
    subscription whose notification does not fit is told and dropped. Responses are never
    dropped: the connection stops reading requests until its client reads again."""
    request_body_timeout: float = 5.0
    """Seconds an HTTP request may take to send its body once its headers are in; a client
    that stalls is answered 408 and disconnected, so it does not hold a slot."""

    @property
    def reserved_for_local(self) -> int:
        """Connections (and places among late bodies) that only 127.0.0.1 and ::1 may take: a
        tenth of `max_connections`, at least 1 (none when it is 1). A few addresses elsewhere,
        each within its own cap, can then never take the operator's last slot."""
        return min(max(1, self.max_connections // 10), self.max_connections - 1)

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            kinds = (int, float) if field.name == "request_body_timeout" else (int,)
            if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
                kind = "number" if field.name == "request_body_timeout" else "integer"
                raise RpcLimitsError(f"{field.name} must be a positive {kind}, got {value!r}")
            if not math.isfinite(value):
                # A NaN deadline fails every late body; an infinite one lets it stall forever.
                raise RpcLimitsError(f"{field.name} must be a finite number, got {value!r}")
