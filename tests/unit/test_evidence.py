"""The evidence reporter on a real chain service and database: equivocations caught by the
finality gadget or block import become `offences` transactions that land in a block, are kept
across a restart until the chain records them, and are never sent twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp
import trio
import trio.testing

from chain.address import encode_address
from chain.blocks import Call, Header
from chain.errors import InvalidTransaction, TxRejection
from chain.keys import Keypair, sign_transaction
from chain.primitives import Hash32, Slot, TimestampMs
from chain.runtime import offences
from chain.runtime.offences import OffenceKey, OffenceKind
from consensus.chain_service import ChainService
from consensus.evidence import (
    RESUBMIT_AFTER_BLOCKS,
    SYNCED_WITHIN_SLOTS,
    EvidenceReporter,
    EvidenceStatistics,
)
from consensus.finality import Phase, Vote
from consensus.finality_service import FinalityService
from node.chain_spec import development_spec
from node.rpc.methods import SystemInfo, build_registry
from tests.factories import BOB, CHARLIE, DAVE, transfer_call
from tests.unit.test_chain_service import block_at, open_chain, transfer
from tests.unit.test_offences import REPORT_VOTES
from tests.unit.test_wallet_rpc import call


def reporting_chain(path: Path) -> ChainService:
    """A chain service whose clock is near its blocks' slots (a node in sync)."""
    chain = open_chain(path)
    chain.clock.now = 30_000  # type: ignore[attr-defined]  # the tests' FixedClock
    return chain


def vote(chain: ChainService, signer: Keypair, target: int, round_: int = 5) -> Vote:
    genesis = chain.runtime.genesis_hash
    target_hash = bytes([target]) * 32
    payload = Vote.payload(genesis, round_, Phase.PRECOMMIT, target_hash, 1)
    return Vote(
        round_, Phase.PRECOMMIT, Hash32(target_hash), 1, signer.public, signer.sign(payload)
    )


async def author(chain: ChainService, slot: int) -> None:
    """Alice (the chain's signer) authors a block in her slot (an even one)."""
    assert await chain.author_block(Slot(slot), TimestampMs(slot * 1000)) is not None


def recorded(chain: ChainService, key: OffenceKey) -> offences.OffenceRecord | None:
    return offences.get_offence(chain.store.best_state(), key)


def test_a_vote_equivocation_lands_in_a_block_once(tmp_path: Path) -> None:
    """Two conflicting votes reach the finality service from the network: the reporter hears
    of them through its listener, and the report lands in the next block we author."""
    chain = reporting_chain(tmp_path / "db")
    finality = FinalityService(chain, signer=None, publish=_no_publish)
    reporter = EvidenceReporter(chain, CHARLIE)
    finality.on_equivocation.append(reporter.on_votes)
    round_ = finality.current_round
    key = OffenceKey(OffenceKind.VOTE, BOB.public, round_)
    a, b, c = (vote(chain, BOB, target, round_) for target in (1, 2, 3))

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(reporter.run)
            for one in (a, b):
                finality.on_vote(one.encode())
            await trio.testing.wait_all_tasks_blocked()
            (pooled,) = chain.pool.pending()
            assert pooled.sender == CHARLIE.public
            # The same offence caught again, by the gadget or another path: nothing more is sent.
            finality.on_vote(c.encode())
            reporter.on_votes(b, a)
            reporter.on_votes(a, c)
            await trio.testing.wait_all_tasks_blocked()
            assert len(chain.pool) == 1 and reporter.submitted == 1
            await author(chain, 2)
            await trio.testing.wait_all_tasks_blocked()
            record = recorded(chain, key)
            assert record is not None and record.reporter == CHARLIE.public
            assert reporter.statistics().pending == 0 and chain.store.reports() == []
            reporter.on_votes(a, b)  # recorded already: not even queued
            await trio.testing.wait_all_tasks_blocked()
            assert len(chain.pool) == 0 and reporter.statistics().pending == 0
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert reporter.statistics().submitted == 1
    chain.store.db.close()


async def _no_publish(data: bytes) -> None:
    pass


def test_a_block_equivocation_is_heard_once_and_recorded(tmp_path: Path) -> None:
    chain = reporting_chain(tmp_path / "db")
    reporter = EvidenceReporter(chain, CHARLIE)
    heard: list[tuple[Header, Header]] = []
    chain.on_equivocation.append(lambda first, second: heard.append((first, second)))
    chain.on_equivocation.append(reporter.on_blocks)
    genesis = chain.store.best_header.hash

    async def scenario() -> None:
        # Bob seals three different blocks for his slot 3.
        blocks = [
            block_at(chain, genesis, 3),
            block_at(chain, genesis, 3, [transfer(chain, CHARLIE, 0)]),
            block_at(chain, genesis, 3, [transfer(chain, CHARLIE, 0, amount=6_000_000)]),
        ]
        for block in blocks:
            assert await chain.import_block(block)
        # Once per (slot, author), however many more blocks come.
        assert [(a.hash, b.hash) for a, b in heard] == [(blocks[0].hash, blocks[1].hash)]
        reporter.step()
        await author(chain, 4)
        reporter.step()

    trio.run(scenario)
    record = recorded(chain, OffenceKey(OffenceKind.BLOCK, BOB.public, 3))
    assert record is not None
    assert reporter.statistics().recorded == 1
    registry = build_registry(chain, SystemInfo("test", "0", development_spec()))
    assert call(registry, "offences_list") == {
        "total": 1,
        "offences": [
            {
                "kind": "block",
                "offender": encode_address(BOB.public),
                "slot": 3,
                "reporter": encode_address(CHARLIE.public),
                "block": 2,
                "conflicting": ["0x" + record.first.hex(), "0x" + record.second.hex()],
            }
        ],
    }
    assert call(registry, "offences_list", None, 1) == {"total": 1, "offences": []}
    chain.store.db.close()


def test_pending_reports_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "db"
    chain = reporting_chain(path)
    reporter = EvidenceReporter(chain, CHARLIE)
    reporter.on_votes(vote(chain, BOB, 1), vote(chain, BOB, 2))
    assert len(chain.store.reports()) == 1
    chain.store.db.close()  # stopped before the report was sent

    chain = reporting_chain(path)
    reporter = EvidenceReporter(chain, CHARLIE)
    assert reporter.statistics().pending == 1
    reporter.step()
    trio.run(author, chain, 2)
    reporter.step()
    assert recorded(chain, OffenceKey(OffenceKind.VOTE, BOB.public, 5)) is not None
    assert chain.store.reports() == []
    chain.store.db.close()


def test_a_payer_that_cannot_pay_keeps_the_report_waiting(tmp_path: Path) -> None:
    """A refusal that says nothing of the evidence (here: no funds) leaves it pending, saved,
    to be sent at a later block."""
    chain = reporting_chain(tmp_path / "db")
    reporter = EvidenceReporter(chain, DAVE)  # no funds
    reporter.on_votes(vote(chain, BOB, 1), vote(chain, BOB, 2))
    for slot in (2, 4):
        reporter.step()
        trio.run(author, chain, slot)
    assert len(chain.pool) == 0 and reporter.statistics().pending == 1
    assert len(chain.store.reports()) == 1
    chain.store.db.close()


def test_evidence_the_chain_refuses_is_dropped(tmp_path: Path) -> None:
    chain = reporting_chain(tmp_path / "db")
    reporter = EvidenceReporter(chain, CHARLIE)
    reporter.on_votes(vote(chain, DAVE, 1), vote(chain, DAVE, 2))  # Dave is no authority
    reporter.step()
    assert len(chain.pool) == 0
    assert reporter.statistics().pending == 0 and chain.store.reports() == []
    chain.store.db.close()


def test_pending_reports_are_bounded(tmp_path: Path) -> None:
    chain = reporting_chain(tmp_path / "db")
    reporter = EvidenceReporter(chain, CHARLIE, max_pending=2)
    for round_ in range(5):
        reporter.on_votes(vote(chain, BOB, 1, round_), vote(chain, BOB, 2, round_))
    stats = reporter.statistics()
    assert (stats.pending, stats.dropped) == (2, 3)
    assert len(chain.store.reports()) == 2
    chain.store.db.close()


def test_an_unreadable_saved_report_is_dropped_at_start(tmp_path: Path) -> None:
    chain = reporting_chain(tmp_path / "db")
    chain.store.save_report(b"\x01junk", b"\xc0")
    reporter = EvidenceReporter(chain, CHARLIE)
    assert reporter.statistics().pending == 0 and chain.store.reports() == []
    chain.store.db.close()


def test_a_pooled_report_is_not_sent_again_while_blocks_pass_without_it(tmp_path: Path) -> None:
    chain = reporting_chain(tmp_path / "db")
    reporter = EvidenceReporter(chain, CHARLIE)
    reporter.on_votes(vote(chain, BOB, 1), vote(chain, BOB, 2))
    reporter.step()
    assert len(chain.pool) == 1

    async def bobs_blocks() -> None:
        # Bob's blocks leave the report out; it stays in our pool.
        for slot in range(3, 3 + 2 * (RESUBMIT_AFTER_BLOCKS + 2), 2):
            assert await chain.import_block(block_at(chain, chain.store.best_header.hash, slot))
            reporter.step()

    trio.run(bobs_blocks)
    assert len(chain.pool) == 1 and reporter.statistics().submitted == 1
    chain.store.db.close()


def test_reports_wait_while_the_node_is_behind_the_clock(tmp_path: Path) -> None:
    """A node still syncing may not see that the chain records the offence already."""
    chain = reporting_chain(tmp_path / "db")
    chain.clock.now = (SYNCED_WITHIN_SLOTS + 2) * 1000  # type: ignore[attr-defined]
    reporter = EvidenceReporter(chain, CHARLIE)
    reporter.on_votes(vote(chain, BOB, 1), vote(chain, BOB, 2))
    reporter.step()
    assert len(chain.pool) == 0 and reporter.statistics().pending == 1
    trio.run(author, chain, 2)  # caught up
    reporter.step()
    assert len(chain.pool) == 1
    chain.store.db.close()


def test_reporters_that_lose_the_race_are_not_held_to_blame(tmp_path: Path) -> None:
    """Every node that sees an offence reports it and one report lands: the later ones are
    refused as outdated, and however many offences pass that way their payers stay welcome in
    the pool (a failed call three times in a minute would ban the sender)."""
    chain = reporting_chain(tmp_path / "db")
    first, second = EvidenceReporter(chain, CHARLIE), EvidenceReporter(chain, BOB)
    for slot, round_ in zip((2, 4, 6, 8), range(1, 5), strict=True):
        a, b = vote(chain, BOB, 1, round_), vote(chain, BOB, 2, round_)
        first.on_votes(a, b)
        first.step()
        trio.run(author, chain, slot)
        with pytest.raises(InvalidTransaction) as info:
            chain.submit_signed(BOB, REPORT_VOTES.call(first=b.encode(), second=a.encode()))
        assert info.value.reason is TxRejection.OUTDATED
        second.on_votes(a, b)  # the second reporter sees it recorded and sends nothing
        second.step()
    first.step()
    assert first.statistics().recorded == 4 and second.statistics().submitted == 0
    chain.submit_signed(BOB, transfer_call(DAVE.public, 10**9))  # not banned
    chain.store.db.close()


def test_a_report_already_on_its_way_from_another_node_is_not_sent_again(tmp_path: Path) -> None:
    chain = reporting_chain(tmp_path / "db")
    reporter = EvidenceReporter(chain, CHARLIE)
    a, b = vote(chain, BOB, 1), vote(chain, BOB, 2)
    # Another node's report, gossiped into our pool (Bob pays for it).
    chain.submit(chain_signed(chain, BOB, REPORT_VOTES.call(first=b.encode(), second=a.encode())))
    reporter.on_votes(a, b)
    reporter.step()
    assert len(chain.pool) == 1 and reporter.statistics().submitted == 0
    trio.run(author, chain, 2)
    reporter.step()
    assert reporter.statistics() == EvidenceStatistics(0, 0, 1, 0)
    chain.store.db.close()


def chain_signed(chain: ChainService, keypair: Keypair, call: Call) -> bytes:
    tx = sign_transaction(keypair, genesis_hash=chain.runtime.genesis_hash, nonce=0, call=call)
    return rlp.encode(tx)  # type: ignore[no-any-return]
