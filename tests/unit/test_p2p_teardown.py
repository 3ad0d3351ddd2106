"""Pubsub's teardown of a blacklisted peer survives the peer's connection dying meanwhile (in
libp2p 0.8.1 that race raised a KeyError that stopped Pubsub and the whole host)."""

from __future__ import annotations

import trio
import trio.lowlevel
from libp2p.peer.id import ID

from p2p.guarded_pubsub import GuardedPubsub
from p2p.identity import NodeKey


class SlowStream:
    """A stream whose reset yields, during which the dead-peer handler runs."""

    def __init__(self, on_reset: object) -> None:
        self.on_reset = on_reset
        self.reset_calls = 0

    async def reset(self) -> None:
        self.reset_calls += 1
        await trio.lowlevel.checkpoint()
        self.on_reset()  # type: ignore[operator]


def test_teardown_tolerates_the_peer_vanishing_during_the_reset() -> None:
    peer = ID.from_pubkey(NodeKey.generate().keypair().public_key)
    pubsub = GuardedPubsub.__new__(GuardedPubsub)  # only the state teardown touches
    pubsub.peer_topics = {"t": {peer}}
    pubsub._peer_subscription_count = {peer: 1}
    pubsub._replayed_recent_topics = {}
    stream = SlowStream(lambda: pubsub.peers.pop(peer))
    pubsub.peers = {peer: stream}  # type: ignore[dict-item]
    trio.run(pubsub._teardown_if_connected, peer)
    assert stream.reset_calls == 1
    assert peer not in pubsub.peers and "t" not in pubsub.peer_topics
