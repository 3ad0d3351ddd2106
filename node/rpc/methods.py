"""The node's JSON-RPC methods (Substrate's names where the concept is the same): system_*,
chain_*, state_*, author_*, and typed module queries (system_account, system_events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from chain.address import AddressError, decode_address, encode_address
from chain.blocks import Block, Header
from chain.errors import InvalidTransaction
from chain.genesis import ChainSpec
from chain.primitives import AccountId, Hash32
from chain.runtime import system
from chain.runtime.framework import Event
from node.chain_service import ChainService, TxStatus
from node.rpc.errors import UNKNOWN_BLOCK, RpcError, invalid_transaction_error
from node.rpc.registry import Params, Registry


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    version: str
    spec: ChainSpec


# -- parameter converters (their ValueError messages reach the client as -32602) ------------


def hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError("not valid hex") from None


def block_hash(value: Any) -> Hash32:
    raw = hex_bytes(value)
    if len(raw) != 32:
        raise ValueError(f"a block hash is 32 bytes, got {len(raw)}")
    return Hash32(raw)


def block_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a block number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a block number") from None
    else:
        raise ValueError("expected a block number (integer or hex string)")
    if number < 0:
        raise ValueError("a block number is not negative")
    return number


def account(value: Any) -> AccountId:
    if not isinstance(value, str):
        raise ValueError("expected an address")
    try:
        return decode_address(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


# -- JSON views ---------------------------------------------------------------------------------


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def header_json(header: Header) -> dict[str, Any]:
    return {
        "parentHash": _hex(header.parent_hash),
        "number": hex(header.number),
        "stateRoot": _hex(header.state_root),
        "extrinsicsRoot": _hex(header.extrinsics_root),
        "timestamp": header.timestamp,
        "slot": header.slot,
        "author": encode_address(header.author) if any(header.author) else None,
        "seal": _hex(header.seal),
        "hash": _hex(header.hash),
    }


def block_json(block: Block) -> dict[str, Any]:
    return {
        "block": {
            "header": header_json(block.header),
            "extrinsics": [_hex(x) for x in block.extrinsics],
        },
        "justifications": None,
    }


def build_registry(chain: ChainService, info: NodeInfo) -> Registry:
    registry = Registry()
    store = chain.store

    def resolve(params: Params, name: str = "hash") -> Hash32:
        """The block a query is `at`: the given hash (which must be known) or the best block."""
        at = params.optional(name, block_hash)
        if at is None:
            return store.best_header.hash
        if store.header(at) is None:
            raise RpcError(UNKNOWN_BLOCK, f"unknown block 0x{at.hex()}")
        return at

    # -- system -------------------------------------------------------------------------------

    registry.add_method("system_name", lambda params: "statemesh")
    registry.add_method("system_version", lambda params: info.version)
    registry.add_method("system_chain", lambda params: info.spec.name)
    registry.add_method("system_chainType", lambda params: info.spec.chain_type)
    registry.add_method("system_nodeName", lambda params: info.name)
    registry.add_method(
        "system_health",
        lambda params: {
            "peers": 0,
            "isSyncing": False,
            "shouldHavePeers": len(chain.authorities) > 1,
        },
    )
    registry.add_method("system_peers", lambda params: [])

    @registry.method("system_account", params=["address", "hash?"])
    def system_account(params: Params) -> dict[str, Any]:
        who = params.required("address", account)
        at = resolve(params)
        record = system.account(store.state_at(at), who)
        return {
            "address": encode_address(who),
            "nonce": record.nonce,
            "free": str(record.free),
            "blockHash": _hex(at),
            "blockNumber": store.require_header(at).number,
        }

    @registry.method("system_accountNextIndex", params=["address"])
    def account_next_index(params: Params) -> int:
        who = params.required("address", account)
        nonce = system.account(store.best_state(), who).nonce
        pooled = {tx.nonce for tx in chain.pool.pending() if tx.sender == who}
        while nonce in pooled:
            nonce += 1
        return nonce

    @registry.method("system_events", params=["hash?"])
    def system_events(params: Params) -> list[dict[str, Any]]:
        events: list[Event] = store.events(resolve(params)) or []
        return [e.to_json() for e in events]

    # -- chain --------------------------------------------------------------------------------

    @registry.method("chain_getHeader", params=["hash?"])
    def get_header(params: Params) -> dict[str, Any] | None:
        at = params.optional("hash", block_hash)
        header = store.best_header if at is None else store.header(at)
        return None if header is None else header_json(header)

    @registry.method("chain_getBlock", params=["hash?"])
    def get_block(params: Params) -> dict[str, Any] | None:
        at = params.optional("hash", block_hash) or store.best_header.hash
        block = store.block(at)
        return None if block is None else block_json(block)

    @registry.method("chain_getBlockHash", params=["number?"])
    def get_block_hash(params: Params) -> Any:
        raw = params.optional("number", lambda v: v)
        if raw is None:
            return _hex(store.best_header.hash)
        if isinstance(raw, list):
            numbers = [block_number(v) for v in raw]
            return [_maybe_hex(store.canonical_hash(n)) for n in numbers]
        try:
            number = block_number(raw)
        except ValueError as exc:
            raise RpcError(-32602, f"invalid param 'number': {exc}") from None
        return _maybe_hex(store.canonical_hash(number))

    registry.add_method("chain_getFinalizedHead", lambda params: _hex(store.finalized_header.hash))

    @registry.method("chain_getExtrinsic", params=["hash"])
    def get_extrinsic(params: Params) -> dict[str, Any] | None:
        tx = params.required("hash", block_hash)
        location = store.tx_location(tx)
        if location is None:
            return None
        at, index = location
        events = [e for e in store.events(at) or [] if e.phase == index]
        failure = next((e for e in events if e.name == "ExtrinsicFailed"), None)
        return {
            "hash": _hex(tx),
            "blockHash": _hex(at),
            "blockNumber": store.require_header(at).number,
            "index": index,
            "success": failure is None,
            "error": None if failure is None else dict(failure.data).get("message"),
            "events": [e.to_json() for e in events],
        }

    @registry.subscription(
        "chain_subscribeNewHeads",
        unsubscribe="chain_unsubscribeNewHeads",
        notification="chain_newHead",
    )
    def new_heads(params: Params) -> AsyncIterator[Any]:
        return _headers(chain.new_heads.subscribe())

    @registry.subscription(
        "chain_subscribeFinalizedHeads",
        unsubscribe="chain_unsubscribeFinalizedHeads",
        notification="chain_finalizedHead",
    )
    def finalized_heads(params: Params) -> AsyncIterator[Any]:
        return _headers(chain.finalized_heads.subscribe())

    # -- state --------------------------------------------------------------------------------

    @registry.method("state_getStorage", params=["key", "hash?"])
    def get_storage(params: Params) -> str | None:
        key = params.required("key", hex_bytes)
        value = store.state_at(resolve(params)).get(key)
        return None if value is None else _hex(value)

    # -- author -------------------------------------------------------------------------------

    @registry.method("author_submitExtrinsic", params=["extrinsic"])
    def submit(params: Params) -> str:
        encoded = params.required("extrinsic", hex_bytes)
        try:
            return _hex(chain.submit(encoded).hash)
        except InvalidTransaction as exc:
            raise invalid_transaction_error(exc) from None

    @registry.subscription(
        "author_submitAndWatchExtrinsic",
        unsubscribe="author_unwatchExtrinsic",
        notification="author_extrinsicUpdate",
        params=["extrinsic"],
    )
    def submit_and_watch(params: Params) -> AsyncIterator[Any]:
        encoded = params.required("extrinsic", hex_bytes)
        try:
            _, statuses = chain.watch(encoded)
        except InvalidTransaction as exc:
            raise invalid_transaction_error(exc) from None
        return _statuses(statuses)

    registry.add_method(
        "author_pendingExtrinsics", lambda params: [_hex(tx.encoded) for tx in chain.pool.pending()]
    )
    return registry


def _maybe_hex(value: bytes | None) -> str | None:
    return None if value is None else _hex(value)


async def _headers(receive: trio.MemoryReceiveChannel[Header]) -> AsyncIterator[Any]:
    async with receive:
        async for header in receive:
            yield header_json(header)


async def _statuses(receive: trio.MemoryReceiveChannel[TxStatus]) -> AsyncIterator[Any]:
    async with receive:
        async for status in receive:
            yield status
