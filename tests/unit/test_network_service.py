"""The network service's gossip of transactions: a large one is relayed on its cheap checks and
pooled once its dry run passes on the worker thread; one whose dry run fails costs its publisher,
not the peers that relayed it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import rlp
import trio
import trio.testing

from chain.blocks import tx_hash
from chain.keys import sign_transaction
from chain.primitives import Hash32
from chain.runtime.balances import Balances
from chain.runtime.executive import default_modules
from chain.runtime.framework import CallDef
from chain.runtime.towers import Towers
from chain.vdf import GENERATOR
from chain.wire import TOPIC_TRANSACTIONS, encode_transactions
from consensus.chain_service import DRY_RUN_INLINE_BYTES
from consensus.network_service import PENALTY_FAILED_DRY_RUN, NetworkService
from p2p.gossip import GossipMessage, Verdict
from p2p.host import P2PService
from p2p.identity import PeerId
from p2p.peers import PeerEvent
from tests.factories import BOB, CHARLIE, calls
from tests.unit.test_chain_service import (
    doomed_update,
    open_chain,
    recording_runtime,
    transfer,
)

FORWARDER = PeerId("12D3KooWForwarder")
PUBLISHER = PeerId("12D3KooWPublisher")


class FakeP2P:
    """What the network service uses of `P2PService`: topics, protocols, penalties and peer
    events (which the test sends on `peer_events`)."""

    def __init__(self) -> None:
        self.validators: dict[str, Callable[[PeerId, bytes], Verdict]] = {}
        self.deliveries: dict[str, trio.MemorySendChannel[GossipMessage]] = {}
        self.penalties: list[tuple[PeerId, float]] = []
        self.peer_events, self._peer_events = trio.open_memory_channel[PeerEvent](256)

    def events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        return self._peer_events

    def subscribe(
        self, name: str, validator: Callable[[PeerId, bytes], Verdict]
    ) -> trio.MemoryReceiveChannel[GossipMessage]:
        self.validators[name] = validator
        send, receive = trio.open_memory_channel[GossipMessage](16)
        self.deliveries[name] = send
        return receive

    def register_protocol(self, *args: Any, **kwargs: Any) -> None:
        pass

    def penalize(self, peer_id: PeerId, amount: float, reason: str) -> None:
        self.penalties.append((peer_id, amount))

    def gossip(self, forwarder: PeerId, origin: PeerId, data: bytes) -> Verdict:
        """libp2p's receive path: the validator, then delivery of what it accepted."""
        verdict = self.validators[TOPIC_TRANSACTIONS](forwarder, data)
        if verdict is Verdict.ACCEPT:
            self.deliveries[TOPIC_TRANSACTIONS].send_nowait(
                GossipMessage(TOPIC_TRANSACTIONS, origin, data)
            )
        return verdict


def good_create(genesis: Hash32, name: str) -> bytes:
    """A valid `apps.create` by Bob, longer than DRY_RUN_INLINE_BYTES."""
    env = [{"name": f"V{i}", "value": "v".ljust(80, "x")} for i in range(40)]
    manifest = {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]},
    }
    create = calls()[("apps", "create")]
    call = create.call(manifest=json.dumps(manifest).encode())  # type: ignore[attr-defined]
    tx = sign_transaction(BOB, genesis_hash=genesis, nonce=0, call=call)
    return rlp.encode(tx)  # type: ignore[no-any-return]


def test_large_gossiped_transactions_are_dry_run_off_the_loop_and_failures_cost_the_publisher(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    runtime = recording_runtime(chain)
    p2p = FakeP2P()
    network = NetworkService(chain, None, cast(P2PService, p2p))
    doomed = [doomed_update(runtime, CHARLIE, 0, attempt) for attempt in range(3)]
    good = good_create(runtime.genesis_hash, "gossiped")
    small = transfer(chain, BOB, 1)  # future: Bob's nonce 0 is the create
    assert all(len(encoded) > DRY_RUN_INLINE_BYTES for encoded in [*doomed, good])

    async def scenario() -> None:
        loop_thread = threading.current_thread().name
        async with trio.open_nursery() as nursery:
            nursery.start_soon(network._admit_gossiped_transactions)
            batch = encode_transactions([*doomed, good, small])
            # The validator runs the cheap checks only: relayed, nothing dry-run yet.
            assert p2p.gossip(FORWARDER, PUBLISHER, batch) is Verdict.ACCEPT
            assert runtime.revalidated == []
            assert chain.pool.status(tx_hash(small)) == "future"
            # A copy from another peer while they wait for their dry runs is not relayed again.
            await trio.testing.wait_all_tasks_blocked()
            assert p2p.validators[TOPIC_TRANSACTIONS](FORWARDER, batch) is Verdict.IGNORE
            # The stream ends: the admissions finish, then the nursery.
            p2p.deliveries[TOPIC_TRANSACTIONS].close()
        assert network._admitting == 0 and chain.statistics().dry_runs_waiting == 0
        dry_runs = {hash_: thread for hash_, thread in runtime.revalidated}
        assert set(dry_runs) == {tx_hash(encoded) for encoded in [*doomed, good]}
        assert loop_thread not in dry_runs.values()
        assert chain.pool.status(tx_hash(good)) == "ready"
        assert chain.pool.status(tx_hash(small)) == "ready"
        for encoded in doomed:
            assert chain.pool.status(tx_hash(encoded)) is None
        # Each failed dry run cost the peer that published it; the relaying peer nothing.
        assert p2p.penalties == [(PUBLISHER, PENALTY_FAILED_DRY_RUN)] * 3
        # Charlie is banned: a fourth is refused by the cheap checks and not relayed.
        fourth = encode_transactions([doomed_update(runtime, CHARLIE, 0, 4)])
        assert p2p.gossip(FORWARDER, PUBLISHER, fourth) is Verdict.IGNORE
        assert len(runtime.revalidated) == 4

    trio.run(scenario)
    chain.store.db.close()


def test_proofs_of_presence_are_heavy_and_transfers_and_garbage_are_not(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    (submit_proof,) = Towers().calls()
    proof = submit_proof.call(
        node_id=BOB.public, height=1, anchor_number=0, iterations=2_000,
        y=GENERATOR, proof=GENERATOR,
    )  # fmt: skip
    encoded = rlp.encode(
        sign_transaction(BOB, genesis_hash=chain.runtime.genesis_hash, nonce=0, call=proof)
    )
    small = transfer(chain, BOB, 0)
    assert len(encoded) <= DRY_RUN_INLINE_BYTES
    assert chain.runtime.is_heavy(encoded) and chain.dry_run_off_loop(encoded)
    assert not chain.runtime.is_heavy(small) and not chain.dry_run_off_loop(small)
    for garbage in (b"", b"\xc0", encoded[:-1], encoded + b"\x00"):
        assert not chain.runtime.is_heavy(garbage)
    chain.store.db.close()


class HeavyTransfers(Balances):
    """`balances` with its transfer declared heavy."""

    def calls(self) -> list[CallDef]:
        return [replace(call, heavy=True) for call in super().calls()]


def test_a_heavy_gossiped_transaction_is_dry_run_off_the_loop_however_small(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    # Transfers stand in for proofs here: the same path, without a Time Tower to set up.
    runtime = recording_runtime(chain, [HeavyTransfers() if isinstance(m, Balances) else m
                                        for m in default_modules()])  # fmt: skip
    p2p = FakeP2P()
    network = NetworkService(chain, None, cast(P2PService, p2p))
    small = transfer(chain, BOB, 0)
    assert len(small) <= DRY_RUN_INLINE_BYTES

    async def scenario() -> None:
        loop_thread = threading.current_thread().name
        async with trio.open_nursery() as nursery:
            nursery.start_soon(network._admit_gossiped_transactions)
            batch = encode_transactions([small])
            # Relayed on its cheap checks; not pooled, nor dry-run, on the loop.
            assert p2p.gossip(FORWARDER, PUBLISHER, batch) is Verdict.ACCEPT
            assert runtime.revalidated == []
            assert chain.pool.status(tx_hash(small)) is None
            await trio.testing.wait_all_tasks_blocked()
            p2p.deliveries[TOPIC_TRANSACTIONS].close()
        ((hash_, thread),) = runtime.revalidated
        assert hash_ == tx_hash(small) and thread != loop_thread
        assert chain.pool.status(tx_hash(small)) == "ready"
        assert p2p.penalties == []

    trio.run(scenario)
    chain.store.db.close()
