"""`statemesh query …`: read accounts, blocks, events and extrinsics from a node."""

from __future__ import annotations

import argparse
from typing import Any

import rlp

from chain.address import encode_address
from chain.blocks import SignedTransaction
from chain.errors import InvalidTransaction
from chain.runtime.executive import default_modules
from node.commands.billing import earnings_command
from node.commands.client_options import add_client_arguments, emit, rpc_client, rpc_errors
from node.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    query = sub.add_parser("query", help="read chain state from a node", description=__doc__)
    what = query.add_subparsers(dest="query_command", required=True, metavar="WHAT")

    account = what.add_parser("account", help="an account's balance and nonce")
    account.add_argument("address")
    account.add_argument("--at", metavar="BLOCK_HASH", help="default: the best block")
    account.set_defaults(handler=_account)

    block = what.add_parser("block", help="a block: header, extrinsics and events")
    which = block.add_mutually_exclusive_group()
    which.add_argument("--finalized", action="store_true", help="the last finalized block")
    which.add_argument("--best", action="store_true", help="the best block (default)")
    which.add_argument("--number", type=int, metavar="N")
    which.add_argument("--hash", metavar="0xHASH")
    block.set_defaults(handler=_block)

    tx = what.add_parser("tx", help="where an extrinsic was included and what it did")
    tx.add_argument("hash", metavar="0xHASH")
    tx.set_defaults(handler=_tx)

    node = what.add_parser("node", help="a registered node: class, capacity, status, tower")
    node.add_argument("node_id", metavar="NODE_ID")
    node.set_defaults(handler=_node)

    towers = what.add_parser("towers", help="nodes by Time Tower, best first")
    towers.add_argument("--active", action="store_true", help="the active set (default)")
    towers.add_argument("--class", dest="node_class", choices=("cpu", "gpu", "storage"))
    towers.add_argument("--offset", type=int, default=0)
    towers.add_argument("--limit", type=int, default=100)
    towers.set_defaults(handler=_towers)

    epoch = what.add_parser("epoch", help="the current epoch and its last transition")
    epoch.set_defaults(handler=_epoch)

    earnings = what.add_parser("earnings", help="what an operator was paid, per period")
    earnings.add_argument("operator", metavar="OPERATOR")
    earnings.add_argument("--offset", type=int, default=0)
    earnings.add_argument("--limit", type=int, default=100)
    earnings.set_defaults(handler=earnings_command)

    for parser in (account, block, tx, node, towers, epoch, earnings):
        add_client_arguments(parser)


def _account(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        params: list[Any] = [args.address] + ([args.at] if args.at else [])
        info = client.call("system_account", *params)
    emit(
        args,
        info,
        [
            f"address  {info['address']}",
            f"free     {info['free']}",
            f"nonce    {info['nonce']}",
            f"at block #{info['blockNumber']} {info['blockHash']}",
        ],
    )
    return 0


def _block(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        if args.finalized:
            block_hash = client.call("chain_getFinalizedHead")
        elif args.number is not None:
            block_hash = client.call("chain_getBlockHash", args.number)
            if block_hash is None:
                raise UsageError(f"no block #{args.number} on the best chain yet")
        elif args.hash:
            block_hash = args.hash
        else:
            block_hash = client.call("chain_getBlockHash")
        signed = client.call("chain_getBlock", block_hash)
        if signed is None:
            raise UsageError(f"no block {block_hash}")
        events = client.call("system_events", block_hash)
    header = signed["block"]["header"]
    extrinsics = [_decode_extrinsic(x) for x in signed["block"]["extrinsics"]]
    document = {"hash": block_hash, "header": header, "extrinsics": extrinsics, "events": events}
    lines = [
        f"block #{int(header['number'], 16)} {block_hash}",
        f"  parent      {header['parentHash']}",
        f"  state root  {header['stateRoot']}",
        f"  slot        {header['slot']}  timestamp {header['timestamp']}",
        f"  author      {header['author']}",
        f"  extrinsics  {len(extrinsics)}",
    ]
    for i, x in enumerate(extrinsics[:20]):
        args_text = ", ".join(f"{k}={v}" for k, v in x.get("args", {}).items())
        lines.append(
            f"    [{i}] {x.get('sender')} nonce {x.get('nonce')}: {x['call']}({args_text})"
        )
    if len(extrinsics) > 20:
        lines.append(f"    … {len(extrinsics) - 20} more (use --json)")
    lines.append(f"  events      {len(events)}")
    emit(args, document, lines)
    return 0


def _decode_extrinsic(hex_text: str) -> dict[str, Any]:
    """Show an extrinsic as people read it; the node only serves the bytes."""
    try:
        tx: SignedTransaction = rlp.decode(bytes.fromhex(hex_text[2:]), sedes=SignedTransaction)
    except (ValueError, rlp.DecodingError, rlp.DeserializationError):
        return {"call": "<undecodable>", "raw": hex_text}
    module, function = (
        tx.call.module.decode(errors="replace"),
        tx.call.function.decode(errors="replace"),
    )
    decoded: dict[str, Any] = {
        "sender": encode_address(tx.sender),
        "nonce": tx.nonce,
        "tip": tx.tip,
        "call": f"{module}.{function}",
    }
    for m in default_modules():
        for call in m.calls():
            if call.module == module and call.name == function:
                try:
                    decoded["args"] = call.args_to_json(call.decode_args(tx.call.args))
                except InvalidTransaction:
                    decoded["args"] = {"raw": "0x" + tx.call.args.hex()}
    return decoded


def _tx(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        receipt = client.call("chain_getExtrinsic", args.hash)
    if receipt is None:
        emit(args, None, [f"{args.hash} is not in any block this node knows"])
        return 1
    emit(args, receipt, receipt_lines(receipt))
    return 0


def receipt_lines(receipt: dict[str, Any]) -> list[str]:
    """An included extrinsic as people read it: where, whether it worked, what it emitted."""
    result = "success" if receipt["success"] else f"failed: {receipt.get('error')}"
    lines = [
        f"extrinsic {receipt['hash']}",
        f"  in block #{receipt['blockNumber']} {receipt['blockHash']} (index {receipt['index']})",
        f"  result: {result}",
    ]
    for event in receipt.get("events", []):
        data = ", ".join(f"{k}={v}" for k, v in event["data"].items())
        lines.append(f"  event {event['module']}.{event['name']}({data})")
    return lines


def _node_lines(info: dict[str, Any]) -> list[str]:
    capacity = info["capacity"]
    tower = info["tower"]
    jailed = info.get("jailedUntilEpoch")
    return [
        f"node      {info['nodeId']}",
        f"operator  {info['operator']}",
        f"class     {info['class']}  cores {capacity['cores']}  memory {capacity['memoryMb']} MB"
        f"  disk {capacity['diskGb']} GB  gpus {capacity['gpus']}",
        f"status    {info['status']}" + (f" until epoch {jailed}" if jailed is not None else ""),
        f"tower     height {tower['height']}  proofs this epoch {tower['proofsInEpoch']}"
        f"  misses {info['misses']}",
        f"address   {info['address']}",
    ]


def _node(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        info = client.call("nodes_get", args.node_id)
    if info is None:
        emit(args, None, [f"{args.node_id} is not a registered node"])
        return 1
    emit(args, info, _node_lines(info))
    return 0


def _towers(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        page = client.call("towers_active", args.node_class, args.offset, args.limit)
    lines = [f"{page['total']} active node(s)"]
    for info in page["nodes"]:
        lines.append(
            f"  {info['nodeId']}  {info['class']:<7}  tower {info['tower']['height']:>6}"
            f"  operator {info['operator']}"
        )
    emit(args, page, lines)
    return 0


def _epoch(args: argparse.Namespace) -> int:
    client = rpc_client(args)
    with rpc_errors():
        info = client.call("epochs_current")
    lines = [
        f"epoch {info['number']} started at block #{info['startBlock']}"
        f" ({info['length']} blocks; next transition at #{info['nextTransition']},"
        f" best #{info['bestBlock']})",
        f"  active {info['active']}  standby {info['standby']}  jailed {info['jailed']}",
    ]
    for change in info["lastChanges"]:
        lines.append(f"  {change['node']} {change['change']}")
    emit(args, info, lines)
    return 0
