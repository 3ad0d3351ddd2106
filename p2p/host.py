"""`P2PService`: the node's libp2p host (TCP, Noise, yamux) and everything that runs on it:
gossip, request/response, the status handshake, peer scoring and the bootnode loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.config import ConnectionConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from chain.clock import Clock, SystemClock
from p2p.addresses import listen_multiaddr, node_multiaddr, parse_bootnode
from p2p.bootnodes import BootnodeDialer, DialStatistics
from p2p.config import P2PConfig
from p2p.errors import (
    DialFailed,
    ListenFailed,
    NotRunning,
    P2PError,
    PeerUnreachable,
    ProtocolUnsupported,
    RequestFailed,
    RequestTimeout,
    StreamAborted,
)
from p2p.gossip import Gossip, GossipMessage, GossipStatistics, Validator
from p2p.identity import NodeKey, PeerId, libp2p_id
from p2p.names import STATUS_PROTOCOL
from p2p.peers import PeerEvent, PeerSnapshot, PeerTable
from p2p.reqresp import Handler, ProtocolLimits, RequestResponse, RequestStatistics
from p2p.scoring import PeerScores

logger = logging.getLogger(__name__)

_HANDSHAKE_ATTEMPTS = 3
"""libp2p reports a connection before its muxer is ready, so the first stream may fail."""
_DISCONNECT_TIMEOUT = 5.0
_MAINTENANCE_PERIOD = 1.0


def _no_status() -> bytes:
    return b""


@dataclass(frozen=True, slots=True)
class P2PStatistics:
    peers: int
    banned: int
    connections: int
    disconnections: int
    penalties: int
    bans: int
    network_mismatches: int
    handshake_failures: int
    events_dropped: int
    gossip: GossipStatistics
    requests: RequestStatistics
    dials: DialStatistics


class P2PService:
    """One libp2p host and its protocols. `run` it once in the node's nursery.

    Subscribe topics and register protocols before `run` (or while it runs); `publish`,
    `request` and `connect` need it running.
    """

    def __init__(
        self,
        config: P2PConfig,
        node_key: NodeKey,
        *,
        status: Callable[[], bytes] = _no_status,
        clock: Clock | None = None,
    ) -> None:
        self._config = config
        self._status = status
        self._time = clock or SystemClock()
        self._clock = self._time.monotonic
        self._host = _build_host(node_key)
        self._peer_id = PeerId(self._host.get_id().to_base58())
        self._scores = PeerScores(config.scoring, self._clock)
        self._table = PeerTable(config.event_buffer)
        self._gossip = Gossip(
            self._host, config.network_id, config.gossip, config.scoring, self.penalize
        )
        self._requests = RequestResponse(
            self._host,
            config.network_id,
            config.scoring,
            self.penalize,
            self._scores.is_banned,
            default_timeout=config.default_request_timeout,
            default_max_response_bytes=config.default_max_response_bytes,
            reuse=config.stream_reuse,
        )
        self._requests.register(
            STATUS_PROTOCOL,
            self._serve_status,
            ProtocolLimits(
                max_request_bytes=config.max_status_bytes,
                max_response_bytes=config.max_status_bytes,
                timeout=config.status_timeout,
                max_concurrent=config.max_inbound_requests,
            ),
        )
        self._dialer = BootnodeDialer(
            self._host,
            config.parsed_bootnodes(),
            config.dial,
            self._table,
            self._scores.ban_remaining,
            handshake_timeout=config.status_timeout * _HANDSHAKE_ATTEMPTS,
        )
        self._host.get_network().register_notifee(_ConnectionWatcher(self))
        self._nursery: trio.Nursery | None = None
        self._listen_address: str | None = None
        self._ran = False
        self._refreshing: set[PeerId] = set()
        self._network_mismatches = 0
        self._handshake_failures = 0

    # -- identity and lifecycle ------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        return self._peer_id

    @property
    def listen_address(self) -> str:
        """`/ip4/HOST/tcp/PORT/p2p/PEER_ID` with the real port, once `run` has started."""
        if self._listen_address is None:
            raise NotRunning("the listen address is known once the service has started")
        return self._listen_address

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial bootnodes and serve until cancelled; `started(listen multiaddr)`."""
        if self._ran:
            raise P2PError("a P2PService runs once; build a new one to run again")
        self._ran = True
        listen = multiaddr.Multiaddr(
            listen_multiaddr(self._config.listen_host, self._config.listen_port)
        )
        try:
            async with self._gossip.services():
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        await self._gossip.start(nursery)
                        await nursery.start(self._requests.run)
                        async with self._host.run([listen]):
                            await self._stop_auto_connector()
                            self._listen_address = self._resolve_listen_address(str(listen))
                            nursery.start_soon(self._dialer.run)
                            nursery.start_soon(self._maintain)
                            logger.info("p2p listening on %s", self._listen_address)
                            task_status.started(self._listen_address)
                            try:
                                await trio.sleep_forever()
                            finally:
                                await self._close_connections()
                finally:
                    # Pubsub keeps running a moment longer: its callbacks must find no
                    # nursery to spawn into, rather than a closed one.
                    self._nursery = None
                    self._gossip.stop()
        finally:
            self._table.close()

    async def _close_connections(self) -> None:
        """Close every connection before libp2p shuts down. libp2p's own shutdown runs under
        the cancellation: it marks connections closed without closing their sockets, so peers
        would keep a dead connection and the sockets would leak."""
        network = self._host.get_network()
        connections = [c for group in network.get_connections_map().values() for c in group]
        with trio.CancelScope(shield=True), trio.move_on_after(_DISCONNECT_TIMEOUT):
            async with trio.open_nursery() as closing:
                for connection in connections:
                    closing.start_soon(self._close_connection, connection)

    @staticmethod
    async def _close_connection(connection: INetConn) -> None:
        try:
            await connection.close()
            # Cancelled first, libp2p may have marked it closed and stopped there.
            if not connection.muxed_conn.is_closed:
                await connection.muxed_conn.close()
        except (BaseLibp2pError, OSError) as error:
            logger.debug("closing a connection at shutdown: %r", error)

    async def _stop_auto_connector(self) -> None:
        """libp2p redials every known peer whenever a connection drops while it has fewer than
        100: banned peers and peers of other networks included, every ~100 ms. Bootnodes are
        redialed by our own loop instead."""
        network = self._host.get_network()
        if isinstance(network, Swarm):
            await network.auto_connector.stop()

    def _resolve_listen_address(self, requested: str) -> str:
        for address in self._host.get_transport_addrs():
            port = address.value_for_protocol("tcp")
            if port is not None:
                return node_multiaddr(self._config.listen_host, int(port), self._peer_id)
        # libp2p logs a failed listen and carries on without a listener.
        raise ListenFailed(f"cannot listen on {requested} (is the port already in use?)")

    def _running_nursery(self, what: str) -> trio.Nursery:
        if self._nursery is None:
            raise NotRunning(f"{what} needs the running p2p service")
        return self._nursery

    # -- gossip ------------------------------------------------------------------------------

    def subscribe(
        self, name: str, validator: Validator
    ) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Join topic `/statemesh/<netid>/<name>/1`; ACCEPTed messages from others arrive on
        the returned channel (bounded: when the node falls behind, messages are dropped)."""
        return self._gossip.subscribe(name, validator)

    async def publish(self, name: str, data: bytes) -> None:
        """Publish on a topic; waits while peers' queues are full; `MessageTooLarge` if big."""
        await self._gossip.publish(name, data)

    async def drain(self) -> None:
        """Wait until what was published has been handed to the connections."""
        await self._gossip.drain()

    def mesh_peers(self, name: str) -> set[PeerId]:
        return self._gossip.mesh_peers(name)

    # -- request/response --------------------------------------------------------------------

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
        """Serve `/statemesh/<netid>/<name>/1` with `handler(peer_id, request) -> response`."""
        limits = ProtocolLimits(
            max_request_bytes=max_request_bytes,
            max_response_bytes=max_response_bytes,
            timeout=timeout,
            max_concurrent=max_concurrent or self._config.max_inbound_requests,
        )
        self._requests.register(name, handler, limits)

    async def request(
        self,
        peer_id: PeerId,
        name: str,
        data: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - expiry resets the stream, typed error
    ) -> bytes:
        """One request to a connected peer, one response; raises a `RequestFailed` subclass
        saying why not (`PeerUnreachable` if not connected: requests never dial)."""
        self._running_nursery("request")
        return await self._requests.request(peer_id, name, data, timeout=timeout)

    # -- peers -------------------------------------------------------------------------------

    async def connect(self, address: str) -> PeerId:
        """Dial `/ip4/HOST/tcp/PORT/p2p/PEER_ID` once (bootnodes are redialed on their own)."""
        self._running_nursery("connect")
        node = parse_bootnode(address)
        if self._scores.is_banned(node.peer_id):
            raise DialFailed(f"{address}: peer is banned")
        try:
            with trio.fail_after(self._config.dial.dial_timeout):
                await self._host.connect(
                    PeerInfo(libp2p_id(node.peer_id), [multiaddr.Multiaddr(node.transport)])
                )
        except (BaseLibp2pError, OSError, trio.TooSlowError) as error:
            raise DialFailed(f"{address}: {error!r}") from None
        return node.peer_id

    def penalize(self, peer_id: PeerId, amount: float, reason: str) -> None:
        """Lower a peer's score; at the threshold it is disconnected and banned for a while."""
        outcome = self._scores.penalize(peer_id, amount)
        if outcome.banned:
            logger.warning(
                "peer %s banned for %.0f s: %s",
                peer_id,
                self._config.scoring.ban_seconds,
                reason,
            )
            self._gossip.block(peer_id)
            self._requests.drop_peer(peer_id)
            self._disconnect(peer_id)
        else:
            logger.info(
                "peer %s penalized %g (score %.0f): %s", peer_id, amount, outcome.score, reason
            )

    def peers(self) -> list[PeerSnapshot]:
        snapshots = (
            self._table.snapshot(peer, self._scores.score(peer)) for peer in self._table.peer_ids()
        )
        return [snapshot for snapshot in snapshots if snapshot is not None]

    def events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """Peer connected (after its handshake) / status / disconnected events, bounded."""
        return self._table.events

    def statistics(self) -> P2PStatistics:
        return P2PStatistics(
            peers=len(self._table.peer_ids()),
            banned=len(self._scores.banned()),
            connections=self._table.connections,
            disconnections=self._table.disconnections,
            penalties=self._scores.penalties,
            bans=self._scores.bans,
            network_mismatches=self._network_mismatches,
            handshake_failures=self._handshake_failures,
            events_dropped=self._table.events_dropped,
            gossip=self._gossip.statistics(),
            requests=self._requests.statistics(),
            dials=self._dialer.statistics(),
        )

    # -- connection events and the status handshake -----------------------------------------

    def _on_connected(self, connection: INetConn) -> None:
        peer = PeerId(connection.muxed_conn.peer_id.to_base58())
        # A ban that ended since the last maintenance round ends now, gossip's blacklist with
        # it: Pubsub takes a new peer once, and one still blacklisted then never gossips.
        self._lift_finished_bans()
        if self._scores.is_banned(peer):
            logger.info("refusing banned peer %s", peer)
            self._disconnect(peer)
            return
        addresses = connection.get_transport_addresses()
        address = str(addresses[0]) if addresses else "unknown"
        direction = getattr(connection, "direction", None)
        direction_name = direction.name.lower() if direction is not None else "unknown"
        if self._table.connected(peer, address, direction_name, self._time.now_ms() / 1000):
            if self._nursery is not None:
                self._nursery.start_soon(self._greet, peer)

    def _on_disconnected(self, connection: INetConn) -> None:
        peer_id = connection.muxed_conn.peer_id
        remaining = [
            other
            for other in self._host.get_network().get_connections(peer_id)
            if other is not connection and not getattr(other, "is_closed", False)
        ]
        if not remaining:
            peer = PeerId(peer_id.to_base58())
            self._requests.drop_peer(peer)
            self._table.disconnected(peer)

    async def _greet(self, peer: PeerId) -> None:
        for attempt in range(1, _HANDSHAKE_ATTEMPTS + 1):
            if not self._table.is_connected(peer):
                return
            try:
                await self._exchange_status(peer)
                return
            except ProtocolUnsupported:
                self._network_mismatches += 1
                logger.warning(
                    "peer %s does not speak network %s; disconnecting and banning it",
                    peer,
                    self._config.network_id,
                )
                self._scores.ban(peer)
                self._gossip.block(peer)
                self._disconnect(peer)
                return
            except (PeerUnreachable, StreamAborted) as error:
                logger.debug("status handshake with %s, attempt %d: %s", peer, attempt, error)
                await trio.sleep(0.05 * attempt)
            except RequestFailed as error:
                logger.info("status handshake with %s failed: %s", peer, error)
                break
        self._handshake_failures += 1
        self._disconnect(peer)

    async def _exchange_status(self, peer: PeerId) -> None:
        status = await self._requests.request(peer, STATUS_PROTOCOL, self._status())
        self._table.set_status(peer, status)

    async def _serve_status(self, peer: PeerId, status: bytes) -> bytes:
        self._table.set_status(peer, status)
        return self._status()

    async def _refresh_status(self, peer: PeerId) -> None:
        if peer in self._refreshing:
            return  # the last refresh is still waiting: one at a time per peer
        self._refreshing.add(peer)
        try:
            await self._exchange_status(peer)
        except RequestTimeout as error:
            # libp2p never drops a hung peer on its own; an unanswered status does.
            logger.warning("peer %s did not answer its status; disconnecting: %s", peer, error)
            self._disconnect(peer)
        except RequestFailed as error:
            logger.debug("status refresh with %s failed: %s", peer, error)
        finally:
            self._refreshing.discard(peer)

    def _disconnect(self, peer: PeerId) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._close_peer, peer)

    async def _close_peer(self, peer: PeerId) -> None:
        with trio.move_on_after(_DISCONNECT_TIMEOUT):
            try:
                await self._host.disconnect(libp2p_id(peer))
            except (BaseLibp2pError, OSError) as error:
                logger.debug("disconnecting %s: %r", peer, error)

    def _lift_finished_bans(self) -> None:
        for peer in self._scores.expire():
            logger.info("ban of peer %s expired", peer)
            self._gossip.unblock(peer)

    async def _maintain(self) -> None:
        next_status = self._clock() + self._config.status_interval
        while True:
            await trio.sleep(_MAINTENANCE_PERIOD)
            now = self._clock()
            self._lift_finished_bans()
            for peer in self._gossip.stalled_peers(now):
                logger.warning("peer %s stopped draining its gossip queue; disconnecting", peer)
                self._disconnect(peer)
            if now >= next_status:
                next_status = now + self._config.status_interval
                nursery = self._running_nursery("status refresh")
                for peer in self._table.peer_ids():
                    if self._table.has_status(peer):
                        nursery.start_soon(self._refresh_status, peer)


class _ConnectionWatcher(INotifee):
    """Forwards libp2p's connection notifications; must not block (it stalls the dialer)."""

    def __init__(self, service: P2PService) -> None:
        self._service = service

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._service._on_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._service._on_disconnected(conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


def _build_host(node_key: NodeKey) -> IHost:
    """TCP with Noise and yamux only: libp2p's defaults also offer plaintext, secio and mplex."""
    keypair = node_key.keypair()
    noise = NoiseTransport(keypair, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(
        key_pair=keypair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        # One connection per peer: the default config waits ~250 ms per connect for a
        # second "happy eyeballs" connection; this makes a connect take ~4 ms.
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
