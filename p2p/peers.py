"""Connected peers: when and where they connected, their last status, and events for the node."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import trio

from p2p.identity import PeerId


class PeerEventKind(enum.Enum):
    CONNECTED = "connected"
    """The status handshake finished: the peer is on our network and usable."""
    STATUS = "status"
    """A later status from an already connected peer."""
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class PeerEvent:
    kind: PeerEventKind
    peer_id: PeerId
    status: bytes | None = None


@dataclass(frozen=True, slots=True)
class PeerSnapshot:
    peer_id: PeerId
    address: str
    """The remote end of the connection, e.g. `/ip4/127.0.0.1/tcp/40123`."""
    direction: str
    """`inbound` or `outbound`."""
    connected_since: float
    """Unix time of the connection."""
    score: float
    status: bytes | None
    """The last status bytes the peer sent; None until its handshake finishes."""


@dataclass(slots=True)
class _Entry:
    address: str
    direction: str
    connected_since: float
    status: bytes | None = None
    gone: trio.Event = field(default_factory=trio.Event)
    settled: trio.Event = field(default_factory=trio.Event)
    """Set once the handshake gave a status, or the peer left before it did."""


class PeerTable:
    """Who is connected now. Events go to a bounded channel the node may read or ignore;
    when it is full they are dropped and counted rather than blocking the network."""

    def __init__(self, event_buffer: int) -> None:
        self._entries: dict[PeerId, _Entry] = {}
        self._events_send, self._events_receive = trio.open_memory_channel[PeerEvent](event_buffer)
        self.connections = 0
        self.disconnections = 0
        self.events_dropped = 0

    @property
    def events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        return self._events_receive

    def connected(self, peer_id: PeerId, address: str, direction: str, now: float) -> bool:
        """Record a connection; False if the peer was already connected."""
        if peer_id in self._entries:
            return False
        self._entries[peer_id] = _Entry(address, direction, now)
        self.connections += 1
        return True

    def disconnected(self, peer_id: PeerId) -> None:
        entry = self._entries.pop(peer_id, None)
        if entry is None:
            return
        self.disconnections += 1
        entry.gone.set()
        entry.settled.set()
        if entry.status is not None:
            self._emit(PeerEvent(PeerEventKind.DISCONNECTED, peer_id))

    def set_status(self, peer_id: PeerId, status: bytes) -> None:
        entry = self._entries.get(peer_id)
        if entry is None:
            return
        kind = PeerEventKind.CONNECTED if entry.status is None else PeerEventKind.STATUS
        entry.status = status
        entry.settled.set()
        self._emit(PeerEvent(kind, peer_id, status))

    def is_connected(self, peer_id: PeerId) -> bool:
        return peer_id in self._entries

    def has_status(self, peer_id: PeerId) -> bool:
        entry = self._entries.get(peer_id)
        return entry is not None and entry.status is not None

    async def wait_disconnected(self, peer_id: PeerId) -> None:
        entry = self._entries.get(peer_id)
        if entry is not None:
            await entry.gone.wait()

    async def wait_handshake(self, peer_id: PeerId) -> bool:
        """True once the peer's status arrived; False if it left first."""
        entry = self._entries.get(peer_id)
        if entry is None:
            return False
        await entry.settled.wait()
        return entry.status is not None and not entry.gone.is_set()

    def peer_ids(self) -> list[PeerId]:
        return list(self._entries)

    def snapshot(self, peer_id: PeerId, score: float) -> PeerSnapshot | None:
        entry = self._entries.get(peer_id)
        if entry is None:
            return None
        return PeerSnapshot(
            peer_id=peer_id,
            address=entry.address,
            direction=entry.direction,
            connected_since=entry.connected_since,
            score=score,
            status=entry.status,
        )

    def close(self) -> None:
        self._events_send.close()

    def _emit(self, event: PeerEvent) -> None:
        try:
            self._events_send.send_nowait(event)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.events_dropped += 1
