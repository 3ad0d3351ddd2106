"""What every client command shares: `--rpc URL`, `--json`, and turning RPC failures into one
clear line for the user."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from node.errors import CliError
from node.rpc.client import RpcCallError, RpcClient, RpcClientError, default_url


class NodeUnreachable(CliError):
    exit_code = 3


class NodeRefused(CliError):
    """The node answered with an error (an invalid transaction, an unknown block, ...)."""


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rpc",
        metavar="URL",
        default=None,
        help=f"the node's JSON-RPC address (default: $STATEMESH_RPC, else {default_url()})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def rpc_client(args: argparse.Namespace) -> RpcClient:
    try:
        return RpcClient(args.rpc)
    except RpcClientError as exc:
        raise NodeUnreachable(str(exc)) from None


@contextmanager
def rpc_errors() -> Iterator[None]:
    try:
        yield
    except RpcClientError as exc:
        raise NodeUnreachable(str(exc)) from None
    except RpcCallError as exc:
        detail = f": {exc.data}" if exc.data and exc.data != exc.message else ""
        raise NodeRefused(f"{exc.message}{detail}") from None


def emit(args: argparse.Namespace, document: Any, human: list[str]) -> None:
    """Print `document` as JSON with --json, else the human lines."""
    if getattr(args, "json", False):
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in human:
            print(line)
    sys.stdout.flush()
