"""What the wallet committee needs of the p2p host: serve its protocols, send a request to a
peer, dial a member it is not connected to, lower the score of a peer that misbehaves.
`p2p.host.P2PService` is one; the committee's tests run on an in-memory one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from p2p.identity import PeerId

Handler = Callable[[PeerId, bytes], Awaitable[bytes]]
"""`handler(peer, request) -> response`, the peer being the one the connection authenticated."""


class Transport(Protocol):
    def register_protocol(
        self,
        name: str,
        handler: Handler,
        *,
        max_request_bytes: int,
        max_response_bytes: int,
        timeout: float,
        max_concurrent: int | None = None,
    ) -> None:
        """Serve protocol `name` with `handler`, within these limits."""

    async def request(
        self,
        peer_id: PeerId,
        name: str,
        data: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - expiry resets the stream
    ) -> bytes:
        """One request, one response; raises `p2p.errors.RequestFailed` (`PeerUnreachable`
        when not connected: a request never dials)."""

    async def connect(self, address: str) -> PeerId:
        """Dial a peer at its multiaddress; raises `p2p.errors.DialFailed`."""

    def penalize(self, peer_id: PeerId, amount: float, reason: str) -> None:
        """Lower a peer's score (dropped and banned for a while at the threshold)."""
