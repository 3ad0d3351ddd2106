"""Real `statemesh` node processes on loopback ports, for integration tests and benchmarks."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from chain.address import decode_address
from chain.keys import Keypair
from node.commands.owner_access import proven_identity
from node.rpc.client import RpcClient
from node.workload_access import sign_access
from p2p.identity import NODE_KEY_FILE, NodeKey, read_node_key_file

ROOT = Path(__file__).resolve().parents[1]
STATEMESH = str(Path(sys.executable).parent / "statemesh")


_HANDED_OUT: set[int] = set()


@cache
def http() -> httpx.Client:
    """One HTTP client for every call of this process: its connections are kept alive between
    calls (a client made per call builds a TLS context and a connection each time, some 60 ms
    of CPU on these machines, and tests poll nodes thousands of times)."""
    return httpx.Client(timeout=10)


# Test processes run side by side (one per pytest-xdist worker) and each hands out ports of its
# own range, below the kernel's ephemeral range (32768-60999 by default) so that no outgoing
# connection takes one either: a port probed free here is nobody else's a moment later.
_PORT_BASE = 20_000
_PORTS_PER_WORKER = 1_500


def _port_range() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    start = _PORT_BASE + index * _PORTS_PER_WORKER
    return range(start, start + _PORTS_PER_WORKER)


def free_port() -> int:
    """A loopback port free now and not handed out before in this process: a node takes four,
    and the kernel may offer a port again as soon as its probe socket is closed."""
    ports = _port_range()
    offset = random.randrange(len(ports))
    for step in range(len(ports)):
        port = ports[(offset + step) % len(ports)]
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"every port of {ports} was handed out")


STALL_SECONDS = 60.0
"""How long a wait goes on, past its timeout, while the node's chain does not grow at all."""

STARTED: list[NodeProcess] = []
"""Every node started in this test session, so that what they leave on the host (their
replicas' host rules) can be removed at its end, and only theirs."""


def grant(
    node: NodeProcess, signer: Keypair, app: str, *, node_id: str = "", ahead: int = 60
) -> dict[str, object]:
    """`signer`'s signed request for `app`'s workload data (logs, container events) on `node`
    (or on the node `node_id`), valid for `ahead` seconds: the params' `auth`."""
    proof = proven_identity(RpcClient(node.url))
    target = decode_address(node_id) if node_id else proof.node
    expires = int(time.time()) + ahead
    return sign_access(
        signer, genesis=proof.genesis, app=app, node=target, expires=expires
    ).to_json()


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")


@dataclass
class NodeProcess:
    base_path: Path
    args: list[str] = field(default_factory=lambda: ["--dev"])
    port: int = field(default_factory=free_port)
    p2p_port: int = field(default_factory=free_port)
    ingress_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    private_engine: bool = False
    """Let a dev node without `--docker-host` start a Docker engine of its own (by default a
    test's dev node without one offers no compute instead)."""
    dev_node_key: bool = False
    """Run a dev node with the well-known dev node key, as `statemesh node --dev` does when it
    names none (that node holds the dev wallet's share). By default a test's dev node gets a
    key of its own (kept across restarts): nodes of one identity on one engine would take each
    other's containers for their own, as a restarted node rightly does."""
    own_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> NodeProcess:
        self.log_path = self.base_path.with_suffix(f".{int(time.time() * 1000)}.log")
        STARTED.append(self)
        log = self.log_path.open("wb")
        extra = (
            ["--no-private-engine"]
            if "--dev" in self.args and "--docker-host" not in self.args and not self.private_engine
            else []
        )
        keyed = {"--node-key", "--node-key-file"} & set(self.args)
        if "--dev" in self.args and not keyed and not self.dev_node_key:
            # In a file beside the base path: a key on the command line shows in `ps`.
            key_file = self.base_path.with_suffix(".node-key")
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(self.own_key)
            key_file.chmod(0o600)
            extra += ["--node-key-file", str(key_file)]
        self.process = subprocess.Popen(
            [
                STATEMESH,
                "node",
                *self.args,
                *extra,
                "--base-path",
                str(self.base_path),
                "--rpc-port",
                str(self.port),
                "--port",
                str(self.p2p_port),
                "--ingress-port",
                str(self.ingress_port),
                "--dns-port",
                str(self.dns_port),
                "--prometheus-port",
                str(self.prometheus_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.call("system_health")
                return self
            except (httpx.HTTPError, RpcFailure):
                time.sleep(0.1)
        raise RuntimeError(f"node did not answer within {timeout} s:\n{self.log()}")

    def node_id(self) -> bytes | None:
        """The node's id (the public key of its node key), once its key exists."""
        key: NodeKey | None = None
        if "--node-key" in self.args:
            key = NodeKey.from_hex(self.args[self.args.index("--node-key") + 1])
        elif "--node-key-file" in self.args:
            key = read_node_key_file(Path(self.args[self.args.index("--node-key-file") + 1]))
        elif (self.base_path / NODE_KEY_FILE).exists():
            key = read_node_key_file(self.base_path / NODE_KEY_FILE)
        return Keypair.from_seed(key.seed).public if key is not None else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def call(self, method: str, *params: Any) -> Any:
        response = http().post(
            self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        )
        body = response.json()
        if "error" in body:
            raise RpcFailure(body["error"])
        return body["result"]

    def best_number(self) -> int:
        return int(self.call("chain_getHeader")["number"], 16)

    def finalized_number(self) -> int:
        return int(self.call("chain_getHeader", self.call("chain_getFinalizedHead"))["number"], 16)

    def wait_for(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
        """Wait until `predicate()` is truthy and return its value.

        `timeout` is counted at the chain's pace: it has run out once that many seconds have
        passed *and* this node's chain has grown by the blocks those seconds hold at its slot
        length. On a loaded machine blocks come late and the wait waits with them; on an idle
        one it ends when it always did. A chain that does not grow for `timeout` (and at least
        `STALL_SECONDS`) ends it as well."""
        started = time.monotonic()
        start = self._chain_position()
        last_number, last_change = (start[0] if start else None), started
        while True:
            value = predicate()
            if value:
                return value
            now = time.monotonic()
            if now - started >= timeout:
                position = self._chain_position()
                if position is not None:
                    start = start or position
                    if position[0] != last_number:
                        last_number, last_change = position[0], now
                    if position[0] - start[0] >= timeout * 1000 / start[1]:
                        break
                if now - last_change >= max(timeout, STALL_SECONDS):
                    break
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.log()[-3000:]}")

    def _chain_position(self) -> tuple[int, int] | None:
        """(best block number, slot length in ms), or None while the node does not answer."""
        try:
            header = self.call("chain_getHeader")
            number, slot, timestamp = int(header["number"], 16), header["slot"], header["timestamp"]
        except (httpx.HTTPError, RpcFailure, ValueError, KeyError, TypeError):
            return None
        slot_ms = timestamp // slot if isinstance(slot, int) and slot > 0 else 0
        return number, max(1, slot_ms)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"node did not stop on {sig}\n{self.log()[-3000:]}") from None

    def kill9(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STATEMESH, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def cli_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def ingress_page(node: NodeProcess, host: str, path: str = "/") -> str:
    """What the node's ingress proxy answers for `host` and `path`: the body of a 200, else ""
    (another status, or no answer yet)."""
    try:
        response = http().get(
            f"http://127.0.0.1:{node.ingress_port}{path}", headers={"Host": host}, timeout=5
        )
    except httpx.HTTPError:
        return ""
    return response.text if response.status_code == 200 else ""
