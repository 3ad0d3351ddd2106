"""`statemesh config …`: an account's configurations on chain (plain key/value data that
applications read as environment variables or files): create, update, delete, list, get."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chain.runtime import owned_names
from chain.runtime.configs import encode_data
from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors
from node.commands.tx import add_signing_arguments, submit_call
from node.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "config", help="manage configurations applications read", description=__doc__
    )
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    for name, handler, what in (
        ("create", _create, "store a new configuration"),
        ("update", _update, "store the next version (the replicas that read it are replaced)"),
    ):
        parser = actions.add_parser(name, help=what)
        parser.add_argument("name")
        add_data_arguments(parser)
        parser.set_defaults(handler=handler)
        add_signing_arguments(parser)
    delete = actions.add_parser("delete", help="remove a configuration no application reads")
    delete.add_argument("name")
    delete.set_defaults(handler=_delete)
    add_signing_arguments(delete)

    listing = actions.add_parser("list", help="an account's configurations")
    listing.add_argument("--owner", required=True, metavar="ADDRESS")
    listing.set_defaults(handler=_list)
    add_client_arguments(listing)
    get = actions.add_parser("get", help="one configuration's keys and values")
    get.add_argument("name")
    get.add_argument("--owner", required=True, metavar="ADDRESS")
    get.set_defaults(handler=_get)
    add_client_arguments(get)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Kubernetes' `--from-literal KEY=VALUE` and `--from-file [KEY=]PATH`, repeatable."""
    parser.add_argument(
        "--from-literal", action="append", default=[], metavar="KEY=VALUE", dest="literals"
    )
    parser.add_argument(
        "--from-file",
        action="append",
        default=[],
        metavar="[KEY=]PATH",
        dest="files",
        help="the file's bytes under KEY (default: the file's name)",
    )


def read_data(literals: list[str], files: list[str]) -> dict[str, bytes]:
    """The key/value map the arguments give; each key once, each a valid key name."""
    data: dict[str, bytes] = {}

    def put(key: str, value: bytes) -> None:
        try:
            owned_names.check_key(key.encode())
        except owned_names.BadName as exc:
            raise UsageError(str(exc)) from None
        if key in data:
            raise UsageError(f"key {key!r} is given twice")
        data[key] = value

    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep:
            raise UsageError(f"--from-literal takes KEY=VALUE, got {key[:40]!r}")
        put(key, value.encode())
    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = Path(spec).name, spec
        try:
            put(key, Path(path).read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise UsageError("give at least one --from-literal or --from-file")
    return data


def _create(args: argparse.Namespace) -> int:
    data = encode_data(read_data(args.literals, args.files))
    return submit_call(args, "configs", "create", {"name": args.name.encode(), "data": data})


def _update(args: argparse.Namespace) -> int:
    data = encode_data(read_data(args.literals, args.files))
    return submit_call(args, "configs", "update", {"name": args.name.encode(), "data": data})


def _delete(args: argparse.Namespace) -> int:
    return submit_call(args, "configs", "delete", {"name": args.name.encode()})


def listing_line(item: dict[str, Any]) -> str:
    keys = ", ".join(f"{k['key']} ({k['size']} B)" for k in item["keys"])
    used = ", ".join(item["usedBy"]) or "no application"
    return f"{item['name']}  version {item['version']}  keys {keys}  used by {used}"


def _list(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found: list[dict[str, Any]] = client.call("configs_list", args.owner)
    emit(args, found, [listing_line(c) for c in found] or ["no configurations"])
    return 0


def _get(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found: dict[str, Any] | None = client.call("configs_get", args.owner, args.name)
    if found is None:
        emit(args, None, [f"no config {args.name!r}"])
        return 1
    lines = [listing_line(found)] + [f"  {k}={v}" for k, v in found["data"].items()]
    emit(args, found, lines)
    return 0
