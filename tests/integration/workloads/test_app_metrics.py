"""An application's metrics on a dev node with a real Docker engine: requests through the node's
ingress proxy are counted by status and timed, and its owner reads them with the replica's CPU,
memory and restarts through `statemesh app metrics`; anyone else is refused. The node's
Prometheus endpoint exports the same counts, with unknown hosts under app="" and DNS queries by
response code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import docker
import pytest
from dnslib import DNSRecord
from prometheus_client.parser import text_string_to_metric_families

from chain.keys import dev_keypair
from tests.integration.docker_harness import DockerEngine, free_port
from tests.integration.harness import NodeProcess, cli, cli_json, grant, http, ingress_page
from tests.integration.workloads.test_ingress import MANIFEST
from tests.integration.workloads.test_workload_logs import access_refusal

pytestmark = pytest.mark.integration

APP = "hello"
HOST = "hello.statemesh.internal"


def get(node: NodeProcess, path: str, host: str = HOST) -> int:
    url = f"http://127.0.0.1:{node.ingress_port}{path}"
    return http().get(url, headers={"Host": host}, timeout=5).status_code


def exported(node: NodeProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The node's /metrics as Prometheus reads them: samples by name and sorted labels."""
    response = http().get(f"http://127.0.0.1:{node.prometheus_port}/metrics", timeout=5)
    assert response.status_code == 200, node.log()[-4000:]
    text = response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_owner_reads_the_metrics_of_an_application(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(MANIFEST.format(image=busybox_image, port=free_port(), host=HOST))
    node = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host])
    client: docker.DockerClient = docker_engine.client
    rpc = ["--rpc", node.url]
    try:
        node.start()
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        deployed = cli("app", "deploy", str(manifest), "--from", "dev-alice", *rpc)
        assert deployed.returncode == 0, deployed.stderr
        node.wait_for(lambda: ingress_page(node, HOST) != "", timeout=60, what="the app served")

        # Counted since the node started: the 503s of the wait above among them.
        before = cli_json("app", "metrics", APP, *rpc)["ingress"]
        for _ in range(10):
            assert get(node, "/") == 200
        for _ in range(3):
            assert get(node, "/missing") == 404  # the replica's own 404
        for i in range(5):  # hosts no application serves: counted under app=""
            assert get(node, "/", host=f"probe-{i}.example.org") == 404
        DNSRecord.question(HOST, "A").send("127.0.0.1", node.dns_port, timeout=3)
        DNSRecord.question("nothing.statemesh.internal", "A").send(
            "127.0.0.1", node.dns_port, timeout=3
        )

        def sampled() -> dict[str, Any] | None:
            answer: dict[str, Any] = cli_json("app", "metrics", APP, *rpc)
            return answer if answer["replicas"][0]["memoryBytes"] else None

        found = node.wait_for(sampled, timeout=30, what="a metering sample of the replica")
        (replica,) = found["replicas"]
        assert (replica["replica"], replica["state"], replica["ready"]) == (0, "Running", True)
        assert replica["restarts"] == 0 and replica["cpuSeconds"] >= 0
        ingress = found["ingress"]
        assert ingress["byCode"]["200"] - before["byCode"].get("200", 0) == 10
        assert ingress["byCode"]["404"] - before["byCode"].get("404", 0) == 3
        assert ingress["errors"] == before["errors"]
        assert ingress["requests"] == sum(ingress["byCode"].values())
        assert 0 < ingress["latencyP50Seconds"] <= ingress["latencyP95Seconds"] < 5

        table = cli("app", "metrics", APP, *rpc)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[1].split() == [
            "REPLICA", "STATE", "READY", "RESTARTS", "CPU", "MEMORY", "PEAK", "UPTIME"
        ]  # fmt: skip
        assert lines[2].split()[:4] == ["0", "Running", "yes", "0"]
        assert re.fullmatch(
            r"ingress \(this node\): \d+ requests, \d+ errors \(5xx\), latency p50 [\d.]+ m?s,"
            r" p95 [\d.]+ m?s",
            lines[3],
        ), lines[3]

        # The owner's only.
        alice, bob = dev_keypair("alice"), dev_keypair("bob")
        stranger = cli("app", "metrics", APP, "--from", "dev-bob", *rpc)
        assert (stranger.returncode, stranger.stderr) == (
            1,
            f"error: {bob.address} does not own {APP!r} (its owner is {alice.address})\n",
        )
        assert "requests" not in stranger.stdout
        assert access_refusal(node, "app_metrics", APP) == "missing"
        assert access_refusal(node, "app_metrics", APP, grant(node, bob, APP)) == "notOwner"
        assert access_refusal(node, "app_metrics", APP, grant(node, alice, APP, ahead=-1)) == (
            "expired"
        )
        unknown = cli("app", "metrics", "nothing-here", "--from", "dev-alice", *rpc)
        assert (unknown.returncode, unknown.stderr) == (
            1,
            "error: no application 'nothing-here' in finalized state\n",
        )

        # The exporter: the same counts, bounded labels.
        samples = exported(node)
        requests = "statemesh_ingress_requests_total"
        assert samples[(requests, (("app", APP), ("code", "200")))] >= 10
        assert samples[(requests, (("app", ""), ("code", "404")))] >= 5
        assert not [k for k in samples if any("probe-" in v for _, v in k[1])]
        latency = ("statemesh_ingress_request_seconds_count", (("app", APP),))
        assert samples[latency] >= ingress["requests"]
        dns = "statemesh_dns_queries_total"
        assert samples[(dns, (("rcode", "NOERROR"),))] >= 1
        assert samples[(dns, (("rcode", "NXDOMAIN"),))] >= 1
        assert cli("app", "delete", APP, "--from", "dev-alice", *rpc).returncode == 0
    finally:
        node.stop()
        for c in client.containers.list(all=True, filters={"label": f"statemesh.app={APP}"}):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
