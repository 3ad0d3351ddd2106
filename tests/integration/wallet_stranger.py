"""A peer that is no committee member (a fresh node key) sends `wallet` protocol requests to
nodes over real p2p, and reports their answers (one JSON line).

    python -m tests.integration.wallet_stranger NETWORK_ID REQUEST_ID TARGET_MULTIADDR...

It asks each target to start the DKG of wallet request REQUEST_ID, with the session of each of
its first attempts, as its coordinator would."""

from __future__ import annotations

import json
import sys

import trio

from chain import codec
from chain.runtime import wallets
from p2p.config import P2PConfig
from p2p.errors import P2PError
from p2p.host import P2PService
from p2p.identity import NodeKey
from wallet.messages import (
    MAX_RESPONSE_BYTES,
    PROTOCOL_WALLET,
    Refused,
    RequestKind,
    WalletRequest,
    decode_answer,
)

ATTEMPTS = 4


def start(request_id: int, attempt: int) -> bytes:
    items = (codec.encode_uint(request_id), codec.encode_uint(attempt))
    session = wallets.dkg_session_id(request_id, attempt)
    return WalletRequest(RequestKind.DKG_START, session, items).encode()


async def ask(service: P2PService, target: str, request_id: int) -> list[str]:
    peer = await service.connect(target)
    answers = []
    for attempt in range(ATTEMPTS):
        try:
            raw = await service.request(
                peer, PROTOCOL_WALLET, start(request_id, attempt), timeout=10
            )
        except P2PError as error:
            answers.append(f"error: {error}")
            continue
        try:
            decode_answer(raw[:MAX_RESPONSE_BYTES])
            answers.append("accepted")
        except Refused as refusal:
            answers.append(str(refusal))
    return answers


async def main(network_id: str, request_id: str, *targets: str) -> None:
    service = P2PService(P2PConfig(network_id=network_id), NodeKey.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        answers = {target: await ask(service, target, int(request_id)) for target in targets}
        print(json.dumps(answers), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
