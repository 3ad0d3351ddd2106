"""Ingress proxy throughput: requests/s through the node's ingress data planes (each in a process
of its own, routing by Host header to one replica) against the same replica asked directly, in
the same run: the HAProxy data plane the node configures, the Python proxy (the fallback), each
also as two in a row (a replica on another node is reached through that node's proxy, which
serves from its own pods), and Debian's nginx as a keep-alive reverse proxy (a second baseline,
where installed). The replica is the hello-world ASGI app on the node's server stack (hypercorn,
trio), in a process of its own; the load client keeps C HTTP/1.1 keep-alive connections busy.
Each round measures every path in turn, so load on the machine falls on all alike.

    .venv/bin/python -m bench.ingress_proxy [--seconds 4] [--connections 4] [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import requests_per_second
from bench.rpc_header import HELLO_SERVER, wait_port
from testkit.nodes import ROOT, free_port

HOST = "hello.statemesh.internal"
PROXY_SERVER = """
import sys, trio
from node.rpc.serving import serve_asgi
from orchestrator.haproxy import HaproxyIngress
from orchestrator.ingress import Backend, IngressProxy, Route, RouteTable
port, backend, host, relay = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
known = (Backend("127.0.0.1", backend, "127.0.0.1", relay=relay),)
table = RouteTable({host: [Route("hello", "/", known)]})
if sys.argv[5] == "haproxy":
    plane = HaproxyIngress(lambda: table, lambda b: b in known)
    trio.run(lambda: plane.serve("127.0.0.1", port))
else:
    proxy = IngressProxy(lambda: table, may_dial=lambda b: b in known)
    trio.run(lambda: serve_asgi(proxy, "127.0.0.1", port))
"""

NGINX_CONFIG = """
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    upstream replica {{ server 127.0.0.1:{replica}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def start_nginx(folder: Path, port: int, replica: int) -> subprocess.Popen[bytes] | None:
    """Debian's nginx as a keep-alive reverse proxy to the replica (the second baseline), or
    None where it is not installed."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        return None
    config = folder / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(folder=folder, port=port, replica=replica))
    return subprocess.Popen([nginx, "-c", str(config), "-p", str(folder)])


@dataclass
class Way:
    """One way to the replica and its figures over the rounds."""

    name: str
    port: int
    host: str | None
    rates: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)

    def measure(self, body: bytes, seconds: float, connections: int) -> None:
        self.rates.append(
            requests_per_second(
                self.port, body, seconds=seconds, connections=connections, host=self.host
            )
        )
        self.single.append(
            requests_per_second(self.port, body, seconds=seconds / 2, connections=1, host=self.host)
        )

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def milliseconds(self) -> float:
        return 1000 / statistics.median(self.single)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="one round of 0.5 s loads")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 0.5, 1
    body = b'{"hello": "world"}'
    replica_port = free_port()
    processes = [
        subprocess.Popen([sys.executable, "-c", HELLO_SERVER, str(replica_port)], cwd=ROOT)
    ]
    paths = [Way("direct to the replica", replica_port, None)]

    def proxy(name: str, backend: int, relay: bool, plane: str) -> int:
        port = free_port()
        command = [sys.executable, "-c", PROXY_SERVER, str(port), str(backend), HOST]
        processes.append(subprocess.Popen([*command, "1" if relay else "0", plane], cwd=ROOT))
        paths.append(Way(name, port, HOST))
        return port

    with tempfile.TemporaryDirectory() as temp:
        try:
            python = proxy("Python proxy", replica_port, False, "python")
            proxy("two Python proxies", python, True, "python")
            native = proxy("HAProxy data plane", replica_port, False, "haproxy")
            proxy("two HAProxy planes", native, True, "haproxy")
            nginx_port = free_port()
            nginx = start_nginx(Path(temp), nginx_port, replica_port)
            if nginx is not None:
                processes.append(nginx)
                paths.append(Way("nginx (baseline)", nginx_port, HOST))
            for path in paths:
                wait_port(path.port)
            for _ in range(args.rounds):
                for path in paths:
                    path.measure(body, args.seconds, args.connections)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait()
    direct = paths[0]
    print(f"{'path':<24} {'requests/s':>11} {'/ direct':>9} {'1 conn. ms':>11} {'added ms':>9}")
    for path in paths:
        print(
            f"{path.name:<24} {path.rate:>11,.0f} {path.rate / direct.rate:>9.3f} "
            f"{path.milliseconds:>11.2f} {path.milliseconds - direct.milliseconds:>+9.2f}"
        )
    print(f"({args.connections} connections, median of {args.rounds} rounds of {args.seconds:g} s)")


if __name__ == "__main__":
    main()
