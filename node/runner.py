"""Starting a node: open the database, build genesis, wire the services under one nursery, and
shut everything down cleanly on SIGINT / SIGTERM or when a service fails."""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import trio
from prometheus_client import CollectorRegistry

from chain.address import encode_address
from chain.clock import Clock, SystemClock
from chain.db import Database
from chain.errors import DatabaseError
from chain.genesis import ChainSpec, build_genesis
from chain.keys import Keypair
from chain.pool import DeferredDryRuns, TransactionPool
from chain.primitives import AccountId, Hash32
from chain.runtime.executive import Runtime
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from chain.wire import TOPIC_VOTES
from consensus.chain_service import DRY_RUN_INLINE_BYTES, ChainService
from consensus.evidence import EvidenceReporter
from consensus.finality_service import FinalityService
from consensus.network_service import NetworkService
from node.metrics import MetricSources, NodeMetrics
from node.metrics_server import MetricsServer, PrometheusConfig
from node.rpc import wallet_methods
from node.rpc.exposure import RpcMethods
from node.rpc.ingress_methods import register_ingress_methods
from node.rpc.limits import RpcLimits
from node.rpc.methods import SystemInfo, build_registry
from node.rpc.origins import CorsPolicy
from node.rpc.server import RpcServer
from node.rpc.serving import serve_asgi
from node.rpc.workload_methods import register_workload_methods
from node.secret_source import DeliveredSecrets
from orchestrator.addresses import with_ip
from orchestrator.disk_pressure import DiskPressureMonitor, WaterMarks
from orchestrator.dockerd import EngineStartError, PrivateEngine
from orchestrator.endpoints import EndpointService
from orchestrator.engine_connection import connect_engine
from orchestrator.errors import EngineUnavailable
from orchestrator.firewall import EgressPolicy
from orchestrator.image_gc import ImageGcPolicy
from orchestrator.images import ImageBuildError, import_busybox
from orchestrator.ingress_service import IngressConfig, IngressService
from orchestrator.registry import RegistryError
from orchestrator.replica_specs import DEFAULT_MAX_PIDS
from orchestrator.usage_reporter import UsageReporter
from orchestrator.workloads import DEFAULT_MAX_IMAGE_BYTES, WorkloadService
from p2p.config import P2PConfig
from p2p.host import P2PService
from p2p.identity import NodeKey, resolve_node_key
from vdf.presence import Capacity, PresenceService, check_declared, measure_capacity
from wallet.committee import (
    ChainLedger,
    P2PWalletTransport,
    WalletService,
    registered_address,
)
from wallet.payouts import Payouts, fallover_for
from wallet.secret_delivery import SecretDelivery
from wallet.shares import ShareStore, StoredShare, open_share_store

log = logging.getLogger("statemesh.node")

VERSION = "0.1.0"
STATUS_INTERVAL = 2.0
"""Seconds between status exchanges with each peer: how soon sync sees a peer ahead."""
STATUS_TIMEOUT = 10.0
"""A busy peer may be slow to answer; it is dropped only after this long."""
ENGINE_PROBE_SECONDS = 5.0
"""How long a dev node waits for an answer at the default socket before it starts its own."""
DEV_IMAGE = "busybox"
"""The image a dev node's private engine serves from its own registry (these machines reach no
public one): the one docs/examples/web.yaml runs."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    spec: ChainSpec
    base_path: Path
    name: str
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 9944
    signer: Keypair | None = field(default=None, repr=False)
    rpc_limits: RpcLimits = field(default_factory=RpcLimits)
    rpc_methods: RpcMethods = RpcMethods.AUTO
    """Whether the RPC serves unsafe methods (auto: only while it listens on loopback)."""
    rpc_cors: CorsPolicy = field(default_factory=CorsPolicy.default)
    """Web origins allowed to call the RPC."""
    p2p_port: int = 30333
    """0 picks a free port."""
    bootnodes: tuple[str, ...] = ()
    node_key_hex: str | None = field(default=None, repr=False)
    node_key_file: Path | None = None
    genesis_shares: tuple[tuple[bytes, StoredShare], ...] = field(default=(), repr=False)
    """(group key, share) of genesis wallets this node may hold (a dev node's dev wallet): kept
    in the share store when this node is in the wallet's genesis committee and has none yet."""
    network: bool = True
    operator: Keypair | None = field(default=None, repr=False)
    """With an operator, the node registers itself and proves presence (Time Tower)."""
    node_class: str = "cpu"
    capacity: Capacity | None = None
    """Declared capacity; None means what the machine has."""
    vdf_iterations: int | None = None
    docker_host: str | None = None
    """The engine that runs this node's replicas (default: DOCKER_HOST, then the local socket)."""
    compute: bool = True
    """Offer compute (run assigned replicas) when registered and an engine answers."""
    workload_egress: EgressPolicy = EgressPolicy.ALLOW
    """Whether replicas may reach the outside world (never the host or private ranges)."""
    private_engine: bool = False
    """A dev node that named no engine: with compute on and no engine answering at the default
    socket, start a private dockerd under the base path (`<base>/docker`) and run on it."""
    node_ip: str = "127.0.0.1"
    """The address other nodes reach this node's replicas at (advertised with them)."""
    allow_private_endpoints: bool = False
    """For private clusters: route to peers' replicas (and advertise this node's) at private
    addresses (10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15, fc00::/7)."""
    ingress: IngressConfig | None = None
    """The ingress proxy and DNS (the CLI serves them by default); None serves neither."""
    max_pids: int = DEFAULT_MAX_PIDS
    """No replica gets more processes and threads, all its containers together, whatever its
    manifest says."""
    disk_marks: WaterMarks = field(default_factory=WaterMarks)
    """When the engine's data root is too full: the node then declares no more disk than is
    placed on it, until it is below the low mark again."""
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    """An image larger than this once pulled is refused and removed again."""
    allow_private_registries: bool = False
    """Whether tenants' images may come from registries on loopback, private or link-local
    addresses (by default only public registries, and Docker Hub names through the engine)."""
    image_gc: ImageGcPolicy = field(default_factory=ImageGcPolicy)
    """When unused images this node pulled are removed (kubelet's image GC marks)."""
    checkpoint: tuple[int, Hash32] | None = None
    """A block number and hash the chain must have (weak subjectivity): sync refuses peers
    whose chain differs there, and a database whose finalized chain differs is not opened.
    None takes the chain spec's."""
    prometheus: PrometheusConfig | None = None
    """Where the Prometheus exporter listens (the CLI serves it by default); None: nowhere."""

    @property
    def sync_checkpoint(self) -> tuple[int, Hash32] | None:
        return self.checkpoint if self.checkpoint is not None else self.spec.checkpoint

    @property
    def chain_path(self) -> Path:
        return self.base_path / "chains" / self.spec.id

    @property
    def db_path(self) -> Path:
        return self.chain_path / "db"


@dataclass(slots=True)
class Node:
    """The assembled node; `run` serves until cancelled."""

    config: NodeConfig
    db: Database
    store: ChainStore
    chain: ChainService
    rpc: RpcServer
    network: NetworkService | None
    finality: FinalityService | None
    presence: PresenceService | None
    workloads: WorkloadService | None
    usage: UsageReporter | None
    endpoints: EndpointService
    ingress: IngressService | None
    engine: PrivateEngine | None = None
    """The private engine this node started, stopped when it exits."""
    disk: DiskPressureMonitor | None = None
    """Watches the engine's data root while the node offers compute."""
    wallet: WalletService | None = None
    """Creates the platform wallets this node coordinates, as the finalized chain asks."""
    evidence: EvidenceReporter | None = None
    """Reports the equivocations this node sees to the chain."""
    metrics: MetricsServer | None = None
    """Serves the node's Prometheus metrics."""

    @classmethod
    def open(cls, config: NodeConfig, *, clock: Clock | None = None) -> Node:
        spec = config.spec
        clock = clock or SystemClock()
        db = Database(config.db_path)
        try:
            store = ChainStore(db)
            genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
            store.initialize(genesis)
            check_checkpoint(store, config.sync_checkpoint)
            runtime = Runtime(spec.runtime, genesis.hash)
            chain: ChainService
            pool = TransactionPool(
                lambda encoded: chain.validate(encoded),
                revalidator=lambda valid: chain.revalidate(valid),
                deferred=DeferredDryRuns(
                    recheck=lambda valid: chain.recheck(valid), above_bytes=DRY_RUN_INLINE_BYTES
                ),
            )
            chain = ChainService(
                store=store,
                runtime=runtime,
                pool=pool,
                clock=clock,
                slot_duration_ms=spec.slot_duration_ms,
                signer=config.signer,
            )
            node_key = resolve_node_key(
                config.base_path,
                node_key_hex=config.node_key_hex,
                node_key_file=config.node_key_file,
            )
            network, finality = _network(config, chain, genesis.hash, clock, node_key)
            evidence = _evidence(config, chain, finality)
            presence = _presence(config, chain, node_key)
            workloads = (
                WorkloadService(
                    chain,
                    Keypair.from_seed(node_key.seed).public,
                    spec.id,
                    config.docker_host,
                    egress=config.workload_egress,
                    max_pids=config.max_pids,
                    max_image_bytes=config.max_image_bytes,
                    allow_private_registries=config.allow_private_registries,
                    image_gc=config.image_gc,
                )
                if presence is not None and config.compute
                else None
            )
            if presence is not None:
                # A node declares on chain only the compute it can give.
                presence.compute = workloads.offers_compute if workloads else _no_compute
            disk = _disk_pressure(config, workloads)
            if presence is not None and disk is not None:
                presence.disk_pressure = disk.under_pressure
            wallet = _wallet(config, chain, network, node_key)
            if workloads is not None and wallet is not None and network is not None:
                workloads.secrets = _secret_source(chain, network, node_key, wallet, clock)
            endpoints = EndpointService(
                chain,
                Keypair.from_seed(node_key.seed),
                config.node_ip,
                # Without an ingress proxy the node advertises nothing; with port 0, `run` sets
                # the port it bound.
                config.ingress.http_port if config.ingress is not None else 0,
                workloads,
                allow_private=config.allow_private_endpoints,
                manifests=workloads.manifests if workloads is not None else None,
            )
            if network is not None:
                endpoints.register(network.p2p)
            # The one registry the exporter serves, also where the ingress proxy and DNS count.
            metrics_registry = CollectorRegistry(auto_describe=False)
            ingress = (
                IngressService(endpoints, config.ingress, serve_asgi, registry=metrics_registry)
                if config.ingress is not None
                else None
            )
            info = SystemInfo(name=config.name, version=VERSION, spec=spec)
            registry = build_registry(chain, info, network)
            register_workload_methods(
                registry,
                chain,
                workloads,
                node_key=Keypair.from_seed(node_key.seed),
                clock=chain.clock,
                traffic=ingress.proxy.metrics.traffic if ingress is not None else None,
            )
            register_ingress_methods(registry, chain, endpoints)
            if wallet is not None:
                wallet_methods.register(registry, wallet, ChainLedger(chain))
            metrics = _metrics(
                config,
                MetricSources(chain, network, finality, presence, workloads, disk, wallet),
                registry.names(),
                metrics_registry,
            )
            if metrics is not None:
                registry.call_timer = metrics.metrics.rpc_call
                chain.on_timed.append(metrics.metrics.observe_block)
            rpc = RpcServer(
                registry,
                host=config.rpc_host,
                port=config.rpc_port,
                limits=config.rpc_limits,
                methods=config.rpc_methods,
                cors=config.rpc_cors,
            )
        except BaseException:
            db.close()
            raise
        usage = (
            UsageReporter(
                chain,
                workloads,
                operator=presence.operator,
                identity=presence.identity,
            )
            if workloads is not None and presence is not None
            else None
        )
        return cls(
            config,
            db,
            store,
            chain,
            rpc,
            network,
            finality,
            presence,
            workloads,
            usage,
            endpoints,
            ingress,
            disk=disk,
            wallet=wallet,
            evidence=evidence,
            metrics=metrics,
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        try:
            # Before any service starts: a signal while they start stops the node as cleanly as
            # one after (left to trio, it would be a KeyboardInterrupt in whichever task runs).
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        _stop_on_signal, signals, nursery.cancel_scope, self.endpoints
                    )
                    # Before anything imports a block: each leaves large pooled transactions to it.
                    await nursery.start(self.chain.run_revalidation)
                    # The network before the RPC: once the node answers, its p2p address is
                    # known (`system_localListenAddresses`), as a client of a Substrate node
                    # expects.
                    if self.network is not None:
                        listen = await nursery.start(self.network.run)
                        log.info("p2p address %s", listen)
                    address = await nursery.start(self.rpc.run)
                    best = self.store.best_header
                    log.info(
                        "chain %s (%s), genesis 0x%s, best #%d, finalized #%d, database %s",
                        config.spec.name,
                        config.spec.id,
                        self.store.genesis_hash.hex() if self.store.genesis_hash else "?",
                        best.number,
                        self.store.finalized_header.number,
                        config.db_path,
                    )
                    log.info("JSON-RPC on http://%s:%d (HTTP and WebSocket)", *address[:2])
                    own = {int(address[1])}
                    if self.metrics is not None:
                        exporter = await nursery.start(self.metrics.run)
                        log.info("Prometheus exporter on %smetrics", exporter.http_url)
                        own.add(exporter.port)
                    if self.network is not None:
                        own.update(_ports(self.network.p2p.listen_address))
                    if self.finality is not None:
                        await nursery.start(self.finality.run)
                    if self.evidence is not None:
                        await nursery.start(self.evidence.run)
                    if self.presence is not None:
                        if self.network is not None:
                            # Registered on chain: peers take this node's replica advertisements
                            # only at this IP, so it is the one replicas are reached at.
                            self.presence.address = with_ip(
                                self.network.p2p.listen_address, config.node_ip
                            )
                        await nursery.start(self.presence.run)
                    if self.workloads is not None:
                        if config.private_engine:
                            self.engine = await _start_private_engine(config, self.chain.clock)
                            if self.engine is not None:
                                self.workloads.docker_host = self.engine.host
                        await nursery.start(self.workloads.run)
                    if self.disk is not None:
                        await nursery.start(self.disk.run)
                    if self.usage is not None:
                        await nursery.start(self.usage.run)
                    if self.wallet is not None:
                        await nursery.start(self.wallet.run)
                        # Pays the invoices of the wallets this node holds shares of.
                        runtime = config.spec.runtime
                        fallover = fallover_for(
                            runtime.billing.grace_seconds, runtime.wallet_committee_size
                        )
                        payouts = Payouts(self.wallet, ChainLedger(self.chain), fallover=fallover)
                        await nursery.start(payouts.run)
                    if self.ingress is not None:
                        # Before the endpoints advertise: the proxy's port goes with their
                        # advertisements (until then it serves the routes as first built).
                        ingress = await nursery.start(self.ingress.run)
                        self.endpoints.ingress_port = ingress.http[1]
                        own.update((ingress.http[1], ingress.dns[1]))
                    self.endpoints.own_ports = frozenset(own)
                    await nursery.start(self.endpoints.run)
                    if config.signer is not None:
                        if config.signer.public in self.chain.authorities:
                            await nursery.start(self.chain.run_authoring)
                            log.info("authoring as %s", config.signer.address)
                        else:
                            log.warning(
                                "%s is not an authority of this chain: not authoring",
                                config.signer.address,
                            )
                    task_status.started(address)
                    nursery.start_soon(_halt_on_finality_conflict, self.chain)
        finally:
            try:
                if self.engine is not None:
                    # After the services: nothing uses the engine any more. Its replicas
                    # and networks go with it; the controller makes them again next time.
                    with trio.CancelScope(shield=True):
                        await self.engine.stop_async(purge=True)
                        if self.workloads is not None:
                            # Its replicas are gone with it: their host rules may go too.
                            await self.workloads.firewall.remove()
                    log.info("stopped the private Docker engine")
            finally:
                self.db.close()
                log.info("database closed")


async def _start_private_engine(config: NodeConfig, clock: Clock) -> PrivateEngine | None:
    """The engine a dev node starts when no engine answers where it looked: a private dockerd
    under the base path with the example's busybox image. None if an engine answers, or if
    this one cannot start (the node then offers no compute and says why)."""
    try:
        found = await connect_engine(config.docker_host, timeout_seconds=ENGINE_PROBE_SECONDS)
    except EngineUnavailable:
        pass
    else:
        found.docker.close()
        return None
    # With a registry of its own as its mirror: replicas' images are always pulled, and no
    # public registry is reachable from a dev machine.
    engine = PrivateEngine(config.base_path / "docker", serve_registry=True, clock=clock)
    try:
        await engine.start_async()
    except EngineStartError as exc:
        log.warning("no engine answers and a private one could not start: %s", exc.message)
        return None
    try:
        try:
            await trio.to_thread.run_sync(_import_dev_image, engine)
        except (EngineStartError, ImageBuildError) as exc:
            log.warning("the private Docker engine has no %s image: %s", DEV_IMAGE, exc)
    except BaseException:
        # Stopped (a signal) before the engine is handed over: nobody else would stop it.
        with trio.CancelScope(shield=True):
            await engine.stop_async(purge=True)
        raise
    log.info("started a private Docker engine at %s for this dev node", engine.host)
    return engine


def _import_dev_image(engine: PrivateEngine) -> None:
    """The static busybox, served as `busybox` by the engine's registry. The local copy goes:
    replicas pull it, as they pull every image."""
    with contextlib.closing(engine.client()) as client:
        import_busybox(client, DEV_IMAGE)
        if engine.registry is None:
            log.warning("the private engine has no registry: replicas cannot pull %s", DEV_IMAGE)
            return
        try:
            engine.registry.push(client, DEV_IMAGE, f"library/{DEV_IMAGE}:latest")
        except RegistryError as exc:
            raise ImageBuildError(str(exc)) from None
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(f"{DEV_IMAGE}:latest")
        log.info("the private engine's registry serves %s (the static busybox)", DEV_IMAGE)


def _metrics(
    config: NodeConfig,
    sources: MetricSources,
    methods: list[str],
    registry: CollectorRegistry,
) -> MetricsServer | None:
    if config.prometheus is None:
        return None
    metrics = NodeMetrics(sources, rpc_methods=methods, registry=registry)
    return MetricsServer(metrics, config.prometheus)


def _disk_pressure(
    config: NodeConfig, workloads: WorkloadService | None
) -> DiskPressureMonitor | None:
    """The watch on the engine's data root, for a node that runs replicas: the engine it uses
    is read at each look (a dev node's private engine starts after the node is built)."""
    if workloads is None:
        return None
    return DiskPressureMonitor(
        config.disk_marks, lambda: workloads.docker_host, workloads.engine_data_root
    )


def _wallet(
    config: NodeConfig, chain: ChainService, network: NetworkService | None, node_key: NodeKey
) -> WalletService | None:
    """The platform-wallet committee member (and coordinator of the requests the chain gives
    it, registered from the operator account): it talks over p2p."""
    if network is None:
        return None
    ledger = ChainLedger(chain)
    identity = Keypair.from_seed(node_key.seed)
    shares = open_share_store(
        config.chain_path,
        config.operator,
        node_key.seed,
        live_chain=config.spec.chain_type == "Live",
    )
    _keep_genesis_shares(config, identity.public, shares)
    service = WalletService(
        identity=identity,
        ledger=ledger,
        shares=shares,
        transport=P2PWalletTransport(network.p2p, registered_address(ledger)),
        payer=config.operator,
    )
    service.register(network.p2p)
    return service


def _keep_genesis_shares(config: NodeConfig, node_id: bytes, shares: ShareStore) -> None:
    committees = {w.address: w.committee for w in config.spec.wallets}
    for group_key, share in config.genesis_shares:
        if node_id not in committees.get(AccountId(group_key), ()):
            continue
        if config.operator is None:
            log.warning(
                "genesis wallet 0x%s: this node is its committee but has no operator key to "
                "seal its share under; it signs nothing for it", group_key.hex(),
            )  # fmt: skip
            continue
        if shares.load(group_key) is None:
            shares.save(group_key, share)
        log.info(
            "this node holds a share of genesis wallet %s: deploy with --wallet %s to have it pay",
            encode_address(group_key), encode_address(group_key),
        )  # fmt: skip


def _secret_source(
    chain: ChainService,
    network: NetworkService,
    node_key: NodeKey,
    wallet: WalletService,
    clock: Clock,
) -> DeliveredSecrets:
    """Where this node's replicas get their secrets: from the owner's vault members over the
    wallet protocol (this node's own member answered in process when it is one)."""
    ledger = ChainLedger(chain)
    delivery = SecretDelivery(
        identity=Keypair.from_seed(node_key.seed),
        ledger=ledger,
        link=P2PWalletTransport(network.p2p, registered_address(ledger)),
        local=wallet.member.handle,
    )
    return DeliveredSecrets(delivery, clock)


def _evidence(
    config: NodeConfig, chain: ChainService, finality: FinalityService | None
) -> EvidenceReporter | None:
    """Equivocations seen in block import and by the finality gadget, reported to the chain and
    paid by the operator account, else by the authoring key."""
    payer = config.operator or config.signer
    if payer is None:
        return None
    reporter = EvidenceReporter(chain, payer)
    chain.on_equivocation.append(reporter.on_blocks)
    if finality is not None:
        finality.on_equivocation.append(reporter.on_votes)
    return reporter


def _presence(config: NodeConfig, chain: ChainService, node_key: NodeKey) -> PresenceService | None:
    if config.operator is None:
        return None
    measured = measure_capacity(config.base_path)
    declared = config.capacity or measured
    check_declared(declared, measured)
    return PresenceService(
        chain,
        operator=config.operator,
        identity=Keypair.from_seed(node_key.seed),
        node_class=config.node_class,
        capacity=declared,
        address="",
        iterations=config.vdf_iterations,
    )


def _network(
    config: NodeConfig, chain: ChainService, genesis_hash: bytes, clock: Clock, node_key: NodeKey
) -> tuple[NetworkService | None, FinalityService | None]:
    """The p2p host, gossip and sync, and (with more than one authority) the finality gadget."""
    if not config.network:
        return None, None
    network: NetworkService | None = None
    p2p = P2PService(
        P2PConfig(
            network_id=genesis_hash.hex()[:16],
            listen_port=config.p2p_port,
            bootnodes=config.bootnodes,
            status_interval=STATUS_INTERVAL,
            status_timeout=STATUS_TIMEOUT,
        ),
        node_key,
        status=lambda: network.status() if network is not None else b"",
        clock=clock,
    )
    finality = None
    if len(chain.authorities) > 1:
        finality = FinalityService(
            chain,
            signer=config.signer,
            publish=lambda vote: p2p.publish(TOPIC_VOTES, vote),
        )
    network = NetworkService(chain, finality, p2p)
    network.sync.checkpoint = config.sync_checkpoint
    return network, finality


def check_checkpoint(store: ChainStore, checkpoint: tuple[int, Hash32] | None) -> None:
    """Refuse a database whose finalized chain has another block at the checkpoint's number."""
    if checkpoint is None:
        return
    number, expected = checkpoint
    if store.finalized_header.number < number:
        return  # sync checks it on the way there
    found = store.canonical_hash(number)
    if found != expected:
        raise DatabaseError(
            f"the database at {store.db.path} has finalized block #{number} "
            f"0x{(found or b'').hex()}, but the checkpoint is 0x{expected.hex()}: it followed "
            "another chain; use another --base-path or `statemesh purge-chain`"
        )


async def _halt_on_finality_conflict(chain: ChainService) -> None:
    """A block proven final that conflicts with ours stops the node, whichever service found
    it (sync, or the finality gadget inside a gossip callback): raising here cancels every
    service between two writes, and the database is closed as it was."""
    await chain.conflict_found.wait()
    if chain.conflict is not None:
        raise chain.conflict


async def _stop_on_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope, endpoints: EndpointService
) -> None:
    async for signum in signals:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        await endpoints.withdraw()
        scope.cancel()
        return


def _no_compute() -> bool:
    return False


def _ports(multiaddr: str) -> set[int]:
    """The TCP ports named in a multiaddr."""
    parts = multiaddr.split("/")
    return {int(p) for k, p in itertools.pairwise(parts) if k == "tcp" and p.isdigit()}
