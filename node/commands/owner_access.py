"""The owner's signed request that `statemesh app logs` and `app events` send, so that a node
serves them an application's workload data: signed with the key that owns the application,
found in the keystore (or among the development accounts) by its address, or named by --from;
for the node id and chain the node proves it holds the key of, never for those it only names."""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chain.keys import DEV_ACCOUNTS, Keypair, dev_keypair
from node.commands.client_options import NodeRefused
from node.commands.key import add_keystore_argument, keystore_errors, keystore_from_args
from node.commands.password import PasswordReader, add_password_argument
from node.errors import CliError
from node.rpc.client import RpcCallError, RpcClient
from node.workload_access import (
    ACCESS_DENIED,
    CHALLENGE_BYTES,
    LIFETIME_SECONDS,
    IdentityProof,
    IdentityUnproven,
    check_identity,
    sign_access,
)
from wallet.keystore import resolve_signer


class NoOwnerKey(CliError):
    """No key at hand owns the application: its logs cannot be asked for."""


class NodeIdentityUnproven(CliError):
    """The node did not prove the id it claims: nothing is signed for it."""


def add_owner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="owner_key",
        metavar="KEY",
        help="the key that owns the application, to sign the request with (default: the "
        "keystore key or development account whose address owns it)",
    )
    add_keystore_argument(parser)
    add_password_argument(parser)


def owner_auth(
    args: argparse.Namespace, client: RpcClient, app: str, *, required: bool
) -> dict[str, Any] | None:
    """The `auth` param for `app` on the node `client` talks to, signed by --from or by the
    key that owns `app`. None when `app` does not exist (the node says so), or when no key at
    hand owns it and the request is not `required` (the node then serves what is public).
    Call inside `rpc_errors()`."""
    owner, signer = _signer(args, client, app)
    if signer is None:
        if required and owner is not None:
            raise NoOwnerKey(
                f"{app!r} is owned by {owner}, whose key is neither in keystore "
                f"{keystore_from_args(args).path} nor a development account: its logs are "
                "served to its owner only (pass --from KEY)"
            )
        return None
    proof = proven_identity(client)
    grant = sign_access(
        signer,
        genesis=proof.genesis,
        app=app,
        node=proof.node,
        expires=int(time.time()) + LIFETIME_SECONDS,
    )
    return grant.to_json()


def proven_identity(client: RpcClient) -> IdentityProof:
    """The node id and chain of the node `client` talks to, proven by its node key's signature
    of a fresh challenge: a node that names another's id to obtain a request usable there is
    refused before anything is signed."""
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    answer = client.call("node_identity", "0x" + challenge.hex())
    try:
        proof = IdentityProof.from_json(answer)
        check_identity(proof, challenge=challenge)
    except (ValueError, IdentityUnproven) as exc:
        raise NodeIdentityUnproven(
            f"the node at {client.url} did not prove its node id: {exc}; not signing a request "
            "for it"
        ) from None
    return proof


def _signer(
    args: argparse.Namespace, client: RpcClient, app: str
) -> tuple[str | None, Keypair | None]:
    """(the owner's address if looked up, the key to sign with if one is at hand)."""
    passwords = PasswordReader.from_args(args).existing
    keystore = keystore_from_args(args)
    with keystore_errors():
        if args.owner_key is not None:
            return None, resolve_signer(args.owner_key, keystore, passwords)
        info = client.call("apps_get", app)
        if info is None:
            return None, None
        owner: str = info["owner"]
        for name in DEV_ACCOUNTS:
            if dev_keypair(name).address == owner:
                return owner, dev_keypair(name)
        for key in keystore.list():
            if key.address == owner:
                return owner, resolve_signer(key.name, keystore, passwords)
    return owner, None


@contextmanager
def access_errors() -> Iterator[None]:
    """A node's refusal of the request as its message alone (its data repeats the reason)."""
    try:
        yield
    except RpcCallError as exc:
        if exc.code == ACCESS_DENIED:
            raise NodeRefused(exc.message) from None
        raise
