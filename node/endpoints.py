"""Where each application's ready replicas can be reached, for the ingress proxy and DNS of every
node.

Each node with compute signs an *advertisement* of the replicas it runs whose readiness probes
pass (a replica without one is ready once running) and gossips it whenever that set changes and
every `refresh_seconds`; a node's advertisement lapses `ttl_seconds` after the last one arrived,
and a node withdraws its replicas when it shuts down. An advertisement is the node's whole set,
so the newest one replaces what came before and a lost message is repaired by the next.

The routes combine these with the finalized chain state: an application's ingress host and rules
(from its current revision), its service ports (from each replica's own revision, which matters
during a rolling update), and the placement. A node can only advertise what the chain placed on
it: anything else in its advertisement is not routed."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from chain import codec
from chain.runtime import apps, nodes
from chain.signature import verify
from chain.state import StateReader
from node.manifests import ManifestCache
from node.wire import WireError
from node.workloads import WorkloadService
from orchestrator.ingress import Backend, Route, RouteTable, normalize_prefix
from p2p.gossip import GossipMessage, Verdict
from p2p.host import P2PService
from p2p.identity import PeerId
from wallet.keys import Keypair

log = logging.getLogger("statemesh.endpoints")

TOPIC_ENDPOINTS = "endpoints"
ADVERT_DOMAIN = b"statemesh/endpoints/v1:"
MAX_ADVERT_REPLICAS = 4096
MAX_APP_NAME = 253
WITHDRAW_SECONDS = 1.0
"""How long a node that shuts down waits to tell peers its replicas are gone."""
MAX_CLOCK_AHEAD_MS = 60_000
"""An advertisement issued further in the future than this is not believed (yet)."""


@dataclass(frozen=True, slots=True, order=True)
class ReadyReplica:
    app: str
    revision: int
    replica: int


@dataclass(frozen=True, slots=True)
class Advertisement:
    """A node's ready replicas and the address they listen on, signed by its node key."""

    node_id: bytes
    issued_ms: int
    """Wall-clock milliseconds; strictly increasing per node."""
    address: str
    """An IP address literal."""
    ready: tuple[ReadyReplica, ...]
    signature: bytes = b""

    def payload(self) -> bytes:
        return ADVERT_DOMAIN + codec.encode(
            [
                self.node_id,
                codec.encode_uint(self.issued_ms),
                self.address.encode(),
                [
                    [r.app.encode(), codec.encode_uint(r.revision), codec.encode_uint(r.replica)]
                    for r in self.ready
                ],
            ]
        )

    @classmethod
    def signed(
        cls, identity: Keypair, issued_ms: int, address: str, ready: Iterable[ReadyReplica]
    ) -> Advertisement:
        unsigned = cls(identity.public, issued_ms, address, tuple(sorted(set(ready))))
        return cls(
            unsigned.node_id,
            issued_ms,
            address,
            unsigned.ready,
            identity.sign(unsigned.payload()),
        )

    def verify(self) -> bool:
        return verify(self.node_id, self.payload(), self.signature)

    def encode(self) -> bytes:
        return codec.encode([self.payload()[len(ADVERT_DOMAIN) :], self.signature])


def decode_advertisement(data: bytes) -> Advertisement:
    """Bytes from a peer as an advertisement (signature not yet checked); `WireError` if not."""
    try:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], bytes):
            raise WireError("an advertisement is [body, signature]")
        body, signature = codec.decode(item[0]), item[1]
        if (
            not isinstance(body, list)
            or len(body) != 4
            or not isinstance(body[3], list)
            or not isinstance(signature, bytes)
            or not isinstance(body[0], bytes)
            or not isinstance(body[2], bytes)
        ):
            raise WireError("an advertisement body is [node id, issued, address, replicas]")
        node_id, address_bytes, entries = body[0], body[2], body[3]
        if len(node_id) != 32 or len(signature) != 64:
            raise WireError("a node id is 32 bytes and a signature 64")
        if len(entries) > MAX_ADVERT_REPLICAS:
            raise WireError(f"more than {MAX_ADVERT_REPLICAS} replicas in an advertisement")
        address = _address(address_bytes)
        ready = []
        for entry in entries:
            if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], bytes):
                raise WireError("a ready replica is [app, revision, replica]")
            if not 0 < len(entry[0]) <= MAX_APP_NAME:
                raise WireError("an application name is 1 to 253 bytes")
            ready.append(
                ReadyReplica(
                    entry[0].decode("ascii"),
                    codec.uint(entry[1], "revision"),
                    codec.uint(entry[2], "replica"),
                )
            )
        advert = Advertisement(
            node_id, codec.uint(body[1], "issued"), address, tuple(ready), signature
        )
    except (codec.CodecError, UnicodeDecodeError) as exc:
        raise WireError(f"not an advertisement: {exc}") from None
    if advert.encode() != data:
        raise WireError("an advertisement is not in canonical form")
    return advert


def _address(raw: bytes) -> str:
    try:
        if len(raw) <= 45:
            return str(ipaddress.ip_address(raw.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        pass
    raise WireError(f"{raw[:64]!r} is not an IP address")


class AdvertBook:
    """The newest advertisement of each node, until it lapses."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._adverts: dict[bytes, tuple[Advertisement, float]] = {}
        self._next_check = -float("inf")
        self.version = 0
        """Changes whenever what `fresh` returns may have changed."""

    def newer(self, advert: Advertisement) -> bool:
        kept = self._adverts.get(advert.node_id)
        return kept is None or advert.issued_ms > kept[0].issued_ms

    def offer(self, advert: Advertisement, now: float) -> bool:
        """Keep `advert` if it is the node's newest; True if it was."""
        if not self.newer(advert):
            return False
        kept = self._adverts.get(advert.node_id)
        self._adverts[advert.node_id] = (advert, now)
        if kept is None or kept[0].ready != advert.ready or kept[0].address != advert.address:
            self.version += 1
        return True

    def expire(self, now: float) -> None:
        if now < self._next_check:
            return
        self._next_check = now + min(1.0, self.ttl / 10)
        lapsed = [n for n, (_, at) in self._adverts.items() if now - at > self.ttl]
        for node_id in lapsed:
            advert, _ = self._adverts.pop(node_id)
            log.info("endpoints of node %s lapsed", advert.node_id.hex()[:12])
        if lapsed:
            self.version += 1

    def fresh(self) -> list[Advertisement]:
        return [advert for advert, _ in self._adverts.values()]


ReadyByNode = Mapping[bytes, tuple[str, frozenset[ReadyReplica]]]
"""node id -> (its address, its ready replicas)."""


def build_routes(state: StateReader, manifests: ManifestCache, ready: ReadyByNode) -> RouteTable:
    """The ingress routes of every application with an ingress, and their ready backends."""
    hosts: dict[str, list[Route]] = {}
    for name in apps.app_names(state):
        record = apps.get_app(state, name)
        current = manifests.get(state, name, record.revision) if record is not None else None
        if current is None or current.spec.ingress is None:
            continue
        placement = apps.placement(state, name)
        for rule in current.spec.ingress.rules:
            backends: set[Backend] = set()
            for entry in placement:
                on = ready.get(entry.node)
                if on is None or ReadyReplica(name, entry.revision, entry.index) not in on[1]:
                    continue
                own = manifests.get(state, name, entry.revision)
                service = own.spec.service if own is not None else None
                target = next(
                    (
                        p.target_port
                        for p in (service.ports if service is not None else ())
                        if p.port == rule.service_port and p.protocol.value == "TCP"
                    ),
                    None,
                )
                if target is not None:
                    backends.add(Backend(on[0], target))
            hosts.setdefault(current.spec.ingress.host, []).append(
                Route(name, normalize_prefix(rule.path), tuple(sorted(backends)))
            )
    return RouteTable(hosts)


def local_ready(workloads: WorkloadService | None) -> frozenset[ReadyReplica]:
    """The replicas this node runs that pass their readiness probes."""
    controller = workloads.controller if workloads is not None else None
    if controller is None:
        return frozenset()
    return frozenset(
        ReadyReplica(key.app, status.revision, key.replica)
        for key, status in controller.status().items()
        if status.ready
    )


class EndpointService:
    """Advertises this node's ready replicas, collects everyone's, and keeps the route table."""

    def __init__(
        self,
        finalized: Callable[[], bytes],
        state_at: Callable[[bytes], StateReader],
        identity: Keypair,
        address: str,
        workloads: WorkloadService | None,
        *,
        refresh_seconds: float = 10.0,
        ttl_seconds: float = 30.0,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._finalized = finalized
        self._state_at = state_at
        self.identity = identity
        self.address = str(ipaddress.ip_address(address))
        self.workloads = workloads
        self.refresh_seconds = refresh_seconds
        self.book = AdvertBook(ttl_seconds)
        self._wall_ms = wall_ms
        self._monotonic = monotonic
        self._manifests = ManifestCache()
        self._p2p: P2PService | None = None
        self._inbox: trio.MemoryReceiveChannel[GossipMessage] | None = None
        self._local: frozenset[ReadyReplica] = frozenset()
        self._local_version = 0
        self._last_issued = 0
        self._published: frozenset[ReadyReplica] = frozenset()
        self._withdrawn = False
        self._memo: tuple[tuple[bytes, int, int], RouteTable] | None = None
        self.published = 0

    # -- gossip ----------------------------------------------------------------------------

    def register(self, p2p: P2PService) -> None:
        self._p2p = p2p
        self._inbox = p2p.subscribe(TOPIC_ENDPOINTS, self._check)

    def _check(self, peer: PeerId, data: bytes) -> Verdict:
        try:
            advert = decode_advertisement(data)
        except WireError as exc:
            log.debug("bad advertisement from %s: %s", peer, exc)
            return Verdict.REJECT
        if not advert.verify():
            return Verdict.REJECT
        return self._judge(advert)

    def _judge(self, advert: Advertisement) -> Verdict:
        now_ms = self._wall_ms()
        if advert.node_id == self.identity.public or not self.book.newer(advert):
            return Verdict.IGNORE
        if advert.issued_ms > now_ms + MAX_CLOCK_AHEAD_MS:
            return Verdict.IGNORE
        if advert.issued_ms < now_ms - int(self.book.ttl * 1000):
            return Verdict.IGNORE
        if nodes.get_node(self._state_at(self._finalized()), advert.node_id) is None:
            # Perhaps registered in a block this node has not finalized yet.
            return Verdict.IGNORE
        return Verdict.ACCEPT

    async def _receive(self) -> None:
        assert self._inbox is not None
        async with self._inbox:
            async for message in self._inbox:
                try:
                    advert = decode_advertisement(message.data)
                except WireError:
                    continue
                if self.book.offer(advert, self._monotonic()):
                    log.debug(
                        "node %s advertises %d ready replicas",
                        advert.node_id.hex()[:12],
                        len(advert.ready),
                    )

    def _advert(self, ready: Iterable[ReadyReplica]) -> Advertisement:
        issued = max(self._wall_ms(), self._last_issued + 1)
        self._last_issued = issued
        return Advertisement.signed(self.identity, issued, self.address, ready)

    async def _publish(self, ready: frozenset[ReadyReplica]) -> None:
        self._published = ready
        if self._p2p is None:
            return
        try:
            await self._p2p.publish(TOPIC_ENDPOINTS, self._advert(ready).encode())
            self.published += 1
        except Exception as exc:  # a failed publish is retried at the next refresh
            log.info("could not advertise endpoints: %s", exc)

    async def _advertise(self) -> None:
        """Publish the local ready set when it changes (bursts coalesced over 0.2 s), and again
        every refresh while it is not empty; a node with nothing ready stays quiet."""
        published_at = -float("inf")
        while not self._withdrawn:
            ready = local_ready(self.workloads)
            if ready != self._local:
                self._local = ready
                self._local_version += 1
            due = published_at + self.refresh_seconds
            if ready != self._published or (ready and trio.current_time() >= due):
                await self._publish(ready)
                published_at = trio.current_time()
                await trio.sleep(0.2)
                continue
            controller = self.workloads.controller if self.workloads is not None else None
            # Until the workload service has its controller, look again soon.
            wait = due - trio.current_time() if ready else self.refresh_seconds
            with trio.move_on_after(max(wait, 0.0) if controller else 0.5):
                if controller is not None:
                    await controller.changed()
                else:
                    await trio.sleep_forever()

    async def withdraw(self) -> None:
        """Before shutting down: tell the network this node's replicas are gone (peers would
        otherwise route to them until the advertisement lapses)."""
        self._withdrawn = True
        if self._published and self._p2p is not None:
            with trio.move_on_after(WITHDRAW_SECONDS):
                await self._publish(frozenset())
                await self._p2p.drain()
                # Out of the queue is not yet on the wire: let the writers finish.
                await trio.sleep(0.05)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self._inbox is not None:
                nursery.start_soon(self._receive)
            if self.workloads is not None:
                nursery.start_soon(self._advertise)
            task_status.started()

    # -- routes ----------------------------------------------------------------------------

    def ready_by_node(self) -> dict[bytes, tuple[str, frozenset[ReadyReplica]]]:
        ready = {a.node_id: (a.address, frozenset(a.ready)) for a in self.book.fresh()}
        ready[self.identity.public] = (self.address, self._local)
        return ready

    def routes(self) -> RouteTable:
        """The current route table; rebuilt only when the finalized state, an advertisement or
        this node's readiness changed."""
        self.book.expire(self._monotonic())
        finalized = self._finalized()
        key = (finalized, self.book.version, self._local_version)
        if self._memo is None or self._memo[0] != key:
            state = self._state_at(finalized)
            self._memo = (key, build_routes(state, self._manifests, self.ready_by_node()))
        return self._memo[1]

    def lookup(self, name: str) -> tuple[str, ...] | None:
        """DNS: the addresses serving ingress host `name`, or None if no application has it."""
        table = self.routes()
        if name not in table.hosts:
            return None
        return table.addresses(name)
