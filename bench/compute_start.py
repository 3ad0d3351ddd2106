"""Assignment finalized -> container running, and -> ready (HTTP 200), on a real dev node with a
real Docker engine, against a bare `docker run` of the same image measured in the same run.
Target: overhead ratio (node / bare run) <= 1.5 on running.

    .venv/bin/python bench/compute_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import docker
import rlp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chain.blocks import Call  # noqa: E402
from chain.runtime.apps import Apps  # noqa: E402
from chain.runtime.manifest import parse_manifest  # noqa: E402
from tests.integration.docker_harness import BUSYBOX_IMAGE, free_port, open_engine  # noqa: E402
from tests.integration.harness import NodeProcess  # noqa: E402
from wallet.keys import dev_keypair, sign_transaction  # noqa: E402

(CREATE, _UPDATE, _SCALE, DELETE) = Apps().calls()
POLL = 0.01

MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata: {{name: {name}}}
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: httpd
      image: {image}
      command: ["sh", "-c"]
      args: ["{script}"]
      ports: [{{containerPort: {port}}}]
      readinessProbe: {{httpGet: {{path: /, port: {port}}}, periodSeconds: 1}}
"""


def httpd(port: int) -> str:
    page = "mkdir -p /www && echo ok > /www/index.html"
    return f"{page} && exec httpd -f -p 127.0.0.1:{port} -h /www"


def serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def until(predicate, timeout: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(POLL)
    raise TimeoutError("timed out")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def submit(node: NodeProcess, genesis: bytes, call: Call) -> None:
    alice = dev_keypair("alice")
    nonce = node.call("system_accountNextIndex", alice.address)
    tx = sign_transaction(alice, genesis_hash=genesis, nonce=nonce, call=call)
    node.call("author_submitExtrinsic", "0x" + rlp.encode(tx).hex())


def one_run(
    node: NodeProcess, client: docker.DockerClient, genesis: bytes, name: str
) -> tuple[float, float, float, float]:
    """(node running, node ready, bare running, bare ready) in seconds."""
    port = free_port()
    manifest = parse_manifest(
        MANIFEST.format(name=name, image=BUSYBOX_IMAGE, port=port, script=httpd(port))
    )
    submit(node, genesis, CREATE.call(manifest=manifest.canonical_json()))

    def assigned() -> bool:
        info = node.call("apps_get", name)
        return bool(info) and any(r["node"] for r in info["placement"])

    label = {"label": f"statemesh.app={name}"}
    t0 = until(assigned)
    t1 = until(lambda: bool(client.containers.list(filters=label)))
    t2 = until(lambda: serving(port))
    bare_port = free_port()
    b0 = time.monotonic()
    container = client.containers.run(
        BUSYBOX_IMAGE, ["sh", "-c", httpd(bare_port)], network_mode="host", detach=True
    )
    b1 = until(lambda: client.containers.get(container.id).status == "running")
    b2 = until(lambda: serving(bare_port))
    container.remove(force=True)
    submit(node, genesis, DELETE.call(app=name))
    until(lambda: not client.containers.list(filters=label))
    return t1 - t0, t2 - t0, b1 - b0, b2 - b0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    node_running, node_ready, bare_running, bare_ready = [], [], [], []
    with open_engine() as engine, tempfile.TemporaryDirectory() as tmp:
        client = engine.client
        node = NodeProcess(Path(tmp) / "dev", args=["--dev", "--docker-host", engine.host])
        node.start()
        try:
            until(lambda: node.call("towers_active")["total"] == 1, timeout=60)
            genesis = bytes.fromhex(node.call("chain_getBlockHash", 0)[2:])
            for run in range(args.runs):
                times = one_run(node, client, genesis, f"bench{run}")
                for series, value in zip(
                    (node_running, node_ready, bare_running, bare_ready), times, strict=True
                ):
                    series.append(value)
        finally:
            node.stop()
    ms = lambda v: f"median {statistics.median(v) * 1000:.0f} ms, p95 {p95(v) * 1000:.0f} ms"  # noqa: E731
    print(f"assignment finalized -> running: {ms(node_running)}")
    print(f"assignment finalized -> ready:   {ms(node_ready)}")
    print(f"bare docker run -> running:      {ms(bare_running)}")
    print(f"bare docker run -> ready:        {ms(bare_ready)}")
    ratio = statistics.median(node_running) / statistics.median(bare_running)
    print(
        f"ratio running (node / bare): {ratio:.2f} (target <= 1.5); "
        f"ready: {statistics.median(node_ready) / statistics.median(bare_ready):.2f}"
    )


if __name__ == "__main__":
    main()
