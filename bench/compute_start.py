"""Assignment finalized -> container running, and -> ready (HTTP 200), on a real dev node with a
real Docker engine, against a bare run of the same sandboxed container measured in the same
run: a network created, a sandbox on it, the container joined to its namespace, hardened as the
node hardens it. Target: overhead ratio (node / bare run with the same limits) <= 1.5 on running.

Both sides stop their clock the same way: "running" is the engine's own timestamp of the
container's `start` event, and "ready" the first HTTP 200 of a poll every 10 ms that begins
once the container runs. The node's clock starts no later than the moment the assignment is
final and visible: at the send time of the last RPC poll that did not see it yet (polled every
2 ms from just before the slot boundary the block is authored at). The bare runs start at the
same point of a later slot as the node's clock, so that both sides start their container next
to the same periodic work (the node authoring a block, its prover starting a proof).

The bare run is timed with the limits the node applies to the container (by default the
manifest's 100m CPU request becomes a CPU quota, which slows the container's start-up) and
without any; the target compares against the former.

    .venv/bin/python -m bench.compute_start [--runs 5] [--cpu-limit MILLICORES] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import rlp

from chain.blocks import Call
from chain.keys import dev_keypair, sign_transaction
from chain.primitives import Hash32
from chain.runtime.apps import Apps, ReplicaEntry
from node.commands.manifest_file import parse_manifest
from orchestrator import labels
from orchestrator.images import busybox_rootfs_tar
from orchestrator.replica_specs import replica_spec
from orchestrator.spec import CAPABILITIES_KEPT, EnforcedResources
from testkit.engines import BUSYBOX_IMAGE, bridge_network, free_port, open_engine
from testkit.nodes import NodeProcess

(CREATE, _UPDATE, _SCALE, DELETE, *_) = Apps().calls()
POLL = 0.01
"""The HTTP readiness poll, the same for both sides."""
FAST_POLL = 0.002
"""The RPC poll around a slot boundary: with a round trip, how much before the assignment is
final the node's clock may start."""
SLOT = 1.0
EARLY = 0.01
"""Fast polling begins this long before each slot boundary."""

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
{resources}"""


def httpd(port: int) -> str:
    page = "mkdir -p /www && echo ok > /www/index.html"
    return f"{page} && exec httpd -f -p {port} -h /www"


def serving(address: Callable[[], str | None], port: int) -> bool:
    """Whether the pod at `address()` (None while it has none) answers 200 on `port`."""
    where = address()
    if where is None:
        return False
    try:
        with urllib.request.urlopen(f"http://{where}:{port}/", timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def pod_of(client: docker.DockerClient, app: str) -> Callable[[], str | None]:
    """The address of the node's pod of `app`, once its sandbox has one."""
    filters = {"label": [f"{labels.APP}={app}", f"{labels.ROLE}={labels.SANDBOX_ROLE}"]}

    def address() -> str | None:
        for row in client.api.containers(filters=filters):
            for network in row["NetworkSettings"]["Networks"].values():
                if network.get("IPAddress"):
                    return str(network["IPAddress"])
        return None

    return address


def until(predicate: Callable[[], bool], timeout: float = 60.0) -> float:
    """Polls every POLL; returns the wall time (`time.time()`) of the first success."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(POLL)
    raise TimeoutError("timed out")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class StartEvents:
    """The engine's `start` events, each with the engine's own timestamp (wall clock)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._stream: Any = client.events(
            decode=True, filters={"type": "container", "event": "start"}
        )
        self._seen: dict[str, tuple[float, Mapping[str, str]]] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for event in self._stream:  # ends when `close` closes the stream
            with self._cond:
                attributes = event.get("Actor", {}).get("Attributes", {})
                self._seen[event["id"]] = (event["timeNano"] / 1e9, attributes)
                self._cond.notify_all()

    def started(
        self, match: Callable[[str, Mapping[str, str]], bool], timeout: float = 60.0
    ) -> float:
        """When the first container that `match`es (id, labels) started, by the engine's clock."""

        def found() -> float | None:
            for cid, (at, attributes) in self._seen.items():
                if match(cid, attributes):
                    return at
            return None

        with self._cond:
            at = self._cond.wait_for(found, timeout)
        if at is None:
            raise TimeoutError("no start event")
        return at

    def close(self) -> None:
        self._stream.close()


class Rpc:
    """JSON-RPC over one keep-alive connection, so a poll costs one round trip."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=url, timeout=10)

    def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        answer = self._client.post("/", json=body).json()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["result"]

    def close(self) -> None:
        self._client.close()


def polls() -> Iterator[None]:
    """Paces the RPC poll: every FAST_POLL from just before each slot boundary for a third of
    a slot (a block is authored and final in that window on a dev chain), sleeping otherwise."""
    while True:
        phase = time.time() % SLOT
        if phase > SLOT / 3 and phase < SLOT - EARLY:
            time.sleep(SLOT - EARLY - phase)
        yield
        time.sleep(FAST_POLL)


def submit(rpc: Rpc, genesis: bytes, call: Call) -> None:
    alice = dev_keypair("alice")
    nonce = rpc.call("system_accountNextIndex", alice.address)
    tx = sign_transaction(alice, genesis_hash=Hash32(genesis), nonce=nonce, call=call)
    rpc.call("author_submitExtrinsic", "0x" + rlp.encode(tx).hex())


def assignment_final(rpc: Rpc, name: str) -> float:
    """A wall time no later than the moment the replica's assignment was final and visible: the
    send time of the last poll that did not see it (a dev chain finalizes a block as it
    imports it, so the best state the RPC reads is the finalized one)."""
    not_yet: float | None = None
    for _ in polls():
        sent = time.time()
        info = rpc.call("apps_get", name)
        if info and any(r["node"] for r in info["placement"]):
            if not_yet is None:
                raise RuntimeError("assigned before the first poll: cannot bound the start")
            return not_yet
        not_yet = sent
    raise AssertionError("unreachable")


def at_phase(phase: float) -> None:
    """Sleeps until the wall clock is `phase` seconds into a slot again."""
    time.sleep((phase - time.time()) % SLOT)


def bare_run(
    client: docker.DockerClient, events: StartEvents, limits: EnforcedResources | None, phase: float
) -> tuple[float, float]:
    """(running, ready) of the same sandboxed httpd started by hand: a bridge network, a sandbox
    container on it, and the httpd joined to its network namespace, hardened as the node does
    (capabilities, no new privileges, init), with the resources the node applies (CPU shares
    and quota, memory and pids limits) or with none. It starts at the same point of a slot as
    the node's clock did: the node authors a block and its Time Tower prover starts a proof at
    the start of every slot, and both compete for the CPU with a container that starts then."""
    port = free_port()
    quota: dict[str, Any] = {}
    if limits is not None:
        quota = {
            "nano_cpus": limits.cpu_millicores and limits.cpu_millicores * 1_000_000,
            "cpu_shares": limits.cpu_request_millicores
            and max(2, limits.cpu_request_millicores * 1024 // 1000),
            "mem_limit": limits.memory_bytes,
            "memswap_limit": limits.memory_bytes,
            "pids_limit": limits.pids_limit,
        }
    hardening: dict[str, Any] = {
        "cap_drop": ["ALL"],
        "cap_add": list(CAPABILITIES_KEPT),
        "security_opt": ["no-new-privileges:true"],
        "init": True,
    }
    name = f"bare-{port}"
    at_phase(phase)
    b0 = time.time()
    network = bridge_network(
        client, name, options={"com.docker.network.bridge.name": f"smbbare{port}"}
    )
    sandbox = client.containers.run(
        labels.SANDBOX_IMAGE,
        list(labels.SANDBOX_COMMAND),
        network=name,
        user=str(labels.SANDBOX_USER),
        read_only=True,
        detach=True,
        **hardening,
    )
    container = client.containers.run(
        BUSYBOX_IMAGE,
        ["sh", "-c", httpd(port)],
        network_mode=f"container:{sandbox.id}",
        detach=True,
        **hardening,
        **quota,
    )
    b1 = events.started(lambda cid, _: cid == container.id)
    sandbox.reload()
    address = sandbox.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
    b2 = until(lambda: serving(lambda: address, port))
    container.remove(force=True)
    sandbox.remove(force=True)
    network.remove()
    return b1 - b0, b2 - b0


def one_run(
    rpc: Rpc,
    client: docker.DockerClient,
    events: StartEvents,
    genesis: bytes,
    name: str,
    cpu_limit: int | None,
) -> dict[str, tuple[float, float]]:
    """(running, ready) in seconds: of the node, of a bare run with the same limits, and of a
    bare run without limits. Without `cpu_limit` (millicores) the manifest declares no
    resources: the node applies the default request, 100m, as a CPU quota."""
    port = free_port()
    resources = "" if cpu_limit is None else f"      resources: {{limits: {{cpu: {cpu_limit}m}}}}\n"
    manifest = parse_manifest(
        MANIFEST.format(
            name=name, image=BUSYBOX_IMAGE, port=port, script=httpd(port), resources=resources
        )
    )
    # Mid-slot, so the first poll surely comes before the block that assigns the replica.
    time.sleep((SLOT * 1.5 - time.time() % SLOT) % SLOT)
    submit(rpc, genesis, CREATE.call(manifest=manifest.canonical_json()))
    t0 = assignment_final(rpc, name)
    t1 = events.started(
        lambda _, attributes: attributes.get(labels.APP) == name and labels.ROLE not in attributes
    )
    t2 = until(lambda: serving(pod_of(client, name), port))
    # What the node asks of the engine for this manifest, by the node's own translation.
    spec = replica_spec("bench", name, ReplicaEntry(0, 1, b"", 0), manifest)
    phase = t0 % SLOT
    times = {
        "node": (t1 - t0, t2 - t0),
        "same": bare_run(client, events, spec.containers[0].resources, phase),
        "plain": bare_run(client, events, None, phase),
    }
    label = {"label": f"{labels.APP}={name}"}
    submit(rpc, genesis, DELETE.call(app=name))
    until(lambda: not client.api.containers(all=True, filters=label))
    return times


def warm_up(client: docker.DockerClient, events: StartEvents) -> None:
    """One bare run first: the page cache and the engine's first-container set-up. The sandbox
    image is imported here if the node has not yet (it does so before its first pod)."""
    try:
        client.images.get(labels.SANDBOX_IMAGE)
    except docker.errors.ImageNotFound:
        repository, tag = labels.SANDBOX_IMAGE.split(":")
        client.api.import_image_from_data(busybox_rootfs_tar(), repository=repository, tag=tag)
    bare_run(client, events, None, time.time() % SLOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--cpu-limit",
        type=int,
        metavar="MILLICORES",
        help="a CPU limit in the manifest (default none: the 100m default request is the quota)",
    )
    parser.add_argument("--smoke", action="store_true", help="one run")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    results: dict[str, list[tuple[float, float]]] = {"node": [], "same": [], "plain": []}
    with open_engine() as engine, tempfile.TemporaryDirectory() as tmp:
        client = engine.client
        events = StartEvents(client)
        node = NodeProcess(Path(tmp) / "dev", args=["--dev", "--docker-host", engine.host])
        node.start()
        rpc = Rpc(node.url)
        try:
            until(lambda: rpc.call("towers_active")["total"] == 1, timeout=60)
            genesis = bytes.fromhex(rpc.call("chain_getBlockHash", 0)[2:])
            warm_up(client, events)
            for run in range(args.runs):
                times = one_run(rpc, client, events, genesis, f"bench{run}", args.cpu_limit)
                for side, measured in times.items():
                    results[side].append(measured)
        finally:
            rpc.close()
            node.stop()
            events.close()

    def median(side: str, which: int) -> float:
        return statistics.median(t[which] for t in results[side])

    def ms(side: str, which: int) -> str:
        values = [t[which] for t in results[side]]
        return f"median {median(side, which) * 1000:.0f} ms, p95 {p95(values) * 1000:.0f} ms"

    print(f"assignment finalized -> running:   {ms('node', 0)}")
    print(f"assignment finalized -> ready:     {ms('node', 1)}")
    print(f"bare run, same limits -> running:  {ms('same', 0)}")
    print(f"bare run, same limits -> ready:    {ms('same', 1)}")
    print(f"bare run, no limits -> running:    {ms('plain', 0)}")
    print(f"bare run, no limits -> ready:      {ms('plain', 1)}")
    for side, label in (("same", "same limits"), ("plain", "no limits")):
        print(
            f"ratio node / bare run with {label}: "
            f"running {median('node', 0) / median(side, 0):.2f}, "
            f"ready {median('node', 1) / median(side, 1):.2f}"
        )
    print("target: running ratio <= 1.5 against the bare run with the same limits")


if __name__ == "__main__":
    main()
