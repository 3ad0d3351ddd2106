"""The resource limits of the JSON-RPC server (Substrate's defaults) and their validation."""

from __future__ import annotations

from dataclasses import dataclass, fields

MIB = 1024 * 1024


class RpcLimitsError(ValueError):
    """A limit that cannot be used (zero or negative)."""


@dataclass(frozen=True, slots=True)
class RpcLimits:
    max_request_bytes: int = 15 * MIB
    """Largest HTTP body or WebSocket message accepted; larger ones get -32007."""
    max_response_bytes: int = 15 * MIB
    """Largest response (a call's or a whole batch's); larger ones become -32008."""
    max_connections: int = 100
    """HTTP requests in flight plus open WebSockets; beyond it HTTP 503 / WebSocket close 1013."""
    max_subscriptions_per_connection: int = 1024
    """Live subscriptions one WebSocket may hold; the next subscribe gets -32006."""
    max_batch_size: int = 1000
    """Calls in one batch; a larger batch is refused as a whole with -32600."""
    subscription_buffer: int = 1024
    """Notifications queued per subscription for a slow client before it is dropped."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RpcLimitsError(f"{field.name} must be a positive integer, got {value!r}")
