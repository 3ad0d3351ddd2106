"""A hostile peer for integration tests: it joins a StateMesh network's topics and sends what
an honest node never would, then reports (one JSON line) whether the node dropped it.

    python -m tests.integration.rogue_peer NETWORK_ID TARGET_MULTIADDR KIND CHAIN_SPEC

    python -m tests.integration.rogue_peer NETWORK_ID TARGET_MULTIADDR forged-endpoints SPEC SEED

    python -m tests.integration.rogue_peer NETWORK_ID TARGET_MULTIADDR transactions SPEC FILE

KIND: garbage (undecodable bytes on every topic), bad-seal (a block on the genesis block, by
the right author for the current slot, whose seal is not that author's signature),
stranger-vote (a finality vote signed by a non-validator), forged-endpoints (endpoint
advertisements signed with the key of a registered node, SEED in hex, at addresses that are
not the one it registered: loopback, metadata and unspecified in IPv4-mapped form, a private
address, loopback in 6to4 form, and a global address), transactions (the signed extrinsics in
FILE, one in hex per line, each published in a batch of its own over TRANSACTION_SECONDS, as
a hostile node relays what its clients sent, unchecked)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import rlp
import trio

from chain.blocks import Block, Header
from chain.genesis import ChainSpec, build_genesis, load_spec
from chain.state import TrieState
from chain.trie import BLANK_ROOT
from consensus.finality import Phase, sign_vote
from node.endpoints import Advertisement, ReadyReplica
from node.wire import encode_transactions
from p2p.config import P2PConfig
from p2p.gossip import Verdict
from p2p.host import P2PService
from p2p.identity import NodeKey, PeerId
from wallet.keys import Keypair

ATTEMPTS = 12
TRANSACTION_SECONDS = 15.0


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


async def main(network_id: str, target: str, kind: str, spec_path: str, seed: str = "") -> None:
    spec = load_spec(Path(spec_path))
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
        await trio.sleep(1.0)
        connected = any(p.peer_id == peer for p in service.peers())
        print(json.dumps({"sent": sent, "connected": connected}), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:6])
