"""The node's Prometheus metrics: a collector that reads the services' statistics and the
chain's state at scrape time, and the histograms and counters observed as events happen.

Every label value is bounded: topics are the node's own, RPC methods the registered ones
(anything else is "unknown"), apps and replicas only those this node runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chain.runtime import epochs, nodes, towers
from chain.runtime.nodes import NodeStatus
from orchestrator.events import EventKind

if TYPE_CHECKING:
    # Only named in annotations: the services bring libp2p, which the client commands (they
    # read the metrics server's defaults) need not import.
    from consensus.chain_service import ChainService
    from consensus.finality_service import FinalityService
    from consensus.network_service import NetworkService
    from orchestrator.controller import ControllerStatistics
    from orchestrator.disk_pressure import DiskPressureMonitor
    from orchestrator.events import EventLog
    from orchestrator.metering import Meter
    from vdf.presence import PresenceService
    from wallet.committee import WalletService

PREFIX = "statemesh"
UNKNOWN_METHOD = "unknown"
BLOCK_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RPC_SECONDS_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class ReplicaReadings(Protocol):
    """What the collector reads of the orchestrator's controller."""

    @property
    def meter(self) -> Meter: ...

    @property
    def events(self) -> EventLog: ...

    def statistics(self) -> ControllerStatistics: ...


class WorkloadReadings(Protocol):
    """The workload service as the collector sees it: its controller once the engine answered."""

    @property
    def controller(self) -> ReplicaReadings | None: ...


@dataclass(slots=True)
class MetricSources:
    """What the collector reads at each scrape; None for the services a node does not run."""

    chain: ChainService
    network: NetworkService | None = None
    finality: FinalityService | None = None
    presence: PresenceService | None = None
    workloads: WorkloadReadings | None = None
    disk: DiskPressureMonitor | None = None
    wallet: WalletService | None = None


class NodeMetrics:
    """One node's registry (never the process-global one: tests run several nodes in one
    process). Services report timed events through `observe_block` and `rpc_call`."""

    def __init__(
        self,
        sources: MetricSources,
        *,
        rpc_methods: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`registry`: the node's, which other services may export to as well (the ingress
        proxy and DNS); a new one if None."""
        self.registry = CollectorRegistry(auto_describe=False) if registry is None else registry
        self.sources = sources
        """What the collector reads: services may be added as they start."""
        self._methods = frozenset(rpc_methods)
        self.block_import = Histogram(
            f"{PREFIX}_block_import_seconds",
            "Time to check, execute and store a block from elsewhere.",
            buckets=BLOCK_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.block_authoring = Histogram(
            f"{PREFIX}_block_authoring_seconds",
            "Time to build, execute and store a block of our own.",
            buckets=BLOCK_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.rpc_calls = Counter(
            f"{PREFIX}_rpc_calls",
            "JSON-RPC calls by method.",
            ["method"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            f"{PREFIX}_rpc_call_seconds",
            "Time to answer a JSON-RPC call, by method.",
            ["method"],
            buckets=RPC_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.collector = NodeCollector(sources)
        self.registry.register(self.collector)

    def read_on_loop(self) -> None:
        """Take, on the node's trio thread, what the collector cannot read from the exporter's
        worker thread (see `NodeCollector.read_on_loop`). The exporter calls it before each
        scrape it hands to that thread."""
        self.collector.read_on_loop()

    def observe_block(self, kind: str, seconds: float) -> None:
        """A block imported ("import") or authored ("authoring") in `seconds`."""
        if kind == "import":
            self.block_import.observe(seconds)
        elif kind == "authoring":
            self.block_authoring.observe(seconds)

    def method_label(self, method: str) -> str:
        """The method's name if it is registered, else "unknown": clients choose the names."""
        return method if method in self._methods else UNKNOWN_METHOD

    @contextlib.contextmanager
    def rpc_call(self, method: str) -> Iterator[None]:
        """Count and time one call of `method` (failed calls too)."""
        label = self.method_label(method)
        self.rpc_calls.labels(label).inc()
        with self.rpc_seconds.labels(label).time():
            yield


class NodeCollector(Collector):
    """Reads the node's state at each scrape: nothing is copied between scrapes, so a scrape
    costs the reads below and nothing when nobody scrapes. It runs on the exporter's worker
    thread, so it only reads (sizes, counters, the store, which worker threads read anyway)."""

    def __init__(self, sources: MetricSources) -> None:
        self._sources = sources
        self._controller_readings: tuple[object, ControllerStatistics] | None = None
        """The controller's statistics as last read on the loop, with the controller read:
        they reckon back-offs by trio's clock, which only the loop's thread may read."""

    def read_on_loop(self) -> None:
        workloads = self._sources.workloads
        controller = workloads.controller if workloads is not None else None
        self._controller_readings = (
            None if controller is None else (controller, controller.statistics())
        )

    def collect(self) -> Iterable[Metric]:
        yield from self._chain()
        yield from self._network()
        yield from self._presence()
        yield from self._workloads()
        yield from self._wallet()

    def _chain(self) -> Iterator[Metric]:
        chain = self._sources.chain
        stats = chain.statistics()
        height = GaugeMetricFamily(
            f"{PREFIX}_block_height", "Block height by status.", labels=["status"]
        )
        height.add_metric(["best"], stats.best_number)
        height.add_metric(["finalized"], stats.finalized_number)
        yield height
        yield _gauge(
            "finality_lag_blocks",
            "Best block number minus finalized block number.",
            stats.best_number - stats.finalized_number,
        )
        yield _gauge(
            "ready_transactions_number",
            "Transactions in the pool ready to be included.",
            chain.pool.statistics().ready_count,
        )
        finality = self._sources.finality
        if finality is not None:
            yield _gauge("finality_round", "The finality gadget's round.", finality.current_round)
        state = chain.store.best_state()
        epoch = epochs.current_epoch(state)
        yield _gauge("epoch", "The current epoch (best block).", epoch.number)
        yield _gauge("active_nodes", "Nodes in the active set (best block).", epoch.active)

    def _network(self) -> Iterator[Metric]:
        network = self._sources.network
        if network is None:
            return
        p2p = network.p2p.statistics()
        yield _gauge("sub_libp2p_peers_count", "Connected peers.", p2p.peers)
        messages = CounterMetricFamily(
            f"{PREFIX}_gossip_messages",
            "Gossip messages from peers, by topic and validation verdict.",
            labels=["topic", "verdict"],
        )
        for topic, counts in sorted(p2p.gossip.verdicts.items()):
            for verdict, count in sorted(counts.items()):
                messages.add_metric([topic, verdict], count)
        yield messages

    def _presence(self) -> Iterator[Metric]:
        presence = self._sources.presence
        if presence is None:
            return
        state = self._sources.chain.store.best_state()
        tower = towers.get_tower(state, presence.node_id)
        yield _gauge("tower_height", "This node's Time Tower height (best block).", tower.height)
        record = nodes.get_node(state, presence.node_id)
        active = record is not None and record.status is NodeStatus.ACTIVE
        yield _gauge("node_active", "1 if this node is in the active set, else 0.", int(active))
        proofs = CounterMetricFamily(
            f"{PREFIX}_tower_proofs",
            "Time Tower proofs of this node by outcome: made by its prover, then submitted to "
            "the pool or refused by it.",
            labels=["outcome"],
        )
        made = presence.prover.statistics().proofs_made if presence.prover is not None else 0
        proofs.add_metric(["made"], made)
        for outcome in ("submitted", "refused"):
            proofs.add_metric([outcome], presence.proofs_sent[outcome])
        yield proofs

    def _workloads(self) -> Iterator[Metric]:
        disk = self._sources.disk
        if disk is not None:
            yield _gauge(
                "disk_pressure",
                "1 while the engine's data root is above the high water mark.",
                int(disk.under_pressure()),
            )
        workloads = self._sources.workloads
        controller = workloads.controller if workloads is not None else None
        if controller is None:
            return
        readings = self._controller_readings
        if readings is not None and readings[0] is controller:
            stats = readings[1]
        else:  # collected on the loop itself (not through the exporter)
            stats = controller.statistics()
        replicas = GaugeMetricFamily(
            f"{PREFIX}_replicas",
            "This node's replicas by state: desired (assigned), running (sandbox up), "
            "ready (probes pass), busy (an action under way).",
            labels=["state"],
        )
        for state, count in (
            ("desired", stats.desired_replicas),
            ("running", stats.pods),
            ("ready", stats.ready_replicas),
            ("busy", stats.busy_replicas),
        ):
            replicas.add_metric([state], count)
        yield replicas
        totals = controller.events.totals
        for name, documentation, kind in (
            ("replica_restarts", "Restarts of replicas' containers.", EventKind.RESTARTED),
            (
                "probe_failures",
                "Probes that failed their threshold (readiness or liveness).",
                EventKind.UNHEALTHY,
            ),
            ("evictions", "Replicas evicted for their disk use.", EventKind.EVICTED),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=totals[kind])
        memory = GaugeMetricFamily(
            f"{PREFIX}_replica_memory_bytes",
            "Memory of a replica's running containers at the last sample.",
            labels=["app", "replica"],
        )
        cpu = CounterMetricFamily(
            f"{PREFIX}_replica_cpu_seconds",
            "CPU time of a replica's containers on this node.",
            labels=["app", "replica"],
        )
        meter = controller.meter
        for key in meter.replicas():
            usage = meter.usage(key)
            labels = [key.app, str(key.replica)]
            memory.add_metric(labels, usage.memory_bytes)
            cpu.add_metric(labels, usage.cpu_seconds)
        yield memory
        yield cpu

    def _wallet(self) -> Iterator[Metric]:
        wallet = self._sources.wallet
        if wallet is None:
            return
        rounds = CounterMetricFamily(
            f"{PREFIX}_wallet_signing_rounds",
            "Platform-wallet signings this node coordinated, by outcome.",
            labels=["outcome"],
        )
        for outcome in ("signed", "not_enough_signers", "failed"):
            rounds.add_metric([outcome], wallet.signing_rounds[outcome])
        yield rounds


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
