"""`statemesh node`'s JSON-RPC exposure and limit flags (Substrate's names where it has them):
`--rpc-methods`, `--rpc-cors`, `--rpc-max-connections`, `--rpc-max-connections-per-ip`,
`--rpc-max-subscriptions-per-connection`, `--rpc-max-subscriptions`, `--rpc-body-timeout`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from node.errors import UsageError
from node.rpc.exposure import RpcMethods
from node.rpc.limits import RpcLimits, RpcLimitsError
from node.rpc.origins import DEFAULT_ORIGINS, CorsError, CorsPolicy

_DEFAULTS = RpcLimits()


@dataclass(frozen=True, slots=True)
class RpcSettings:
    limits: RpcLimits
    methods: RpcMethods
    cors: CorsPolicy


def add_rpc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpc-methods",
        choices=[m.value for m in RpcMethods],
        default=RpcMethods.AUTO.value,
        help="which RPC methods to serve: safe ones only, or unsafe ones too (peers, node "
        "administration, anything that acts for this node's operator); auto (default) serves "
        "unsafe ones only while the RPC listens on loopback, so with --rpc-external it is safe",
    )
    parser.add_argument(
        "--rpc-cors",
        metavar="ORIGINS",
        default=None,
        help="web origins allowed to call the RPC (HTTP and WebSocket), comma-separated, or "
        f"all; default {','.join(DEFAULT_ORIGINS)} (:* is any port). Clients that send no "
        "Origin (the CLI, curl, programs) are always allowed",
    )
    limits = (
        (
            "--rpc-max-connections",
            "max_connections",
            "HTTP requests in flight plus WebSockets (a tenth kept for 127.0.0.1 and ::1)",
        ),
        (
            "--rpc-max-connections-per-ip",
            "max_connections_per_ip",
            "the same, from one client address (an IPv6 /64 counts as one)",
        ),
        (
            "--rpc-max-subscriptions-per-connection",
            "max_subscriptions_per_connection",
            "live subscriptions of one WebSocket",
        ),
        ("--rpc-max-subscriptions", "max_subscriptions", "live subscriptions of all clients"),
    )
    for flag, name, what in limits:
        parser.add_argument(
            flag,
            dest=f"rpc_{name}",
            type=int,
            default=getattr(_DEFAULTS, name),
            metavar="N",
            help=f"at most N {what} (default {getattr(_DEFAULTS, name)})",
        )
    parser.add_argument(
        "--rpc-body-timeout",
        type=float,
        default=_DEFAULTS.request_body_timeout,
        metavar="SECONDS",
        help="an HTTP request whose body takes longer is answered 408 and disconnected "
        f"(default {_DEFAULTS.request_body_timeout:g})",
    )


def rpc_settings(args: argparse.Namespace) -> RpcSettings:
    """The RPC settings the flags ask for; impossible values are a usage error."""
    try:
        limits = RpcLimits(
            max_connections=args.rpc_max_connections,
            max_connections_per_ip=args.rpc_max_connections_per_ip,
            max_subscriptions_per_connection=args.rpc_max_subscriptions_per_connection,
            max_subscriptions=args.rpc_max_subscriptions,
            request_body_timeout=args.rpc_body_timeout,
        )
    except RpcLimitsError as exc:
        raise UsageError(f"RPC limits: {exc}") from None
    try:
        cors = CorsPolicy.default() if args.rpc_cors is None else CorsPolicy.parse(args.rpc_cors)
    except CorsError as exc:
        raise UsageError(f"--rpc-cors: {exc}") from None
    return RpcSettings(limits, RpcMethods(args.rpc_methods), cors)
