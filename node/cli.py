"""Entry point of the `statemesh` command: parses arguments and hands off to a subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from node.commands import (
    app,
    billing,
    config,
    key,
    node,
    query,
    secret,
    testnet,
    tx,
    vdf,
    wallet,
    workloads,
)
from node.errors import CliError

COMMAND_GROUPS = (
    node, testnet, key, tx, query, app, billing, config, secret, wallet, workloads, vdf,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statemesh",
        description="StateMesh: a decentralized cloud node (chain full node and orchestrator).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
