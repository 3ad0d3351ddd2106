"""Gossip topics: GossipSub configured for small validator sets, validation verdicts that
score peers, bounded per-topic delivery, and publishing with backpressure and a size limit.
"""

from __future__ import annotations

import collections
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service

from p2p.backpressure import QueueWatch
from p2p.config import GossipConfig, ScoringConfig
from p2p.errors import DuplicateRegistration, MessageTooLarge, NotRunning
from p2p.guarded_pubsub import GuardedPubsub
from p2p.identity import PeerId, libp2p_id
from p2p.names import check_name, topic_id
from p2p.scoring import Penalizer

logger = logging.getLogger(__name__)

_BACKPRESSURE_POLL = 0.001
"""libp2p's outbound queues signal only their consumer, so a waiting publisher polls."""


class Verdict(enum.Enum):
    ACCEPT = "accept"
    """Deliver to the node and forward to peers."""
    IGNORE = "ignore"
    """Drop without blame (e.g. a duplicate or a block we cannot judge yet)."""
    REJECT = "reject"
    """Drop and penalize the peer that sent it (e.g. a bad signature)."""


Validator = Callable[[PeerId, bytes], Verdict]
"""Judges (forwarding peer, payload). Runs inline on the receive path: keep it quick.
An exception counts as REJECT and is logged."""


@dataclass(frozen=True, slots=True)
class GossipMessage:
    topic: str
    """The topic's short name as subscribed, e.g. `blocks`."""
    origin: PeerId
    """The peer that published it (signed), not the one that forwarded it."""
    data: bytes


@dataclass(frozen=True, slots=True)
class GossipStatistics:
    topics: int
    published: int
    refused_oversize: int
    backpressure_waits: int
    backpressure_timeouts: int
    accepted: int
    ignored: int
    rejected: int
    validator_errors: int
    delivered: int
    delivery_dropped: int
    malformed: int
    stalled_peers: int
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Messages from peers by topic, then by verdict: accept, ignore or reject."""


@dataclass(slots=True)
class _Topic:
    name: str
    topic_id: str
    validator: Validator
    send: trio.MemorySendChannel[GossipMessage]
    joined: bool = False
    verdicts: collections.Counter[str] = field(default_factory=collections.Counter)


class Gossip:
    """Owns the GossipSub router and Pubsub service of one host."""

    def __init__(
        self,
        host: IHost,
        network_id: str,
        config: GossipConfig,
        scoring: ScoringConfig,
        penalize: Penalizer,
    ) -> None:
        self._network_id = network_id
        self._config = config
        self._scoring = scoring
        self._penalize = penalize
        self._router = GossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=config.mesh_degree,
            degree_low=config.mesh_degree_low,
            degree_high=config.mesh_degree_high,
            heartbeat_interval=config.heartbeat_seconds,
            # Each of these defaults loses messages on a chain: 10 msg/s per peer per topic
            # (ourselves included); a heartbeat stretched to 60 s; IP-diversity grafting that
            # means nothing when validators share a host. Rate limits belong in validators.
            spam_protection_enabled=False,
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
        )
        self._pubsub = GuardedPubsub(host, self._router, self._on_malformed, self._deliver)
        # Sequence numbers start from the wall clock in libp2p (seconds): a node restarted
        # within a busy minute would reuse them and its messages would be dropped as seen.
        # Nanoseconds keep them increasing across restarts.
        self._pubsub.counter = time.time_ns()
        self._my_id = host.get_id()
        self._my_id_bytes = self._my_id.to_bytes()
        self._topics: dict[str, _Topic] = {}
        self._by_topic_id: dict[str, _Topic] = {}
        self._nursery: trio.Nursery | None = None
        self._publish_lock = trio.Lock()
        self._queues: QueueWatch[ID] = QueueWatch(config.queue_high_water, config.stall_timeout)
        self._published = 0
        self._refused_oversize = 0
        self._backpressure_waits = 0
        self._backpressure_timeouts = 0
        self._accepted = 0
        self._ignored = 0
        self._rejected = 0
        self._validator_errors = 0
        self._delivered = 0
        self._delivery_dropped = 0
        self._malformed = 0

    @asynccontextmanager
    async def services(self) -> AsyncIterator[None]:
        """Run Pubsub and GossipSub. Enter this before `host.run()`: an inbound gossip stream
        arriving before Pubsub runs crashes libp2p 0.8.1."""
        async with background_trio_service(self._pubsub), background_trio_service(self._router):
            yield

    def subscribe(
        self, name: str, validator: Validator
    ) -> trio.MemoryReceiveChannel[GossipMessage]:
        check_name("topic name", name)
        if name in self._topics:
            raise DuplicateRegistration(f"topic {name!r} is already subscribed")
        send, receive = trio.open_memory_channel[GossipMessage](self._config.delivery_buffer)
        topic = _Topic(name, topic_id(self._network_id, name), validator, send)
        self._topics[name] = topic
        self._by_topic_id[topic.topic_id] = topic
        self._pubsub.set_topic_validator(
            topic.topic_id, self._libp2p_validator(topic), is_async_validator=False
        )
        if self._nursery is not None:
            self._nursery.start_soon(self._join, topic)
        return receive

    async def start(self, nursery: trio.Nursery) -> None:
        """Join every topic subscribed so far; later subscriptions join as they come."""
        self._nursery = nursery
        for topic in list(self._topics.values()):
            if not topic.joined:
                await self._join(topic)

    def stop(self) -> None:
        """Close every delivery channel: the node's readers see the end of the stream."""
        self._nursery = None
        for topic in self._topics.values():
            topic.send.close()

    async def _join(self, topic: _Topic) -> None:
        if topic.joined or self._nursery is None:
            return
        topic.joined = True
        # Messages reach us through `_deliver`; the subscription object is not read.
        await self._pubsub.subscribe(topic.topic_id)

    def _deliver(self, message: rpc_pb2.Message) -> None:
        """Hand a validated message to the node, without blocking Pubsub."""
        if message.from_id == self._my_id_bytes:
            return  # libp2p hands our own published messages to our subscriptions
        origin: PeerId | None = None
        for name in message.topicIDs:
            topic = self._by_topic_id.get(name)
            if topic is None:
                continue
            if origin is None:
                origin = PeerId(ID(message.from_id).to_base58())
            try:
                topic.send.send_nowait(GossipMessage(topic.name, origin, message.data))
                self._delivered += 1
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._delivery_dropped += 1
                if self._delivery_dropped % 100 == 1:
                    logger.warning(
                        "gossip topic %s: the node is not reading; %d messages dropped so far",
                        topic.name,
                        self._delivery_dropped,
                    )

    def _libp2p_validator(self, topic: _Topic) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, message: rpc_pb2.Message) -> bool:
            if forwarder == self._my_id:
                return True  # our own publish: the node made it
            peer = PeerId(forwarder.to_base58())
            verdict = self._judge(topic, peer, message.data)
            topic.verdicts[verdict.value] += 1
            if verdict is Verdict.ACCEPT:
                self._accepted += 1
                return True
            if verdict is Verdict.IGNORE:
                self._ignored += 1
                return False
            self._rejected += 1
            self._penalize(
                peer, self._scoring.reject_penalty, f"gossip message rejected on {topic.name}"
            )
            return False

        return validate

    def _judge(self, topic: _Topic, peer: PeerId, data: bytes) -> Verdict:
        try:
            verdict = topic.validator(peer, data)
        except Exception:  # a raising validator is a REJECT, as documented on `Validator`
            # libp2p runs validators inside Pubsub: an escaping exception stops it and the host.
            self._validator_errors += 1
            logger.exception("validator for topic %s raised; counting it as REJECT", topic.name)
            return Verdict.REJECT
        if not isinstance(verdict, Verdict):
            self._validator_errors += 1
            logger.error(
                "validator for topic %s returned %r, not a Verdict; counting it as REJECT",
                topic.name,
                verdict,
            )
            return Verdict.REJECT
        return verdict

    def _on_malformed(self, peer: PeerId, what: str) -> None:
        self._malformed += 1
        self._penalize(peer, self._scoring.malformed_frame_penalty, what)

    async def publish(self, name: str, data: bytes) -> None:
        """Sign and send `data` on topic `name`; never delivered back to ourselves."""
        if self._nursery is None:
            raise NotRunning("publish needs the running p2p service")
        if len(data) > self._config.max_message_bytes:
            self._refused_oversize += 1
            raise MessageTooLarge(name, len(data), self._config.max_message_bytes)
        topic = topic_id(self._network_id, name)
        async with self._publish_lock:
            await self._wait_for_room()
            await self._pubsub.publish(topic, data)
            self._published += 1

    async def _wait_for_room(self) -> None:
        """Wait while a peer's queue is over the high-water mark: libp2p drops what does not
        fit in it, silently. Peers that do not drain in time are given up on (see QueueWatch)."""
        deadline = trio.current_time() + self._config.backpressure_timeout
        waited = False
        while busy := self._queues.busy(self._pubsub.peer_queues):
            if trio.current_time() >= deadline:
                self._backpressure_timeouts += 1
                self._queues.give_up_on(busy)
                logger.warning(
                    "gossip: %d peer(s) not draining their queue; publishing without them",
                    len(busy),
                )
                break
            waited = True
            await trio.sleep(_BACKPRESSURE_POLL)
        if waited:
            self._backpressure_waits += 1

    async def drain(self) -> None:
        """Wait until every peer's outbound queue is empty: what was published has been handed
        to the connections. For a message that must leave before the node stops."""
        # libp2p's queues signal nothing when they empty: poll them, as `_wait_for_room` does.
        while True:
            if not any(len(queue) for queue in self._pubsub.peer_queues.values()):
                return
            await trio.sleep(_BACKPRESSURE_POLL)

    def stalled_peers(self, now: float) -> list[PeerId]:
        """Peers whose queue stayed over the high-water mark for `stall_timeout` seconds."""
        overdue = self._queues.overdue(self._pubsub.peer_queues, now)
        return [PeerId(peer.to_base58()) for peer in overdue]

    def block(self, peer_id: PeerId) -> None:
        """Stop gossip with a banned peer. Without this, Pubsub reacts to each (refused)
        connection by opening a stream, which dials the peer back."""
        if self._nursery is not None:
            self._pubsub.add_to_blacklist(libp2p_id(peer_id))

    def unblock(self, peer_id: PeerId) -> None:
        self._pubsub.remove_from_blacklist(libp2p_id(peer_id))

    def mesh_peers(self, name: str) -> set[PeerId]:
        mesh = self._router.mesh.get(topic_id(self._network_id, name), set())
        return {PeerId(peer.to_base58()) for peer in mesh}

    def statistics(self) -> GossipStatistics:
        return GossipStatistics(
            topics=len(self._topics),
            published=self._published,
            refused_oversize=self._refused_oversize,
            backpressure_waits=self._backpressure_waits,
            backpressure_timeouts=self._backpressure_timeouts,
            accepted=self._accepted,
            ignored=self._ignored,
            rejected=self._rejected,
            validator_errors=self._validator_errors,
            delivered=self._delivered,
            delivery_dropped=self._delivery_dropped,
            malformed=self._malformed,
            stalled_peers=self._queues.stalled,
            verdicts={t.name: dict(t.verdicts) for t in self._topics.values() if t.verdicts},
        )
