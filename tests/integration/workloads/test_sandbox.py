"""Every replica in a sandbox of its own, tried as a hostile tenant would on a dev node with a real
engine: two applications on one container port both serve; from inside a tenant's container
nothing of the host, of the node or of another tenant answers, and packets to link-local and
private ranges are dropped by the node's rules; no raw sockets; an application that declares the
node's RPC port publishes nothing of the node; the node restarts with replicas running and
serves its RPC again. (The README's example, three replicas on one node: test_private_engine.)"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.address import decode_address
from orchestrator import labels
from orchestrator.workloads import firewall_tag
from tests.integration.docker_harness import DockerEngine
from tests.integration.harness import NodeProcess, cli, ingress_page
from tests.integration.workloads.pods import app_container, connects, pod_address

# Serial: it reads the drop counters of the node's own host rules, and another engine starting
# on the host meanwhile rewrites Docker's rules that bring a replica's packets to them. The other
# serial files, which may run beside it, start no engine (their dev nodes offer no compute).
pytestmark = [pytest.mark.integration, pytest.mark.serial]

APP = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: {name}
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: httpd
      image: {image}
      command: ["sh", "-c"]
      args:
        - >-
          mkdir -p /www /hidden && echo {name}-page > /www/index.html
          && echo {name}-undeclared > /hidden/index.html
          && httpd -p 9000 -h /hidden
          && exec httpd -f -p {port} -h /www
      ports:
        - {{containerPort: {port}, name: http}}
      resources:
        limits: {{cpu: 250m, memory: 32Mi}}
      readinessProbe:
        httpGet: {{path: /, port: http}}
        periodSeconds: 1
  service:
    ports: [{{name: web, port: 80, targetPort: http}}]
  ingress:
    host: {name}.statemesh.internal
    rules: [{{path: /, servicePort: web}}]
"""


def deploy(node: NodeProcess, path: Path, who: str = "dev-alice") -> None:
    deployed = cli("app", "deploy", str(path), "--from", who, "--rpc", node.url)
    assert deployed.returncode == 0, deployed.stderr


def host_addresses() -> list[str]:
    """Every IPv4 address of this machine, its bridges' included."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return sorted({m.group(1) for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", out)})


def drops(tag: str, destination: str) -> int:
    """Packets the node's forward chain dropped on their way to `destination` (a CIDR)."""
    out = subprocess.run(
        ["iptables", "-w", "-L", f"SM-{tag}-FWD", "-v", "-n", "-x"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if "DROP" in fields and destination in fields:
            return int(fields[0])
    raise AssertionError(f"no DROP rule for {destination} in SM-{tag}-FWD:\n{out}")


@pytest.fixture
def host_service() -> Iterator[int]:
    """A service of the operator's, listening on every address of the host."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\noperator-secret\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    server.close()


def test_tenants_are_sandboxed_from_the_host_the_node_and_each_other(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str, host_service: int
) -> None:
    node = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host])
    node.start()
    client = docker_engine.client
    manifests = {}
    # Two applications on the same container port, and one on the node's own RPC port.
    for name, port in (("victim", 8080), ("evil", 8080), ("rpcish", node.port)):
        manifests[name] = tmp_path / f"{name}.yaml"
        manifests[name].write_text(APP.format(name=name, image=busybox_image, port=port))
    try:
        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        deploy(node, manifests["victim"])
        deploy(node, manifests["evil"], "dev-bob")
        deploy(node, manifests["rpcish"], "dev-charlie")
        for name in ("victim", "evil", "rpcish"):
            node.wait_for(
                lambda n=name: ingress_page(node, f"{n}.statemesh.internal") == f"{n}-page\n",
                timeout=90,
                what=f"{name} served through the ingress",
            )
        # Side by side on one node, each app gets its own traffic, never the other's.
        for _ in range(4):
            assert ingress_page(node, "victim.statemesh.internal") == "victim-page\n"
            assert ingress_page(node, "evil.statemesh.internal") == "evil-page\n"
        # The app on the node's RPC port serves its page; the node's RPC is the node's.
        assert ingress_page(node, "rpcish.statemesh.internal") == "rpcish-page\n"
        assert node.call("system_health") is not None

        evil = app_container(client, "evil")
        victim_pod, evil_pod = pod_address(client, "victim"), pod_address(client, "evil")
        # The probe can succeed: its own pod answers, on the declared and undeclared port.
        assert connects(evil, evil_pod, 8080) and connects(evil, "127.0.0.1", 9000)
        # Nothing of another tenant: not its declared port, not its undeclared one.
        assert not connects(evil, victim_pod, 8080)
        assert not connects(evil, victim_pod, 9000)
        # Nothing of the host, on any of its addresses: the node's RPC, p2p and ingress ports,
        # and a service of the operator's listening on every address.
        for address in host_addresses():
            for port in (node.port, node.p2p_port, node.ingress_port, host_service):
                assert not connects(evil, address, port), f"{address}:{port} answered"
        # Cloud metadata and private ranges: dropped by the node's own rules on the way out.
        tag = firewall_tag(decode_address(node.call("towers_active")["nodes"][0]["nodeId"]))
        before = drops(tag, "169.254.0.0/16"), drops(tag, "10.0.0.0/8")
        assert not connects(evil, "169.254.169.254", 80)
        assert not connects(evil, "10.0.0.5", 80)
        after = drops(tag, "169.254.0.0/16"), drops(tag, "10.0.0.0/8")
        assert after[0] > before[0] and after[1] > before[1]

        # No raw or packet sockets (no NET_RAW), no new privileges, the engine's seccomp.
        status = evil.exec_run(["cat", "/proc/self/status"]).output.decode()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert int(fields["CapEff"], 16) & (1 << 13) == 0  # CAP_NET_RAW
        assert int(fields["CapBnd"], 16) & (1 << 13) == 0
        assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
        assert evil.attrs["HostConfig"]["PidsLimit"] == 1024

        # The node restarts with replicas running: nothing squats its ports, it serves its RPC
        # and adopts its replicas again.
        running = {c.id for c in client.containers.list(filters={"label": labels.APP})}
        assert node.stop() == 0
        node.start()
        node.wait_for(
            lambda: ingress_page(node, "victim.statemesh.internal") == "victim-page\n",
            timeout=60,
            what="victim served after the restart",
        )
        assert {c.id for c in client.containers.list(filters={"label": labels.APP})} == running
    finally:
        node.stop()
