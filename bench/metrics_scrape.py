"""Scraping a node's /metrics: the time of one scrape of a dev node that knows 1,000 apps (their
ingress traffic: requests by status and latency histograms, every app served here) and runs 100
replicas (their CPU and memory from the controller's meter), against the same node with none
(baseline, same run, same server); the time the node's event loop spends building one answer;
and the node's authoring interval and authoring time with a 1 s scrape loop against none.

The node runs in this process as `statemesh node --dev` builds it (no network), with a short
slot; the scrapes come from a thread over HTTP, as Prometheus would.

Run: `.venv/bin/python -m bench.metrics_scrape [--blocks N] [--smoke]`."""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import trio
import trio.lowlevel
from prometheus_client import generate_latest

from chain.keys import dev_keypair
from chain.runtime.manifest import DEFAULT_ZONE
from node.chain_spec import DEV_AUTHORITY, resolve_spec
from node.metrics import MetricSources, NodeMetrics
from node.metrics_server import MetricsServer, PrometheusConfig
from node.runner import Node, NodeConfig
from orchestrator.controller import ControllerStatistics
from orchestrator.events import EventLog
from orchestrator.ingress_service import IngressConfig
from orchestrator.metering import Meter, MeterTarget
from orchestrator.spec import ReplicaKey

APPS, REPLICAS, BLOCKS, SLOT_MS = 1_000, 100, 20, 500
SMOKE = (50, 10, 4, 250)
SCRAPE_INTERVAL = 1.0
SCRAPES = 20


@dataclass(slots=True)
class MeteredReplicas:
    """The controller's readings for `count` running replicas: a real meter, sampled once for
    each container of each replica."""

    meter: Meter
    stats: ControllerStatistics
    events: EventLog

    @classmethod
    def running(cls, count: int) -> MeteredReplicas:
        meter = Meter()
        now = time.time()
        for i in range(count):
            key = ReplicaKey("dev", f"app-{i % max(1, count // 2):04d}", i)
            for container in ("web", "sidecar"):
                target = MeterTarget(key, f"{container}-{i}", now - 60)
                meter.record_sample(
                    target, sampled_at=now, cpu_ns=i * 10**9, memory_bytes=(i + 1) << 20
                )
        stats = ControllerStatistics(
            passes=1, last_pass_seconds=0.0, desired_replicas=count,
            observed_containers=3 * count, running_containers=2 * count, pods=count,
            ready_replicas=count, busy_replicas=0, held_back=0, actions_applied=3 * count,
            actions_failed=0, probers=2 * count, engine_available=True, engine_error="",
        )  # fmt: skip
        return cls(meter, stats, EventLog())

    def statistics(self) -> ControllerStatistics:
        return self.stats


@dataclass(slots=True)
class WithController:
    controller: MeteredReplicas | None


def scrape_times(url: str, count: int) -> tuple[float, int]:
    """Median seconds of `count` scrapes over one keep-alive connection, and the answer's size."""
    times = []
    size = 0
    with httpx.Client() as client:
        for _ in range(count):
            started = time.perf_counter()
            reply = client.get(url)
            times.append(time.perf_counter() - started)
            reply.raise_for_status()
            size = len(reply.content)
    return statistics.median(times), size


def scrape_loop(url: str, stop: threading.Event, done: list[int]) -> None:
    with httpx.Client() as client:
        while not stop.wait(SCRAPE_INTERVAL):
            client.get(url).raise_for_status()
            done.append(1)


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


async def measure(base: Path, apps: int, replicas: int, blocks: int, slot_ms: int) -> None:
    config = NodeConfig(
        spec=replace(resolve_spec("dev"), slot_duration_ms=slot_ms),
        base_path=base,
        name="bench",
        signer=dev_keypair(DEV_AUTHORITY),
        rpc_port=0,
        network=False,
        ingress=IngressConfig(host="127.0.0.1", http_port=0, dns_port=0, zone=DEFAULT_ZONE),
        prometheus=PrometheusConfig(port=0),
    )
    node = Node.open(config)
    assert node.metrics is not None and node.ingress is not None
    authored: list[tuple[float, float]] = []
    node.chain.on_timed.append(
        lambda kind, seconds: (
            authored.append((trio.current_time(), seconds)) if kind == "authoring" else None
        )
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        exporter = node.metrics.address
        assert exporter is not None
        url = exporter.http_url + "metrics"
        # The baseline: the same node, served the same way, knowing no apps and no replicas.
        empty = MetricsServer(NodeMetrics(MetricSources(node.chain)), PrometheusConfig(port=0))
        empty_address = await nursery.start(empty.run)
        baseline, baseline_size = await trio.to_thread.run_sync(
            scrape_times, empty_address.http_url + "metrics", SCRAPES
        )

        ingress = node.ingress.proxy.metrics
        for i in range(apps):
            for status, seconds in ((200, 0.004), (200, 0.02), (404, 0.001), (502, 0.3)):
                ingress.observe(f"app-{i:04d}", status, seconds)
        node.metrics.metrics.sources.workloads = WithController(MeteredReplicas.running(replicas))
        full, full_size = await trio.to_thread.run_sync(scrape_times, url, SCRAPES)
        built = []
        for _ in range(SCRAPES):
            started = time.perf_counter()
            generate_latest(node.metrics.metrics.registry)
            built.append(time.perf_counter() - started)
            await trio.lowlevel.checkpoint()

        async def blocks_from_now() -> list[tuple[float, float]]:
            start = len(authored)
            while len(authored) < start + blocks + 1:  # noqa: ASYNC110 (a callback appends)
                await trio.sleep(slot_ms / 4000)
            return authored[start : start + blocks + 1]

        quiet = await blocks_from_now()
        stop, done = threading.Event(), list[int]()
        async with trio.open_nursery() as scraping:
            scraping.start_soon(trio.to_thread.run_sync, scrape_loop, url, stop, done)
            scraped = await blocks_from_now()
            stop.set()
        nursery.cancel_scope.cancel()

    def intervals(run: list[tuple[float, float]]) -> list[float]:
        return [b[0] - a[0] for a, b in itertools.pairwise(run)]

    quiet_gaps, scraped_gaps = intervals(quiet), intervals(scraped)
    quiet_build = [s for _, s in quiet[1:]]
    scraped_build = [s for _, s in scraped[1:]]
    ms = 1000
    print(f"{apps:,} apps with ingress traffic, {replicas:,} replicas, {slot_ms} ms slots")
    print(
        f"scrape over HTTP: {full * ms:.2f} ms ({full_size:,} bytes); node knowing nothing "
        f"(baseline): {baseline * ms:.2f} ms ({baseline_size:,} bytes); "
        f"ratio {full / baseline:.1f}x"
    )
    print(
        f"building the answer (the node does it on a worker thread): median "
        f"{statistics.median(built) * ms:.2f} ms"
    )
    print(
        f"authoring interval, no scrapes: mean {statistics.mean(quiet_gaps) * ms:.1f} ms, "
        f"p95 {p95(quiet_gaps) * ms:.1f} ms; authoring {statistics.mean(quiet_build) * ms:.2f} ms"
    )
    print(
        f"authoring interval, {len(done)} scrapes at 1 s: mean "
        f"{statistics.mean(scraped_gaps) * ms:.1f} ms, p95 {p95(scraped_gaps) * ms:.1f} ms; "
        f"authoring {statistics.mean(scraped_build) * ms:.2f} ms"
    )
    interval_ratio = statistics.mean(scraped_gaps) / statistics.mean(quiet_gaps)
    build_ratio = statistics.mean(scraped_build) / statistics.mean(quiet_build)
    print(
        f"ratio (scraped / quiet): interval {interval_ratio:.3f}, authoring time {build_ratio:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=BLOCKS, help="authored blocks per phase")
    parser.add_argument("--smoke", action="store_true", help="50 apps, 10 replicas, 4 blocks")
    args = parser.parse_args()
    apps, replicas, blocks, slot_ms = (
        SMOKE if args.smoke else (APPS, REPLICAS, args.blocks, SLOT_MS)
    )
    with tempfile.TemporaryDirectory(prefix="statemesh-bench-metrics-") as base:
        trio.run(measure, Path(base), apps, replicas, blocks, slot_ms)


if __name__ == "__main__":
    main()
