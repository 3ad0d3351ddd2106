"""The chain service on a real database: blocks from elsewhere, fork choice, re-orgs that put
transactions back into the pool, equivocation evidence, and finality on a fork."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
import rlp
import trio

from chain.blocks import Block, SignedTransaction, tx_hash
from chain.db import Database
from chain.errors import BlockRejection, InvalidBlock, InvalidTransaction, TxRejection
from chain.genesis import build_genesis
from chain.keys import Keypair, sign_transaction
from chain.pool import DeferredDryRuns, TransactionPool
from chain.primitives import Slot, TimestampMs
from chain.runtime.executive import Runtime
from chain.runtime.framework import BlockEnv, Module
from chain.signature import VerifiedSignatures
from chain.state import StateReader, TrieState
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from chain.validity import ValidTransaction
from consensus.chain_service import DRY_RUN_INLINE_BYTES, ChainService
from consensus.proposer import propose
from tests.factories import ALICE, BOB, CHARLIE, DAVE, calls, spec_for, transfer_call

AUTHORITIES = (ALICE, BOB)


class FixedClock:
    """Both readings stand still until a test moves them (`now`, `seconds`)."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms
        self.seconds = 0.0

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self.seconds


def open_chain(path: Path, *, deferring: bool = False) -> ChainService:
    """`deferring`: the pool leaves large transactions' dry runs after a block to the service, as
    the node's does."""
    spec = replace(spec_for(ALICE, BOB, CHARLIE), authorities=tuple(k.public for k in AUTHORITIES))
    db = Database(path)
    store = ChainStore(db)
    genesis = build_genesis(spec, TrieState(db.trie_nodes, BLANK_ROOT))
    store.initialize(genesis)
    runtime = Runtime(spec.runtime, genesis.hash)
    chain: ChainService
    deferred = DeferredDryRuns(lambda v: chain.recheck(v), DRY_RUN_INLINE_BYTES)
    pool = TransactionPool(
        lambda e: chain.validate(e), revalidator=lambda v: chain.revalidate(v),
        deferred=deferred if deferring else None,
    )  # fmt: skip
    chain = ChainService(
        store=store, runtime=runtime, pool=pool, clock=FixedClock(10**9),
        slot_duration_ms=spec.slot_duration_ms, signer=ALICE,
    )  # fmt: skip
    return chain


def block_at(chain: ChainService, parent_hash: bytes, slot: int, txs: list[bytes] = ()) -> Block:  # type: ignore[assignment]
    store = chain.store
    parent = store.require_header(parent_hash)
    author = AUTHORITIES[slot % len(AUTHORITIES)]
    env = BlockEnv(parent.number + 1, parent.hash, TimestampMs(slot * 1000), author.public)
    state = store.state_at(parent.hash)
    candidates = [chain.runtime.validate_transaction(state, t, env) for t in txs]
    block, _ = propose(
        store, chain.runtime, parent, candidates, slot=Slot(slot),
        timestamp=TimestampMs(slot * 1000), signer=author, on_invalid=lambda tx, exc: None,
    )  # fmt: skip
    return block


def transfer(chain: ChainService, who: Keypair, nonce: int, amount: int = 5_000_000) -> bytes:
    tx = sign_transaction(who, genesis_hash=chain.runtime.genesis_hash, nonce=nonce,
                          call=transfer_call(DAVE.public, amount))  # fmt: skip
    return rlp.encode(tx)  # type: ignore[no-any-return]


def test_reorg_puts_retracted_transactions_back_into_the_pool(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash
    tx = transfer(chain, CHARLIE, 0)

    async def scenario() -> None:
        a1 = block_at(chain, genesis, 2, [tx])  # alice's slot
        assert await chain.import_block(a1)
        assert chain.store.best_hash == a1.hash and len(chain.pool) == 0
        b1 = block_at(chain, genesis, 3)  # bob's competing block, no transactions
        assert await chain.import_block(b1)
        b2 = block_at(chain, b1.hash, 5)
        assert chain.store.best_hash == min(a1.hash, b1.hash)  # equal length: the lower hash
        assert await chain.import_block(b2)
        assert chain.store.best_hash == b2.hash
        assert [v.encoded for v in chain.pool.pending()] == [tx]
        assert not await chain.import_block(b2)  # known

    trio.run(scenario)
    chain.store.db.close()


def test_blocks_that_break_the_rules_are_refused(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash

    async def scenario() -> None:
        good = block_at(chain, genesis, 2)
        wrong_author = block_at(chain, genesis, 3)
        forged = Block(good.header.copy(author=BOB.public), good.extrinsics)
        with pytest.raises(InvalidBlock) as info:
            await chain.import_block(forged)
        assert info.value.reason is BlockRejection.WRONG_AUTHOR
        bad_seal = Block(wrong_author.header.copy(seal=b"\x01" * 64), ())
        with pytest.raises(InvalidBlock) as info:
            await chain.import_block(bad_seal)
        assert info.value.reason is BlockRejection.BAD_SEAL
        orphan = Block(good.header.copy(parent_hash=b"\x07" * 32), ())
        with pytest.raises(InvalidBlock) as info:
            await chain.import_block(orphan)
        assert info.value.reason is BlockRejection.UNKNOWN_PARENT
        chain.clock.now = 1_000  # type: ignore[attr-defined]
        with pytest.raises(InvalidBlock, match="in the future"):
            await chain.import_block(good)
        assert chain.store.best_hash == genesis

    trio.run(scenario)
    chain.store.db.close()


def test_equivocation_is_recorded_and_finality_moves_onto_a_fork(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash

    async def scenario() -> None:
        first = block_at(chain, genesis, 2)
        second = block_at(
            chain, genesis, 2, [transfer(chain, CHARLIE, 0)]
        )  # same slot, same author
        assert await chain.import_block(first)
        assert await chain.import_block(second)
        (evidence,) = chain.store.equivocations()
        assert {evidence[0].hash, evidence[1].hash} == {first.hash, second.hash}
        loser = second if chain.store.best_hash == first.hash else first
        assert chain.finalize(loser.hash, None)
        assert chain.store.best_hash == loser.hash == chain.store.finalized_hash
        winner = first if loser is second else second
        with pytest.raises(InvalidBlock) as info:
            await chain.import_block(block_at(chain, winner.hash, 3))
        assert info.value.reason is BlockRejection.BELOW_FINALIZED

    trio.run(scenario)
    chain.store.db.close()


class ThreadRecordingRuntime(Runtime):
    """The real runtime, noting which thread ran each dry run."""

    threads: list[str]
    revalidated: list[tuple[bytes, str]]
    """(transaction hash, thread) of each call."""

    def revalidate(
        self, state: StateReader, valid: ValidTransaction, env: BlockEnv
    ) -> ValidTransaction:
        self.threads.append(threading.current_thread().name)
        self.revalidated.append((valid.hash, threading.current_thread().name))
        return super().revalidate(state, valid, env)


def recording_runtime(
    chain: ChainService, modules: Iterable[Module] | None = None
) -> ThreadRecordingRuntime:
    runtime = ThreadRecordingRuntime(chain.runtime.config, chain.runtime.genesis_hash, modules)
    runtime.threads = []
    runtime.revalidated = []
    chain.runtime = runtime
    return runtime


def doomed_update(runtime: Runtime, who: Keypair, nonce: int, attempt: int = 0) -> bytes:
    """An update of an application nobody created: refused once its 8 KB manifest is read."""
    env = [{"name": f"V{i}", "value": f"{attempt}".ljust(80, "x")} for i in range(64)]
    manifest = {
        "apiVersion": "statemesh/v1",
        "kind": "Application",
        "metadata": {"name": "nothing"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]},
    }
    update = calls()[("apps", "update")]
    call = update.call(manifest=json.dumps(manifest).encode())  # type: ignore[attr-defined]
    tx = sign_transaction(who, genesis_hash=runtime.genesis_hash, nonce=nonce, call=call)
    return rlp.encode(tx)  # type: ignore[no-any-return]


def test_a_clients_dry_run_runs_off_the_event_loop_and_failing_ones_ban_the_sender(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    runtime = recording_runtime(chain)

    def doomed(attempt: int) -> bytes:
        return doomed_update(runtime, CHARLIE, 0, attempt)

    async def scenario() -> None:
        loop_thread = threading.current_thread().name
        for attempt in range(3):
            with pytest.raises(InvalidTransaction) as info:
                await chain.submit_from_client(doomed(attempt))
            assert info.value.reason is TxRejection.CALL_FAILED
            assert "apps.UnknownApp" in info.value.message
        assert len(runtime.threads) == 3 and loop_thread not in runtime.threads
        # Charlie's fourth, even a good one, is refused before any dry run; others are served.
        with pytest.raises(InvalidTransaction) as info:
            await chain.submit_from_client(transfer(chain, CHARLIE, 0))
        assert info.value.reason is TxRejection.TEMPORARILY_BANNED
        assert len(runtime.threads) == 3
        # A transfer is small: its dry run costs less on the loop than a hop to a thread.
        valid = await chain.submit_from_client(transfer(chain, BOB, 0))
        assert chain.pool.status(valid.hash) == "ready"
        assert runtime.threads[3:] == [loop_thread]
        assert chain.statistics().dry_runs_waiting == 0

    trio.run(scenario)
    chain.store.db.close()


def test_after_a_block_a_large_pending_transaction_is_dry_run_off_the_event_loop(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db", deferring=True)
    runtime = recording_runtime(chain)
    genesis = chain.store.best_header.hash
    first = transfer(chain, CHARLIE, 0)
    doomed = doomed_update(runtime, CHARLIE, 1)
    successor = transfer(chain, CHARLIE, 2)

    async def scenario() -> None:
        loop_thread = threading.current_thread().name
        for encoded in (first, doomed, successor):
            await chain.submit_from_client(encoded)
        # Only the first was next in line: the others wait without a dry run.
        assert runtime.revalidated == [(tx_hash(first), loop_thread)]
        block = block_at(chain, genesis, 2, [first])
        runtime.revalidated.clear()
        assert await chain.import_block(block)
        # Its block made the large one next in line: rechecked on the loop, not dry-run there.
        assert tx_hash(doomed) not in {hash_ for hash_, _ in runtime.revalidated}
        assert chain.statistics().unverified == 1
        assert chain.pool.status(tx_hash(doomed)) == "ready"
        runtime.revalidated.clear()
        assert await chain.revalidate_unverified() == 1
        ((hash_, thread),) = runtime.revalidated
        assert hash_ == tx_hash(doomed) and thread != loop_thread
        assert chain.pool.status(tx_hash(doomed)) is None
        assert chain.pool.status(tx_hash(successor)) == "future"
        assert chain.statistics().unverified == 0

    trio.run(scenario)
    chain.store.db.close()


def test_a_dry_run_after_a_block_settles_nothing_once_a_newer_block_is_best(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db", deferring=True)
    genesis = chain.store.best_header.hash
    first = transfer(chain, CHARLIE, 0)
    doomed = doomed_update(chain.runtime, CHARLIE, 1)

    async def scenario() -> None:
        await chain.submit_from_client(first)
        await chain.submit_from_client(doomed)
        one = block_at(chain, genesis, 2, [first])
        assert await chain.import_block(one)
        assert chain.statistics().unverified == 1
        # The next block (empty) lands while the dry run runs: the outcome is dropped, and the
        # newer block's own list is dry-run instead.
        two = block_at(chain, one.hash, 3)
        real = chain._dry_run_in_turn
        imported: list[bool] = []

        async def meanwhile(checked: ValidTransaction) -> tuple[object, bytes]:
            outcome = await real(checked)
            if not imported:
                imported.append(await chain.import_block(two))
            return outcome

        chain._dry_run_in_turn = meanwhile  # type: ignore[method-assign,assignment]
        assert await chain.revalidate_unverified() == 1
        assert imported == [True]
        assert chain.pool.status(tx_hash(doomed)) is None
        assert chain.statistics().unverified == 0

    trio.run(scenario)
    chain.store.db.close()


def test_dry_runs_waiting_when_their_sender_is_banned_are_refused_without_running(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    runtime = recording_runtime(chain)

    def doomed(attempt: int) -> bytes:
        return doomed_update(runtime, CHARLIE, 0, attempt)

    reasons: list[TxRejection] = []

    async def submit(attempt: int) -> None:
        try:
            await chain.submit_from_client(doomed(attempt))
        except InvalidTransaction as exc:
            reasons.append(exc.reason)

    async def scenario() -> None:
        # All queued at once, before the first has failed: each passes the cheap checks.
        async with trio.open_nursery() as nursery:
            for attempt in range(8):
                nursery.start_soon(submit, attempt)
        assert len(runtime.threads) == 3
        assert reasons.count(TxRejection.CALL_FAILED) == 3
        assert reasons.count(TxRejection.TEMPORARILY_BANNED) == 5
        assert chain.statistics().dry_runs_waiting == 0

    trio.run(scenario)
    chain.store.db.close()


def forged_copy(encoded: bytes) -> bytes:
    """The same transaction (sender, nonce, call) with another, invalid, signature."""
    tx = rlp.decode(encoded, sedes=SignedTransaction)
    bad = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    return rlp.encode(tx.copy(signature=bad))  # type: ignore[no-any-return]


def block_with(
    chain: ChainService, parent_hash: bytes, slot: int, genuine: bytes, carried: bytes
) -> Block:
    """A block carrying `carried` in place of `genuine` (the same transaction, maybe with a bad
    signature), sealed as its author would: an author may include anything, import checks."""
    store = chain.store
    parent = store.require_header(parent_hash)
    author = AUTHORITIES[slot % len(AUTHORITIES)]
    env = BlockEnv(parent.number + 1, parent.hash, TimestampMs(slot * 1000), author.public)
    valid = chain.runtime.validate_transaction(store.state_at(parent.hash), genuine, env)
    candidate = replace(valid, encoded=carried, hash=tx_hash(carried))
    block, _ = propose(
        store, chain.runtime, parent, [candidate], slot=Slot(slot),
        timestamp=TimestampMs(slot * 1000), signer=author, on_invalid=lambda tx, exc: None,
    )  # fmt: skip
    assert block.extrinsics == (carried,)
    return block


def test_import_does_not_verify_again_what_the_pool_verified(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash
    tx = transfer(chain, CHARLIE, 0)
    chain.submit(tx, local=False)
    assert tx_hash(tx) in chain.verified_signatures

    async def scenario() -> None:
        # The cache is what import trusts: a hash in it is not verified again. (Only hashes
        # whose signature verified are ever added; this adds a forged one to show the skip.)
        forged = forged_copy(tx)
        chain.verified_signatures.add(tx_hash(forged))
        assert await chain.import_block(block_with(chain, genesis, 2, tx, forged))

    trio.run(scenario)
    chain.store.db.close()


def test_a_signature_the_pool_did_not_verify_is_verified_at_import(tmp_path: Path) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash
    tx = transfer(chain, CHARLIE, 0)
    chain.submit(tx, local=False)  # the genuine transaction verified and pooled

    async def scenario() -> None:
        # Same sender, nonce and call, another signature: other bytes, another hash, verified.
        forged = forged_copy(tx)
        assert tx_hash(forged) not in chain.verified_signatures
        with pytest.raises(InvalidBlock) as info:
            await chain.import_block(block_with(chain, genesis, 2, tx, forged))
        assert info.value.reason is BlockRejection.INVALID_EXTRINSIC
        assert "the signature does not match the sender and payload" in str(info.value)
        assert chain.store.best_hash == genesis
        assert tx_hash(forged) not in chain.verified_signatures
        # Unknown to the pool: verified at import, then remembered once the block executed.
        other = transfer(chain, BOB, 0)
        block = block_with(chain, genesis, 2, other, other)
        assert await chain.import_block(block)
        assert tx_hash(other) in chain.verified_signatures

    trio.run(scenario)
    chain.store.db.close()


def test_the_verified_signatures_are_bounded_oldest_first() -> None:
    cache = VerifiedSignatures(3)
    for n in range(5):
        cache.add(bytes([n]) * 32)
    assert len(cache) == 3
    assert [bytes([n]) * 32 in cache for n in range(5)] == [False, False, True, True, True]
    cache.add(bytes([4]) * 32)  # known: nothing moves
    assert bytes([2]) * 32 in cache
    with pytest.raises(ValueError, match="at least one hash"):
        VerifiedSignatures(0)


def test_a_block_authored_while_sync_defers_its_fsyncs_is_made_durable_at_once(
    tmp_path: Path,
) -> None:
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash
    db = chain.store.db

    async def scenario() -> None:
        with db.deferred_sync():
            assert await chain.import_block(block_at(chain, genesis, 3))  # bob's, from a peer
            assert db.unsynced_writes == 1
            chain.clock.now = 4_000  # type: ignore[attr-defined]
            block = await chain.author_block(Slot(4), TimestampMs(4_000))  # alice's slot
            assert block is not None and chain.store.best_hash == block.hash
            assert db.unsynced_writes == 0

    trio.run(scenario)
    db.close()


def test_watchers_follow_their_transactions_through_a_reorg_to_finality(tmp_path: Path) -> None:
    """Two transactions in one block, each watched: both hear the block, its retraction when a
    longer fork wins, the fork's block that includes them again, and its finality."""
    chain = open_chain(tmp_path / "db")
    genesis = chain.store.best_hash
    txs = [transfer(chain, CHARLIE, 0), transfer(chain, BOB, 0)]
    heard: list[list[object]] = [[], []]

    async def scenario() -> None:
        watched = [await chain.watch(tx) for tx in txs]
        a1 = block_at(chain, genesis, 2, txs)
        assert await chain.import_block(a1)
        b1 = block_at(chain, genesis, 3)
        assert await chain.import_block(b1)
        b2 = block_at(chain, b1.hash, 5)
        assert await chain.import_block(b2)
        b3 = block_at(chain, b2.hash, 6, txs)
        assert await chain.import_block(b3)
        assert chain.finalize(b3.hash, None)
        for (_, statuses), log in zip(watched, heard, strict=True):
            async for status in statuses:  # closes after "finalized"
                log.append(status)
        a, b = "0x" + a1.hash.hex(), "0x" + b3.hash.hex()
        expected = [
            "ready",
            {"inBlock": a},
            {"retracted": a},
            "ready",
            {"inBlock": b},
            {"finalized": b},
        ]
        assert heard == [expected, expected]

    trio.run(scenario)
    assert chain.statistics().watchers == 0
    chain.store.db.close()
