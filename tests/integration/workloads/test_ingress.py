"""Ingress on every node: an application deployed on a dev node with a Docker engine is served by
the ingress proxy and named by the DNS of that node and of a second node that runs nothing (it
learns the ready replica by gossip). When the readiness probe fails the replica is withdrawn from
both (503, empty DNS answer) while its container keeps running; when it passes again, traffic
comes back. A node that shuts down withdraws its replicas at once."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import httpx
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from tests.integration.docker_harness import DockerEngine, free_port
from tests.integration.harness import NodeProcess, cli, http
from tests.integration.workloads.pods import app_container, app_containers, pod_address

pytestmark = pytest.mark.integration

HOST = "hello.statemesh.internal"
MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: hello
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: httpd
      image: {image}
      command: ["sh", "-c"]
      args:
        - >-
          mkdir -p /www/api && echo hello-from-statemesh > /www/index.html
          && echo api > /www/api/index.html && touch /www/ready
          && exec httpd -f -p {port} -h /www
      ports:
        - {{containerPort: {port}, name: http}}
      resources:
        limits: {{cpu: 500m, memory: 64Mi}}
      readinessProbe:
        httpGet: {{path: /ready, port: http}}
        periodSeconds: 1
        failureThreshold: 1
  service:
    ports: [{{name: web, port: 80, targetPort: http}}]
  ingress:
    host: {host}
    rules: [{{path: /, servicePort: web}}]
"""


def get(node: NodeProcess, path: str = "/", host: str = HOST) -> httpx.Response:
    return http().get(
        f"http://127.0.0.1:{node.ingress_port}{path}", headers={"Host": host}, timeout=5
    )


def resolve(node: NodeProcess, name: str = HOST) -> tuple[int, list[str]]:
    reply = DNSRecord.parse(
        DNSRecord.question(name, "A").send("127.0.0.1", node.dns_port, timeout=3)
    )
    return reply.header.rcode, [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def serves(node: NodeProcess) -> bool:
    try:
        return get(node).text == "hello-from-statemesh\n"
    except httpx.HTTPError:
        return False


def status(node: NodeProcess) -> int:
    try:
        return get(node).status_code
    except httpx.HTTPError:
        return 0


def test_ready_replicas_are_routed_by_every_node(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    port = free_port()
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(MANIFEST.format(image=busybox_image, port=port, host=HOST))
    dev = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host])
    dev.start()
    other = NodeProcess(
        tmp_path / "other",
        args=["--chain", "dev", "--bootnodes", dev.call("system_localListenAddresses")[0]],
    )
    client: docker.DockerClient = docker_engine.client
    try:
        other.start()
        dev.wait_for(lambda: dev.call("towers_active")["total"] == 1, timeout=40, what="active")
        # Before any application: unknown host, unknown name.
        assert get(dev).status_code == 404
        assert resolve(dev) == (RCODE.NXDOMAIN, [])
        deployed = cli("app", "deploy", str(manifest), "--from", "dev-alice", "--rpc", dev.url)
        assert deployed.returncode == 0, deployed.stderr

        dev.wait_for(lambda: serves(dev), timeout=60, what="the dev node's proxy serving")
        other.wait_for(lambda: serves(other), timeout=30, what="the other node's proxy serving")
        assert get(other, "/api/").text == "api\n"
        assert get(dev, "/", host=f"{HOST.upper()}:{dev.ingress_port}").status_code == 200
        for node in (dev, other):
            assert resolve(node) == (RCODE.NOERROR, ["127.0.0.1"])
            assert resolve(node, "nothing.statemesh.internal")[0] == RCODE.NXDOMAIN
            assert resolve(node, "example.com")[0] == RCODE.REFUSED
        shown = cli("app", "endpoints", "hello", "--rpc", other.url, "--json")
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        # The other node reaches the replica through the dev node's proxy; the dev node at its
        # pod's address.
        assert view["routes"] == [
            {
                "host": HOST,
                "path": "/",
                "app": "hello",
                "backends": [f"127.0.0.1:{dev.ingress_port}"],
            }
        ]
        own = json.loads(cli("app", "endpoints", "hello", "--rpc", dev.url, "--json").stdout)
        assert own["routes"][0]["backends"] == [f"{pod_address(client, 'hello')}:{port}"]
        assert [r["ready"] for r in view["replicas"]] == [True]

        # Readiness fails: withdrawn everywhere, the container keeps running.
        container = app_container(client, "hello")
        container.exec_run(["rm", "/www/ready"])
        # The other node may answer 503 through the dev node's proxy a moment before the dev
        # node's new advertisement reaches it and its own table (DNS included) follows.
        for node in (dev, other):
            node.wait_for(
                lambda n=node: status(n) == 503 and resolve(n) == (RCODE.NOERROR, []),
                timeout=30,
                what="503 and no address when unready",
            )
        assert "no ready replica" in get(other).text
        container.reload()
        assert container.status == "running"
        restarts = dev.call("node_workloads")["replicas"][0]["restartCount"]

        container.exec_run(["touch", "/www/ready"])
        for node in (dev, other):
            node.wait_for(lambda n=node: serves(n), timeout=30, what="served again when ready")
        assert dev.call("node_workloads")["replicas"][0]["restartCount"] == restarts

        # The dev node stops: it withdraws its replica at once (long before the advertisement
        # would lapse); its container keeps running and is adopted again on restart.
        dev.stop()
        other.wait_for(lambda: status(other) == 503, timeout=10, what="withdrawn on shutdown")
        container.reload()
        assert container.status == "running"
        dev.start()
        for node in (dev, other):
            node.wait_for(lambda n=node: serves(n), timeout=60, what="served after a restart")
        assert len(app_containers(client, "hello")) == 1

        assert (
            cli("app", "delete", "hello", "--from", "dev-alice", "--rpc", dev.url).returncode == 0
        )
        for node in (dev, other):
            node.wait_for(lambda n=node: status(n) == 404, timeout=30, what="404 after delete")
            node.wait_for(
                lambda n=node: resolve(n)[0] == RCODE.NXDOMAIN, timeout=10, what="NXDOMAIN"
            )
    finally:
        other.stop()
        dev.stop()
        for c in client.containers.list(all=True, filters={"label": "statemesh.app=hello"}):
            c.remove(force=True)
