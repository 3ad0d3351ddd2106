"""RPC throughput: `chain_getHeader` requests/s over HTTP keep-alive against a real dev node,
and the ratio to a bare hello-world ASGI app on the same server stack (hypercorn, trio),
measured in the same run. Target ratio >= 0.5.

    .venv/bin/python -m bench.rpc_header [--seconds 5] [--connections 4] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load import requests_per_second
from testkit.nodes import NodeProcess, free_port

HELLO_SERVER = """
import sys, trio
from node.rpc.hello import hello_app
from node.rpc.serving import serve_asgi
trio.run(lambda: serve_asgi(hello_app, "127.0.0.1", int(sys.argv[1])))
"""


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="0.5 s of load each")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 0.5
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "chain_getHeader", "params": []}
    ).encode()

    hello_port = free_port()
    hello = subprocess.Popen([sys.executable, "-c", HELLO_SERVER, str(hello_port)])
    try:
        wait_port(hello_port)
        hello_rate = requests_per_second(
            hello_port, body, seconds=args.seconds, connections=args.connections
        )
    finally:
        hello.terminate()
        hello.wait()

    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp) / "node").start()
        try:
            rate = requests_per_second(
                node.port, body, seconds=args.seconds, connections=args.connections
            )
        finally:
            node.stop()

    print(f"hello-world baseline: {hello_rate:,.0f} requests/s")
    print(f"chain_getHeader:      {rate:,.0f} requests/s")
    print(f"ratio: {rate / hello_rate:.3f} (target >= 0.5)")


if __name__ == "__main__":
    main()
