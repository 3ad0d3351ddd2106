"""`statemesh node`, `build-spec`, `purge-chain`: running a node and managing its chain data."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import trio

from chain.errors import DatabaseError, FinalityConflict, GenesisError
from chain.genesis import ChainSpec
from chain.keys import Keypair, dev_keypair
from chain.primitives import Hash32
from chain.runtime.config import NODE_CLASSES
from chain.runtime.manifest import DEFAULT_ZONE, format_bytes, parse_bytes
from node.chain_spec import (
    DEV_AUTHORITY,
    DEV_NODE_KEY,
    DEV_OPERATOR,
    dev_wallet_share,
    resolve_spec,
)
from node.commands.client_options import add_client_arguments
from node.commands.key import add_keystore_argument, keystore_errors, keystore_from_args
from node.commands.password import PasswordReader, add_password_argument
from node.commands.rpc_options import add_rpc_arguments, rpc_settings
from node.commands.workloads import show_workloads
from node.errors import CliError, UsageError, sole_cause
from node.log_format import LogFormat, configure_logging
from node.metrics_server import DEFAULT_PROMETHEUS_PORT, MetricsUnavailable, PrometheusConfig
from orchestrator.disk_pressure import (
    DEFAULT_HIGH_WATER_PERCENT,
    DEFAULT_LOW_WATER_PERCENT,
    WaterMarks,
)
from orchestrator.firewall import EgressPolicy
from orchestrator.image_gc import ImageGcPolicy
from orchestrator.replica_specs import DEFAULT_MAX_PIDS
from orchestrator.workloads import DEFAULT_MAX_IMAGE_BYTES
from p2p.errors import P2PError
from vdf.presence import Capacity, PresenceError, measure_capacity
from wallet.keystore import resolve_signer
from wallet.shares import ShareStoreError, StoredShare

DEFAULT_BASE_PATH = Path("~/.statemesh")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = sub.add_parser("node", help="run a node", description="Run a StateMesh node.")
    node.add_argument(
        "--dev",
        action="store_true",
        help="development chain: dev-alice authors every slot and finalizes at once; "
        "a temporary base path unless --base-path is given; the well-known dev node key unless "
        "--node-key or --node-key-file is given (it holds the dev wallet's share)",
    )
    _add_chain_arguments(node)
    node.add_argument("--rpc-port", type=int, default=9944, metavar="PORT")
    node.add_argument(
        "--rpc-external", action="store_true", help="listen on all interfaces (default: 127.0.0.1)"
    )
    add_rpc_arguments(node)
    node.add_argument("--name", default=None, help="a human name for this node")
    node.add_argument(
        "--port", type=int, default=30333, metavar="PORT", help="p2p TCP port (0: any free one)"
    )
    node.add_argument(
        "--bootnodes",
        nargs="*",
        default=[],
        metavar="MULTIADDR",
        help="peers to connect to: /ip4/HOST/tcp/PORT/p2p/PEER_ID",
    )
    node.add_argument("--node-key", metavar="HEX", help="the p2p key's 32-byte seed, in hex")
    node.add_argument("--node-key-file", type=Path, metavar="FILE", help="file holding it")
    node.add_argument("--no-network", action="store_true", help="run without p2p (a lone dev node)")
    node.add_argument(
        "--operator",
        metavar="KEY",
        help="register this node for the KEY account and prove presence (--dev: dev-ferdie)",
    )
    node.add_argument("--class", dest="node_class", default="cpu", choices=NODE_CLASSES)
    for flag, what in (
        ("--cores", "cores"),
        ("--memory-mb", "memory in MB"),
        ("--disk-gb", "disk in GB"),
        ("--gpus", "GPUs"),
    ):
        node.add_argument(flag, type=int, metavar="N", help=f"declared {what} (default: measured)")
    node.add_argument(
        "--vdf-iterations", type=int, metavar="N", help="per proof (default: the genesis minimum)"
    )
    node.add_argument("--no-presence", action="store_true", help="--dev without a Time Tower")
    node.add_argument(
        "--docker-host", metavar="URL", help="the Docker engine for replicas (default: DOCKER_HOST)"
    )
    node.add_argument("--no-compute", action="store_true", help="never run replicas")
    node.add_argument(
        "--workload-egress",
        choices=[p.value for p in EgressPolicy],
        default=EgressPolicy.ALLOW.value,
        help="whether replicas may open connections to the outside world (default allow); "
        "the host, other apps, private and link-local ranges are never reachable",
    )
    node.add_argument(
        "--max-pids",
        type=int,
        default=DEFAULT_MAX_PIDS,
        metavar="N",
        help="the most processes and threads a replica may have, all its containers together, "
        "whatever its manifest asks: each container gets its manifest limit (1024 without one) "
        "within a fair share of N, and at least 1 "
        f"(default {DEFAULT_MAX_PIDS})",
    )
    node.add_argument(
        "--disk-high-water",
        type=int,
        default=DEFAULT_HIGH_WATER_PERCENT,
        metavar="PERCENT",
        help="above this much of the engine's data root in use, declare no more disk than is "
        f"placed on this node (default {DEFAULT_HIGH_WATER_PERCENT})",
    )
    node.add_argument(
        "--disk-low-water",
        type=int,
        default=DEFAULT_LOW_WATER_PERCENT,
        metavar="PERCENT",
        help="declare the whole disk again once below this much in use "
        f"(default {DEFAULT_LOW_WATER_PERCENT})",
    )
    node.add_argument(
        "--max-image-size",
        type=_byte_quantity,
        default=DEFAULT_MAX_IMAGE_BYTES,
        metavar="BYTES",
        help="refuse an image larger than this once pulled, and remove it again "
        f"(e.g. 2Gi; default {format_bytes(DEFAULT_MAX_IMAGE_BYTES)})",
    )
    node.add_argument(
        "--image-gc-high",
        type=int,
        default=85,
        metavar="PERCENT",
        help="above this much of the engine's data root in use, remove unused images this node "
        "pulled, least recently used first (default 85) ...",
    )
    node.add_argument(
        "--image-gc-low",
        type=int,
        default=80,
        metavar="PERCENT",
        help="... until below this (default 80)",
    )
    node.add_argument(
        "--no-private-engine",
        action="store_true",
        help="--dev: do not start a private dockerd under the base path when no engine answers",
    )
    node.add_argument(
        "--node-ip",
        default="127.0.0.1",
        metavar="IP",
        help="the address other nodes reach this node's replicas at (default 127.0.0.1)",
    )
    node.add_argument(
        "--ingress-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="HTTP port of the ingress proxy to every application (0: any free one)",
    )
    node.add_argument(
        "--dns-port",
        type=int,
        default=8053,
        metavar="PORT",
        help="port (UDP and TCP) of the DNS server of the ingress zone (0: any free one)",
    )
    node.add_argument(
        "--ingress-external",
        action="store_true",
        help="serve the ingress proxy and DNS on all interfaces (default: 127.0.0.1)",
    )
    node.add_argument("--no-ingress", action="store_true", help="serve neither proxy nor DNS")
    node.add_argument(
        "--ingress-proxy",
        choices=("auto", "haproxy", "python"),
        default="auto",
        help="the ingress data plane: HAProxy (Debian's haproxy), the built-in Python proxy, or "
        "HAProxy where it is installed (default)",
    )
    node.add_argument(
        "--allow-private-endpoints",
        action="store_true",
        help="for private clusters: accept peers' replica addresses in private ranges "
        "(and a private --node-ip)",
    )
    node.add_argument(
        "--allow-private-registries",
        action="store_true",
        help="let tenants' images come from registries on loopback, private or link-local "
        "addresses, which only this node may reach (default: public registries only)",
    )
    node.add_argument(
        "--checkpoint",
        type=_checkpoint,
        default=None,
        metavar="NUMBER:0xHASH",
        help="weak subjectivity: the block this node's chain must have at NUMBER (take it from "
        "a source you trust, e.g. another operator's node). Sync refuses peers whose chain "
        "has another block there, and the node refuses to start on a database that finalized "
        "another one. Overrides the chain spec's checkpoint",
    )
    node.add_argument(
        "action",
        nargs="?",
        choices=("workloads",),
        help="`workloads`: ask a running node for its containers (as `statemesh workloads`)",
    )
    add_client_arguments(node)
    node.add_argument("--validator", action="store_true", help="author blocks with --key")
    node.add_argument("--key", metavar="NAME", help="keystore key (or dev-<name>) to author with")
    node.add_argument("-l", "--log", default="info", metavar="LEVEL", help="log level (info)")
    node.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=LogFormat.TEXT.value,
        help="text (default), or json: one object per line with time, level, logger, message",
    )
    node.add_argument(
        "--prometheus-port",
        type=int,
        default=DEFAULT_PROMETHEUS_PORT,
        metavar="PORT",
        help=f"serve Prometheus metrics on PORT at /metrics (default {DEFAULT_PROMETHEUS_PORT}; "
        "0: any free one)",
    )
    node.add_argument(
        "--prometheus-external",
        action="store_true",
        help="serve the metrics on all interfaces (default: 127.0.0.1)",
    )
    node.add_argument("--no-prometheus", action="store_true", help="serve no metrics")
    add_keystore_argument(node)
    add_password_argument(node)
    node.set_defaults(handler=_run_node)

    spec = sub.add_parser("build-spec", help="print the chain spec as JSON")
    spec.add_argument("--dev", action="store_true", help="the development chain spec")
    spec.add_argument("--chain", default="dev", metavar="SPEC")
    spec.set_defaults(handler=_build_spec)

    purge = sub.add_parser("purge-chain", help="delete the chain database of a base path")
    _add_chain_arguments(purge)
    purge.add_argument("--dev", action="store_true")
    purge.add_argument("-y", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=_purge_chain)


def _add_chain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chain", default=None, metavar="SPEC", help="`dev` or a chain spec file (genesis.json)"
    )
    parser.add_argument(
        "-d",
        "--base-path",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"where chain data lives (default {DEFAULT_BASE_PATH})",
    )


def _byte_quantity(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checkpoint(text: str) -> tuple[int, Hash32]:
    number, sep, hex_hash = text.partition(":")
    digits = hex_hash.removeprefix("0x")
    if not sep or not number.isdigit() or len(digits) != 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not NUMBER:0xHASH (a 32-byte hash)")
    try:
        return int(number), Hash32(bytes.fromhex(digits))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the hash is not hexadecimal") from None


def _finality_conflict(exc: BaseException) -> FinalityConflict | None:
    """The FinalityConflict that stopped the node, wherever trio's nurseries put it."""
    found: BaseException | None = exc
    if isinstance(exc, BaseExceptionGroup):
        found, _ = exc.split(FinalityConflict)
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if isinstance(found, FinalityConflict) else None


def load_chain(args: argparse.Namespace) -> ChainSpec:
    try:
        return resolve_spec(args.chain or "dev")
    except GenesisError as exc:
        raise CliError(str(exc)) from None


def _signer(args: argparse.Namespace) -> Keypair | None:
    if args.key:
        with keystore_errors():
            return resolve_signer(
                args.key, keystore_from_args(args), PasswordReader.from_args(args).existing
            )
    if args.dev:
        return dev_keypair(DEV_AUTHORITY)
    if args.validator:
        raise UsageError("--validator needs --key NAME")
    return None


def _run_node(args: argparse.Namespace) -> int:
    if args.action == "workloads":
        return show_workloads(args)
    # The node's services are imported when a node runs: every other command shares this
    # module's arguments, and the services (libp2p above all) take a second to import.
    from node.collector import tune_collector
    from node.runner import Node, NodeConfig
    from orchestrator.endpoints import node_ip
    from orchestrator.ingress_service import DataPlane, IngressConfig, IngressUnavailable

    configure_logging(args.log, LogFormat(args.log_format))
    # The ingress proxy's HTTP client would log every proxied request.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for flag, port in (
        ("--rpc-port", args.rpc_port),
        ("--port", args.port),
        ("--ingress-port", args.ingress_port),
        ("--dns-port", args.dns_port),
        ("--prometheus-port", args.prometheus_port),
    ):
        if not 0 <= port <= 65535:
            raise UsageError(f"{flag} {port} is not a port number")
    try:
        address = node_ip(args.node_ip, allow_private=args.allow_private_endpoints)
    except ValueError as exc:
        raise UsageError(f"--node-ip: {exc}") from None
    if args.max_pids < 1:
        raise UsageError(f"--max-pids {args.max_pids} is below 1")
    try:
        disk_marks = WaterMarks(high=args.disk_high_water, low=args.disk_low_water)
    except ValueError as exc:
        raise UsageError(f"--disk-high-water, --disk-low-water: {exc}") from None
    try:
        image_gc = ImageGcPolicy(high_percent=args.image_gc_high, low_percent=args.image_gc_low)
    except ValueError as exc:
        raise UsageError(f"--image-gc-high, --image-gc-low: {exc}") from None
    rpc = rpc_settings(args)
    spec = load_chain(args)
    signer = _signer(args)
    temporary = None
    base_path = args.base_path
    if base_path is None and args.dev:
        temporary = tempfile.mkdtemp(prefix="statemesh-dev-")
        base_path = Path(temporary)
    base_path = (base_path or DEFAULT_BASE_PATH).expanduser()
    config = NodeConfig(
        spec=spec,
        base_path=base_path,
        name=args.name or f"statemesh-{os.getpid()}",
        rpc_host="0.0.0.0" if args.rpc_external else "127.0.0.1",
        rpc_port=args.rpc_port,
        rpc_limits=rpc.limits,
        rpc_methods=rpc.methods,
        rpc_cors=rpc.cors,
        signer=signer,
        p2p_port=args.port,
        bootnodes=tuple(args.bootnodes),
        node_key_hex=_node_key_hex(args),
        node_key_file=args.node_key_file,
        genesis_shares=_genesis_shares(args),
        network=not args.no_network,
        operator=_operator(args),
        node_class=args.node_class,
        capacity=_declared_capacity(args, base_path),
        vdf_iterations=args.vdf_iterations,
        docker_host=args.docker_host,
        compute=not args.no_compute,
        workload_egress=EgressPolicy(args.workload_egress),
        private_engine=args.dev
        and not args.no_private_engine
        and not (args.docker_host or os.environ.get("DOCKER_HOST")),
        node_ip=address,
        allow_private_endpoints=args.allow_private_endpoints,
        ingress=None
        if args.no_ingress
        else IngressConfig(
            host="0.0.0.0" if args.ingress_external else "127.0.0.1",
            http_port=args.ingress_port,
            dns_port=args.dns_port,
            zone=DEFAULT_ZONE,
            data_plane=DataPlane(args.ingress_proxy),
        ),
        max_pids=args.max_pids,
        disk_marks=disk_marks,
        max_image_bytes=args.max_image_size,
        allow_private_registries=args.allow_private_registries,
        image_gc=image_gc,
        checkpoint=args.checkpoint,
        prometheus=None
        if args.no_prometheus
        else PrometheusConfig(
            host="0.0.0.0" if args.prometheus_external else "127.0.0.1",
            port=args.prometheus_port,
        ),
    )
    tune_collector()
    try:
        try:
            node = Node.open(config)
        except (DatabaseError, P2PError, PresenceError, ShareStoreError) as exc:
            raise CliError(str(exc)) from None
        try:
            trio.run(node.run)
        except BaseException as exc:
            # A service that cannot start fails inside the node's nurseries: find the one cause.
            conflict = _finality_conflict(exc)
            if conflict is not None:
                raise CliError(
                    f"finality conflict, the node halted: {conflict}. Nothing was written; the "
                    "database holds our finalized chain as it was"
                ) from None
            cause = sole_cause(exc)
            if isinstance(cause, IngressUnavailable | MetricsUnavailable):
                raise CliError(str(cause)) from None
            if isinstance(cause, OSError):
                raise CliError(
                    f"cannot serve JSON-RPC on port {args.rpc_port}: {cause.strerror}"
                ) from None
            raise
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return 0


def _node_key_hex(args: argparse.Namespace) -> str | None:
    """`--node-key`; for a `--dev` node that names no key, the well-known dev node key, which
    the dev chain's genesis names as its dev wallet's committee."""
    if args.node_key is None and args.node_key_file is None and args.dev:
        return DEV_NODE_KEY.seed.hex()
    return str(args.node_key) if args.node_key is not None else None


def _genesis_shares(args: argparse.Namespace) -> tuple[tuple[bytes, StoredShare], ...]:
    """The wallet shares a node holds from the start: a `--dev` node's share of the dev wallet."""
    if not args.dev:
        return ()
    share = dev_wallet_share()
    return ((share.public_package.group_public_key.encoding, share),)


def _operator(args: argparse.Namespace) -> Keypair | None:
    if args.operator:
        with keystore_errors():
            return resolve_signer(
                args.operator, keystore_from_args(args), PasswordReader.from_args(args).existing
            )
    if args.dev and not args.no_presence:
        return dev_keypair(DEV_OPERATOR)
    return None


def _declared_capacity(args: argparse.Namespace, base_path: Path) -> Capacity | None:
    given = (args.cores, args.memory_mb, args.disk_gb, args.gpus)
    if all(v is None for v in given):
        return None
    measured = measure_capacity(base_path)
    return Capacity(
        args.cores if args.cores is not None else measured.cores,
        args.memory_mb if args.memory_mb is not None else measured.memory_mb,
        args.disk_gb if args.disk_gb is not None else measured.disk_gb,
        args.gpus if args.gpus is not None else measured.gpus,
    )


def _build_spec(args: argparse.Namespace) -> int:
    spec = load_chain(argparse.Namespace(chain="dev" if args.dev else args.chain))
    json.dump(spec.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _purge_chain(args: argparse.Namespace) -> int:
    from node.runner import NodeConfig

    spec = load_chain(args)
    base = (args.base_path or DEFAULT_BASE_PATH).expanduser()
    target = NodeConfig(spec=spec, base_path=base, name="").db_path
    if not target.exists():
        print(f"{target} does not exist: nothing to purge")
        return 0
    if not args.y:
        if not sys.stdin.isatty():
            raise UsageError("purge-chain without -y needs a terminal to confirm")
        answer = input(f"Remove {target}? [y/N]: ")
        if answer.strip().lower() not in ("y", "yes"):
            print("aborted")
            return 1
    shutil.rmtree(target)
    print(f"{target} removed")
    return 0
