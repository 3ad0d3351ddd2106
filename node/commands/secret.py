"""`statemesh secret …`: an account's secrets on chain, sealed here to the account's vault key
(a threshold key of a committee of nodes) so that the chain, and any node that does not run a
replica reading them, holds only ciphertext. `list` shows names, versions, key names and sizes
and which applications read them; never a value."""

from __future__ import annotations

import argparse
import os
from typing import Any

from chain.address import encode_address
from chain.runtime.secrets import encode_key_sizes
from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors
from node.commands.config import add_data_arguments, listing_line, read_data
from node.commands.tx import add_signing_arguments, signer_from_args, submit_call
from node.errors import UsageError
from wallet.vault import seal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    secret = sub.add_parser("secret", help="manage secrets applications read", description=__doc__)
    actions = secret.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    for name, what in (
        ("create", "seal and store a new secret"),
        ("update", "seal and store its next version (the replicas that read it are replaced)"),
    ):
        parser = actions.add_parser(name, help=what)
        parser.add_argument("name")
        add_data_arguments(parser)
        parser.set_defaults(handler=_store, function=name)
        add_signing_arguments(parser)
    delete = actions.add_parser("delete", help="remove a secret no application reads")
    delete.add_argument("name")
    delete.set_defaults(handler=_delete)
    add_signing_arguments(delete)

    listing = actions.add_parser("list", help="an account's secrets (never their values)")
    listing.add_argument("--owner", required=True, metavar="ADDRESS")
    listing.set_defaults(handler=_list)
    add_client_arguments(listing)


def _store(args: argparse.Namespace) -> int:
    data = read_data(args.literals, args.files)
    signer = signer_from_args(args)
    owner = encode_address(signer.public)
    client = rpc_client(args)
    with rpc_errors():
        vault: dict[str, Any] | None = client.call("wallet_vault", owner)
        known: list[dict[str, Any]] = client.call("secrets_list", owner)
    if vault is None:
        raise UsageError(f"{owner} has no vault key yet: ask for one first")
    current = next((s["version"] for s in known if s["name"] == args.name), None)
    if args.function == "create":
        version = 1
    elif current is None:
        raise UsageError(f"{owner} has no secret {args.name!r}")
    else:
        # Sealed for the version the chain will give it: the version is part of what the
        # envelope authenticates, so an envelope cannot be replayed as another version.
        version = current + 1
    envelope = seal(
        bytes.fromhex(vault["vaultKey"][2:]), signer.public, args.name, version, data, os.urandom
    )
    keys = encode_key_sizes(tuple((k, len(v)) for k, v in data.items()))
    values = {"name": args.name.encode(), "keys": keys, "envelope": envelope}
    return submit_call(args, "secrets", args.function, values, signer=signer)


def _delete(args: argparse.Namespace) -> int:
    return submit_call(args, "secrets", "delete", {"name": args.name.encode()})


def _list(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        found: list[dict[str, Any]] = client.call("secrets_list", args.owner)
    emit(args, found, [listing_line(s) for s in found] or ["no secrets"])
    return 0
