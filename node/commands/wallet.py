"""`statemesh wallet …`: platform wallets whose key is split among a committee of nodes.
The login key (a keystore or development key) asks for the wallet with a `wallets.request`
transaction it signs and pays, and authorizes each transfer; the committee signs."""

from __future__ import annotations

import argparse
import time
from typing import Any

import trio

from chain.address import AddressError, decode_address
from chain.blocks import UnsignedTransaction
from chain.keys import Keypair
from chain.primitives import Hash32
from node.commands.client_options import (
    NodeRefused,
    add_client_arguments,
    emit,
    rpc_client,
    rpc_errors,
)
from node.commands.key import add_keystore_argument, keystore_errors, keystore_from_args
from node.commands.password import PasswordReader, add_password_argument
from node.commands.tx import describe_status, sign_call, watch_until_final
from node.errors import UsageError
from node.rpc.client import RpcCallError, RpcClient
from wallet.committee import REQUEST, REQUEST_VAULT
from wallet.keystore import resolve_signer
from wallet.member import TRANSFER


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wallet = sub.add_parser("wallet", help="platform wallets (threshold keys)", description=__doc__)
    actions = wallet.add_subparsers(dest="wallet_command", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="ask for a wallet owned by a login key (it signs and pays wallets.request)",
    )
    create.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the committee to register the wallet (default 120)",
    )
    create.set_defaults(handler=_create)

    vault = actions.add_parser(
        "vault",
        help="ask for the login key's vault key, which its secrets are sealed to (it signs and "
        "pays wallets.request_vault)",
    )
    vault.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the committee to register the vault key (default 120)",
    )
    vault.set_defaults(handler=_vault)

    show = actions.add_parser("show", help="a wallet's committee, threshold and balance")
    show.add_argument("address")
    show.set_defaults(handler=_show)
    add_client_arguments(show)

    transfer = actions.add_parser("transfer", help="send funds from a wallet")
    transfer.add_argument("--wallet", required=True, metavar="ADDRESS")
    transfer.add_argument("--to", required=True, metavar="ADDRESS")
    transfer.add_argument("--amount", required=True, metavar="N", help="in the smallest unit")
    transfer.add_argument("--nonce", type=int, metavar="N", help="default: the wallet's next")
    transfer.set_defaults(handler=_transfer)

    for parser in (create, vault, transfer):
        parser.add_argument(
            "--login",
            required=True,
            metavar="KEY",
            help="the owner's login key: keystore key name, or dev-alice, dev-bob, …",
        )
        add_keystore_argument(parser)
        add_password_argument(parser)
        add_client_arguments(parser)


def _login(args: argparse.Namespace) -> Keypair:
    with keystore_errors():
        return resolve_signer(
            args.login, keystore_from_args(args), PasswordReader.from_args(args).existing
        )


def _address(value: str, flag: str) -> bytes:
    try:
        return decode_address(value)
    except AddressError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _create(args: argparse.Namespace) -> int:
    """Submit `wallets.request` signed by the login key, follow it until finalized, then wait
    for the committee the chain chose to register the wallet."""
    return _ask_committee(args, vault=False)


def _vault(args: argparse.Namespace) -> int:
    """As `create`, with `wallets.request_vault`: the key is for encryption only."""
    return _ask_committee(args, vault=True)


def _ask_committee(args: argparse.Namespace, *, vault: bool) -> int:
    login = _login(args)
    client = rpc_client(args)
    with rpc_errors():
        encoded = sign_call(client, login, (REQUEST_VAULT if vault else REQUEST).call())
        statuses, receipt = trio.run(watch_until_final, args, client, encoded)
        if receipt is None:
            final = describe_status(statuses[-1]) if statuses else "dropped"
            raise NodeRefused(f"the wallet request was {final}")
        if not receipt.get("success"):
            raise NodeRefused(f"the wallet request failed: {receipt.get('error')}")
        request_id = _request_id(receipt)
        if not args.json:
            print(f"  request {request_id}: waiting for its committee", flush=True)
        request = _wait_registered(client, request_id, args.timeout)
    wallet: dict[str, Any] = request["wallet"]
    emit(
        args,
        request,
        [
            f"{'vault key' if vault else 'wallet'} {wallet['address']}  {wallet['threshold']} of "
            f"{len(wallet['committee'])} members  (request {request_id})",
            *(f"  member {m}" for m in wallet["committee"]),
        ],
    )
    return 0


def _request_id(receipt: dict[str, Any]) -> int:
    for event in receipt.get("events", []):
        if event["module"] == "wallets" and event["name"] in ("WalletRequested", "VaultRequested"):
            return int(event["data"]["request"])
    raise NodeRefused("the finalized request carries no WalletRequested event")


def _wait_registered(client: RpcClient, request_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        request: dict[str, Any] | None = client.call("wallet_request", request_id)
        if request is None:
            raise NodeRefused(f"the node knows no wallet request {request_id}")
        if request["status"] == "registered":
            return request
        if request["status"] != "pending":
            raise NodeRefused(f"wallet request {request_id} is {request['status']}")
        if time.monotonic() > deadline:
            raise NodeRefused(
                f"wallet request {request_id} is still pending after {timeout:g} s (it expires "
                f"at block #{request['expiresAt']}, and its deposit comes back then)"
            )
        time.sleep(0.5)


def _show(args: argparse.Namespace) -> int:
    _address(args.address, "ADDRESS")
    client = rpc_client(args)
    with rpc_errors():
        info: dict[str, Any] | None = client.call("wallet_show", args.address)
    if info is None:
        emit(args, None, [f"no wallet {args.address}"])
        return 1
    emit(
        args,
        info,
        [
            f"wallet {info['address']}  {info['threshold']} of {len(info['committee'])} members"
            f"  free {info['free']}",
            f"  login {info['login']}  registered at #{info['registeredAt']}",
            *(f"  member {m}" for m in info["committee"]),
        ],
    )
    return 0


def login_signature(
    login: Keypair, genesis: Hash32, wallet: bytes, nonce: int, dest: bytes, amount: int
) -> bytes:
    """The login key's signature of the exact transfer the committee will sign."""
    call = TRANSFER.call(dest=dest, amount=amount)
    return login.sign(UnsignedTransaction(genesis, wallet, nonce, 0, call).signing_payload())


NONCE_ATTEMPTS = 3
"""Signing rounds `wallet transfer` tries when the wallet's nonce is taken meanwhile."""
NONCE_TAKEN = ("stale nonce", "priority too low")


def _transfer(args: argparse.Namespace) -> int:
    wallet = _address(args.wallet, "--wallet")
    dest = _address(args.to, "--to")
    try:
        amount = int(args.amount)
    except ValueError:
        raise UsageError(f"--amount must be an integer, got {args.amount!r}") from None
    if amount < 0:
        raise UsageError("--amount must not be negative")
    login = _login(args)
    client = rpc_client(args)
    with rpc_errors():
        genesis = Hash32(bytes.fromhex(client.call("chain_getBlockHash", 0)[2:]))
        for attempt in range(1, NONCE_ATTEMPTS + 1):
            nonce = args.nonce
            if nonce is None:
                nonce = int(client.call("system_accountNextIndex", args.wallet))
            signature = login_signature(login, genesis, wallet, nonce, dest, amount)
            try:
                tx_hash = client.call(
                    "wallet_transfer", args.wallet, args.to, str(amount),
                    "0x" + signature.hex(), nonce,
                )  # fmt: skip
                break
            except RpcCallError as exc:
                # Another transaction of the wallet (a payout its committee signed) took the
                # nonce while this one was signed: sign again for the next one.
                taken = exc.message.startswith(NONCE_TAKEN)
                if args.nonce is not None or not taken or attempt == NONCE_ATTEMPTS:
                    raise
        signing = client.call("wallet_signingStatus", tx_hash)
    lines = [f"submitted {tx_hash}"]
    if signing:
        lines += [f"  signed by {m}" for m in signing["signers"]]
        lines += [f"  skipped {s['member']}: {s['reason']}" for s in signing["skipped"]]
    emit(args, {"hash": tx_hash, "status": "submitted", "signing": signing}, lines)
    return 0
