"""`statemesh testnet --nodes N`: a local network of N validator processes on loopback ports,
with its keys, genesis and data in one folder that can be started again. A node that stops is
reported and the others keep running; `statemesh testnet --dir DIR restart node-<i>` starts it
again; Ctrl-C stops them all."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from chain.genesis import DEV_ENDOWMENT, ChainSpec
from chain.keys import Keypair
from chain.runtime import wallets
from node.chain_spec import development_spec
from node.commands.key import keystore_errors
from node.errors import CliError, UsageError
from p2p.addresses import node_multiaddr
from p2p.identity import NODE_KEY_FILE, NodeKey, read_node_key_file, write_node_key_file
from wallet.keystore import Keystore

LAYOUT_FILE = "testnet.json"
STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class TestnetNode:
    index: int
    base_path: Path
    rpc_port: int
    p2p_port: int
    peer_id: str

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def key_name(self) -> str:
        return f"validator-{self.index}"

    @property
    def multiaddr(self) -> str:
        return node_multiaddr("127.0.0.1", self.p2p_port, self.peer_id)  # type: ignore[arg-type]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "testnet", help="run a local network of validator nodes", description=__doc__
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=["restart"],
        help="restart NODE of the testnet running in --dir (it keeps its data)",
    )
    parser.add_argument("node", nargs="?", metavar="NODE", help="node-<i> (or i), for restart")
    parser.add_argument("--nodes", type=int, default=4, help="validators (default 4)")
    parser.add_argument(
        "--dir", type=Path, default=Path("testnet"), help="its folder (default ./testnet)"
    )
    parser.add_argument("--rpc-port", type=int, default=9944, help="first node's RPC port")
    parser.add_argument("--p2p-port", type=int, default=30333, help="first node's p2p port")
    parser.add_argument(
        "--prometheus-port", type=int, default=9615, help="first node's metrics port (0: any)"
    )
    parser.add_argument("--slot-ms", type=int, default=1000, help="slot length (default 1000)")
    parser.add_argument("-l", "--log", default="info", metavar="LEVEL")
    parser.set_defaults(handler=_run)


def _spec(validators: list[Keypair], slot_ms: int, genesis_timestamp_ms: int) -> ChainSpec:
    dev = development_spec()
    # The dev accounts, not the dev wallet: its committee is a `--dev` node.
    dev_wallets = {w.address for w in dev.wallets}
    endowed = {who: amount for who, amount in dev.balances if who not in dev_wallets}
    for key in validators:
        endowed.setdefault(key.public, DEV_ENDOWMENT)
    return ChainSpec(
        name="Local Testnet",
        id="statemesh_local_testnet",
        chain_type="Local",
        slot_duration_ms=slot_ms,
        authorities=tuple(k.public for k in validators),
        balances=tuple(endowed.items()),
        # Several nodes: wallets get the default 2-of-3 committee, not the dev chain's 1 of 1.
        runtime=replace(
            dev.runtime,
            wallet_committee_size=wallets.DEFAULT_COMMITTEE_SIZE,
            wallet_threshold=wallets.DEFAULT_THRESHOLD,
        ),
        genesis_timestamp_ms=genesis_timestamp_ms,
    )


def create(
    folder: Path,
    count: int,
    rpc_port: int,
    p2p_port: int,
    slot_ms: int,
    *,
    ports: list[tuple[int, int]] | None = None,
    genesis_timestamp_ms: int | None = None,
) -> None:
    """Keys, genesis and node folders for a new testnet in `folder`; node i listens on
    rpc_port + i and p2p_port + i unless `ports` gives each node's (rpc, p2p) pair. The chain
    starts now unless `genesis_timestamp_ms` says when: no block may claim an earlier slot."""
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    password_file = folder / "password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    keystore = Keystore(folder / "keystore")
    validators = []
    nodes = []
    with keystore_errors():
        for i in range(count):
            keypair = Keypair.generate()
            keystore.create(f"validator-{i}", password, keypair=keypair)
            validators.append(keypair)
            node_key = NodeKey.generate()
            write_node_key_file(folder / f"node-{i}" / NODE_KEY_FILE, node_key)
            rpc, p2p = ports[i] if ports else (rpc_port + i, p2p_port + i)
            nodes.append({"rpcPort": rpc, "p2pPort": p2p, "peerId": node_key.peer_id})
    if genesis_timestamp_ms is None:
        genesis_timestamp_ms = time.time_ns() // 1_000_000
    spec = _spec(validators, slot_ms, genesis_timestamp_ms)
    (folder / "genesis.json").write_text(json.dumps(spec.to_json(), indent=2))
    (folder / LAYOUT_FILE).write_text(json.dumps({"nodes": nodes}, indent=2))


def load(folder: Path) -> list[TestnetNode]:
    layout = json.loads((folder / LAYOUT_FILE).read_text())
    nodes = []
    for i, entry in enumerate(layout["nodes"]):
        base = folder / f"node-{i}"
        key = read_node_key_file(base / NODE_KEY_FILE)
        if key.peer_id != entry["peerId"]:
            raise CliError(f"{base}: the node key does not match {LAYOUT_FILE}")
        nodes.append(TestnetNode(i, base, entry["rpcPort"], entry["p2pPort"], entry["peerId"]))
    return nodes


def validator_arguments(folder: Path, node: TestnetNode) -> list[str]:
    """`statemesh node` arguments that make `node` a validator of the testnet in `folder`."""
    return [
        "--chain", str(folder / "genesis.json"),
        "--name", node.name,
        "--validator", "--key", node.key_name,
        "--keystore", str(folder / "keystore"),
        "--password-file", str(folder / "password"),
    ]  # fmt: skip


def node_command(
    folder: Path, node: TestnetNode, bootnode: TestnetNode, log: str, prometheus_port: int = 0
) -> list[str]:
    return [
        sys.executable, "-m", "node.cli", "node",
        *validator_arguments(folder, node),
        "--base-path", str(node.base_path),
        "--rpc-port", str(node.rpc_port),
        "--port", str(node.p2p_port),
        "--ingress-port", "0",
        "--dns-port", "0",
        "--bootnodes", bootnode.multiaddr,
        "--prometheus-port", str(prometheus_port),
        "--log", log,
    ]  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if args.action == "restart":
        if args.node is None:
            raise UsageError("restart needs a node: statemesh testnet --dir DIR restart node-<i>")
        if not (folder / LAYOUT_FILE).exists():
            raise CliError(f"{folder} holds no testnet")
        node = node_named(load(folder), args.node)
        pid = request_restart(folder, node)
        print(f"{node.name} restarted (pid {pid}); log {node.base_path / 'node.log'}")
        return 0
    if (folder / LAYOUT_FILE).exists():
        nodes = load(folder)
        if len(nodes) != args.nodes:
            raise UsageError(
                f"{folder} holds a testnet of {len(nodes)} nodes; pass --nodes {len(nodes)} "
                "or another --dir"
            )
        claim(folder, nodes)
        print(f"restarting the testnet in {folder}")
    else:
        if args.nodes < 1 or args.nodes > 32:
            raise UsageError("--nodes must be between 1 and 32")
        create(folder, args.nodes, args.rpc_port, args.p2p_port, args.slot_ms)
        nodes = load(folder)
        claim(folder, nodes)
        print(f"created a testnet of {len(nodes)} validators in {folder}")

    def command(node: TestnetNode) -> list[str]:
        bootnode = nodes[1] if node.index == 0 and len(nodes) > 1 else nodes[0]
        metrics_port = args.prometheus_port + node.index if args.prometheus_port else 0
        return node_command(folder, node, bootnode, args.log, metrics_port)

    supervisor = Supervisor(folder, nodes, command)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for node in nodes:
            supervisor.start(node)
            metrics_port = args.prometheus_port + node.index if args.prometheus_port else 0
            print(
                f"  {node.name}  rpc http://127.0.0.1:{node.rpc_port}  p2p {node.multiaddr}  "
                f"log {node.base_path / 'node.log'}"
                + (f"  metrics http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "")
            )
        genesis = json.loads((folder / "genesis.json").read_text())
        print(f"validators: {', '.join(genesis['consensus']['authorities'])}")
        print("funded development accounts: dev-alice, dev-bob, … dev-ferdie")
        print(
            f"A node that stops is reported and the others keep running; "
            f"`statemesh testnet --dir {folder} restart node-<i>` starts it again.\n"
            "Ctrl-C stops every node; run the same command again to restart them.",
            flush=True,
        )
        while not stopping:
            for line in supervisor.tend():
                print(line, flush=True)
            if not supervisor.running():
                raise CliError("every node stopped; see their node.log")
            time.sleep(POLL_SECONDS)
    finally:
        supervisor.stop_all()
        release(folder)
    return 0


# -- the running testnet: one supervisor per folder, its nodes, restart requests ---------------

SUPERVISOR_PID_FILE = "supervisor.pid"
NODE_PID_FILE = "node.pid"
RESTART_REQUEST_FILE = "restart-requested"
POLL_SECONDS = 0.2
RESTART_WAIT_SECONDS = STOP_GRACE_SECONDS + 30.0
"""How long `restart` waits for the supervisor: a graceful stop, then a start."""


def node_named(nodes: list[TestnetNode], name: str) -> TestnetNode:
    """The node called `name` ("node-3", or just "3")."""
    for node in nodes:
        if name in (node.name, str(node.index)):
            return node
    known = ", ".join(n.name for n in nodes)
    raise UsageError(f"no node {name!r} in this testnet; its nodes are {known}")


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def supervisor_pid(folder: Path) -> int | None:
    """The pid of the `statemesh testnet` running `folder`, if one is alive."""
    try:
        pid = int((folder / SUPERVISOR_PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


def claim(folder: Path, nodes: list[TestnetNode]) -> None:
    """Record this process as the folder's supervisor; refuse if another one is alive, or if a
    node of an earlier one still runs (its supervisor was killed): two would start each node
    twice on the same database and ports."""
    running = supervisor_pid(folder)
    if running is not None and running != os.getpid():
        raise CliError(f"a testnet is already running in {folder} (pid {running})")
    for node in nodes:
        pid = leftover_pid(node)
        if pid is not None:
            raise CliError(f"{node.name} of an earlier run still runs (pid {pid}); stop it first")
    (folder / SUPERVISOR_PID_FILE).write_text(f"{os.getpid()}\n")


def leftover_pid(node: TestnetNode) -> int | None:
    """The pid recorded for `node` if that process still runs as this node (its command line
    names the node's folder: a pid reused by another program does not count)."""
    try:
        pid = int((node.base_path / NODE_PID_FILE).read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(node.base_path).encode() in command else None


def release(folder: Path) -> None:
    if supervisor_pid(folder) == os.getpid():
        (folder / SUPERVISOR_PID_FILE).unlink(missing_ok=True)


def request_restart(folder: Path, node: TestnetNode, timeout: float = RESTART_WAIT_SECONDS) -> int:
    """Ask the folder's supervisor to (stop and) start `node` again, and wait until it has:
    the new process's pid. The supervisor starts it, so that Ctrl-C still stops it too."""
    if supervisor_pid(folder) is None:
        raise CliError(
            f"no testnet is running in {folder}: `statemesh testnet --dir {folder}` starts "
            "every node"
        )
    request = node.base_path / RESTART_REQUEST_FILE
    try:
        fd = os.open(request, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"a restart of {node.name} is already under way") from None
    os.close(fd)
    deadline = time.monotonic() + timeout
    while request.exists():
        if time.monotonic() > deadline or supervisor_pid(folder) is None:
            request.unlink(missing_ok=True)
            raise CliError(f"the testnet in {folder} did not restart {node.name}")
        time.sleep(POLL_SECONDS)
    try:
        return int((node.base_path / NODE_PID_FILE).read_text().strip())
    except (OSError, ValueError):
        raise CliError(f"{node.name} did not start; see its node.log") from None


class Supervisor:
    """The node processes of one testnet: started, watched, restarted on request, stopped.

    A node that exits is reported once and left stopped; the others keep running. A restart
    request (a file in the node's folder, see `request_restart`) stops the node if it runs and
    starts it again with its data; the request file goes once the new process is started."""

    def __init__(
        self,
        folder: Path,
        nodes: list[TestnetNode],
        command: Callable[[TestnetNode], list[str]],
    ) -> None:
        self.folder = folder
        self.nodes = nodes
        self.command = command
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._reported: set[int] = set()
        for node in nodes:
            # A request left by an earlier run is not for this one.
            (node.base_path / RESTART_REQUEST_FILE).unlink(missing_ok=True)

    def start(self, node: TestnetNode) -> subprocess.Popen[bytes]:
        with (node.base_path / "node.log").open("ab") as log_file:
            process = subprocess.Popen(
                self.command(node),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes[node.index] = process
        self._reported.discard(node.index)
        (node.base_path / NODE_PID_FILE).write_text(f"{process.pid}\n")
        return process

    def running(self) -> bool:
        """Whether a node runs, or is about to be started again."""
        return any(p.poll() is None for p in self.processes.values()) or any(
            (n.base_path / RESTART_REQUEST_FILE).exists() for n in self.nodes
        )

    def tend(self) -> list[str]:
        """One look at every node: report the newly stopped ones, serve restart requests.
        Returns the lines to show the user."""
        lines = []
        for node in self.nodes:
            process = self.processes.get(node.index)
            if process is not None and process.poll() is not None:
                if node.index not in self._reported:
                    self._reported.add(node.index)
                    lines.append(
                        f"{node.name} stopped ({exit_description(process.returncode)}); the "
                        f"other nodes keep running. `statemesh testnet --dir {self.folder} "
                        f"restart {node.name}` starts it again; see {node.base_path / 'node.log'}"
                    )
            request = node.base_path / RESTART_REQUEST_FILE
            if request.exists():
                if process is not None:
                    _stop([process])
                try:
                    started = self.start(node)
                finally:
                    request.unlink(missing_ok=True)
                lines.append(f"{node.name} restarted (pid {started.pid})")
        return lines

    def stop_all(self) -> None:
        _stop(list(self.processes.values()))


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT (a node's clean stop), then SIGKILL for those still running after the grace."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
