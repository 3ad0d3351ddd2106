"""`statemesh node`'s RPC flags: Substrate's defaults, and values that cannot work refused
before the node starts (exit 2, as argparse does)."""

from __future__ import annotations

import pytest

from node.cli import build_parser, main
from node.commands.rpc_options import rpc_settings
from node.rpc.exposure import RpcMethods
from node.rpc.limits import RpcLimits
from node.rpc.origins import CorsPolicy


def test_defaults() -> None:
    settings = rpc_settings(build_parser().parse_args(["node", "--dev"]))
    assert settings.methods is RpcMethods.AUTO
    assert settings.cors == CorsPolicy.default()
    assert settings.limits == RpcLimits()
    assert (settings.limits.max_connections, settings.limits.max_connections_per_ip) == (100, 25)
    assert settings.limits.request_body_timeout == 5.0


def test_flags() -> None:
    args = build_parser().parse_args(
        [
            "node",
            "--rpc-methods",
            "unsafe",
            "--rpc-cors",
            "all",
            "--rpc-max-connections",
            "500",
            "--rpc-max-connections-per-ip",
            "50",
            "--rpc-max-subscriptions-per-connection",
            "16",
            "--rpc-max-subscriptions",
            "1000",
            "--rpc-body-timeout",
            "2.5",
        ]
    )
    settings = rpc_settings(args)
    assert settings.methods is RpcMethods.UNSAFE
    assert settings.cors.allows("http://anything.example")
    limits = settings.limits
    assert (limits.max_connections, limits.max_connections_per_ip) == (500, 50)
    assert (limits.max_subscriptions_per_connection, limits.max_subscriptions) == (16, 1000)
    assert limits.request_body_timeout == 2.5


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--rpc-max-connections-per-ip", "0"],
            "RPC limits: max_connections_per_ip must be a positive integer, got 0",
        ),
        (
            ["--rpc-body-timeout", "0"],
            "RPC limits: request_body_timeout must be a positive number, got 0.0",
        ),
        (
            ["--rpc-body-timeout", "nan"],
            "RPC limits: request_body_timeout must be a finite number, got nan",
        ),
        (
            ["--rpc-body-timeout", "inf"],
            "RPC limits: request_body_timeout must be a finite number, got inf",
        ),
        (["--rpc-cors", "evil"], "--rpc-cors: 'evil' is not an origin"),
    ],
)
def test_impossible_values_are_refused_before_anything_starts(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "--dev", "--no-network", "--rpc-port", "0", *flags]) == 2
    assert message in capsys.readouterr().err
