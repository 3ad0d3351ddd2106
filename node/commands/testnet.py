"""`statemesh testnet --nodes N`: a local network of N validator processes on loopback ports,
with its keys, genesis and data in one folder that can be started again."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
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
    endowed = dict(dev.balances)
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
    if (folder / LAYOUT_FILE).exists():
        nodes = load(folder)
        if len(nodes) != args.nodes:
            raise UsageError(
                f"{folder} holds a testnet of {len(nodes)} nodes; pass --nodes {len(nodes)} "
                "or another --dir"
            )
        print(f"restarting the testnet in {folder}")
    else:
        if args.nodes < 1 or args.nodes > 32:
            raise UsageError("--nodes must be between 1 and 32")
        create(folder, args.nodes, args.rpc_port, args.p2p_port, args.slot_ms)
        nodes = load(folder)
        print(f"created a testnet of {len(nodes)} validators in {folder}")
    processes = []
    for node in nodes:
        bootnode = nodes[1] if node.index == 0 and len(nodes) > 1 else nodes[0]
        log_file = (node.base_path / "node.log").open("ab")
        metrics_port = args.prometheus_port + node.index if args.prometheus_port else 0
        processes.append(
            subprocess.Popen(
                node_command(folder, node, bootnode, args.log, metrics_port),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        print(
            f"  {node.name}  rpc http://127.0.0.1:{node.rpc_port}  p2p {node.multiaddr}  "
            f"log {node.base_path / 'node.log'}"
            + (f"  metrics http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "")
        )
    genesis = json.loads((folder / "genesis.json").read_text())
    print(f"validators: {', '.join(genesis['consensus']['authorities'])}")
    print("funded development accounts: dev-alice, dev-bob, … dev-ferdie")
    print("Ctrl-C stops every node; run the same command again to restart them.")
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
    finally:
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
    failed = [n.name for n, p in zip(nodes, processes, strict=True) if p.returncode not in (0, -2)]
    if failed and not stopping:
        raise CliError(f"{', '.join(failed)} stopped; see their node.log")
    return 0
