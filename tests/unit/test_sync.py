"""Sync against honest and hostile peers, on real stores and chain services: blocks sealed by
four authorities, justifications of signed precommits. Hostile peers lie in their status,
stall, serve forged or conflicting chains and forged justifications; each attack must fail
and the node must end on the honest finalized chain."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import rlp
import trio
import trio.testing

from chain import codec
from chain.blocks import Block, Header, tx_hash
from chain.clock import ManualClock
from chain.db import Database
from chain.errors import DatabaseError, FinalityConflict
from chain.genesis import build_genesis
from chain.importer import extrinsics_root
from chain.keys import Keypair, sign_transaction
from chain.pool import TransactionPool
from chain.primitives import BlockNumber, Hash32, Slot, TimestampMs
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv
from chain.state import TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from chain.wire import (
    MAX_SYNC_BLOCKS,
    Status,
    SyncItem,
    SyncRequest,
    decode_sync_response,
    encode_sync_response,
)
from consensus.chain_service import ChainService
from consensus.finality import Phase, sign_vote
from consensus.proposer import propose
from consensus.signature_worker import SignatureWorker
from consensus.sync import (
    FIRST_TIMEOUT,
    IDLE_CHECK,
    PENALTY_BAN,
    PENALTY_UNHELPFUL,
    PeerRecord,
    SyncService,
    serve_sync,
)
from node.runner import _halt_on_finality_conflict, check_checkpoint
from p2p.errors import PeerUnreachable
from tests.factories import ALICE, BOB, CHARLIE, DAVE, count_vote_work, spec_for, transfer_call

KEYS = (ALICE, BOB, CHARLIE, DAVE)
SPEC = replace(spec_for(*KEYS), authorities=tuple(k.public for k in KEYS))
NOW_MS = 10**12
"""The nodes' clock: far after every block of these tests, unless a test says otherwise."""


def open_node(path: Path, clock: ManualClock | None = None) -> ChainService:
    db = Database(path)
    store = ChainStore(db)
    genesis = build_genesis(SPEC, TrieState(db.trie_nodes, BLANK_ROOT))
    store.initialize(genesis)
    runtime = Runtime(SPEC.runtime, genesis.hash)
    chain: ChainService
    pool = TransactionPool(lambda e: chain.validate(e), revalidator=lambda v: chain.revalidate(v))
    chain = ChainService(
        store=store, runtime=runtime, pool=pool, clock=clock or ManualClock(NOW_MS),
        slot_duration_ms=SPEC.slot_duration_ms,
    )  # fmt: skip
    return chain


def sealed(chain: ChainService, parent_hash: bytes, slot: int) -> Block:
    """A block on `parent_hash` sealed by the authority of `slot`."""
    parent = chain.store.require_header(parent_hash)
    block, _ = propose(
        chain.store, chain.runtime, parent, [], slot=Slot(slot),
        timestamp=TimestampMs(slot * SPEC.slot_duration_ms), signer=KEYS[slot % len(KEYS)],
        on_invalid=lambda tx, exc: None,
    )  # fmt: skip
    return block


async def extend(chain: ChainService, parent_hash: bytes, count: int, slot: int) -> list[Header]:
    """`count` blocks on `parent_hash`, one per slot from `slot`, imported into `chain`."""
    headers = []
    for i in range(count):
        block = sealed(chain, parent_hash, slot + i)
        await chain.import_block(block)
        headers.append(block.header)
        parent_hash = block.hash
    return headers


def precommits(chain: ChainService, votes: list[tuple[Keypair, Header]], round_: int = 7) -> bytes:
    """A justification: one signed precommit of `round_` per (voter, target)."""
    genesis = chain.store.genesis_hash or b""
    return b"".join(
        sign_vote(key, genesis, round_, Phase.PRECOMMIT, target).encode() for key, target in votes
    )


def justify(chain: ChainService, header: Header) -> bytes:
    """Finalize `header` in `chain` with three precommits for it; returns the justification."""
    data = precommits(chain, [(key, header) for key in KEYS[:3]])
    assert chain.finalize(Hash32(header.hash), data)
    return data


# -- the network seam ---------------------------------------------------------------------------


class StorePeer:
    """An honest peer: its status and answers come from a real store."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store

    def status(self) -> Status:
        best, final = self.store.best_header, self.store.finalized_header
        genesis = self.store.genesis_hash or b""
        return Status(Hash32(genesis), best.number, best.hash, final.number, final.hash)

    async def serve(self, request: bytes) -> bytes:
        return serve_sync(self.store, request)


class Liar(StorePeer):
    """Claims best and finalized #10^9; answers nothing (`stall`) or empty lists."""

    def __init__(self, store: ChainStore, *, stall: bool) -> None:
        super().__init__(store)
        self.stall = stall

    def status(self) -> Status:
        honest = super().status()
        return replace(
            honest, best_number=10**9, best_hash=Hash32(b"\x01" * 32),
            finalized_number=10**9, finalized_hash=Hash32(b"\x02" * 32),
        )  # fmt: skip

    held: float = 0.0
    """How long stalled requests kept their caller waiting (trio clock)."""

    async def serve(self, request: bytes) -> bytes:
        if self.stall:
            began = trio.current_time()
            try:
                await trio.sleep_forever()
            finally:
                self.held += trio.current_time() - began
        return encode_sync_response([])


class RewritingPeer(StorePeer):
    """Serves its store's chain with every justification replaced by `rewrite(justification)`."""

    def __init__(self, store: ChainStore, rewrite: object, status: Status | None = None) -> None:
        super().__init__(store)
        self.rewrite = rewrite
        self.claimed = status

    def status(self) -> Status:
        return self.claimed or super().status()

    async def serve(self, request: bytes) -> bytes:
        items = decode_sync_response(serve_sync(self.store, request))
        return encode_sync_response(
            [
                SyncItem(i.block, self.rewrite(i.justification) if i.justification else b"")  # type: ignore[operator]
                for i in items
            ]
        )


class Network:
    """The SyncPeers seam over in-process peers. Penalties add up as the p2p host's do (ban at
    -100, no recovery within a test); a banned peer is disconnected."""

    def __init__(self, **peers: StorePeer) -> None:
        self.peers = dict(peers)
        self.scores: defaultdict[str, float] = defaultdict(float)
        self.reasons: defaultdict[str, list[str]] = defaultdict(list)
        self.requests: Counter[str] = Counter()
        self.banned: set[str] = set()

    def statuses(self) -> list[tuple[str, Status]]:
        return [(name, p.status()) for name, p in self.peers.items() if name not in self.banned]

    async def request_sync(self, peer: str, request: bytes) -> bytes:
        if peer in self.banned:
            raise PeerUnreachable(peer, "sync", "not connected")
        self.requests[peer] += 1
        return await self.peers[peer].serve(request)

    def penalize(self, peer: str, amount: int, reason: str) -> None:
        self.scores[peer] -= amount
        self.reasons[peer].append(reason)
        if self.scores[peer] <= -100:
            self.banned.add(peer)


async def sync_until_idle(sync: SyncService, rounds: int = 200) -> None:
    """Sync rounds as the service runs them, until one finds nothing to do with every backoff
    over (the virtual clock jumps over the waits)."""
    idle = 0
    for _ in range(rounds):
        if await sync.sync_once():
            idle = 0
            continue
        idle += 1
        if idle > 8:
            return
        await trio.sleep(61)


def run(scenario: object) -> None:
    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


# -- honest chains ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> ChainService:
    """300 blocks, finalized at #280 (the justification's precommits name #280 and #290) and
    at #128 (one precommit names #130: a descendant the first batch does not bring)."""
    chain = open_node(tmp_path_factory.mktemp("honest") / "db")

    async def build() -> None:
        headers = await extend(chain, chain.store.best_hash or b"", 300, 1)
        at: dict[int, Header] = {int(h.number): h for h in headers}
        data = precommits(chain, [(ALICE, at[128]), (BOB, at[128]), (CHARLIE, at[130])])
        assert chain.finalize(Hash32(at[128].hash), data)
        data = precommits(chain, [(ALICE, at[280]), (BOB, at[290]), (DAVE, at[280])], round_=9)
        assert chain.finalize(Hash32(at[280].hash), data)

    trio.run(build)
    return chain


def test_honest_justifications_with_descendant_precommits_sync(
    honest: ChainService, tmp_path: Path
) -> None:
    node = open_node(tmp_path / "db")
    net = Network(honest=StorePeer(honest.store))
    sync = SyncService(node, net)

    async def scenario() -> None:
        # The first batch brings #1..#128: #128's justification waits for #130.
        assert await sync.sync_once()
        await sync_until_idle(sync)

    run(scenario)
    assert node.store.best_hash == honest.store.best_hash
    assert node.store.finalized_hash == honest.store.finalized_hash
    assert node.store.justification(honest.store.finalized_hash or b"")
    assert not net.reasons  # the honest peer lost nothing
    assert net.requests["honest"] <= 300 // MAX_SYNC_BLOCKS + 2
    node.store.db.close()


@pytest.mark.parametrize("stall", [True, False], ids=["stalling", "empty"])
def test_a_new_node_beside_a_lying_peer_syncs_the_honest_finalized_chain(
    honest: ChainService, tmp_path: Path, stall: bool
) -> None:
    alone = open_node(tmp_path / "alone")
    beside = open_node(tmp_path / "beside")
    honest_only = Network(honest=StorePeer(honest.store))
    with_liar = Network(honest=StorePeer(honest.store), liar=Liar(honest.store, stall=stall))

    async def scenario() -> None:
        await sync_until_idle(SyncService(alone, honest_only))
        await sync_until_idle(SyncService(beside, with_liar))

    run(scenario)
    for node in (alone, beside):
        assert node.store.best_hash == honest.store.best_hash
        assert node.store.finalized_hash == honest.store.finalized_hash
        node.store.db.close()
    # The liar cost one request each time its backoff ended, and those cost it its score.
    assert with_liar.requests["honest"] == honest_only.requests["honest"]
    assert "liar" in with_liar.banned
    assert 1 <= with_liar.requests["liar"] <= 6
    assert not with_liar.reasons["honest"]


def test_a_lying_peer_costs_one_short_timeout(honest: ChainService, tmp_path: Path) -> None:
    """A new node beside a stalling liar catches up with the same requests to the honest peer
    as alone, plus one request to the liar that holds it for the first timeout (2 s) only."""
    alone = open_node(tmp_path / "alone")
    beside = open_node(tmp_path / "beside")
    honest_only = Network(honest=StorePeer(honest.store))
    liar = Liar(honest.store, stall=True)
    with_liar = Network(honest=StorePeer(honest.store), liar=liar)

    async def catch_up(node: ChainService, net: Network) -> SyncService:
        sync = SyncService(node, net)
        while node.store.finalized_hash != honest.store.finalized_hash:
            if not await sync.sync_once():
                await trio.sleep(0.05)
        return sync

    async def scenario() -> tuple[SyncService, SyncService]:
        return await catch_up(alone, honest_only), await catch_up(beside, with_liar)

    sync_alone, sync_beside = trio.run(scenario)
    assert with_liar.requests["honest"] == honest_only.requests["honest"]
    assert with_liar.requests["liar"] == 1
    assert sync_alone.stats.failed_requests == 0
    assert sync_beside.stats.failed_requests == 1
    # Cancelled at the first timeout: a little late on a loaded machine, never a second one.
    assert FIRST_TIMEOUT <= liar.held < FIRST_TIMEOUT + 1.0, liar.held
    for node in (alone, beside):
        node.store.db.close()


# -- captured, forged and conflicting chains ----------------------------------------------------


def test_a_node_on_a_forged_chain_moves_to_the_honest_finalized_chain(tmp_path: Path) -> None:
    """One key seals a long chain in its own slots; the honest chain is shorter but final. A
    node that took the forged chain moves over once it sees the honest peer."""
    source = open_node(tmp_path / "honest")
    forger = open_node(tmp_path / "forger")
    node = open_node(tmp_path / "node")

    async def scenario() -> None:
        genesis = source.store.best_hash or b""
        honest = await extend(source, genesis, 30, 1)
        justify(source, honest[24])  # finalized #25
        # Alice's slots only (every fourth), far ahead: a chain twice as long.
        parent = genesis
        for i in range(60):
            block = sealed(forger, parent, 10_000 + 4 * i)
            await forger.import_block(block)
            parent = block.hash
        await sync_until_idle(SyncService(node, Network(forger=StorePeer(forger.store))))
        assert node.store.best_header.number == 60 and node.store.finalized_header.number == 0
        net = Network(forger=StorePeer(forger.store), honest=StorePeer(source.store))
        await sync_until_idle(SyncService(node, net))
        assert not net.reasons["honest"]

    run(scenario)
    assert node.store.finalized_hash == source.store.finalized_hash
    assert node.store.best_hash == source.store.best_hash
    for chain in (source, forger, node):
        chain.store.db.close()


def test_a_peer_whose_finalized_chain_conflicts_with_ours_is_refused(tmp_path: Path) -> None:
    source = open_node(tmp_path / "honest")
    other = open_node(tmp_path / "other")
    node = open_node(tmp_path / "node")

    async def scenario() -> None:
        genesis = source.store.best_hash or b""
        honest = await extend(source, genesis, 20, 1)
        justify(source, honest[14])  # #15
        # Another chain sharing #1..#5, finalized at #20 by (equivocating) validators.
        for h in honest[:5]:
            block = source.store.block(h.hash)
            assert block is not None
            await other.import_block(block)
        fork = await extend(other, honest[4].hash, 20, 100)
        justify(other, fork[14])  # #20
        await sync_until_idle(SyncService(node, Network(honest=StorePeer(source.store))))
        assert node.store.finalized_header.number == 15
        # Ahead by finality, its finalized block unknown to us: refused once its chain shows.
        ahead = Network(other=StorePeer(other.store))
        sync = SyncService(node, ahead)
        await sync_until_idle(sync)
        assert sync.refused("other") is not None
        assert ahead.scores["other"] <= -PENALTY_BAN
        # Behind us by finality, with another block at #10: refused on its status alone.
        behind = RewritingPeer(
            other.store, bytes, replace(StorePeer(other.store).status(),
                                        finalized_number=10, finalized_hash=fork[4].hash),
        )  # fmt: skip
        net = Network(behind=behind)
        sync = SyncService(node, net)
        assert await sync.sync_once() is False
        assert sync.refused("behind") is not None and net.requests["behind"] == 0

    run(scenario)
    assert node.store.finalized_hash == source.store.finalized_hash
    assert node.store.best_hash == source.store.best_hash
    for chain in (source, other, node):
        chain.store.db.close()


def test_a_checkpoint_mismatch_refuses_the_peer(tmp_path: Path) -> None:
    source = open_node(tmp_path / "honest")
    other = open_node(tmp_path / "other")
    node = open_node(tmp_path / "node")

    async def scenario() -> None:
        genesis = source.store.best_hash or b""
        honest = await extend(source, genesis, 20, 1)
        justify(source, honest[14])
        await extend(other, genesis, 40, 3)  # longer, unjustified, another block at #10
        net = Network(other=StorePeer(other.store))
        sync = SyncService(node, net, checkpoint=(10, Hash32(honest[9].hash)))
        await sync_until_idle(sync)
        assert "checkpoint" in (sync.refused("other") or "")
        assert net.scores["other"] <= -PENALTY_BAN
        assert node.store.best_header.number < 10  # nothing from #10 of its chain
        net.peers["honest"] = StorePeer(source.store)
        await sync_until_idle(sync)

    run(scenario)
    assert node.store.best_hash == source.store.best_hash
    assert node.store.finalized_hash == source.store.finalized_hash
    for chain in (source, other, node):
        chain.store.db.close()


# -- forged justifications ----------------------------------------------------------------------


def _corrupt(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])  # the last vote's signature


def _oversized(data: bytes) -> bytes:
    return data[:145] * 57_000  # one real vote, 8.3 MB


@pytest.mark.parametrize("rewrite", [_corrupt, _oversized], ids=["bad signature", "oversized"])
def test_a_forged_justification_bans_its_sender(
    honest: ChainService, tmp_path: Path, rewrite: object
) -> None:
    node = open_node(tmp_path / "db")
    net = Network(forger=RewritingPeer(honest.store, rewrite))
    sync = SyncService(node, net)

    async def scenario() -> None:
        await sync_until_idle(sync)

    run(scenario)
    assert "forger" in net.banned
    assert any("bad justification" in reason for reason in net.reasons["forger"])
    assert node.store.finalized_header.number == 0
    node.store.db.close()


def test_an_oversized_justification_is_refused_before_any_vote_is_decoded(
    honest: ChainService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = open_node(tmp_path / "db")
    net = Network(forger=RewritingPeer(honest.store, _oversized))
    sync = SyncService(node, net)
    header = honest.store.finalized_header
    data = _oversized(honest.store.justification(header.hash) or b"")
    work = count_vote_work(monkeypatch)

    async def scenario() -> None:
        assert await sync._apply_justifications("forger", [(header, data)]) is None

    trio.run(scenario)
    assert work == {"decoded": 0, "verified": 0}
    assert "forger" in net.banned
    node.store.db.close()


def test_a_conflicting_justification_halts_with_the_database_unchanged(tmp_path: Path) -> None:
    """More than a third of the validators sign two chains: the node has both, finalized one,
    and a peer brings the other's justification. Nothing is written; FinalityConflict goes up."""
    node = open_node(tmp_path / "node")
    other = open_node(tmp_path / "other")

    async def scenario() -> None:
        genesis = node.store.best_hash or b""
        common = await extend(node, genesis, 2, 1)
        for h in common:
            block = node.store.block(h.hash)
            assert block is not None
            await other.import_block(block)
        theirs = await extend(other, common[-1].hash, 6, 100)  # #3..#8
        for h in theirs:
            block = other.store.block(h.hash)
            assert block is not None
            await node.import_block(block)
        ours = await extend(node, common[-1].hash, 4, 200)  # #3..#6
        justify(node, ours[2])  # #5: the best chain moves onto ours
        justify(other, theirs[-1])  # #8, by the same validators
        assert node.store.best_hash == ours[-1].hash
        before = (node.store.best_hash, node.store.finalized_hash)
        # It claims our finalized block, so its status alone gives nothing away.
        claimed = replace(
            StorePeer(other.store).status(),
            finalized_number=5, finalized_hash=Hash32(ours[2].hash),
        )  # fmt: skip
        sync = SyncService(node, Network(other=RewritingPeer(other.store, bytes, claimed)))
        with pytest.raises(FinalityConflict) as info:
            await sync.sync_once()
        assert info.value.finalized == (5, ours[2].hash)
        assert info.value.conflicting == (8, theirs[-1].hash)
        assert node.conflict is info.value and node.conflict_found.is_set()
        with pytest.raises(FinalityConflict):
            node.finalize(Hash32(ours[-1].hash), None)  # halted: nothing more is finalized
        assert (node.store.best_hash, node.store.finalized_hash) == before

    run(scenario)
    before = (node.store.best_hash, node.store.finalized_hash)
    node.store.db.close()
    other.store.db.close()
    reopened = ChainStore(Database(tmp_path / "node"))
    assert (reopened.best_hash, reopened.finalized_hash) == before
    reopened.db.close()


# -- choosing peers -------------------------------------------------------------------------------


def test_peers_are_chosen_by_finalized_block_then_in_turn(
    honest: ChainService, tmp_path: Path
) -> None:
    node = open_node(tmp_path / "db")
    final = honest.store.finalized_header
    lagging = replace(StorePeer(honest.store).status(), finalized_number=0,
                      finalized_hash=Hash32(node.store.genesis_hash or b""))  # fmt: skip
    net = Network(
        a=StorePeer(honest.store), b=StorePeer(honest.store),
        c=RewritingPeer(honest.store, bytes, lagging),
    )  # fmt: skip
    sync = SyncService(node, net)

    async def scenario() -> None:
        firsts = []
        for _ in range(4):
            sync._turn += 1  # as each sync round does
            order = [peer for peer, _ in sync.candidates()]
            assert order[-1] == "c"  # ahead by best only
            firsts.append(order[0])
        assert set(firsts) == {"a", "b"}
        assert final.number > 0

    run(scenario)
    node.store.db.close()


def test_a_block_ahead_of_our_clock_pauses_sync_without_penalty(tmp_path: Path) -> None:
    source = open_node(tmp_path / "source")
    clock = ManualClock(0)
    node = open_node(tmp_path / "node", clock)

    async def scenario() -> None:
        await extend(source, source.store.best_hash or b"", 10, 1)
        net = Network(peer=StorePeer(source.store))
        sync = SyncService(node, net)
        clock.set_ms(5 * SPEC.slot_duration_ms)  # blocks #5.. are ahead of us
        assert await sync.sync_once()
        assert node.store.best_header.number == 5
        assert not await sync.sync_once()
        assert not net.reasons
        clock.set_ms(NOW_MS)
        await sync_until_idle(sync)
        assert node.store.best_header.number == 10
        assert not net.reasons

    run(scenario)
    for chain in (source, node):
        chain.store.db.close()


# -- the node around it ---------------------------------------------------------------------------


def test_a_database_that_finalized_another_block_at_the_checkpoint_is_refused(
    tmp_path: Path,
) -> None:
    node = open_node(tmp_path / "db")

    async def scenario() -> list[Header]:
        headers = await extend(node, node.store.best_hash or b"", 12, 1)
        justify(node, headers[9])  # #10
        return headers

    headers = trio.run(scenario)
    check_checkpoint(node.store, None)
    check_checkpoint(node.store, (5, Hash32(headers[4].hash)))
    check_checkpoint(node.store, (11, Hash32(b"\x07" * 32)))  # not final yet: sync checks it
    with pytest.raises(DatabaseError) as info:
        check_checkpoint(node.store, (5, Hash32(b"\x07" * 32)))
    assert str(info.value).startswith(
        f"the database at {node.store.db.path} has finalized block #5 0x{headers[4].hash.hex()}, "
        f"but the checkpoint is 0x{'07' * 32}"
    )
    node.store.db.close()


def test_a_finality_conflict_found_anywhere_halts_the_node(tmp_path: Path) -> None:
    """The runner's watch raises the conflict that `finalize` found, whoever called it (the
    gadget calls it inside a gossip callback), and so cancels every service."""
    node = open_node(tmp_path / "db")

    async def scenario() -> None:
        genesis = node.store.best_hash or b""
        ours = await extend(node, genesis, 3, 1)
        theirs = await extend(node, genesis, 2, 100)
        justify(node, ours[1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_halt_on_finality_conflict, node)
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep(1)
            with pytest.raises(FinalityConflict):
                node.finalize(Hash32(theirs[1].hash), None)  # e.g. from a gossip callback

    with pytest.raises(BaseExceptionGroup) as info:
        run(scenario)
    assert info.group_contains(FinalityConflict)
    assert node.store.finalized_header.number == 2
    node.store.db.close()


def test_a_wake_abandons_a_request_to_a_peer_that_failed_before(
    honest: ChainService, tmp_path: Path
) -> None:
    """Once caught up, a stalling liar is asked again when its backoff ends; new work (a block
    with an unknown parent) does not wait for its timeout."""
    node = open_node(tmp_path / "db")
    net = Network(liar=Liar(honest.store, stall=True))
    sync = SyncService(node, net)

    async def scenario() -> None:
        assert not await sync.sync_once()  # the first timeout: 2 s
        await trio.sleep(10)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sync.sync_once)
            await trio.sleep(0.5)
            began = trio.current_time()
            sync.wake()
        assert trio.current_time() - began < 0.1
        assert net.requests["liar"] == 2
        assert len(net.reasons["liar"]) == 1  # abandoning it is no fault of its own
        assert sync.candidates() == []  # but it lost its turn: backed off again

    run(scenario)
    node.store.db.close()


def test_a_peer_that_is_no_longer_connected_costs_nothing_and_is_asked_again_soon(
    honest: ChainService, tmp_path: Path
) -> None:
    """Its status is still listed, but the request cannot reach it: no penalty (a ban would
    keep it out once it reconnects) and no growing back-off, and the others are asked."""
    node = open_node(tmp_path / "db")

    class Gone(Network):
        async def request_sync(self, peer: str, request: bytes) -> bytes:
            if peer == "gone":
                self.requests[peer] += 1
                raise PeerUnreachable(peer, "sync", "not connected")
            return await super().request_sync(peer, request)

    # It claims the most, so it is asked first.
    net = Gone(gone=Liar(honest.store, stall=False), honest=StorePeer(honest.store))
    sync = SyncService(node, net)

    async def scenario() -> None:
        for _ in range(3):
            while await sync.sync_once():
                pass
        assert node.store.finalized_hash == honest.store.finalized_hash

    trio.run(scenario)
    assert net.requests["gone"] >= 1
    assert net.scores["gone"] == 0 and not net.reasons["gone"]
    assert sync.stats.failed_requests == 0
    assert sync._records["gone"].failures == 0
    node.store.db.close()


# -- signatures checked ahead -------------------------------------------------------------------


def with_transfer(chain: ChainService, parent_hash: bytes, slot: int, nonce: int) -> Block:
    """A block on `parent_hash` for `slot` carrying one transfer from Alice."""
    parent = chain.store.require_header(parent_hash)
    timestamp = TimestampMs(slot * SPEC.slot_duration_ms)
    env = BlockEnv(BlockNumber(parent.number + 1), parent.hash, timestamp, KEYS[slot % 4].public)
    tx = sign_transaction(
        ALICE, genesis_hash=Hash32(chain.store.genesis_hash or b""), nonce=nonce,
        call=transfer_call(BOB.public, 5),
    )  # fmt: skip
    valid = chain.runtime.validate_transaction(
        chain.store.state_at(parent_hash), rlp.encode(tx), env
    )
    block, _ = propose(
        chain.store, chain.runtime, parent, [valid], slot=Slot(slot), timestamp=timestamp,
        signer=KEYS[slot % 4], on_invalid=lambda tx, exc: None,
    )  # fmt: skip
    assert len(block.extrinsics) == 1
    return block


def forge_signature(block: Block) -> Block:
    """`block` with its transfer's signature broken, the header's roots and seal made to match:
    only the signature check can tell."""
    encoded = bytearray(block.extrinsics[0])
    encoded[-1] ^= 1
    extrinsics = (bytes(encoded),)
    header = block.header.copy(extrinsics_root=extrinsics_root(extrinsics), seal=b"")
    signer = KEYS[header.slot % 4]
    return Block(header.copy(seal=signer.sign(header.pre_seal_hash())), extrinsics)


class ForgingPeer(StorePeer):
    """Serves its store's chain with block `number` replaced by `forged`."""

    def __init__(self, store: ChainStore, number: int, forged: Block) -> None:
        super().__init__(store)
        self.number = number
        self.forged = forged

    async def serve(self, request: bytes) -> bytes:
        items = decode_sync_response(serve_sync(self.store, request))
        first = SyncRequest.decode(request).start
        return encode_sync_response(
            [
                SyncItem(rlp.encode(self.forged), b"") if first + i == self.number else item
                for i, item in enumerate(items)
            ]
        )


def test_signatures_checked_ahead_save_work_and_never_let_a_forged_one_in(
    tmp_path: Path,
) -> None:
    """Each batch has its seals and transfers' signatures checked in the signature worker, a
    chunk at a time, ahead of its import (the second, 40 blocks, while the first imports); a
    block whose transfer carries a forged signature is refused all the same. The blocks after the
    forged one are never imported, yet their transfers' signatures are known good: the worker
    checked them."""
    source = open_node(tmp_path / "source")
    node = open_node(tmp_path / "node")
    forged: list[Block] = []

    async def build() -> None:
        parent = source.store.best_hash or b""
        for n in range(MAX_SYNC_BLOCKS + 40):
            block = with_transfer(source, parent, n + 1, n)
            if n == MAX_SYNC_BLOCKS + 29:
                forged.append(forge_signature(block))
            assert await source.import_block(block)
            parent = block.hash

    trio.run(build)
    net = Network(source=ForgingPeer(source.store, MAX_SYNC_BLOCKS + 30, forged[0]))
    sync = SyncService(node, net)

    async def scenario() -> None:
        try:
            # The child started beforehand: it answers long before the first batch's import
            # ends, so the second batch imports after its answer (the import does not wait).
            first = source.store.block(source.store.canonical_hash(1) or b"")
            assert await sync.worker.verified([bytes(rlp.encode(first))])
            await sync.sync_once()
        finally:
            await sync.worker.aclose()

    run(scenario)
    assert node.store.best_header.number == MAX_SYNC_BLOCKS + 29
    assert sync.stats.verified_ahead >= 40
    verified = node.verified_signatures
    assert tx_hash(forged[0].extrinsics[0]) not in verified
    after = range(MAX_SYNC_BLOCKS + 31, MAX_SYNC_BLOCKS + 41)
    blocks = [source.store.block(source.store.canonical_hash(n) or b"") for n in after]
    assert all(b is not None and tx_hash(b.extrinsics[0]) in verified for b in blocks)
    assert any("bad signature" in reason for reason in net.reasons["source"]), net.reasons
    for chain in (source, node):
        chain.store.db.close()


def test_a_response_of_deeply_nested_lists_is_bad_data_not_a_crash(
    honest: ChainService, tmp_path: Path
) -> None:
    """A few kilobytes of nested lists once ended the sync task in a RecursionError."""
    node = open_node(tmp_path / "node")

    class Nesting(StorePeer):
        async def serve(self, request: bytes) -> bytes:
            encoded = b"\xc0"
            for _ in range(3_000):
                encoded = codec.list_prefix(len(encoded)) + encoded
            return encoded

    net = Network(nester=Nesting(honest.store))
    sync = SyncService(node, net)

    async def scenario() -> None:
        assert not await sync.sync_once()

    run(scenario)
    assert node.store.best_header.number == 0
    assert any("nested" in reason for reason in net.reasons["nester"]), net.reasons
    node.store.db.close()


def test_a_stuck_signature_worker_does_not_hold_sync_back(
    honest: ChainService, tmp_path: Path
) -> None:
    """A child that never answers costs nothing but its checks: the import verifies alone."""
    node = open_node(tmp_path / "node")
    stuck = SignatureWorker([sys.executable, "-c", "import time; time.sleep(600)"])
    sync = SyncService(node, Network(honest=StorePeer(honest.store)), worker=stuck)

    async def scenario() -> None:
        with trio.fail_after(60):  # a wait for the child would end here
            while await sync.sync_once():
                pass

    trio.run(scenario)
    assert node.store.best_hash == honest.store.best_hash
    assert not stuck.running  # killed when its turn ended, and no child left once caught up
    node.store.db.close()


def test_a_failure_of_the_batch_asked_ahead_costs_the_peer_what_it_did_before(
    honest: ChainService, tmp_path: Path
) -> None:
    """The second batch is asked while the first imports; a peer that fails it is charged as if
    it had been asked after: the first batch's success resets its count first."""

    class FirstBatchOnly(StorePeer):
        async def serve(self, request: bytes) -> bytes:
            if SyncRequest.decode(request).start > 1:
                return encode_sync_response([])
            return await super().serve(request)

    node = open_node(tmp_path / "node")
    net = Network(peer=FirstBatchOnly(honest.store))
    sync = SyncService(node, net)
    sync._records["peer"] = PeerRecord(failures=2)  # two failures in a row behind it

    async def scenario() -> None:
        try:
            assert await sync.sync_once()
        finally:
            await sync.worker.aclose()

    run(scenario)
    assert node.store.best_header.number == MAX_SYNC_BLOCKS
    assert sync._records["peer"].failures == 1
    assert net.scores["peer"] == -PENALTY_UNHELPFUL
    node.store.db.close()


def test_a_peer_that_only_claims_to_be_far_ahead_starts_no_signature_worker(
    tmp_path: Path,
) -> None:
    """The worker (a process that takes some 0.4 s of CPU to start) is started by a batch of
    blocks, not by a status: a peer that claims to be far ahead but cannot be reached, which
    costs it nothing, would otherwise have it started and stopped every few seconds."""
    node = open_node(tmp_path / "db")
    claimer = open_node(tmp_path / "claimer")

    class Unreachable(Network):
        async def request_sync(self, peer: str, request: bytes) -> bytes:
            self.requests[peer] += 1
            raise PeerUnreachable(peer, "sync", "not connected")

    net = Unreachable(liar=Liar(claimer.store, stall=False))
    starts = []

    class Counting(SignatureWorker):
        async def _start(self) -> trio.Process:
            if self._process is None:
                starts.append(trio.current_time())
            return await super()._start()

    worker = Counting([sys.executable, "-c", "import time; time.sleep(600)"])
    sync = SyncService(node, net, worker=worker)

    async def scenario() -> None:
        try:
            for _ in range(20):  # as `SyncService.run`: a turn, then IDLE_CHECK if in vain
                if not await sync.sync_once():
                    await trio.sleep(IDLE_CHECK)
        finally:
            await worker.aclose()

    run(scenario)
    assert net.requests["liar"] >= 5
    assert starts == []
    for chain in (node, claimer):
        chain.store.db.close()
