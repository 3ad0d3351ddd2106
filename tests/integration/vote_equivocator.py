"""A validator that equivocates, for integration tests: it holds validator INDEX's key of the
testnet in TESTNET_DIR, joins the network through TARGET and publishes two prevotes of one
round (the current one) for different blocks, as a faulty or hostile validator would.

    python -m tests.integration.vote_equivocator NETWORK_ID TARGET TESTNET_DIR INDEX

It prints one JSON line: the round it equivocated in and how many votes it published."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import trio

from chain.genesis import load_spec
from chain.primitives import Hash32
from consensus.finality import Phase, Vote
from p2p.config import P2PConfig
from p2p.gossip import Verdict
from p2p.host import P2PService
from p2p.identity import NodeKey
from testkit.rogue_peer import genesis_header, unlock_validator

ATTEMPTS = 6
"""The pair is published a few times: the gossip mesh may not be formed for the first."""


async def main(network_id: str, target: str, folder: str, index: str) -> None:
    spec = load_spec(Path(folder) / "genesis.json")
    signer = unlock_validator(Path(folder), int(index))
    genesis = genesis_header(spec)
    service = P2PService(P2PConfig(network_id=network_id), NodeKey.generate())
    for topic in ("blocks", "votes", "transactions", "endpoints"):
        service.subscribe(topic, lambda peer, data: Verdict.IGNORE)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await service.connect(target)
        await trio.sleep(2.0)  # the handshake and the gossip mesh
        round_ = time.time_ns() // 1_000_000 // spec.slot_duration_ms
        votes = []
        for target_hash in (Hash32(genesis.hash), Hash32(b"\xee" * 32)):
            payload = Vote.payload(genesis.hash, round_, Phase.PREVOTE, target_hash, 0)
            votes.append(
                Vote(round_, Phase.PREVOTE, target_hash, 0, signer.public, signer.sign(payload))
            )
        sent = 0
        for _ in range(ATTEMPTS):
            for vote in votes:
                await service.publish("votes", vote.encode())
                sent += 1
            await trio.sleep(0.5)
        print(json.dumps({"round": round_, "sent": sent}), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
