"""The finality gadget: votes, GHOST, locks, justifications, and safety under a Byzantine
validator and arbitrary message delivery (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chain.blocks import Header
from chain.keys import Keypair, dev_keypair
from chain.primitives import Hash32
from consensus.finality import (
    FUTURE_ROUNDS,
    ROUND_WINDOW,
    VOTE_LENGTH,
    FinalityGadget,
    InvalidJustification,
    InvalidVote,
    Lock,
    Phase,
    UnknownVoteTarget,
    Vote,
    check_justification_ancestry,
    check_justification_signatures,
    check_justification_structure,
    encode_justification,
    quorum,
    sign_vote,
    verify_justification,
)
from consensus.finality_service import FinalityService, VoteVerdict
from tests.factories import ALICE, BOB, count_vote_work
from tests.unit.test_chain_service import block_at, open_chain

GENESIS_HASH = Hash32(b"\x42" * 32)
KEYS = [dev_keypair(n) for n in ("alice", "bob", "charlie", "dave")]
VALIDATORS = tuple(k.public for k in KEYS)


class Tree:
    """A block tree of bare headers."""

    def __init__(self) -> None:
        self.genesis = self._make(Hash32(b"\x00" * 32), 0, b"genesis")
        self.headers = {self.genesis.hash: self.genesis}

    @staticmethod
    def _make(parent: Hash32, number: int, tag: bytes) -> Header:
        return Header(
            parent,
            number,
            tag.ljust(32, b"\x00")[:32],
            b"\x00" * 32,
            number,
            number,
            b"\x00" * 32,
            b"",
        )

    def child(self, parent: Header, tag: bytes) -> Header:
        header = self._make(parent.hash, parent.number + 1, tag)
        self.headers[header.hash] = header
        return header

    def chain(self, parent: Header, length: int, tag: bytes) -> list[Header]:
        out = []
        for i in range(length):
            parent = self.child(parent, tag + bytes([i]))
            out.append(parent)
        return out

    def header(self, block_hash: bytes) -> Header | None:
        return self.headers.get(Hash32(block_hash))

    def is_descendant(self, block_hash: bytes, ancestor: bytes) -> bool:
        header = self.headers.get(Hash32(block_hash))
        while header is not None:
            if header.hash == ancestor:
                return True
            header = self.headers.get(header.parent_hash)
        return False


def gadgets(tree: Tree) -> list[FinalityGadget]:
    return [
        FinalityGadget(genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree, signer=k)
        for k in KEYS
    ]


def test_quorum() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 6, 7, 10)] == [1, 2, 3, 3, 4, 5, 5, 7]


def test_one_round_finalizes_the_common_head() -> None:
    tree = Tree()
    blocks = tree.chain(tree.genesis, 3, b"a")
    nodes = gadgets(tree)
    prevotes = [g.prevote(1, blocks[-1]) for g in nodes]
    for g in nodes:
        for v in prevotes:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    precommits = [g.precommit(1, tree.genesis) for g in nodes]
    assert all(p is not None and p.target_hash == blocks[-1].hash for p in precommits)
    for g in nodes:
        for v in precommits:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    final = nodes[0].finality(tree.genesis)
    assert final is not None and final.block == blocks[-1] and len(final.justification) == 4
    data = encode_justification(final)
    assert (
        verify_justification(
            data, blocks[0], genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree
        )
        == 1
    )


def test_three_of_four_are_enough_and_two_are_not() -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    nodes = gadgets(tree)
    votes = [g.prevote(1, block) for g in nodes[:3]]
    for g in nodes[:3]:
        for v in votes:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    commits = [g.precommit(1, tree.genesis) for g in nodes[:2]]
    for v in commits:
        nodes[0].on_vote(v, 1)  # type: ignore[arg-type]
    assert nodes[0].finality(tree.genesis) is None
    nodes[0].on_vote(nodes[2].precommit(1, tree.genesis), 1)  # type: ignore[arg-type]
    final = nodes[0].finality(tree.genesis)
    assert final is not None and final.block == block


def test_split_votes_finalize_the_common_ancestor() -> None:
    tree = Tree()
    base = tree.chain(tree.genesis, 2, b"a")
    left = tree.chain(base[-1], 2, b"l")
    right = tree.chain(base[-1], 1, b"r")
    nodes = gadgets(tree)
    votes = [
        nodes[0].prevote(1, left[-1]),
        nodes[1].prevote(1, left[-1]),
        nodes[2].prevote(1, right[-1]),
        nodes[3].prevote(1, right[-1]),
    ]
    for g in nodes:
        for v in votes:
            g.on_vote(v, 1)  # type: ignore[arg-type]
    commits = [g.precommit(1, tree.genesis) for g in nodes]
    assert {c.target_hash for c in commits if c} == {base[-1].hash}


def test_bad_votes_are_refused_and_equivocation_recorded() -> None:
    tree = Tree()
    a, b = tree.child(tree.genesis, b"x"), tree.child(tree.genesis, b"y")
    node = gadgets(tree)[0]
    stranger = Keypair.from_seed(b"\x07" * 32)
    with pytest.raises(InvalidVote, match="not a validator"):
        node.on_vote(sign_vote(stranger, GENESIS_HASH, 1, Phase.PREVOTE, a), 1)
    forged = sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, a)
    with pytest.raises(InvalidVote, match="bad signature"):
        node.on_vote(type(forged)(1, Phase.PREVOTE, b.hash, 1, forged.voter, forged.signature), 1)
    with pytest.raises(InvalidVote, match="round out of range"):
        node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, 9, Phase.PREVOTE, a), 1)
    other_chain = sign_vote(KEYS[1], b"\x01" * 32, 1, Phase.PREVOTE, a)
    with pytest.raises(InvalidVote, match="bad signature"):
        node.on_vote(other_chain, 1)
    assert node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, a), 1)
    assert not node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, b), 1)
    assert len(node.equivocations) == 1


def test_justification_checks() -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    commits = [sign_vote(k, GENESIS_HASH, 3, Phase.PRECOMMIT, block) for k in KEYS]
    check = lambda data: verify_justification(  # noqa: E731
        data, block, genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree
    )
    assert check(b"".join(v.encode() for v in commits[:3])) == 3
    with pytest.raises(InvalidJustification, match="2 of 4 validators; 3 needed"):
        check(b"".join(v.encode() for v in commits[:2]))
    with pytest.raises(InvalidJustification, match="a validator appears twice"):
        check(b"".join(v.encode() for v in [commits[0], commits[0], commits[1]]))
    mixed = sign_vote(KEYS[2], GENESIS_HASH, 4, Phase.PRECOMMIT, block)
    with pytest.raises(InvalidJustification, match="one round"):
        check(b"".join(v.encode() for v in [commits[0], commits[1], mixed]))
    with pytest.raises(InvalidJustification, match="list of 145-byte votes"):
        check(b"\x00" * 10)


def deliveries(size: int) -> st.SearchStrategy[list[int]]:
    """Which pooled votes a node sees now: all of them, or any subset in any order."""
    if not size:
        return st.just([])
    return st.one_of(
        st.just(list(range(size))), st.lists(st.sampled_from(range(size)), max_size=size)
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_conflicting_finality_with_one_byzantine(data: st.DataObject) -> None:
    """Three honest validators see votes in any order and subset; the fourth votes for
    anything, twice if it likes. No two honest nodes ever finalize conflicting blocks."""
    tree = Tree()
    left = tree.chain(tree.genesis, 4, b"L")
    right = tree.chain(tree.genesis, 4, b"R")
    blocks = [tree.genesis, *left, *right]
    honest = gadgets(tree)[:3]
    byzantine = KEYS[3]
    finalized = [tree.genesis] * 3
    pool: list = []
    for round_ in range(1, 6):
        for i, g in enumerate(honest):
            head = data.draw(st.sampled_from(blocks), label=f"head r{round_} v{i}")
            if not tree.is_descendant(head.hash, finalized[i].hash):
                head = finalized[i]
            vote = g.prevote(round_, head, finalized[i])
            if vote:
                pool.append(vote)
            pool.extend(g.lock_proof(round_, finalized[i]))
        for phase in (Phase.PREVOTE, Phase.PRECOMMIT):
            for target in data.draw(st.lists(st.sampled_from(blocks), max_size=2), label="byz"):
                pool.append(sign_vote(byzantine, GENESIS_HASH, round_, phase, target))
            for i, g in enumerate(honest):
                seen = data.draw(deliveries(len(pool)), label="deliver")
                for k in seen:
                    g.on_vote(pool[k], round_)
                if phase is Phase.PREVOTE:
                    vote = g.precommit(round_, finalized[i])
                    if vote:
                        pool.append(vote)
        for i, g in enumerate(honest):
            for k in data.draw(deliveries(len(pool)), label="late"):
                g.on_vote(pool[k], round_)
            final = g.finality(finalized[i])
            if final is not None:
                finalized[i] = final.block
                event(f"finalized at height {final.block.number}")
        for a in finalized:
            for b in finalized:
                assert tree.is_descendant(a.hash, b.hash) or tree.is_descendant(b.hash, a.hash)


# -- justifications: cheap checks first ------------------------------------------------------


def unsigned(vote: Vote) -> Vote:
    """The same vote with a signature that verifies for nothing."""
    return Vote(
        vote.round, vote.phase, vote.target_hash, vote.target_number, vote.voter, b"\x01" * 64
    )


def justification(votes: list[Vote]) -> bytes:
    return b"".join(v.encode() for v in votes)


def test_an_oversized_justification_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """57,000 copies of one real vote (8.3 MB): refused by its size alone, not one vote decoded
    nor one signature checked."""
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    data = sign_vote(KEYS[0], GENESIS_HASH, 3, Phase.PRECOMMIT, block).encode() * 57_000
    work = count_vote_work(monkeypatch)
    with pytest.raises(InvalidJustification, match="^57000 votes for 4 validators$"):
        verify_justification(
            data, block, genesis_hash=GENESIS_HASH, validators=VALIDATORS, tree=tree
        )
    assert work == {"decoded": 0, "verified": 0}
    with pytest.raises(InvalidJustification, match="^5 votes for 4 validators$"):
        check_justification_structure(data[: 5 * VOTE_LENGTH], VALIDATORS)


def test_structural_faults_are_found_before_any_signature() -> None:
    """Every vote's signature is invalid, yet the error is the structural one: the signatures
    were never looked at."""
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    commits = [unsigned(sign_vote(k, GENESIS_HASH, 3, Phase.PRECOMMIT, block)) for k in KEYS]
    prevote = unsigned(sign_vote(KEYS[2], GENESIS_HASH, 3, Phase.PREVOTE, block))
    other_round = unsigned(sign_vote(KEYS[2], GENESIS_HASH, 4, Phase.PRECOMMIT, block))
    stranger = Keypair.from_seed(b"\x07" * 32)
    outsider = unsigned(sign_vote(stranger, GENESIS_HASH, 3, Phase.PRECOMMIT, block))
    cases = [
        ([commits[0], commits[0], commits[1]], "^a validator appears twice$"),
        ([commits[0], commits[1], other_round], "^votes must be precommits of one round$"),
        ([commits[0], commits[1], prevote], "^votes must be precommits of one round$"),
        ([commits[0], commits[1], outsider], "^vote 2: 0x[0-9a-f]{64} is not a validator$"),
        (commits[:2], "^2 of 4 validators; 3 needed$"),
    ]
    for votes, message in cases:
        with pytest.raises(InvalidJustification, match=message):
            verify_justification(
                justification(votes),
                block,
                genesis_hash=GENESIS_HASH,
                validators=VALIDATORS,
                tree=tree,
            )
    broken_phase = bytearray(justification(commits[:3]))
    broken_phase[VOTE_LENGTH + 8] = 9
    with pytest.raises(InvalidJustification, match="^vote 1: malformed: unknown vote phase 9$"):
        check_justification_structure(bytes(broken_phase), VALIDATORS)
    # Structure and ancestry pass: only now are the signatures checked, and they fail.
    with pytest.raises(InvalidJustification, match="^vote 0: the vote is not signed by its voter$"):
        verify_justification(
            justification(commits[:3]),
            block,
            genesis_hash=GENESIS_HASH,
            validators=VALIDATORS,
            tree=tree,
        )


def test_unknown_vote_targets_are_told_apart_from_wrong_ones() -> None:
    """A precommit for a block above the justified one that this node does not have yet is
    UnknownVoteTarget (check again later); one that cannot descend from it is plain
    InvalidJustification. Both are found before any signature (all invalid here)."""
    tree = Tree()
    base = tree.chain(tree.genesis, 2, b"a")
    block = base[0]
    side = tree.child(tree.genesis, b"side")
    later = Tree._make(base[-1].hash, 3, b"not yet here")
    votes = [unsigned(sign_vote(k, GENESIS_HASH, 3, Phase.PRECOMMIT, base[-1])) for k in KEYS[:3]]

    def ancestry(last: Vote) -> None:
        check_justification_ancestry([*votes[:2], last], block, tree)

    with pytest.raises(UnknownVoteTarget) as unknown:
        ancestry(unsigned(sign_vote(KEYS[2], GENESIS_HASH, 3, Phase.PRECOMMIT, later)))
    assert unknown.value.target == later.hash and unknown.value.number == 3
    assert str(unknown.value) == f"a precommit for unknown block #3 0x{later.hash.hex()}"
    assert issubclass(UnknownVoteTarget, InvalidJustification)
    with pytest.raises(InvalidJustification, match="does not descend from the block") as known:
        ancestry(unsigned(sign_vote(KEYS[2], GENESIS_HASH, 3, Phase.PRECOMMIT, side)))
    assert not isinstance(known.value, UnknownVoteTarget)
    unknown_below = Tree._make(tree.genesis.hash, 1, b"never seen")
    with pytest.raises(InvalidJustification, match="cannot descend from #1") as below:
        ancestry(unsigned(sign_vote(KEYS[2], GENESIS_HASH, 3, Phase.PRECOMMIT, unknown_below)))
    assert not isinstance(below.value, UnknownVoteTarget)
    lying = Vote(3, Phase.PRECOMMIT, base[-1].hash, 7, VALIDATORS[2], b"\x01" * 64)
    with pytest.raises(InvalidJustification, match="^a precommit names #7 for block #2$"):
        ancestry(lying)
    # The same proof through verify_justification: UnknownVoteTarget before the signatures.
    with pytest.raises(UnknownVoteTarget):
        verify_justification(
            justification(
                [*votes[:2], unsigned(sign_vote(KEYS[2], GENESIS_HASH, 3, Phase.PRECOMMIT, later))]
            ),
            block,
            genesis_hash=GENESIS_HASH,
            validators=VALIDATORS,
            tree=tree,
        )
    signed = [sign_vote(k, GENESIS_HASH, 3, Phase.PRECOMMIT, base[-1]) for k in KEYS[:3]]
    check_justification_signatures(signed, GENESIS_HASH)
    with pytest.raises(InvalidJustification, match="^vote 0: the vote is not signed"):
        check_justification_signatures(signed, b"\x01" * 32)


# -- votes: duplicates and equivocations -----------------------------------------------------


def test_a_duplicate_vote_is_dropped_before_its_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    node = gadgets(tree)[0]
    vote = sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, block)
    assert node.on_vote(vote, 1)
    # The same content with a signature that verifies for nothing: not checked, just dropped.
    assert not node.on_vote(unsigned(vote), 1)
    assert not node.on_vote(vote, 1)
    assert node.rounds[1].prevotes[vote.voter] == vote
    work = count_vote_work(monkeypatch)
    for _ in range(10_000):
        assert not node.on_vote(vote, 1)
    assert work["verified"] == 0
    # Cheaper refusals still come first, whatever the signature.
    stranger = Keypair.from_seed(b"\x07" * 32)
    with pytest.raises(InvalidVote, match="not a validator"):
        node.on_vote(unsigned(sign_vote(stranger, GENESIS_HASH, 1, Phase.PREVOTE, block)), 1)
    with pytest.raises(InvalidVote, match="round out of range"):
        node.on_vote(unsigned(sign_vote(KEYS[1], GENESIS_HASH, 9, Phase.PREVOTE, block)), 1)


def test_equivocation_evidence_is_bounded_and_announced_once() -> None:
    tree = Tree()
    blocks = [tree.child(tree.genesis, bytes([i])) for i in range(20)]
    node = gadgets(tree)[0]
    heard: list[tuple[Vote, Vote]] = []
    node.on_equivocation.append(lambda first, second: heard.append((first, second)))
    first = sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, blocks[0])
    assert node.on_vote(first, 1)
    forged = unsigned(sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, blocks[1]))
    with pytest.raises(InvalidVote, match="bad signature"):
        node.on_vote(forged, 1)
    assert heard == [] and node.equivocations == {}
    conflicting = [sign_vote(KEYS[1], GENESIS_HASH, 1, Phase.PREVOTE, b) for b in blocks[1:]]
    for vote in conflicting * 3:
        assert not node.on_vote(vote, 1)
    assert heard == [(first, conflicting[0])]
    assert node.equivocations == {(1, Phase.PREVOTE, VALIDATORS[1]): (first, conflicting[0])}
    assert node.rounds[1].prevotes[VALIDATORS[1]] == first
    # One pair per (round, phase, voter): the precommits of round 1 and the votes of round 2
    # are pairs of their own.
    for round_, phase in ((1, Phase.PRECOMMIT), (2, Phase.PREVOTE)):
        for b in blocks[:5]:
            node.on_vote(sign_vote(KEYS[1], GENESIS_HASH, round_, phase, b), 2)
    assert len(heard) == 3 and len(node.equivocations) == 3
    # Rounds that leave the window take their evidence with them.
    late = 2 + ROUND_WINDOW
    assert node.on_vote(sign_vote(KEYS[2], GENESIS_HASH, late, Phase.PREVOTE, blocks[0]), late)
    assert set(node.equivocations) == {(2, Phase.PREVOTE, VALIDATORS[1])}
    assert 1 not in node.rounds


# -- the lock ---------------------------------------------------------------------------------


def prevotes(round_: int, target: Header, keys: list[Keypair]) -> list[Vote]:
    return [sign_vote(k, GENESIS_HASH, round_, Phase.PREVOTE, target) for k in keys]


def test_a_lock_moves_only_for_a_polka_it_may_follow() -> None:
    """Locked on B, we precommit its ancestor A in round 3; a polka of round 2 for X (which
    conflicts with A) must not move the lock: our round-3 precommit may have helped finalize
    A. A polka of round 4 for X does move it, so that finality can resume."""
    tree = Tree()
    a = tree.child(tree.genesis, b"a")
    b = tree.child(a, b"b")
    x = tree.child(tree.genesis, b"x")
    x_head = tree.child(x, b"x head")
    node = gadgets(tree)[0]
    for vote in prevotes(1, b, KEYS[1:]):
        node.on_vote(vote, 1)
    assert node.precommit(1, tree.genesis) is not None and node.lock == Lock(b.hash, 1)
    for vote in prevotes(2, x, KEYS[1:]):
        node.on_vote(vote, 3)
    for vote in [*prevotes(3, b, KEYS[1:2]), *prevotes(3, a, KEYS[2:])]:
        node.on_vote(vote, 3)
    precommit = node.precommit(3, tree.genesis)
    assert precommit is not None and precommit.target_hash == a.hash
    assert node.lock == Lock(b.hash, 1)
    ours = node.prevote(4, x_head, tree.genesis)
    assert ours is not None and ours.target_hash == b.hash and node.lock == Lock(b.hash, 1)
    for vote in prevotes(4, x, KEYS[1:]):
        node.on_vote(vote, 4)
    ours = node.prevote(5, x_head, tree.genesis)
    assert ours is not None and ours.target_hash == x_head.hash
    assert node.lock == Lock(x.hash, 4)


def test_no_precommit_for_a_round_after_a_later_prevote() -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    node = gadgets(tree)[0]
    assert node.prevote(2, block, tree.genesis) is not None
    for vote in prevotes(1, block, KEYS[1:]):
        node.on_vote(vote, 2)
    assert node.precommit(1, tree.genesis) is None
    for vote in prevotes(2, block, KEYS[1:]):
        node.on_vote(vote, 2)
    assert node.precommit(2, tree.genesis) is not None


def test_a_stale_lock_shows_its_polka_again() -> None:
    tree = Tree()
    (block,) = tree.chain(tree.genesis, 1, b"a")
    node = gadgets(tree)[0]
    polka = prevotes(1, block, KEYS[1:])
    for vote in polka:
        node.on_vote(vote, 1)
    assert node.precommit(1, tree.genesis) is not None
    assert node.lock_proof(2, tree.genesis) == ()  # fresh: finality may still follow
    assert set(node.lock_proof(3, tree.genesis)) == set(polka)
    assert node.lock_proof(3, block) == ()  # final already: nothing to show


# -- the service's verdicts on the event loop ----------------------------------------------


async def _no_publish(data: bytes) -> None:
    return None


def test_service_verdicts_never_penalize_a_skewed_clock(tmp_path: Path) -> None:
    """Votes of rounds a little ahead (a clock a few seconds fast) or behind are ignored, never
    rejected; copies are ignored unchecked; conflicting votes reach the listeners once."""
    chain = open_chain(tmp_path / "db")
    service = FinalityService(chain, signer=None, publish=_no_publish)
    heard: list[tuple[Vote, Vote]] = []
    service.on_equivocation.append(lambda first, second: heard.append((first, second)))
    now = service.current_round
    genesis = chain.store.genesis_hash
    assert genesis is not None

    def vote(key: Keypair, round_: int, target: int) -> Vote:
        payload = Vote.payload(genesis, round_, Phase.PREVOTE, bytes([target]) * 32, 1)
        return Vote(
            round_, Phase.PREVOTE, Hash32(bytes([target]) * 32), 1, key.public, key.sign(payload)
        )

    for round_ in (now + FUTURE_ROUNDS + 1, now + 1000, now - ROUND_WINDOW - 1):
        assert service.on_vote(vote(BOB, round_, 1).encode()) == VoteVerdict.IGNORE
    assert service.votes_rejected == 0
    first = vote(BOB, now + FUTURE_ROUNDS, 1)
    assert service.on_vote(first.encode()) == VoteVerdict.ACCEPT
    assert service.on_vote(first.encode()) == VoteVerdict.IGNORE
    assert service.on_vote(unsigned(first).encode()) == VoteVerdict.IGNORE
    second, third = vote(BOB, now + FUTURE_ROUNDS, 2), vote(BOB, now + FUTURE_ROUNDS, 3)
    for data in (second, second, third):
        assert service.on_vote(data.encode()) == VoteVerdict.IGNORE
    assert heard == [(first, second)]
    assert service.statistics()["equivocations"] == 1
    assert service.votes_rejected == 0 and service.votes_received == 1
    stranger = Keypair.from_seed(b"\x07" * 32)
    assert service.on_vote(vote(stranger, now, 1).encode()) == VoteVerdict.REJECT
    assert service.on_vote(b"\x00" * 10) == VoteVerdict.REJECT
    assert service.votes_rejected == 2


class TrioClock:
    """The chain's clock read from trio's, so that a mock clock moves both."""

    def now_ms(self) -> int:
        return int(trio.current_time() * 1000)

    def monotonic(self) -> float:
        return trio.current_time()


def test_a_validator_prevotes_once_the_slots_block_is_imported_or_else_by_the_deadline(
    tmp_path: Path,
) -> None:
    """Slot 11's block is imported 120 ms into its slot: Alice prevotes for it then, not at a
    fixed point of the slot. Slot 12 brings no block: she prevotes for her best block at the
    deadline, two thirds into the slot. Slot 13's block is imported 900 ms in, after the
    deadline: her prevote of round 13 was for the block before."""
    chain = open_chain(tmp_path / "db")
    chain.clock = TrioClock()
    published: list[tuple[float, Vote]] = []

    async def publish(data: bytes) -> None:
        published.append((trio.current_time(), Vote.decode(data)))

    service = FinalityService(chain, signer=ALICE, publish=publish)
    genesis = chain.store.best_hash or b""
    blocks: list[bytes] = []

    async def scenario() -> None:
        await trio.sleep_until(10.9)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await trio.sleep_until(11.12)
            eleven = block_at(chain, genesis, 11)
            assert await chain.import_block(eleven)
            await trio.sleep_until(13.9)
            thirteen = block_at(chain, eleven.hash, 13)
            assert await chain.import_block(thirteen)
            await trio.sleep_until(14.5)
            nursery.cancel_scope.cancel()
        blocks.extend([eleven.hash, thirteen.hash])

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    prevotes = [
        (round(at, 3), vote.round, vote.target_hash)
        for at, vote in published
        if vote.phase is Phase.PREVOTE and vote.round <= 13
    ]
    eleven, _ = blocks
    assert prevotes == [(11.12, 11, eleven), (12.666, 12, eleven), (13.666, 13, eleven)]
    chain.store.db.close()


def test_after_a_restart_older_polkas_cannot_move_the_lock() -> None:
    """The voter state kept across restarts (lock, last prevote and precommit rounds) is all
    the rule needs: our precommits before the restart are not known, so no polka of those
    rounds may take the lock off its branch; a later one may."""
    tree = Tree()
    b = tree.child(tree.genesis, b"b")
    x = tree.child(tree.genesis, b"x")
    node = FinalityGadget(
        genesis_hash=GENESIS_HASH,
        validators=VALIDATORS,
        tree=tree,
        signer=KEYS[0],
        lock=Lock(b.hash, 1),
        last_voted=(3, 3),
    )
    for vote in prevotes(3, x, KEYS[1:]):
        node.on_vote(vote, 4)
    ours = node.prevote(4, x, tree.genesis)
    assert ours is not None and ours.target_hash == b.hash
    for vote in prevotes(4, x, KEYS[1:]):
        node.on_vote(vote, 5)
    ours = node.prevote(5, x, tree.genesis)
    assert ours is not None and ours.target_hash == x.hash and node.lock == Lock(x.hash, 4)
