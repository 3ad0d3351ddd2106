"""Which peers' outbound gossip queues are too full to publish into, and which stay full.

Pure bookkeeping over a snapshot of queue lengths; `Gossip` supplies libp2p's queues.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sized
from typing import Generic, TypeVar

Peer = TypeVar("Peer", bound=Hashable)


class QueueWatch(Generic[Peer]):
    """A publisher waits for busy peers (over the high-water mark). One that does not drain
    within the publisher's patience is marked stalled and no longer waited for, so a hung
    peer cannot throttle the node; one over the mark for `stall_timeout` is to be dropped."""

    def __init__(self, high_water: int, stall_timeout: float) -> None:
        self._high_water = high_water
        self._stall_timeout = stall_timeout
        self._over_since: dict[Peer, float] = {}
        self._stalled: set[Peer] = set()

    def busy(self, queues: Mapping[Peer, Sized]) -> list[Peer]:
        """Peers worth waiting for: over the mark and not already given up on."""
        return [
            peer
            for peer, queue in queues.items()
            if len(queue) > self._high_water and peer not in self._stalled
        ]

    def give_up_on(self, peers: list[Peer]) -> None:
        self._stalled.update(peers)

    def overdue(self, queues: Mapping[Peer, Sized], now: float) -> list[Peer]:
        """Peers over the mark at every check for `stall_timeout` seconds. A peer that drains
        below the mark (or leaves) starts afresh and is waited for again."""
        over = {peer for peer, queue in queues.items() if len(queue) > self._high_water}
        self._over_since = {peer: t for peer, t in self._over_since.items() if peer in over}
        self._stalled &= over
        for peer in over:
            self._over_since.setdefault(peer, now)
        return [
            peer for peer, since in self._over_since.items() if now - since >= self._stall_timeout
        ]

    @property
    def stalled(self) -> int:
        return len(self._stalled)
