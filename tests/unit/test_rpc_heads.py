"""Substrate's head subscriptions end to end: a real chain database and chain service, the node's
registry behind a real RPC server, and a real WebSocket client. Each subscription starts with the
current header and then follows the chain without a gap or a repeat, under every name Substrate
answers; headers carry a digest with the Aura pre-runtime and seal items."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from chain.blocks import Block, Header
from consensus.chain_service import ChainService
from node.chain_spec import development_spec
from node.rpc.digest import AURA_ENGINE_ID, PRE_RUNTIME, SEAL, compact, digest_item, digest_logs
from node.rpc.feeds import Feed, RawJson
from node.rpc.heads import HeadFeeds
from node.rpc.limits import RpcLimits
from node.rpc.methods import SystemInfo, build_registry, encode_header, header_json
from node.rpc.registry import (
    MethodRegistrationError,
    Registry,
    Subscription,
    Unsubscribe,
)
from node.rpc.server import RpcServer
from node.rpc.serving import ServerAddress
from tests.unit.test_chain_service import block_at, open_chain

NEW_HEADS = ("chain_subscribeNewHeads", "chain_subscribeNewHead", "subscribe_newHead")
FINALIZED_HEADS = ("chain_subscribeFinalizedHeads", "chain_subscribeFinalisedHeads")
ALL_HEADS = ("chain_subscribeAllHeads",)

NOTIFICATION = {
    **dict.fromkeys(NEW_HEADS, "chain_newHead"),
    **dict.fromkeys(FINALIZED_HEADS, "chain_finalizedHead"),
    **dict.fromkeys(ALL_HEADS, "chain_allHead"),
}


# -- SCALE and the digest -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        # SCALE's own examples (docs.substrate.io, "SCALE codec", compact integers).
        (0, "00"),
        (1, "04"),
        (42, "a8"),
        (63, "fc"),
        (64, "0101"),
        (69, "1501"),
        (16383, "fdff"),
        (16384, "02000100"),
        (65535, "feff0300"),
        ((1 << 30) - 1, "feffffff"),
        (1 << 30, "0300000040"),
        (100000000000000, "0b00407a10f35a"),
    ],
)
def test_compact_integers_match_scale(value: int, encoded: str) -> None:
    assert compact(value).hex() == encoded


@pytest.mark.parametrize("value", [-1, 1 << (67 * 8)])
def test_compact_refuses_what_scale_cannot_encode(value: int) -> None:
    with pytest.raises(ValueError, match="no SCALE compact encoding"):
        compact(value)


def test_a_digest_item_is_variant_engine_and_length_prefixed_payload() -> None:
    assert digest_item(PRE_RUNTIME, b"aura", bytes(range(8))).hex() == (
        "06" + b"aura".hex() + "20" + bytes(range(8)).hex()
    )
    assert digest_item(SEAL, b"aura", b"\xab" * 64).hex() == (
        "05" + b"aura".hex() + "0101" + "ab" * 64
    )
    with pytest.raises(ValueError, match="engine id is 4 bytes"):
        digest_item(SEAL, b"babe!", b"")


def parse_log(log: str) -> tuple[int, bytes, bytes]:
    """A digest item back into (variant, engine id, payload), for the payloads of this chain
    (shorter than 2**14 bytes)."""
    raw = bytes.fromhex(log.removeprefix("0x"))
    kind, engine, rest = raw[0], raw[1:5], raw[5:]
    if rest[0] & 0b11 == 0:
        length, payload = rest[0] >> 2, rest[1:]
    else:
        assert rest[0] & 0b11 == 1
        length, payload = int.from_bytes(rest[:2], "little") >> 2, rest[2:]
    assert len(payload) == length
    return kind, engine, payload


def test_headers_carry_the_slot_and_the_seal_as_aura_digest_items(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_header
    assert header_json(genesis)["digest"] == {"logs": []}
    block = block_at(chain, genesis.hash, 6)
    trio.run(chain.import_block, block)
    shown = header_json(block.header)
    pre_runtime, seal = (parse_log(log) for log in shown["digest"]["logs"])
    assert pre_runtime == (PRE_RUNTIME, AURA_ENGINE_ID, (6).to_bytes(8, "little"))
    assert seal == (SEAL, AURA_ENGINE_ID, bytes(block.header.seal))
    assert len(seal[2]) == 64
    # Substrate's fields are there, in its encodings, beside ours.
    assert shown["number"] == "0x1" and shown["parentHash"] == "0x" + genesis.hash.hex()
    assert len(digest_logs(block.header.copy(seal=b""))) == 1  # an unsealed header: no seal
    chain.store.db.close()


# -- aliases in the registry ----------------------------------------------------------------


def test_aliases_name_the_same_subscription_and_its_unsubscribe() -> None:
    registry = Registry()
    registry.add_subscription(
        "x_subscribe", lambda p: None, unsubscribe="x_unsubscribe", notification="x_item",  # type: ignore[arg-type, return-value]
        aliases=("x_sub",), unsubscribe_aliases=("x_unsub",),
    )  # fmt: skip
    opened, also = registry.get("x_subscribe"), registry.get("x_sub")
    assert isinstance(opened, Subscription) and opened is also
    closed = registry.get("x_unsub")
    assert isinstance(closed, Unsubscribe) and closed.subscription is opened
    assert {"x_subscribe", "x_sub", "x_unsubscribe", "x_unsub"} <= set(registry.names())


@pytest.mark.parametrize(
    ("aliases", "unsubscribe_aliases", "message"),
    [
        (("y_unsubscribe",), (), "cannot both subscribe and unsubscribe"),
        ((), ("y_subscribe",), "cannot both subscribe and unsubscribe"),
        (("y_sub", "y_sub"), (), "names one method twice"),
        (("rpc_methods",), (), "already registered"),
        (("rpc.on",), (), "not a usable method name"),
    ],
)
def test_alias_clashes_are_refused_and_register_nothing(
    aliases: tuple[str, ...], unsubscribe_aliases: tuple[str, ...], message: str
) -> None:
    registry = Registry()
    before = registry.names()
    with pytest.raises(MethodRegistrationError, match=message):
        registry.add_subscription(
            "y_subscribe", lambda p: None, unsubscribe="y_unsubscribe", notification="y_item",  # type: ignore[arg-type, return-value]
            aliases=aliases, unsubscribe_aliases=unsubscribe_aliases,
        )  # fmt: skip
    assert registry.names() == before


# -- the feeds' sequences -------------------------------------------------------------------


@dataclass
class Seen:
    items: list[int] = field(default_factory=list)

    def __call__(self, item: RawJson) -> None:
        self.items.append(int(json.loads(item.text)["number"], 16))


def test_a_best_header_that_jumps_ahead_on_its_chain_is_preceded_by_the_blocks_between(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    feeds = HeadFeeds(chain.store, encode_header)
    seen = Seen()
    feeds.best.attach(seen)
    blocks = import_chain(chain, chain.store.best_hash, slots=[2, 4, 6, 8])
    # The chain's events as they came (one per block) would give 1..4; told only of #1 and then
    # #4 (as when finality moves the best chain), the feed still sends #2 and #3.
    feeds.on_best(blocks[0].header)
    feeds.on_best(blocks[3].header)
    feeds.on_best(blocks[3].header)  # the same best again: nothing
    assert seen.items == [0, 1, 2, 3, 4]
    chain.store.db.close()


def import_chain(chain: ChainService, parent: bytes, slots: list[int]) -> list[Block]:
    blocks = []
    for slot in slots:
        block = block_at(chain, parent, slot)
        assert trio.run(chain.import_block, block)
        blocks.append(block)
        parent = block.hash
    return blocks


# -- over a WebSocket -----------------------------------------------------------------------


@asynccontextmanager
async def serving(chain: ChainService, limits: RpcLimits | None = None) -> AsyncIterator[str]:
    async with serving_registry(chain, limits) as (url, _):
        yield url


@asynccontextmanager
async def serving_registry(
    chain: ChainService, limits: RpcLimits | None = None
) -> AsyncIterator[tuple[str, Registry]]:
    registry = build_registry(chain, SystemInfo("test", "0", development_spec()))
    server = RpcServer(registry, host="127.0.0.1", port=0, limits=limits)
    async with trio.open_nursery() as nursery:
        address: ServerAddress = await nursery.start(server.run)
        yield address.ws_url, registry
        nursery.cancel_scope.cancel()


class Client:
    """One WebSocket; notifications are sorted by subscription as they arrive."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.ids = 0
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.methods: dict[str, str] = {}

    async def call(self, method: str, *params: object) -> Any:
        self.ids += 1
        await self.ws.send_message(
            json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params})
        )
        while True:
            message = await self.next()
            if message.get("id") == self.ids:
                return message

    async def subscribe(self, method: str) -> str:
        answer = await self.call(method)
        subscription: str = answer["result"]
        self.received[subscription] = []
        return subscription

    async def next(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await self.ws.get_message())
        if "method" in message and "result" in message["params"]:
            params = message["params"]
            self.methods[params["subscription"]] = message["method"]
            self.received.setdefault(params["subscription"], []).append(params["result"])
        return message

    async def heads(self, subscription: str, count: int) -> list[str]:
        """The hashes of the first `count` headers notified to `subscription`."""
        with trio.fail_after(10):
            while len(self.received[subscription]) < count:
                await self.next()
        return [head["hash"] for head in self.received[subscription][:count]]

    async def nothing_more(self, subscription: str, count: int) -> None:
        """Nothing beyond `count` arrives for `subscription` while a marker call is answered
        (notifications queued before the answer arrive before it)."""
        await self.call("system_name")
        assert len(self.received[subscription]) == count, self.received[subscription][count:]


def hashes(*headers: Header) -> list[str]:
    return ["0x" + header.hash.hex() for header in headers]


def test_every_name_starts_with_the_current_header_then_follows_without_gap(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    store = chain.store

    async def scenario() -> None:
        a1 = await _import(chain, store.best_hash, 2)
        async with serving(chain) as url, trio_websocket.open_websocket_url(url) as ws:
            client = Client(ws)
            opened = {name: await client.subscribe(name) for name in NOTIFICATION}
            genesis = store.require_header(store.canonical_hash(0) or b"")
            for name, subscription in opened.items():
                # At once: the current best (new and all heads) or finalized header.
                first = genesis if name in FINALIZED_HEADS else a1.header
                assert await client.heads(subscription, 1) == hashes(first), name
            a2 = await _import(chain, a1.hash, 4)
            a3 = await _import(chain, a2.hash, 6)
            # A fork, not best: only all-heads tells of it.
            b2 = await _import(chain, a1.hash, 5)
            assert store.best_hash == a3.hash
            chain.finalize(a3.hash, None)  # three blocks final at once
            for name, subscription in opened.items():
                if name in NEW_HEADS:
                    expected = hashes(a1.header, a2.header, a3.header)
                elif name in FINALIZED_HEADS:
                    expected = hashes(genesis, a1.header, a2.header, a3.header)
                else:
                    expected = hashes(a1.header, a2.header, a3.header, b2.header)
                assert await client.heads(subscription, len(expected)) == expected, name
                await client.nothing_more(subscription, len(expected))
                assert client.methods[subscription] == NOTIFICATION[name]
            shown = client.received[opened["chain_subscribeNewHeads"]][1]
            assert shown == header_json(a2.header)
            assert shown["digest"]["logs"]

    trio.run(scenario)
    store.db.close()


async def _import(chain: ChainService, parent: bytes, slot: int) -> Block:
    block = block_at(chain, parent, slot)
    assert await chain.import_block(block)
    return block


def test_a_reorg_sends_the_new_best_header_as_substrate_does(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    store = chain.store

    async def scenario() -> None:
        async with serving(chain) as url, trio_websocket.open_websocket_url(url) as ws:
            client = Client(ws)
            heads = await client.subscribe("chain_subscribeNewHeads")
            every = await client.subscribe("chain_subscribeAllHeads")
            genesis = store.best_header
            a1 = await _import(chain, genesis.hash, 2)
            a2 = await _import(chain, a1.hash, 4)
            bests = [genesis.hash, a1.hash, a2.hash]
            fork = []
            parent = genesis.hash
            for slot in (3, 5, 7):
                block = await _import(chain, parent, slot)
                fork.append(block)
                parent = block.hash
                if store.best_hash != bests[-1]:
                    bests.append(store.best_hash)
            assert store.best_hash == fork[-1].hash  # the longer chain won: a re-org
            expected = ["0x" + h.hex() for h in bests]
            assert await client.heads(heads, len(expected)) == expected
            await client.nothing_more(heads, len(expected))
            # Every imported block, in import order, after the best one at the start.
            imported = hashes(genesis, a1.header, a2.header, *(b.header for b in fork))
            assert await client.heads(every, len(imported)) == imported

    trio.run(scenario)
    store.db.close()


def test_unsubscribe_under_any_name_of_its_kind_only(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")

    async def scenario() -> None:
        async with serving(chain) as url, trio_websocket.open_websocket_url(url) as ws:
            client = Client(ws)
            heads = await client.subscribe("subscribe_newHead")
            finalized = await client.subscribe("chain_subscribeFinalisedHeads")
            every = await client.subscribe("chain_subscribeAllHeads")
            assert (await client.call("chain_unsubscribeFinalizedHeads", heads))["result"] is False
            assert (await client.call("chain_unsubscribeNewHead", heads))["result"] is True
            assert (await client.call("unsubscribe_newHead", heads))["result"] is False
            assert (await client.call("chain_unsubscribeNewHeads", finalized))["result"] is False
            assert (await client.call("chain_unsubscribeFinalizedHeads", finalized))["result"]
            assert (await client.call("chain_unsubscribeAllHeads", every))["result"] is True
            await client.heads(every, 1)
            await _import(chain, chain.store.best_hash, 2)
            for subscription in (heads, finalized, every):
                await client.nothing_more(subscription, 1)
            refused = await client.call("chain_subscribeNewHeads", 1)
            assert refused["error"]["code"] == -32602
            # Substrate's other names of the head queries answer as theirs.
            store = chain.store
            assert (await client.call("chain_getHead"))["result"] == "0x" + store.best_hash.hex()
            assert (await client.call("chain_getHead", 0))["result"] == (
                (await client.call("chain_getBlockHash", 0))["result"]
            )
            finalized = (await client.call("chain_getFinalizedHead"))["result"]
            assert (await client.call("chain_getFinalisedHead"))["result"] == finalized

    trio.run(scenario)
    chain.store.db.close()


def test_a_current_header_too_large_to_send_ends_the_subscription_and_detaches_it(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    limits = RpcLimits(max_response_bytes=200)

    async def scenario() -> None:
        async with (
            serving_registry(chain, limits) as (url, registry),
            trio_websocket.open_websocket_url(url) as ws,
        ):
            entry = registry.get("chain_subscribeNewHeads")
            assert isinstance(entry, Subscription)
            feed = entry.handler(entry.params.bind("chain_subscribeNewHeads", []))
            assert isinstance(feed, Feed)
            client = Client(ws)
            answer = await client.call("chain_subscribeNewHeads")
            subscription = answer["result"]
            with trio.fail_after(10):
                ended = await client.next()
            assert ended["params"]["subscription"] == subscription
            assert ended["params"]["error"]["code"] == -32008
            assert ended["params"]["error"]["message"].startswith("notification too large")
            await _import(chain, chain.store.best_hash, 2)
            assert (await client.call("chain_unsubscribeNewHeads", subscription))["result"] is False
            assert client.received.get(subscription, []) == []
            assert len(feed) == 0  # not left listening

    trio.run(scenario)
    chain.store.db.close()
