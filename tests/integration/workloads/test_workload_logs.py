"""One machine: what a dev node's containers wrote, their events and the node's workloads,
through the CLI over JSON-RPC, with a real container on a real engine; logs and container events
served to the application's owner only, on its signed request for this node; and the typed
error of a node whose engine does not answer."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import docker
import httpx
import pytest
import trio
import trio_websocket

from chain.address import encode_address
from chain.keys import dev_keypair
from node.commands.owner_access import proven_identity
from node.rpc.client import RpcClient
from node.workload_access import ACCESS_DENIED
from tests.integration.docker_harness import DockerEngine
from tests.integration.harness import STATEMESH, NodeProcess, RpcFailure, cli, cli_json, grant
from tests.integration.workloads.pods import app_container

pytestmark = pytest.mark.integration

APP = "talker"
MANIFEST = """\
apiVersion: statemesh/v1
kind: Application
metadata:
  name: talker
spec:
  replicas: 1
  nodeClass: cpu
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c"]
      args:
        - >-
          echo hello-from-talker; echo second-line;
          i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done
      resources:
        requests: {{cpu: 100m, memory: 16Mi}}
        limits: {{cpu: 500m, memory: 64Mi}}
"""
NO_ENGINE = "unix:///tmp/statemesh-no-engine/docker.sock"


def ticks(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^tick (\d+)$", text, re.MULTILINE)]


def read_lines(process: subprocess.Popen[str], into: Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.put(line.rstrip("\n"))


def follow_ticks(rpc: list[str], count: int, timeout: float = 20.0) -> list[int]:
    """Runs `app logs --follow --tail 1` until it printed `count` ticks; returns them."""
    process = subprocess.Popen(
        [STATEMESH, "app", "logs", APP, "--follow", "--tail", "1", *rpc],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: Queue[str] = Queue()
    threading.Thread(target=read_lines, args=(process, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(ticks("\n".join(seen))) < count:
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except Empty:
                raise AssertionError(f"no new tick followed; printed {seen}") from None
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    return ticks("\n".join(seen))


def access_refusal(node: NodeProcess, method: str, *params: object) -> str:
    """The reason `node` gives for refusing the call (ACCESS_DENIED); subscriptions are asked
    over WebSocket, as they must be."""
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    if method.startswith("app_subscribe"):

        async def over_websocket() -> dict[str, Any]:
            async with trio_websocket.open_websocket_url("ws" + node.url[4:]) as ws:
                await ws.send_message(json.dumps(request))
                answer: dict[str, Any] = json.loads(await ws.get_message())
                return answer

        answer = trio.run(over_websocket)
    else:
        answer = httpx.post(node.url, json=request, timeout=10).json()
    assert "error" in answer, f"{method} was served to a request that is not the owner's"
    assert answer["error"]["code"] == ACCESS_DENIED, answer
    return str(answer["error"]["data"]["reason"])


def test_logs_events_and_workloads_of_a_dev_node(
    tmp_path: Path, docker_engine: DockerEngine, busybox_image: str
) -> None:
    manifest = tmp_path / "talker.yaml"
    manifest.write_text(MANIFEST.format(image=busybox_image))
    node = NodeProcess(tmp_path / "dev", args=["--dev", "--docker-host", docker_engine.host])
    bare = NodeProcess(tmp_path / "bare", args=["--dev", "--docker-host", NO_ENGINE])
    client = docker_engine.client
    try:
        node.start()
        bare.start()

        # A node whose engine does not answer says so, with the typed error, to every question.
        def refusal() -> str:
            try:
                bare.call("node_workloads")
            except RpcFailure as e:
                assert e.code == 5000
                return str(e.message)
            raise AssertionError("a node without an engine listed workloads")

        expected = (
            f"this node offers no compute: no container engine answers at {NO_ENGINE}: "
            "the socket does not exist"
        )
        bare.wait_for(lambda: refusal() == expected, what="the no-compute error")
        for args in (["workloads"], ["app", "logs", APP]):
            refused = cli(*args, "--rpc", bare.url)
            assert (refused.returncode, refused.stderr) == (1, f"error: {expected}\n")
        # The chain's events need no compute (and there are none yet).
        events = cli("app", "events", APP, "--rpc", bare.url)
        assert (events.returncode, events.stdout) == (0, f"no events of application {APP!r}\n")
        bare_id = encode_address(proven_identity(RpcClient(bare.url)).node)
        bare.stop()

        node.wait_for(lambda: node.call("towers_active")["total"] == 1, timeout=40, what="active")
        rpc = ["--rpc", node.url]
        deployed = cli("app", "deploy", str(manifest), "--from", "dev-alice", *rpc)
        assert deployed.returncode == 0, deployed.stderr

        def written() -> str:
            result = cli("app", "logs", APP, *rpc)
            return result.stdout if result.returncode == 0 and "tick 2\n" in result.stdout else ""

        text = node.wait_for(written, timeout=30, what="the container's first lines")
        assert text.startswith("hello-from-talker\nsecond-line\ntick 1\ntick 2\n")

        # Served to the owner only: the CLI signed as dev-alice, who deployed it.
        alice, bob = dev_keypair("alice"), dev_keypair("bob")
        (own,) = node.call("app_logs", APP, None, None, grant(node, alice, APP))
        assert own["text"].startswith("hello-from-talker\n")
        for logs in ("app_logs", "app_subscribeLogs"):
            assert access_refusal(node, logs, APP) == "missing"
            assert access_refusal(node, logs, APP, None, None, grant(node, bob, APP)) == "notOwner"
            # The owner's request for another node, for another app, or expired: replayed here.
            replayed = grant(node, alice, APP, node_id=bare_id)
            assert access_refusal(node, logs, APP, None, None, replayed) == "wrongNode"
            replayed = grant(node, alice, "talker-2")
            assert access_refusal(node, logs, APP, None, None, replayed) == "badSignature"
            replayed = grant(node, alice, APP, ahead=-1)
            assert access_refusal(node, logs, APP, None, None, replayed) == "expired"
        stranger = cli("app", "logs", APP, "--from", "dev-bob", *rpc)
        assert (stranger.returncode, stranger.stderr) == (
            1,
            f"error: {bob.address} does not own {APP!r} (its owner is {alice.address})\n",
        )
        assert "tick" not in stranger.stdout
        assert access_refusal(node, "app_events", APP, grant(node, bob, APP)) == "notOwner"
        public = node.call("app_events", APP)  # anyone: the chain's events only
        assert public and {e["source"] for e in public} == {"chain"}
        foreign = cli("app", "events", APP, "--from", "dev-bob", *rpc)
        assert foreign.returncode == 1
        assert foreign.stderr.startswith(f"error: {bob.address} does not own")
        last = cli("app", "logs", APP, "--tail", "1", *rpc)
        assert last.returncode == 0, last.stderr
        assert re.fullmatch(r"tick \d+\n", last.stdout)
        (entry,) = cli_json("app", "logs", APP, "--replica", "0", *rpc)
        container = app_container(client, APP)
        assert (entry["replica"], entry["container"], entry["containerId"]) == (
            0,
            "main",
            container.id,
        )

        followed = follow_ticks(rpc, count=3)  # the tail's tick, then each new one, none left out
        assert followed == list(range(followed[0], followed[0] + 3))
        assert followed[0] > max(ticks(text))

        elsewhere = cli("app", "logs", APP, "--replica", "3", *rpc)
        assert (elsewhere.returncode, elsewhere.stderr) == (
            1,
            "error: application 'talker' has no replica 3\n",
        )

        events = cli("app", "events", APP, *rpc)
        assert events.returncode == 0, events.stderr
        assert re.search(r"#\d+\s+AppCreated\s+.*owner=", events.stdout), events.stdout
        assert re.search(r"node\s+Started\s+replica 0 \(revision 1\) main", events.stdout)

        workloads = cli("workloads", *rpc)
        assert workloads.returncode == 0, workloads.stderr
        header, row = workloads.stdout.splitlines()[1:3]
        assert header.split() == [
            "APP", "REPLICA", "REVISION", "STATE", "READY", "RESTARTS", "CPU", "MEMORY",
            "UPTIME", "CONTAINER", "REASON",
        ]  # fmt: skip
        assert row.split()[:6] == [APP, "0", "1", "Running", "yes", "0"]
        assert row.split()[9] == container.id[:12]
        found = json.loads(cli("workloads", "--json", *rpc).stdout)
        again = json.loads(cli("node", "workloads", "--json", *rpc).stdout)  # the same, by its name
        assert [r["containerId"] for r in again["replicas"]] == [container.id]
        (replica,) = found["replicas"]
        assert replica["containerId"] == container.id
        assert set(replica["usage"]) == {
            "cpuSeconds", "memoryBytes", "peakMemoryBytes", "uptimeSeconds", "diskBytes",
            "peakDiskBytes",
        }  # fmt: skip
        assert cli("app", "delete", APP, "--from", "dev-alice", *rpc).returncode == 0
    finally:
        bare.stop()
        node.stop()
        for c in client.containers.list(all=True, filters={"label": f"statemesh.app={APP}"}):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
