"""Hostile peers against real node processes: garbage and crafted frames on the gossip
protocol, garbage on request/response protocols, and a peer whose messages get REJECTed.
Every target keeps running and serving; the offender is penalized and disconnected."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils import encode_varint_prefixed

from p2p.config import P2PConfig
from p2p.host import P2PService
from p2p.identity import NodeKey
from testkit.p2p_processes import P2PNode, wait_until
from tests.integration.test_p2p_inprocess import connected

pytestmark = pytest.mark.integration

Attack = Callable[[INetStream], Awaitable[None]]

SETTLE = 60.0
"""Bound on each step of a peer's ban and return: every wait ends as soon as its condition
holds, so this only decides how long a loaded machine may take (the ban itself is 3 s, redials
back off to 2 s at most) before the step counts as failed."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[P2PNode, P2PNode]]:
    base = tmp_path_factory.mktemp("p2p-hostile")
    target = P2PNode(base / "target", status="T").start()
    witness = P2PNode(base / "witness", bootnodes=(target.address,)).start()
    try:
        witness.wait_peers({target.peer_id})
        yield target, witness
    finally:
        assert (target.stop(), witness.stop()) == (0, 0)


def attack(target: P2PNode, protocol: str, send: Attack) -> str:
    """Connect as a well-behaved node (the status handshake passes), then open a raw stream
    on `protocol` and run `send` on it. Returns the attacker's peer id."""

    async def run() -> str:
        attacker = P2PService(P2PConfig(network_id=target.netid), NodeKey.generate())
        async with trio.open_nursery() as nursery:
            await nursery.start(attacker.run)
            peer = await attacker.connect(target.address)
            await connected(attacker)
            # Reaching under the service: a real node never writes raw bytes like this.
            stream = await attacker._host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])
            await send(stream)
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()
        return attacker.peer_id

    return trio.run(run)


def assert_still_serving(target: P2PNode, witness: P2PNode, text: str) -> None:
    assert target.alive()
    assert witness.ok("request", peer=target.peer_id, proto="echo", data=text)["response"] == text
    witness.ok("publish", data=text)
    target.wait_event(lambda e: e.get("event") == "gossip" and e["data"] == text, 10, text)


def test_a_15_byte_garbage_frame_on_the_gossip_protocol_does_not_crash_the_node(
    pair: tuple[P2PNode, P2PNode],
) -> None:
    target, witness = pair
    before = target.stats()

    async def garbage(stream: INetStream) -> None:
        await stream.write(bytes([14]) + b"\xff" * 14)  # varint length 14, undecodable body

    attacker = attack(target, PROTOCOL_ID_V11, garbage)

    wait_until(
        lambda: target.stats()["gossip"]["malformed"] > before["gossip"]["malformed"],
        5,
        "the malformed frame counted",
    )
    stats = target.stats()
    assert stats["bans"] == before["bans"] + 1  # one undecodable frame is enough for a ban
    assert attacker not in target.peer_ids()
    assert_still_serving(target, witness, "after garbage gossip")


def test_a_signed_message_with_a_garbage_key_does_not_crash_the_node(
    pair: tuple[P2PNode, P2PNode],
) -> None:
    # A valid frame whose message carries an undecodable public key: libp2p 0.8.1 raises
    # while checking the signature, in a Pubsub task, which stops the host.
    target, witness = pair
    before = target.stats()

    async def crafted(stream: INetStream) -> None:
        message = rpc_pb2.Message(
            data=b"x",
            topicIDs=[f"/statemesh/{target.netid}/blocks/1"],
            from_id=b"garbage",
            seqno=b"\x00" * 8,
            signature=b"sig",
            key=b"garbage",
        )
        await stream.write(
            encode_varint_prefixed(rpc_pb2.RPC(publish=[message]).SerializeToString())
        )

    attacker = attack(target, PROTOCOL_ID_V11, crafted)

    wait_until(
        lambda: target.stats()["gossip"]["malformed"] > before["gossip"]["malformed"],
        5,
        "the crafted message counted",
    )
    assert attacker not in target.peer_ids()
    assert_still_serving(target, witness, "after crafted gossip")


@pytest.mark.parametrize(
    ("what", "payload"),
    [
        ("a length far over the limit", b"\xff\xff\xff\xff" + b"junk" * 16),
        ("a frame cut short", b"\x00\x00\x00\x40" + b"only a few bytes"),
        ("three stray bytes", b"\x01\x02\x03"),
    ],
)
def test_garbage_on_a_request_protocol_is_refused_and_the_node_keeps_serving(
    pair: tuple[P2PNode, P2PNode], what: str, payload: bytes
) -> None:
    target, witness = pair
    before = target.stats()
    answers: list[bytes] = []

    async def garbage(stream: INetStream) -> None:
        await stream.write(payload)
        # End of stream: the target must not wait for the rest. (NetStream has close_write.)
        await stream.close_write()  # type: ignore[attr-defined]
        with trio.move_on_after(2):
            answers.append(await stream.read(4096))

    attack(target, f"/statemesh/{target.netid}/echo/1", garbage)

    wait_until(
        lambda: target.stats()["requests"]["refused"] > before["requests"]["refused"],
        5,
        f"{what} refused",
    )
    assert answers and answers[0][:1] == b"\x01", answers  # an error answer, not silence
    assert_still_serving(target, witness, f"after {what}")


def test_rejected_gossip_gets_the_sender_banned_and_it_returns_after_the_ban(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("p2p-reject")
    judge = P2PNode(base / "judge", extra=("--ban-seconds", "3")).start()
    sender = P2PNode(base / "sender", bootnodes=(judge.address,)).start()
    try:
        judge.wait_peers({sender.peer_id}, timeout=SETTLE)
        sender.wait_peers({judge.peer_id}, timeout=SETTLE)
        # Gossip published before the judge is in the sender's mesh (a heartbeat after they
        # connect, later on a loaded machine) reaches nobody, and nobody is banned for it.
        sender.wait_mesh(judge, timeout=SETTLE)

        for n in range(5):  # 5 x 20 points reaches the -100 ban threshold
            sender.ok("publish", data=f"bad message {n}")

        wait_until(lambda: judge.stats()["bans"] == 1, SETTLE, "the sender banned")
        stats = judge.stats()
        assert stats["gossip"]["rejected"] == 5
        assert stats["penalties"] == 5
        wait_until(lambda: sender.peer_id not in judge.peer_ids(), SETTLE, "the sender cut off")
        assert not judge.gossip()

        # The sender's bootnode loop keeps redialing; the judge lets it back once the ban ends.
        judge.wait_peers({sender.peer_id}, timeout=SETTLE)
        sender.wait_peers({judge.peer_id}, timeout=SETTLE)
        sender.wait_mesh(judge, timeout=SETTLE)
        sender.ok("publish", data="good again")
        judge.wait_event(lambda e: e.get("event") == "gossip" and e["data"] == "good again", SETTLE)
    finally:
        assert (judge.stop(), sender.stop()) == (0, 0)
