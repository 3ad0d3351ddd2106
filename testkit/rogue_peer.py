"""A hostile peer for integration tests and benchmarks: it joins a StateMesh network's topics
and sends what an honest node never would, then reports (one JSON line) whether the node
dropped it.

    python -m testkit.rogue_peer NETWORK_ID TARGET_MULTIADDR KIND CHAIN_SPEC

    python -m testkit.rogue_peer NETWORK_ID TARGET_MULTIADDR forged-endpoints SPEC SEED

    python -m testkit.rogue_peer NETWORK_ID TARGET_MULTIADDR transactions SPEC FILE

    python -m testkit.rogue_peer NETWORK_ID TARGET slot-forger SPEC DIR INDEX [BLOCKS]

    python -m testkit.rogue_peer NETWORK_ID TARGET lying-empty|lying-stall SPEC

    python -m testkit.rogue_peer NETWORK_ID TARGET oversized-justification SPEC SOURCE [N]

KIND: garbage (undecodable bytes on every topic), bad-seal (a block on the genesis block, by
the right author for the current slot, whose seal is not that author's signature),
stranger-vote (a finality vote signed by a non-validator), forged-endpoints (endpoint
advertisements signed with the key of a registered node, SEED in hex, at addresses that are
not the one it registered: loopback, metadata and unspecified in IPv4-mapped form, a private
address, loopback in 6to4 form, and a global address), transactions (the signed extrinsics in
FILE, one in hex per line, each published in a batch of its own over TRANSACTION_SECONDS, as
a hostile node relays what its clients sent, unchecked).

The sync attackers serve the sync protocol and announce a status, as a node does; they first
print {"listening": MULTIADDR} and dial TARGET unless it is "-" (then they wait to be dialed):
slot-forger (holds validator INDEX's key of the testnet in DIR and seals on genesis a chain of
up to BLOCKS valid empty blocks in that validator's slots only, the earliest the spec allows,
each executed by the node's own runtime; it serves that chain and announces its head),
lying-empty and lying-stall (announce best #10^9 and a finalized block of their own just below
it, and answer every sync request with no blocks, or never answer it), oversized-justification
(claims to be a few blocks ahead of the honest node SOURCE and answers a node's sync requests
with the real blocks SOURCE serves, the first of each batch carrying N copies of one real
precommit as its justification; it prints its address once it holds such a precommit). The
forger and the liars run until SIGTERM and then print their report; the oversized sender
reports once every node it served dropped it, or after OVERSIZED_SECONDS."""

from __future__ import annotations

import json
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rlp
import trio

from chain.blocks import Block, Header
from chain.db import Database
from chain.genesis import ChainSpec, build_genesis, load_spec
from chain.keys import Keypair
from chain.primitives import Hash32, Slot, TimestampMs
from chain.runtime.executive import Runtime
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from chain.votes import VOTE_LENGTH
from chain.wire import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_RESPONSE_BYTES,
    PROTOCOL_SYNC,
    Status,
    SyncItem,
    SyncRequest,
    WireError,
    decode_sync_response,
    encode_sync_response,
    encode_transactions,
)
from consensus.finality import Phase, Vote, sign_vote
from consensus.proposer import propose
from consensus.sync import serve_sync
from orchestrator.endpoints import Advertisement, ReadyReplica
from p2p.config import MIB, P2PConfig
from p2p.errors import RequestFailed
from p2p.gossip import Verdict
from p2p.host import P2PService
from p2p.identity import NodeKey, PeerId
from p2p.reqresp import Handler
from testkit.built_chain import unlock_validator

ATTEMPTS = 12
DROP_WAIT_SECONDS = 20.0
"""How long after its last message the rogue waits to be dropped before it reports."""
TRANSACTION_SECONDS = 15.0
FORGED_BLOCKS = 3000
"""The forger's chain length when nothing else bounds it (the issue's attacker sealed 3,000)."""
LIE_NUMBER = 10**9
OVERSIZED_COPIES = 57_000
"""57,000 copies of one 145-byte vote: 8.3 MB, within a sync response's size limit."""
OVERSIZED_SECONDS = 60.0
OVERSIZED_LEAD = 3
"""How many blocks ahead of the peers it knows the oversized sender claims to be, so that a
node syncing picks it first."""
SERVE_TIMEOUT = 3600.0
"""The stalling liar's handler must outlive any requester's patience."""


FORGED_ADDRESSES = (
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
    "10.0.0.5",
    "93.184.216.34",
    "::ffff:127.0.0.1",
    "2002:7f00:1::",
)


def forged_endpoints(seed: bytes) -> list[tuple[str, bytes]]:
    """Advertisements a registered node's key signs for addresses that are not its own."""
    identity = Keypair.from_seed(seed)
    now = time.time_ns() // 1_000_000
    ready = [ReadyReplica("web", 1, 0)]
    return [
        ("endpoints", Advertisement.signed(identity, now + 200 * i, address, 8080, ready).encode())
        for i, address in enumerate(FORGED_ADDRESSES)
    ]


def payloads(kind: str, spec: ChainSpec, seed: bytes = b"") -> list[tuple[str, bytes]]:
    genesis = build_genesis(spec, TrieState({}, BLANK_ROOT)).block.header
    now = time.time_ns() // 1_000_000
    slot = now // spec.slot_duration_ms
    author = spec.authorities[slot % len(spec.authorities)]
    header = Header(genesis.hash, 1, b"\x22" * 32, b"\x33" * 32, now, slot, author, b"\x55" * 64)
    if kind == "garbage":
        return [
            ("blocks", b"\xff\x00garbage"),
            ("votes", b"\x01\x02"),
            ("transactions", b"\xc3\x01"),
        ]
    if kind == "bad-seal":
        return [("blocks", rlp.encode(Block(header, ())))]
    if kind == "stranger-vote":
        stranger = Keypair.from_seed(b"\x09" * 32)
        return [("votes", sign_vote(stranger, b"\x00" * 32, 1, Phase.PREVOTE, header).encode())]
    if kind == "forged-endpoints":
        return forged_endpoints(seed)
    raise SystemExit(f"unknown kind {kind}")


async def publish_transactions(service: P2PService, peer: PeerId, path: Path) -> int:
    """Publish each extrinsic of `path` in a batch of its own, evenly over TRANSACTION_SECONDS,
    while the target keeps us connected. Returns how many were published."""
    extrinsics = [bytes.fromhex(line[2:]) for line in (await trio.Path(path).read_text()).split()]
    interval = TRANSACTION_SECONDS / len(extrinsics)
    sent = 0
    for encoded in extrinsics:
        if all(p.peer_id != peer for p in service.peers()):
            break
        await service.publish("transactions", encode_transactions([encoded]))
        sent += 1
        await trio.sleep(interval)
    return sent


def genesis_header(spec: ChainSpec) -> Header:
    header: Header = build_genesis(spec, TrieState({}, BLANK_ROOT)).block.header
    return header


def random_hash() -> Hash32:
    return Hash32(secrets.token_bytes(32))


def forge_chain(spec: ChainSpec, signer: Keypair, path: Path, blocks: int) -> ChainStore:
    """A chain of valid empty blocks on genesis, each in one of `signer`'s own slots (the next
    of them after its parent's, from the genesis slot on, each timestamp after its parent's),
    executed by the node's own runtime on a store at `path`: correct state roots, correct
    seals, every slot in the past. Stops at `blocks` blocks or at the present."""
    db = Database(path)
    store = ChainStore(db)
    genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT, store.node_cache))
    store.initialize(genesis)
    runtime = Runtime(spec.runtime, genesis.hash)
    count = len(spec.authorities)
    own = spec.authorities.index(signer.public)
    slot_ms = spec.slot_duration_ms
    first = genesis.block.header.slot
    slot = first + (own - first) % count
    now_slot = time.time_ns() // 1_000_000 // slot_ms
    while store.best_header.number < blocks and slot < now_slot:
        parent = store.best_header
        timestamp = max(slot * slot_ms, parent.timestamp + 1)
        if timestamp // slot_ms == slot:
            block, execution = propose(
                store,
                runtime,
                parent,
                [],
                slot=Slot(slot),
                timestamp=TimestampMs(timestamp),
                signer=signer,
                on_invalid=lambda tx, exc: None,
            )
            store.commit_block(block, execution, best=True)
        slot += count
    return store


def serving_service(network_id: str, status: Callable[[], bytes], serve: Handler) -> P2PService:
    """A p2p host that announces `status` and answers the sync protocol with `serve`, as a
    node does (its other topics accepted and ignored)."""
    service = P2PService(
        P2PConfig(network_id=network_id, status_interval=1.0), NodeKey.generate(), status=status
    )
    for topic in ("blocks", "votes", "transactions", "endpoints"):
        service.subscribe(topic, lambda peer, data: Verdict.IGNORE)
    service.register_protocol(
        PROTOCOL_SYNC,
        serve,
        max_request_bytes=64,
        max_response_bytes=MAX_SYNC_RESPONSE_BYTES + MIB,
        timeout=SERVE_TIMEOUT,
    )
    return service


def report(fields: dict[str, object]) -> None:
    print(json.dumps(fields), flush=True)


async def until_terminated(service: P2PService, target: str) -> None:
    """Say where we listen, dial `target` (unless "-"), then serve until SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        report({"listening": service.listen_address})
        if target != "-":
            await service.connect(target)
        async for _ in signals:
            return


async def slot_forger(
    network_id: str, target: str, spec: ChainSpec, folder: Path, index: int, blocks: int
) -> None:
    signer = unlock_validator(folder, index)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.monotonic()
        store = forge_chain(spec, signer, Path(tmp) / "db", blocks)
        forged = time.monotonic() - began
        best, genesis = store.best_header, genesis_header(spec)
        served = 0

        def status() -> bytes:
            return Status(genesis.hash, best.number, best.hash, 0, genesis.hash).encode()

        async def serve(peer: PeerId, request: bytes) -> bytes:
            nonlocal served
            served += 1
            return serve_sync(store, request)

        service = serving_service(network_id, status, serve)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await until_terminated(service, target)
            nursery.cancel_scope.cancel()
        report({"forged": best.number, "seconds": round(forged, 2), "served": served})


async def lying_peer(network_id: str, target: str, spec: ChainSpec, stall: bool) -> None:
    genesis = genesis_header(spec)
    lie = Status(genesis.hash, LIE_NUMBER, random_hash(), LIE_NUMBER - 1, random_hash())
    asked = 0

    async def serve(peer: PeerId, request: bytes) -> bytes:
        nonlocal asked
        asked += 1
        if stall:
            await trio.sleep_forever()
        return encode_sync_response([])

    service = serving_service(network_id, lie.encode, serve)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await until_terminated(service, target)
        nursery.cancel_scope.cancel()
    report({"asked": asked})


async def fetch(service: P2PService, peer: PeerId, start: int, count: int) -> list[SyncItem]:
    """Blocks `start`.. of an honest node's best chain, by the sync protocol."""
    try:
        raw = await service.request(
            peer, PROTOCOL_SYNC, SyncRequest(start, count).encode(), timeout=10.0
        )
        return decode_sync_response(raw)
    except (RequestFailed, WireError):
        return []


async def real_precommit(service: P2PService, source: PeerId) -> bytes:
    """One real precommit: the first vote of the first justification the source serves."""
    start = 1
    while True:
        items = await fetch(service, source, start, MAX_SYNC_BLOCKS)
        for item in items:
            vote = item.justification[:VOTE_LENGTH]
            if vote and Vote.decode(vote).phase is Phase.PRECOMMIT:
                return vote
        start += len(items)
        if not items:
            await trio.sleep(0.5)
            start = 1


async def oversized_justification(
    network_id: str, target: str, spec: ChainSpec, source: str, copies: int
) -> None:
    genesis = genesis_header(spec)
    served: list[float] = []
    asked: list[float] = []
    sizes: list[int] = []
    victims: set[PeerId] = set()
    began = time.monotonic()
    service: P2PService
    source_peer = PeerId("")
    vote = b""

    def status() -> bytes:
        # A few blocks ahead of everyone we know, with the source's real finalized block.
        seen = [Status.decode(p.status) for p in service.peers() if p.status]
        honest = [s for s in seen if s.genesis_hash == genesis.hash]
        if not honest:
            return Status(genesis.hash, 0, genesis.hash, 0, genesis.hash).encode()
        best = max(s.best_number for s in honest)
        final = max(honest, key=lambda s: s.finalized_number)
        return Status(
            genesis.hash,
            best + OVERSIZED_LEAD,
            random_hash(),
            final.finalized_number,
            final.finalized_hash,
        ).encode()

    async def serve(peer: PeerId, request: bytes) -> bytes:
        wanted = SyncRequest.decode(request)
        if peer == source_peer:
            return encode_sync_response([])
        asked.append(time.monotonic() - began)
        # The real blocks the requester asks for, as an honest node serves them, but the
        # first carries the weapon as its justification (and the batch stays within a sync
        # response's size limit).
        items = await fetch(service, source_peer, wanted.start, wanted.count)
        if not items:
            return encode_sync_response([])
        room = (MAX_SYNC_RESPONSE_BYTES - len(items[0].block) - 64) // VOTE_LENGTH
        justification = vote * min(copies, room)
        batch = [SyncItem(items[0].block, justification)]
        size = len(justification) + len(items[0].block) + 16
        for item in items[1:]:
            size += len(item.block) + len(item.justification) + 16
            if size > MAX_SYNC_RESPONSE_BYTES:
                break
            batch.append(item)
        victims.add(peer)
        served.append(time.monotonic() - began)
        sizes.append(len(justification))
        return encode_sync_response(batch)

    def victims_gone() -> bool:
        connected = {p.peer_id for p in service.peers()}
        return bool(victims) and not victims & connected

    service = serving_service(network_id, status, serve)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        source_peer = await service.connect(source)
        vote = await real_precommit(service, source_peer)
        report({"listening": service.listen_address})
        began = time.monotonic()
        if target != "-":
            await service.connect(target)
        with trio.move_on_after(OVERSIZED_SECONDS):
            async for _ in service.events():
                if victims_gone():
                    break
        dropped = victims_gone()
        nursery.cancel_scope.cancel()
    report(
        {
            "asked": len(asked),
            "first_asked_s": round(asked[0], 2) if asked else None,
            "served": len(served),
            "bytes": max(sizes, default=0),
            "first_served_s": round(served[0], 2) if served else None,
            "dropped_after_s": round(time.monotonic() - began, 2) if dropped else None,
            "connected": not dropped,
        }
    )


async def main(network_id: str, target: str, kind: str, spec_path: str, *extra: str) -> None:
    spec = load_spec(Path(spec_path))
    if kind == "slot-forger":
        blocks = int(extra[2]) if len(extra) > 2 else FORGED_BLOCKS
        await slot_forger(network_id, target, spec, Path(extra[0]), int(extra[1]), blocks)
    elif kind in ("lying-empty", "lying-stall"):
        await lying_peer(network_id, target, spec, stall=kind == "lying-stall")
    elif kind == "oversized-justification":
        copies = int(extra[1]) if len(extra) > 1 else OVERSIZED_COPIES
        await oversized_justification(network_id, target, spec, extra[0], copies)
    else:
        await publish_attack(network_id, target, kind, spec, extra[0] if extra else "")


async def publish_attack(
    network_id: str, target: str, kind: str, spec: ChainSpec, seed: str
) -> None:
    service = P2PService(P2PConfig(network_id=network_id), NodeKey.generate())
    for topic in ("blocks", "votes", "transactions", "endpoints"):
        service.subscribe(topic, lambda peer, data: Verdict.IGNORE)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        peer = await service.connect(target)
        await trio.sleep(2.0)  # the handshake and the gossip mesh
        sent = 0
        if kind == "transactions":
            sent = await publish_transactions(service, peer, Path(seed))
        for _ in range(ATTEMPTS if kind != "transactions" else 0):
            if all(p.peer_id != peer for p in service.peers()):
                break
            for topic, data in payloads(kind, spec, bytes.fromhex(seed)):
                await service.publish(
                    topic, data + sent.to_bytes(4, "big") if kind == "garbage" else data
                )
                sent += 1
            await trio.sleep(0.3)
        # The verdict and the ban come once the target has validated what it got: on a loaded
        # machine that can be seconds after the last message.
        deadline = trio.current_time() + DROP_WAIT_SECONDS
        for _ in range(int(DROP_WAIT_SECONDS / 0.2)):
            if trio.current_time() > deadline or all(p.peer_id != peer for p in service.peers()):
                break
            await trio.sleep(0.2)
        connected = any(p.peer_id == peer for p in service.peers())
        print(json.dumps({"sent": sent, "connected": connected}), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
