"""libp2p's Pubsub with its two remote-input crash paths closed: frames that do not decode,
and messages whose processing raises (e.g. a garbage public key). Either costs the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream, IPubsubRouter
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from p2p.containment import contained, reset_quietly, stream_peer
from p2p.identity import PeerId

logger = logging.getLogger(__name__)

MisbehaviourHook = Callable[[PeerId, str], None]
"""Told (peer, what it did) for input that only a broken or hostile peer sends."""

DeliveryHook = Callable[[rpc_pb2.Message], None]
"""Takes each validated message for our topics, ours included, as Pubsub hands it over."""


class GuardedPubsub(Pubsub):
    def __init__(
        self,
        host: IHost,
        router: IPubsubRouter,
        on_malformed: MisbehaviourHook,
        deliver: DeliveryHook,
    ) -> None:
        # Set before the base constructor: it registers `self.stream_handler` on the host.
        self._on_malformed = on_malformed
        self._deliver = deliver
        super().__init__(host, router, strict_signing=True)

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        # libp2p 0.8.1 deletes the peer from `peers` after awaiting the stream reset; if the
        # connection dies meanwhile, its dead-peer handler deletes it first and the KeyError
        # stops Pubsub and the host (seen when a banned peer is cut off). Same steps, with
        # the race tolerated.
        stream = self.peers.get(peer_id)
        if stream is not None:
            await reset_quietly(stream)
            self.peers.pop(peer_id, None)
        self._forget_all_subscriptions(peer_id)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        # Instead of libp2p's 32-message channel per topic, which drops silently when full.
        self._deliver(publish_message)

    async def stream_handler(self, stream: INetStream) -> None:
        await contained("gossip", self._read_frames, self._handler_failed)(stream)

    async def _read_frames(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except DecodeError:
            # In 0.8.1 this escapes the base handler and crashes the host (one 15-byte frame).
            peer = stream_peer(stream)
            logger.warning("peer %s sent a gossip frame that does not decode; dropping it", peer)
            await reset_quietly(stream)
            self._handle_dead_peer(stream.muxed_conn.peer_id)
            self._on_malformed(peer, "sent a gossip frame that does not decode")

    def _handler_failed(self, peer: PeerId, protocol: str, error: Exception) -> None:
        self._handle_dead_peer(ID.from_base58(peer))
        self._on_malformed(peer, f"gossip stream failed: {type(error).__name__}")

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == self.my_id:
            # Our own publish: a failure here is ours, let it reach the caller.
            await super().push_msg(msg_forwarder, msg)
            return
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception:  # containment boundary for a remote message
            # This runs as a Pubsub task: an exception would stop Pubsub and the host with it.
            peer = PeerId(msg_forwarder.to_base58())
            logger.warning("gossip message from %s failed processing; dropped", peer, exc_info=True)
            self._on_malformed(peer, "sent a gossip message that failed processing")
