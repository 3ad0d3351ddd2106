"""A real Prometheus server scrapes a real three-validator testnet every second: its HTTP API
shows the finalized height rising on every node. And a dev node's own metrics on a running node:
its tower, the active set, JSON logs, and a busy metrics port."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.local_network import LocalNetwork
from tests.integration.harness import NodeProcess, cli, free_port, http

pytestmark = pytest.mark.integration

FINALIZED = 'statemesh_block_height{status="finalized"}'


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("the prometheus server is not installed (scripts/setup.sh installs it)")
    return found


class PrometheusServer:
    """A `prometheus` process on a loopback port, with a data directory of its own."""

    def __init__(self, binary: str, folder: Path, targets: list[str]) -> None:
        self.folder = folder
        self.port = free_port()
        folder.mkdir(parents=True)
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: statemesh\n"
            "    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.log = (folder / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.output()}")
            try:
                if http().get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout} s:\n{self.output()}")

    def query(self, expression: str) -> dict[str, float]:
        """The instant vector of `expression`, by instance."""
        reply = http().get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        return {r["metric"]["instance"]: float(r["value"][1]) for r in body["data"]["result"]}

    def output(self) -> str:
        self.log.flush()
        return (self.folder / "prometheus.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder)


@pytest.fixture
def three_validators(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(tmp_path / "testnet", 3)
    # One of them logs in JSON: the same node, the same lines, one object each.
    net.nodes[0].args = [*net.nodes[0].args, "--log-format", "json"]
    net.start()
    try:
        yield net
    finally:
        net.stop()


def test_a_real_prometheus_sees_finality_rise_on_every_node(
    three_validators: LocalNetwork, prometheus_binary: str, tmp_path: Path
) -> None:
    nodes = three_validators.nodes
    targets = [f"127.0.0.1:{node.prometheus_port}" for node in nodes]
    server = PrometheusServer(prometheus_binary, tmp_path / "prometheus", targets)
    try:
        server.wait_ready()
        deadline = time.monotonic() + 60
        first: dict[str, float] = {}
        latest: dict[str, float] = {}
        while time.monotonic() < deadline:
            latest = server.query(FINALIZED)
            for instance, value in latest.items():
                first.setdefault(instance, value)
            if set(first) == set(targets) and all(latest[t] > first[t] for t in targets):
                break
            time.sleep(1)
        else:
            raise AssertionError(
                f"finalized heights seen first {first}, last {latest}:\n{server.output()}"
            )
        assert server.query("up") == dict.fromkeys(targets, 1.0)
        peers = server.query("statemesh_sub_libp2p_peers_count")
        assert set(peers) == set(targets) and all(p >= 1 for p in peers.values())
        assert set(server.query("statemesh_finality_round")) == set(targets)
        assert all(lag >= 0 for lag in server.query("statemesh_finality_lag_blocks").values())
        accepted = server.query(
            'sum by (instance) (statemesh_gossip_messages_total{verdict="accept"})'
        )
        assert set(accepted) == set(targets) and all(n > 0 for n in accepted.values())
        imported = server.query("statemesh_block_import_seconds_count")
        assert set(imported) == set(targets) and all(n > 0 for n in imported.values())
    finally:
        server.stop()
    assert not (tmp_path / "prometheus").exists()
    written = nodes[0].log()
    lines = written.splitlines()
    if not written.endswith("\n"):
        lines.pop()  # the node is still running: a line may be half written
    records = [json.loads(line) for line in lines]
    assert records and all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert any(r["message"].startswith("Prometheus exporter on http://127.0.0.1:") for r in records)


def scrape(node: NodeProcess) -> str:
    reply = http().get(f"http://127.0.0.1:{node.prometheus_port}/metrics", timeout=5)
    reply.raise_for_status()
    return reply.text


def value(text: str, series: str) -> float | None:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_a_dev_node_reports_its_tower_and_its_place_in_the_active_set(
    dev_node: NodeProcess,
) -> None:
    def grown() -> str | None:
        text = scrape(dev_node)
        height = value(text, "statemesh_tower_height")
        return text if height is not None and height >= 1 else None

    text = dev_node.wait_for(grown, timeout=90, what="a tower proof")
    assert value(text, 'statemesh_tower_proofs_total{outcome="made"}') >= 1  # type: ignore[operator]
    assert value(text, 'statemesh_tower_proofs_total{outcome="submitted"}') >= 1  # type: ignore[operator]
    assert value(text, "statemesh_epoch") is not None
    assert value(text, "statemesh_node_active") in (0.0, 1.0)
    assert value(text, 'statemesh_wallet_signing_rounds_total{outcome="signed"}') == 0
    assert value(text, "statemesh_sub_libp2p_peers_count") == 0
    assert value(text, 'statemesh_block_height{status="best"}') >= 1  # type: ignore[operator]
    # Only GET /metrics.
    base = f"http://127.0.0.1:{dev_node.prometheus_port}"
    assert http().get(f"{base}/", timeout=5).status_code == 404
    assert httpx.post(f"{base}/metrics", content=b"x" * 1000, timeout=5).status_code == 405


def test_a_busy_metrics_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        base = ["node", "--dev", "--no-presence", "--port", "0", "--rpc-port", "0"]
        busy = cli(*base, "--ingress-port", "0", "--dns-port", "0", "--prometheus-port", str(port))
    assert busy.returncode == 1
    assert f"cannot serve Prometheus metrics on 127.0.0.1:{port} (--prometheus-port)" in (
        busy.stderr
    )
    assert "Traceback" not in busy.stderr
