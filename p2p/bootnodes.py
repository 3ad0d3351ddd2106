"""The reconnect loop: stay connected to every bootnode, redialing with a capped back-off.

libp2p's own bootstrap gives up on a peer after ~30 s of downtime, and a failed dial is refused
for 60 s by its negative cache; this loop lifts that cache before each of its own attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.swarm import Swarm
from libp2p.peer.peerinfo import PeerInfo

from p2p.addresses import Bootnode
from p2p.config import DialConfig
from p2p.identity import PeerId, libp2p_id
from p2p.peers import PeerTable

logger = logging.getLogger(__name__)


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """initial, 2*initial, 4*initial, ... capped at maximum, forever."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)


@dataclass(frozen=True, slots=True)
class DialStatistics:
    bootnodes: int
    attempts: int
    successes: int
    failures: int


class BootnodeDialer:
    def __init__(
        self,
        host: IHost,
        bootnodes: tuple[Bootnode, ...],
        config: DialConfig,
        table: PeerTable,
        ban_remaining: Callable[[PeerId], float],
        handshake_timeout: float,
    ) -> None:
        own = PeerId(host.get_id().to_base58())
        self._host = host
        self._bootnodes = tuple(node for node in bootnodes if node.peer_id != own)
        self._config = config
        self._table = table
        self._ban_remaining = ban_remaining
        self._handshake_timeout = handshake_timeout
        self._attempts = 0
        self._successes = 0
        self._failures = 0

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for bootnode in self._bootnodes:
                nursery.start_soon(self._keep_connected, bootnode)

    async def _keep_connected(self, bootnode: Bootnode) -> None:
        delays = backoff_delays(self._config.initial_backoff, self._config.max_backoff)
        while True:
            banned_for = self._ban_remaining(bootnode.peer_id)
            if banned_for > 0:
                await trio.sleep(banned_for)
                continue
            if self._table.is_connected(bootnode.peer_id):
                await self._table.wait_disconnected(bootnode.peer_id)
                delays = backoff_delays(self._config.initial_backoff, self._config.max_backoff)
                continue
            # Only a finished handshake counts: a peer that accepts and then drops us (it
            # banned us, or runs another network) must see us back off, not redial at once.
            if await self._dial(bootnode) and await self._handshake(bootnode.peer_id):
                self._successes += 1
                logger.info("connected to bootnode %s", bootnode)
                delays = backoff_delays(self._config.initial_backoff, self._config.max_backoff)
            else:
                self._failures += 1
                await trio.sleep(next(delays))

    async def _handshake(self, peer_id: PeerId) -> bool:
        with trio.move_on_after(self._handshake_timeout):
            return await self._table.wait_handshake(peer_id)
        return False

    async def _dial(self, bootnode: Bootnode) -> bool:
        peer = libp2p_id(bootnode.peer_id)
        network = self._host.get_network()
        if isinstance(network, Swarm):
            network.unblock_peer(peer)
        self._attempts += 1
        try:
            with trio.fail_after(self._config.dial_timeout):
                await self._host.connect(PeerInfo(peer, [multiaddr.Multiaddr(bootnode.transport)]))
        except (BaseLibp2pError, OSError, trio.TooSlowError) as error:
            logger.debug("bootnode %s unreachable: %r", bootnode, error)
            return False
        return True

    def statistics(self) -> DialStatistics:
        return DialStatistics(
            bootnodes=len(self._bootnodes),
            attempts=self._attempts,
            successes=self._successes,
            failures=self._failures,
        )
