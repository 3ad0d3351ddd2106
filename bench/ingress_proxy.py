"""Ingress proxy throughput: requests/s through the node's ingress proxy (its own process, routing
by Host header to one replica) against the same replica asked directly, in the same run; and
through two proxies, as a replica on another node is reached (this node's proxy relays to that
node's, which serves from its own pods). Each proxy checks every backend it dials, as the node's
does. The replica is the hello-world ASGI app on the node's server stack (hypercorn, trio), in a
process of its own; the load client keeps C HTTP/1.1 keep-alive connections busy. Rounds
alternate direct / proxied / relayed so load on the machine falls on all alike.

    .venv/bin/python -m bench.ingress_proxy [--seconds 4] [--connections 4] [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from bench.load import requests_per_second
from bench.rpc_header import HELLO_SERVER, wait_port
from testkit.nodes import ROOT, free_port

HOST = "hello.statemesh.internal"
PROXY_SERVER = """
import sys, trio
from node.rpc.serving import serve_asgi
from orchestrator.ingress import Backend, IngressProxy, Route, RouteTable
port, backend, host, relay = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
known = (Backend("127.0.0.1", backend, "127.0.0.1", relay=relay),)
table = RouteTable({host: [Route("hello", "/", known)]})
proxy = IngressProxy(lambda: table, may_dial=lambda b: b in known)
trio.run(lambda: serve_asgi(proxy, "127.0.0.1", port))
"""


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
    replica_port, proxy_port, relay_port = free_port(), free_port(), free_port()
    replica = subprocess.Popen([sys.executable, "-c", HELLO_SERVER, str(replica_port)], cwd=ROOT)
    proxy = subprocess.Popen(
        [sys.executable, "-c", PROXY_SERVER, str(proxy_port), str(replica_port), HOST, "0"],
        cwd=ROOT,
    )
    relay = subprocess.Popen(
        [sys.executable, "-c", PROXY_SERVER, str(relay_port), str(proxy_port), HOST, "1"],
        cwd=ROOT,
    )
    direct: list[float] = []
    proxied: list[float] = []
    relayed: list[float] = []
    single_direct: list[float] = []
    single_proxied: list[float] = []
    try:
        wait_port(replica_port)
        wait_port(proxy_port)
        wait_port(relay_port)
        for _ in range(args.rounds):
            direct.append(
                requests_per_second(
                    replica_port, body, seconds=args.seconds, connections=args.connections
                )
            )
            proxied.append(
                requests_per_second(
                    proxy_port,
                    body,
                    seconds=args.seconds,
                    connections=args.connections,
                    host=HOST,
                )
            )
            relayed.append(
                requests_per_second(
                    relay_port,
                    body,
                    seconds=args.seconds,
                    connections=args.connections,
                    host=HOST,
                )
            )
            single_direct.append(
                requests_per_second(replica_port, body, seconds=args.seconds / 2, connections=1)
            )
            single_proxied.append(
                requests_per_second(
                    proxy_port, body, seconds=args.seconds / 2, connections=1, host=HOST
                )
            )
    finally:
        for process in (relay, proxy, replica):
            process.terminate()
            process.wait()
    d, p = statistics.median(direct), statistics.median(proxied)
    ld, lp = 1000 / statistics.median(single_direct), 1000 / statistics.median(single_proxied)
    print(f"direct to the replica:   {d:,.0f} requests/s ({args.connections} connections)")
    print(f"through the ingress:     {p:,.0f} requests/s")
    print(f"ratio proxied / direct:  {p / d:.3f}")
    r = statistics.median(relayed)
    print(f"through two proxies:     {r:,.0f} requests/s (a replica on another node)")
    print(f"ratio relayed / direct:  {r / d:.3f}")
    print(f"one connection: {ld:.2f} ms direct, {lp:.2f} ms proxied (+{lp - ld:.2f} ms)")


if __name__ == "__main__":
    main()
