"""`statemesh tx …`: sign a call with a keystore or development key, submit it to a node, and by
default follow it until it is finalized."""

from __future__ import annotations

import argparse
from contextlib import aclosing
from typing import Any

import rlp
import trio

from chain.blocks import Call, tx_hash
from chain.keys import Keypair, sign_transaction
from chain.primitives import Hash32
from chain.runtime.executive import default_modules
from chain.runtime.framework import CallDef
from consensus.tx_status import status_is_final
from node.commands.client_options import (
    NodeRefused,
    add_client_arguments,
    emit,
    rpc_client,
    rpc_errors,
)
from node.commands.key import add_keystore_argument, keystore_errors, keystore_from_args
from node.commands.password import PasswordReader, add_password_argument
from node.commands.query import receipt_lines
from node.errors import UsageError
from node.rpc.client import RpcClient
from wallet.keystore import resolve_signer


def _calls() -> dict[tuple[str, str], CallDef]:
    return {(c.module, c.name): c for m in default_modules() for c in m.calls()}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tx = sub.add_parser("tx", help="sign and submit a transaction", description=__doc__)
    actions = tx.add_subparsers(dest="tx_command", required=True, metavar="CALL")

    transfer = actions.add_parser("transfer", help="balances.transfer: send funds")
    transfer.add_argument("--to", required=True, metavar="ADDRESS", help="the receiving address")
    transfer.add_argument(
        "--amount", required=True, metavar="N", help="amount in the smallest unit (an integer)"
    )
    transfer.set_defaults(handler=_transfer)

    remark = actions.add_parser("remark", help="system.remark: record bytes on chain")
    remark.add_argument("--data", required=True, help="text, or 0x-prefixed hex")
    remark.set_defaults(handler=_remark)

    call = actions.add_parser("call", help="any runtime call, arguments as name=value")
    call.add_argument("module")
    call.add_argument("function")
    call.add_argument("arguments", nargs="*", metavar="NAME=VALUE")
    call.set_defaults(handler=_generic)

    for parser in (transfer, remark, call):
        add_signing_arguments(parser)


def add_signing_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that signs and submits a transaction takes."""
    parser.add_argument(
        "--from",
        dest="sender",
        required=True,
        metavar="KEY",
        help="keystore key name, or dev-alice, dev-bob, … (development accounts)",
    )
    parser.add_argument("--tip", default="0", metavar="N", help="tip for the block author")
    parser.add_argument("--nonce", type=int, metavar="N", help="default: the next free nonce")
    parser.add_argument("--no-wait", action="store_true", help="return once the node accepted it")
    add_keystore_argument(parser)
    add_password_argument(parser)
    add_client_arguments(parser)


def _transfer(args: argparse.Namespace) -> int:
    return submit_call(args, "balances", "transfer", {"dest": args.to, "amount": args.amount})


def _remark(args: argparse.Namespace) -> int:
    return submit_call(args, "system", "remark", {"data": args.data})


def _generic(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    for item in args.arguments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"arguments are NAME=VALUE, got {item!r}")
        values[name] = value
    return submit_call(args, args.module, args.function, values)


def build_call(module: str, function: str, values: dict[str, Any]) -> Call:
    call_def = _calls().get((module, function))
    if call_def is None:
        known = ", ".join(f"{m}.{f}" for m, f in sorted(_calls()))
        raise UsageError(f"no call {module}.{function} (known: {known})")
    try:
        return call_def.call(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def submit_call(
    args: argparse.Namespace,
    module: str,
    function: str,
    values: dict[str, Any],
    *,
    signer: Keypair | None = None,
) -> int:
    """Sign `module.function(values)` with --from (or `signer`, already read from it), submit
    it, and follow it (unless --no-wait); the exit code says whether the call succeeded in a
    finalized block."""
    call = build_call(module, function, values)
    try:
        tip = int(args.tip)
    except ValueError:
        raise UsageError(f"--tip must be an integer, got {args.tip!r}") from None
    if tip < 0:
        raise UsageError("--tip must not be negative")
    if signer is None:
        signer = signer_from_args(args)
    client = rpc_client(args)
    with rpc_errors():
        encoded = sign_call(client, signer, call, tip, args.nonce)
        if args.no_wait:
            tx_hash = client.call("author_submitExtrinsic", "0x" + encoded.hex())
            emit(args, {"hash": tx_hash, "status": "submitted"}, [f"submitted {tx_hash}"])
            return 0
        return trio.run(_follow, args, client, encoded)


def signer_from_args(args: argparse.Namespace) -> Keypair:
    """The key --from names (a password asked for if the keystore needs one)."""
    with keystore_errors():
        return resolve_signer(
            args.sender, keystore_from_args(args), PasswordReader.from_args(args).existing
        )


def sign_call(
    client: RpcClient, signer: Keypair, call: Call, tip: int = 0, nonce: int | None = None
) -> bytes:
    """`call` signed by `signer` for the node's chain, at its next nonce unless given."""
    genesis = client.call("chain_getBlockHash", 0)
    if nonce is None:
        nonce = int(client.call("system_accountNextIndex", signer.address))
    tx = sign_transaction(
        signer, genesis_hash=Hash32(bytes.fromhex(genesis[2:])), nonce=nonce, call=call, tip=tip
    )
    return rlp.encode(tx)  # type: ignore[no-any-return]


async def _follow(args: argparse.Namespace, client: RpcClient, encoded: bytes) -> int:
    statuses, receipt = await watch_until_final(args, client, encoded)
    if receipt is not None:
        emit(args, {"statuses": statuses, "receipt": receipt}, receipt_lines(receipt))
        return 0 if receipt.get("success") else 1
    final = statuses[-1] if statuses else "dropped"
    emit(args, {"statuses": statuses}, [f"not finalized: {describe_status(final)}"])
    raise NodeRefused(f"transaction was {describe_status(final)}")


async def watch_until_final(
    args: argparse.Namespace, client: RpcClient, encoded: bytes
) -> tuple[list[Any], dict[str, Any] | None]:
    """Submit and follow a transaction (each status printed unless --json): its statuses, and
    its receipt once finalized (None if it never was)."""
    statuses: list[Any] = []
    updates = client.watch("author_submitAndWatchExtrinsic", "0x" + encoded.hex())
    async with aclosing(updates):
        async for status in updates:
            statuses.append(status)
            if not args.json:
                print(f"  {describe_status(status)}", flush=True)
            if status_is_final(status):
                break
    final = statuses[-1] if statuses else "dropped"
    if isinstance(final, dict) and "finalized" in final:
        receipt: dict[str, Any] = client.call("chain_getExtrinsic", "0x" + tx_hash(encoded).hex())
        return statuses, receipt
    return statuses, None


def describe_status(status: Any) -> str:
    if isinstance(status, str):
        return status
    key, value = next(iter(status.items()))
    return f"{key} {value}"
