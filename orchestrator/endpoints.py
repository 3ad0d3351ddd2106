"""Where each application's ready replicas can be reached, for the ingress proxy and DNS of every
node.

Each node with compute signs an *advertisement* of the replicas it runs whose readiness probes
pass (a replica without one is ready once running) and gossips it whenever that set changes and
every `refresh_seconds`; a node's advertisement lapses `ttl_seconds` after the last one arrived,
and a node withdraws its replicas when it shuts down. An advertisement is the node's whole set,
so the newest one replaces what came before and a lost message is repaired by the next. Peers
take an advertisement only at the IP address its node registered on chain, and only where
`AddressPolicy` allows routing (never to a peer's own machine or its cloud's metadata).

The routes combine these with the finalized chain state: an application's ingress host and rules
(from its current revision), its service ports (from each replica's own revision, which matters
during a rolling update), and the placement. A node can only advertise what the chain placed on
it: anything else in its advertisement is not routed."""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

from chain import codec
from chain.blocks import Header
from chain.keys import Keypair
from chain.ledger import Ledger
from chain.runtime import apps, nodes
from chain.runtime.manifest import ingress_prefix
from chain.signature import verify
from chain.state import StateReader
from chain.wire import WireError
from orchestrator.addresses import AddressPolicy, canonical_ip, ip_text, registered_ip
from orchestrator.ingress import Backend, Route, RouteTable
from orchestrator.manifest_cache import ManifestCache
from orchestrator.workloads import WorkloadService
from p2p.gossip import GossipMessage, Verdict
from p2p.host import P2PService
from p2p.identity import PeerId

log = logging.getLogger("statemesh.endpoints")

TOPIC_ENDPOINTS = "endpoints"
ADVERT_DOMAIN = b"statemesh/endpoints/v2:"
MAX_ADVERT_REPLICAS = 4096
MAX_APP_NAME = 253
MIN_REBUILD_SECONDS = 0.05
"""Rebuilds happen at most this often, however fast advertisements arrive."""
WITHDRAW_SECONDS = 1.0
"""How long a node that shuts down waits to tell peers its replicas are gone."""
MIN_ADVERT_INTERVAL_MS = 100
"""A node's advertisements are issued at least this far apart (by its own clock); closer ones
are not taken nor relayed. By issue time, not arrival, so network jitter drops nothing."""
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
    """An IP address literal, in canonical form."""
    ingress_port: int
    """The TCP port of the node's ingress proxy, 1 to 65535."""
    ready: tuple[ReadyReplica, ...]
    signature: bytes = b""

    def payload(self) -> bytes:
        return ADVERT_DOMAIN + codec.encode(
            [
                self.node_id,
                codec.encode_uint(self.issued_ms),
                self.address.encode(),
                codec.encode_uint(self.ingress_port),
                [
                    [r.app.encode(), codec.encode_uint(r.revision), codec.encode_uint(r.replica)]
                    for r in self.ready
                ],
            ]
        )

    @classmethod
    def signed(
        cls,
        identity: Keypair,
        issued_ms: int,
        address: str,
        ingress_port: int,
        ready: Iterable[ReadyReplica],
    ) -> Advertisement:
        unsigned = cls(identity.public, issued_ms, address, ingress_port, tuple(sorted(set(ready))))
        return cls(
            unsigned.node_id,
            issued_ms,
            address,
            ingress_port,
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
            or len(body) != 5
            or not isinstance(body[4], list)
            or not isinstance(signature, bytes)
            or not isinstance(body[0], bytes)
            or not isinstance(body[2], bytes)
        ):
            raise WireError(
                "an advertisement body is [node id, issued, address, ingress port, replicas]"
            )
        node_id, address_bytes, entries = body[0], body[2], body[4]
        if len(node_id) != 32 or len(signature) != 64:
            raise WireError("a node id is 32 bytes and a signature 64")
        if len(entries) > MAX_ADVERT_REPLICAS:
            raise WireError(f"more than {MAX_ADVERT_REPLICAS} replicas in an advertisement")
        address = _address(address_bytes)
        ingress_port = codec.uint(body[3], "ingress port")
        if not 0 < ingress_port <= 65535:
            raise WireError(f"ingress port {ingress_port} is not 1 to 65535")
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
            node_id, codec.uint(body[1], "issued"), address, ingress_port, tuple(ready), signature
        )
    except (codec.CodecError, UnicodeDecodeError) as exc:
        raise WireError(f"not an advertisement: {exc}") from None
    if advert.encode() != data:
        raise WireError("an advertisement is not in canonical form")
    return advert


def node_ip(text: str, *, allow_private: bool = False) -> str:
    """`text` as the address this node's replicas are reached at, in canonical form. ValueError
    unless peers would route to it: the policy of a node at that address (loopback only on a
    network of loopback nodes; private ranges only with `allow_private`) allows it."""
    refused = AddressPolicy.for_node(text, allow_private=allow_private).check(text)
    if refused is not None:
        raise ValueError(f"{text} cannot be dialled by another node: {refused}")
    return ip_text(canonical_ip(text))


def _address(raw: bytes) -> str:
    """An IP address literal from the wire. Only its syntax: what it may be is the policy's
    question (so `::ffff:127.0.0.1` decodes, to be refused as the loopback address it carries)."""
    try:
        if len(raw) <= 45:
            text = raw.decode("ascii")
            canonical_ip(text)  # refuses an IPv6 scope
            return ip_text(ipaddress.ip_address(text))
    except (UnicodeDecodeError, ValueError):
        pass
    raise WireError(f"{raw[:64]!r} is not an IP address of a node")


def registration_mismatch(record: nodes.NodeRecord, address: str) -> str | None:
    """Why a node registered as `record` may not be routed to at `address`, or None: a node is
    reached only at the IP of the address it registered on chain."""
    registered = registered_ip(record.address)
    if registered is None:
        return f"it registered no IP address ({record.address[:64]!r})"
    if registered != canonical_ip(address):
        return f"it registered {registered}"
    return None


class AdvertBook:
    """The newest advertisement of each node, until it lapses."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._adverts: dict[bytes, tuple[Advertisement, float]] = {}
        self._latest: dict[bytes, int] = {}
        """Per node, the highest `issued_ms` taken, kept after it lapses so that an older
        advertisement cannot be replayed (one entry per registered node)."""
        self._next_check = -float("inf")
        self.version = 0
        """Changes whenever what `fresh` returns may have changed."""

    def newer(self, advert: Advertisement) -> bool:
        latest = self._latest.get(advert.node_id)
        return latest is None or advert.issued_ms > latest

    def too_soon(self, advert: Advertisement) -> bool:
        """Whether it was issued less than MIN_ADVERT_INTERVAL_MS after the node's last."""
        latest = self._latest.get(advert.node_id)
        return latest is not None and advert.issued_ms - latest < MIN_ADVERT_INTERVAL_MS

    def offer(self, advert: Advertisement, now: float) -> bool:
        """Keep `advert` if it is the node's newest; True if it was."""
        if not self.newer(advert):
            return False
        kept = self._adverts.get(advert.node_id)
        self._adverts[advert.node_id] = (advert, now)
        self._latest[advert.node_id] = advert.issued_ms
        if kept is None or (kept[0].address, kept[0].ingress_port, kept[0].ready) != (
            advert.address,
            advert.ingress_port,
            advert.ready,
        ):
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

    def next_lapse(self, now: float) -> float:
        """Seconds from `now` until `expire` would drop an advertisement (inf when none is
        held): when the routes must be rebuilt although nothing was heard."""
        if not self._adverts:
            return math.inf
        lapse = min(at for _, at in self._adverts.values()) + self.ttl
        return max(lapse - now, self._next_check - now, 0.0)


class NodeEndpoint(NamedTuple):
    """Where a node's ready replicas are reached."""

    address: str
    ready: frozenset[ReadyReplica]
    ingress_port: int
    """0 for this node when it serves no ingress."""


ReadyByNode = Mapping[bytes, NodeEndpoint]
"""node id -> (its address, its ready replicas, its ingress port)."""


def build_routes(
    state: StateReader,
    manifests: ManifestCache,
    ready: ReadyByNode,
    own: bytes,
    pods: Mapping[ReadyReplica, str],
) -> RouteTable:
    """The ingress routes of every application with an ingress, and their ready backends: a
    replica of node `own` at its pod's address (`pods`), a replica of another node through that
    node's ingress proxy (one backend per node, which spreads over its own replicas)."""
    hosts: dict[str, list[Route]] = {}
    for name in apps.app_names(state):
        record = apps.get_app(state, name)
        current = manifests.get(state, name, record.revision) if record is not None else None
        if current is None or current.spec.ingress is None:
            continue
        holder = apps.host_holder(state, current.spec.ingress.host)
        if holder not in (None, name):
            continue
        placement = apps.placement(state, name)
        for rule in current.spec.ingress.rules:
            backends: set[Backend] = set()
            for entry in placement:
                on = ready.get(entry.node)
                replica = ReadyReplica(name, entry.revision, entry.index)
                if on is None or replica not in on.ready:
                    continue
                if entry.node != own:
                    if on.ingress_port:
                        backends.add(Backend(on.address, on.ingress_port, on.address, relay=True))
                    continue
                own_manifest = manifests.get(state, name, entry.revision)
                service = own_manifest.spec.service if own_manifest is not None else None
                target = next(
                    (
                        p.target_port
                        for p in (service.ports if service is not None else ())
                        if p.port == rule.service_port and p.protocol.value == "TCP"
                    ),
                    None,
                )
                pod = pods.get(replica)
                if target is not None and pod is not None:
                    backends.add(Backend(pod, target, on.address))
            hosts.setdefault(current.spec.ingress.host, []).append(
                Route(name, ingress_prefix(rule.path), tuple(sorted(backends)))
            )
    return RouteTable(hosts)


def local_pods(workloads: WorkloadService | None) -> dict[ReadyReplica, str]:
    """The replicas this node runs that pass their readiness probes, and their pods' addresses."""
    controller = workloads.controller if workloads is not None else None
    if controller is None:
        return {}
    return {
        ReadyReplica(key.app, status.revision, key.replica): status.address
        for key, status in controller.status().items()
        if status.ready and status.address is not None
    }


class EndpointService:
    """Advertises this node's ready replicas, collects everyone's, and keeps the route table."""

    def __init__(
        self,
        ledger: Ledger,
        identity: Keypair,
        address: str,
        ingress_port: int,
        workloads: WorkloadService | None,
        *,
        allow_private: bool = False,
        refresh_seconds: float = 10.0,
        ttl_seconds: float = 30.0,
        manifests: ManifestCache | None = None,
    ) -> None:
        self.ledger = ledger
        """Read at its finalized state, followed through its finalized heads; its clock dates
        advertisements (wall) and their lapse (monotonic)."""
        self.identity = identity
        # ValueError unless peers of this node's kind (loopback or not, private or not) would
        # route to it: a node never advertises what its peers must refuse.
        self.address = node_ip(address, allow_private=allow_private)
        self.policy = AddressPolicy.for_node(self.address, allow_private=allow_private)
        if not 0 <= ingress_port <= 65535:
            raise ValueError(f"ingress port {ingress_port} is not 0 to 65535")
        self.ingress_port = ingress_port
        """0: this node serves no ingress (yet) and advertises nothing. May be set before `run`
        (the bound port, when the proxy was asked for any free one)."""
        self.workloads = workloads
        self.refresh_seconds = refresh_seconds
        self.book = AdvertBook(ttl_seconds)
        # The workload service's, when the node hands it over: one copy of each manifest.
        self._manifests = manifests or ManifestCache()
        self._p2p: P2PService | None = None
        self._inbox: trio.MemoryReceiveChannel[GossipMessage] | None = None
        self._local: frozenset[ReadyReplica] = frozenset()
        self._pods: dict[ReadyReplica, str] = {}
        self._pod_addresses: frozenset[str] = frozenset()
        """The addresses of `_pods`, for the proxy's check on every request."""
        """This node's ready replicas and their pods' addresses."""
        self.own_ports: frozenset[int] = frozenset()
        """This node's own listening ports (RPC, p2p, ...): never a peer's proxy, even on a
        network of loopback nodes where every node shares one address."""
        self._local_version = 0
        self._last_issued = 0
        self._published: frozenset[ReadyReplica] = frozenset()
        self._advertising = trio.CancelScope()
        self._rebuild = trio.Event()
        self._memo: tuple[tuple[bytes, int, int], RouteTable] | None = None
        self._withheld: str | None = None
        """Why this node's own advertisements are not sent, as last found (logged on change)."""
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
        now_ms = self.ledger.clock.now_ms()
        if advert.node_id == self.identity.public or not self.book.newer(advert):
            return Verdict.IGNORE
        refused = self.policy.check(advert.address)
        if refused is None and ipaddress.ip_address(advert.address) != canonical_ip(advert.address):
            # Honest nodes advertise the address itself; an IPv4 address wrapped in an IPv6
            # form (mapped, 6to4, NAT64, Teredo) only serves to slip past a check.
            refused = f"it wraps {canonical_ip(advert.address)} in another form"
        if refused is not None:
            # Whatever the time or the chain says: routing there could reach this node's own
            # machine (its RPC), its cloud's metadata, or nobody.
            log.debug(
                "node %s advertises %s: %s", advert.node_id.hex()[:12], advert.address, refused
            )
            return Verdict.REJECT
        if advert.issued_ms > now_ms + MAX_CLOCK_AHEAD_MS:
            return Verdict.IGNORE
        if advert.issued_ms < now_ms - int(self.book.ttl * 1000):
            return Verdict.IGNORE
        if self.book.too_soon(advert):
            return Verdict.IGNORE
        record = nodes.get_node(self._finalized_state(), advert.node_id)
        if record is None:
            # Perhaps registered in a block this node has not finalized yet.
            return Verdict.IGNORE
        mismatch = registration_mismatch(record, advert.address)
        if mismatch is not None:
            # A registered node claims an address that is not its own: another node's, or one
            # its operator never tied to it.
            log.debug(
                "node %s advertises %s: %s", advert.node_id.hex()[:12], advert.address, mismatch
            )
            return Verdict.REJECT
        return Verdict.ACCEPT

    async def _receive(self) -> None:
        assert self._inbox is not None
        async with self._inbox:
            async for message in self._inbox:
                try:
                    advert = decode_advertisement(message.data)
                except WireError:
                    continue
                if self.book.offer(advert, self.ledger.clock.monotonic()):
                    self._rebuild.set()
                    log.debug(
                        "node %s advertises %d ready replicas",
                        advert.node_id.hex()[:12],
                        len(advert.ready),
                    )

    def _advert(self, ready: Iterable[ReadyReplica]) -> Advertisement:
        issued = max(self.ledger.clock.now_ms(), self._last_issued + MIN_ADVERT_INTERVAL_MS)
        self._last_issued = issued
        return Advertisement.signed(self.identity, issued, self.address, self.ingress_port, ready)

    def _withholding(self) -> str | None:
        """Why peers would reject this node's advertisement (and score it down for it), judging
        by its finalized registration; None when they would not (or cannot tell yet)."""
        record = nodes.get_node(self._finalized_state(), self.identity.public)
        mismatch = registration_mismatch(record, self.address) if record is not None else None
        if mismatch != self._withheld and mismatch is not None:
            log.warning(
                "not advertising this node's replicas at %s: peers refuse it, %s "
                "(they route to a node only at the IP of the address it registered)",
                self.address,
                mismatch,
            )
        self._withheld = mismatch
        return mismatch

    async def _publish(self, ready: frozenset[ReadyReplica]) -> None:
        """Tell peers; what was told is remembered only once it went out, so a failed
        publish is tried again."""
        if self._p2p is not None:
            if self._withholding() is not None:
                # Nothing goes out; looked at again at the next refresh, as if it had.
                self._published = ready
                return
            try:
                await self._p2p.publish(TOPIC_ENDPOINTS, self._advert(ready).encode())
            except Exception as exc:  # tried again at the next turn of the advertise loop
                log.info("could not advertise endpoints: %s", exc)
                return
            self.published += 1
        self._published = ready

    async def _advertise(self) -> None:
        """Publish the local ready set when it changes (bursts coalesced over 0.2 s), and again
        every refresh while it is not empty; a node with nothing ready stays quiet."""
        published_at = -float("inf")
        while True:
            pods = local_pods(self.workloads)
            ready = frozenset(pods)
            if pods != self._pods:
                self._pods = pods
                self._pod_addresses = frozenset(pods.values())
                self._local = ready
                self._local_version += 1
                self._rebuild.set()
            due = published_at + self.refresh_seconds
            advertising = self.ingress_port != 0
            if advertising and (ready != self._published or (ready and trio.current_time() >= due)):
                await self._publish(ready)
                published_at = trio.current_time()
                await trio.sleep(0.2)
                continue
            workloads = self.workloads
            if workloads is None:
                return
            wait = due - trio.current_time() if ready and advertising else self.refresh_seconds
            with trio.move_on_after(max(wait, 0.0)):
                if workloads.controller is not None:
                    await workloads.controller.changed()
                else:
                    # Nothing runs before the engine answers: wait for the controller.
                    await workloads.controller_started.wait()

    async def withdraw(self) -> None:
        """Before shutting down: tell the network this node's replicas are gone (peers would
        otherwise route to them until the advertisement lapses)."""
        self._advertising.cancel()
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
                nursery.start_soon(self._advertising_task)
            # Subscribed before `started`: no block finalized from then on is missed.
            nursery.start_soon(self._follow_finalized, self.ledger.finalized_heads.subscribe())
            nursery.start_soon(self._keep_routes)
            task_status.started()

    async def _advertising_task(self) -> None:
        with self._advertising:
            await self._advertise()

    async def _follow_finalized(self, finalized: trio.MemoryReceiveChannel[Header]) -> None:
        """Each newly finalized block asks for a rebuild (the routes read the finalized state).
        A subscription the broadcast dropped for falling behind is taken again."""
        while True:
            async with finalized:
                async for _ in finalized:
                    self._rebuild.set()
            self._rebuild.set()  # what was missed is read at the next rebuild
            finalized = self.ledger.finalized_heads.subscribe()

    async def _keep_routes(self) -> None:
        """Rebuild the route table off the request path: when a block is finalized, when an
        advertisement or this node's readiness changed, and when an advertisement lapses."""
        while True:
            with trio.move_on_after(self.book.next_lapse(self.ledger.clock.monotonic())):
                await self._rebuild.wait()
            self._rebuild = trio.Event()
            self.refresh()
            await trio.sleep(MIN_REBUILD_SECONDS)

    def _finalized_state(self) -> StateReader:
        store = self.ledger.store
        return store.state_at(store.finalized_header.hash)

    # -- routes ----------------------------------------------------------------------------

    def ready_by_node(self) -> dict[bytes, NodeEndpoint]:
        self.book.expire(self.ledger.clock.monotonic())
        ready = {
            a.node_id: NodeEndpoint(a.address, frozenset(a.ready), a.ingress_port)
            for a in self.book.fresh()
        }
        ready[self.identity.public] = NodeEndpoint(self.address, self._local, self.ingress_port)
        return ready

    def refresh(self) -> RouteTable:
        """Rebuild the route table if the finalized state, an advertisement (or its lapse) or
        this node's readiness changed since it was built."""
        self.book.expire(self.ledger.clock.monotonic())
        store = self.ledger.store
        finalized = store.finalized_header.hash
        key = (finalized, self.book.version, self._local_version)
        if self._memo is None or self._memo[0] != key:
            state = store.state_at(finalized)
            table = build_routes(
                state, self._manifests, self.ready_by_node(), self.identity.public, self._pods
            )
            self._memo = (key, table)
        return self._memo[1]

    def routes(self) -> RouteTable:
        """The route table as last built (kept current by `run`): cheap, for every request."""
        return self._memo[1] if self._memo is not None else self.refresh()

    def may_dial(self, backend: Backend) -> bool:
        """Defence in depth for the proxy: a backend is dialled only if it is a ready pod of
        this node, or the proxy of a node whose current advertisement names it, at an address
        the policy routes to, and never one of this node's own ports on a shared address."""
        if not backend.relay:
            return backend.address in self._pod_addresses
        if self.policy.check(canonical_ip(backend.address)) is not None:
            return False
        if backend.port in self.own_ports and backend.address == self.address:
            return False
        return any(
            a.address == backend.address and a.ingress_port == backend.port
            for a in self.book.fresh()
        )

    def has_below(self, name: str) -> bool:
        return self.routes().has_below(name)

    def lookup(self, name: str) -> tuple[str, ...] | None:
        """DNS: the addresses serving ingress host `name`, or None if no application has it."""
        table = self.routes()
        if name not in table.hosts:
            return None
        return table.addresses(name)
