"""The node's Prometheus exporter: what a dev node serves on /metrics, the bounded labels, and
what the exporter refuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chain.keys import dev_keypair
from chain.runtime.manifest import DEFAULT_ZONE
from node.chain_spec import DEV_AUTHORITY, resolve_spec
from node.errors import sole_cause
from node.metrics import UNKNOWN_METHOD, MetricSources, NodeMetrics
from node.metrics_server import MetricsApp, MetricsServer, MetricsUnavailable, PrometheusConfig
from node.runner import Node, NodeConfig
from orchestrator.controller import ControllerStatistics
from orchestrator.events import EventKind, EventLog
from orchestrator.ingress_service import IngressConfig
from orchestrator.metering import Meter, MeterTarget
from orchestrator.spec import ReplicaKey
from tests.unit.test_chain_service import block_at, open_chain


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_dev_node_serves_its_metrics_and_they_move(tmp_path: Path) -> None:
    config = NodeConfig(
        spec=resolve_spec("dev"),
        base_path=tmp_path,
        name="metrics",
        signer=dev_keypair(DEV_AUTHORITY),
        rpc_port=0,
        network=False,
        ingress=IngressConfig(host="127.0.0.1", http_port=0, dns_port=0, zone=DEFAULT_ZONE),
        prometheus=PrometheusConfig(port=0),
    )
    node = Node.open(config)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            rpc = await nursery.start(node.run)
            assert node.metrics is not None and node.metrics.address is not None
            url = node.metrics.address.http_url + "metrics"
            async with httpx.AsyncClient() as client:
                first = samples((await client.get(url)).text)
                await client.post(
                    rpc.http_url, json={"jsonrpc": "2.0", "id": 1, "method": "chain_getHeader"}
                )
                await client.post(
                    rpc.http_url, json={"jsonrpc": "2.0", "id": 2, "method": "no_such\nmethod"}
                )
                with trio.fail_after(10):
                    while True:
                        reply = await client.get(url)
                        now = samples(reply.text)
                        best = now[("statemesh_block_height", (("status", "best"),))]
                        if best >= first[("statemesh_block_height", (("status", "best"),))] + 2:
                            break
                        await trio.sleep(0.2)
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
            # A dev node finalizes every block at once.
            assert now[("statemesh_block_height", (("status", "finalized"),))] == best
            assert now[("statemesh_finality_lag_blocks", ())] == 0
            assert now[("statemesh_ready_transactions_number", ())] == 0
            assert now[("statemesh_epoch", ())] == 0
            assert now[("statemesh_block_authoring_seconds_count", ())] >= 2
            assert now[("statemesh_rpc_calls_total", (("method", "chain_getHeader"),))] == 1
            assert now[("statemesh_rpc_calls_total", (("method", UNKNOWN_METHOD),))] == 1
            assert now[("statemesh_rpc_call_seconds_count", (("method", "chain_getHeader"),))] == 1
            assert not any("no_such" in str(labels) for _, labels in now)
            # The ingress proxy and DNS count on the registry the exporter serves.
            assert "# TYPE statemesh_dns_queries_total counter" in reply.text
            assert "# TYPE statemesh_ingress_requests_total counter" in reply.text
            # No network, presence or workloads on this node: none of their metrics.
            assert not any(name.startswith("statemesh_sub_libp2p") for name, _ in now)
            assert not any(name.startswith("statemesh_tower") for name, _ in now)
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_block_import_is_timed_and_method_labels_are_bounded(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    metrics = NodeMetrics(MetricSources(chain), rpc_methods=["chain_getHeader"])
    chain.on_timed.append(metrics.observe_block)
    assert metrics.method_label("chain_getHeader") == "chain_getHeader"
    for hostile in ("chain_getheader", "x" * 10_000, 'a"b', ""):
        assert metrics.method_label(hostile) == UNKNOWN_METHOD
    with pytest.raises(ValueError, match="boom"), metrics.rpc_call("chain_getHeader"):
        raise ValueError("boom")  # a failing call is counted and timed too

    trio.run(chain.import_block, block_at(chain, chain.store.best_hash, 1))
    found = samples(generate_latest(metrics.registry).decode())
    assert found[("statemesh_block_import_seconds_count", ())] == 1
    assert found[("statemesh_block_height", (("status", "best"),))] == 1
    assert found[("statemesh_rpc_calls_total", (("method", "chain_getHeader"),))] == 1
    chain.store.db.close()


class Exchange:
    """One request to an ASGI app, and what it answered."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": [], **scope}
        self.sent: list[dict[str, Any]] = []
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        self.read += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def run(self, app: MetricsApp) -> Exchange:
        trio.run(app, self.scope, self.receive, self.send)
        return self

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return bytes(self.sent[1]["body"])


@pytest.fixture
def app(tmp_path: Path) -> MetricsApp:
    chain = open_chain(tmp_path / "db")
    return MetricsApp(NodeMetrics(MetricSources(chain)))


@pytest.mark.parametrize(
    ("scope", "status"),
    [
        ({"path": "/"}, 404),
        ({"path": "/metrics/"}, 404),
        ({"path": "/health"}, 404),
        ({"method": "POST"}, 405),
        ({"method": "DELETE"}, 405),
        ({"headers": [(b"content-length", b"100000000")]}, 413),
        ({"headers": [(b"Transfer-Encoding", b"chunked")]}, 413),
    ],
)
def test_the_exporter_answers_get_metrics_only(
    app: MetricsApp, scope: dict[str, Any], status: int
) -> None:
    exchange = Exchange(scope).run(app)
    assert exchange.status == status
    assert b"statemesh_" not in exchange.body
    assert exchange.read == 0  # no body is ever waited for


def test_a_scrape_and_its_head(app: MetricsApp) -> None:
    got = Exchange({}).run(app)
    assert got.status == 200 and b'statemesh_block_height{status="best"} 0.0' in got.body
    head = Exchange({"method": "HEAD"}).run(app)
    assert head.status == 200 and head.body == b""
    assert app.scrapes == 2


def test_scrapes_beyond_the_limit_are_turned_away(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    busy = MetricsApp(NodeMetrics(MetricSources(chain)), max_concurrent=0)
    got = Exchange({}).run(busy)
    assert got.status == 503
    assert (b"retry-after", b"1") in got.sent[0]["headers"]
    assert busy.refused == 1


def test_a_websocket_is_refused(app: MetricsApp) -> None:
    got = Exchange({"type": "websocket"}).run(app)
    assert got.sent == [{"type": "websocket.close", "code": 1008}]


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    metrics = NodeMetrics(MetricSources(chain))

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            first = MetricsServer(metrics, PrometheusConfig(port=0))
            address = await nursery.start(first.run)
            second = MetricsServer(metrics, PrometheusConfig(port=address.port))
            with pytest.raises(BaseExceptionGroup) as caught:
                await nursery.start(second.run)
            cause = sole_cause(caught.value)  # as the CLI finds it
            assert isinstance(cause, MetricsUnavailable)
            assert str(cause) == (
                f"cannot serve Prometheus metrics on 127.0.0.1:{address.port} "
                "(--prometheus-port): Address already in use"
            )
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def scrape_as_the_exporter_does(metrics: NodeMetrics) -> bytes:
    """Read on the loop what must be, then build the answer on a worker thread."""

    async def scrape() -> bytes:
        metrics.read_on_loop()
        return await trio.to_thread.run_sync(generate_latest, metrics.registry)

    return trio.run(scrape)


@dataclass(slots=True)
class ControllerReadings:
    """What the collector reads of a controller: a real meter and event log."""

    meter: Meter = field(default_factory=Meter)
    events: EventLog = field(default_factory=EventLog)

    def statistics(self) -> ControllerStatistics:
        trio.current_time()  # as the controller's: back-offs are reckoned by trio's clock
        return ControllerStatistics(
            passes=3, last_pass_seconds=0.01, desired_replicas=2, observed_containers=4,
            running_containers=2, pods=2, ready_replicas=1, busy_replicas=1, held_back=0,
            actions_applied=6, actions_failed=0, probers=2, engine_available=True,
            engine_error="",
        )  # fmt: skip


@dataclass(slots=True)
class Workloads:
    controller: ControllerReadings | None = None


def test_replicas_their_usage_and_their_troubles(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    workloads = Workloads()
    metrics = NodeMetrics(MetricSources(chain, workloads=workloads))
    before = samples(generate_latest(metrics.registry).decode())
    assert not any(name.startswith("statemesh_replica") for name, _ in before)  # no engine yet
    readings = workloads.controller = ControllerReadings()
    web = ReplicaKey("dev", "web", 0)
    readings.meter.record_sample(
        MeterTarget(web, "c1", 100.0), sampled_at=160.0, cpu_ns=2_500_000_000, memory_bytes=7 << 20
    )
    for kind in (EventKind.RESTARTED, EventKind.RESTARTED, EventKind.UNHEALTHY, EventKind.EVICTED):
        readings.events.record(1.0, web, kind, instance=0)
    found = samples(scrape_as_the_exporter_does(metrics).decode())
    assert {
        labels: value for (name, labels), value in found.items() if name == "statemesh_replicas"
    } == {
        (("state", "desired"),): 2,
        (("state", "running"),): 2,
        (("state", "ready"),): 1,
        (("state", "busy"),): 1,
    }
    replica = (("app", "web"), ("replica", "0"))
    assert found[("statemesh_replica_memory_bytes", replica)] == 7 << 20
    assert found[("statemesh_replica_cpu_seconds_total", replica)] == 2.5
    assert found[("statemesh_replica_restarts_total", ())] == 2
    assert found[("statemesh_probe_failures_total", ())] == 1
    assert found[("statemesh_evictions_total", ())] == 1


def test_over_http_a_huge_header_is_refused_and_the_exporter_goes_on(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    server = MetricsServer(NodeMetrics(MetricSources(chain)), PrometheusConfig(port=0))

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(server.run)
            url = address.http_url + "metrics"
            async with httpx.AsyncClient() as client:
                refused = await client.get(url, headers={"x-junk": "a" * 100_000})
                assert refused.status_code == 431  # hypercorn's bound on a request's head
                assert server.app.scrapes == 0
                fine = await client.get(url + "?anything=at_all")
                assert fine.status_code == 200 and b"statemesh_block_height" in fine.content
            nursery.cancel_scope.cancel()

    trio.run(scenario)
