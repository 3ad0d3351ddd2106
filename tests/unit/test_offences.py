"""The `offences` module: reports of equivocation, checked against signatures and recorded once."""

from __future__ import annotations

import dataclasses

import pytest
import rlp

from chain.blocks import Call, Header
from chain.errors import InvalidTransaction, TxRejection
from chain.keys import Keypair
from chain.primitives import AccountId, BlockNumber, Hash32, Slot, TimestampMs, blake2_256
from chain.runtime import offences, system
from chain.runtime.offences import OffenceKey, OffenceKind, Offences
from consensus.finality import Phase, Vote
from tests.factories import ALICE, BOB, CHARLIE, DAVE, MemoryChain, spec_for

REPORT_VOTES, REPORT_BLOCKS = Offences().calls()


@pytest.fixture
def chain() -> MemoryChain:
    spec = dataclasses.replace(
        spec_for(ALICE, BOB, CHARLIE), authorities=(ALICE.public, BOB.public)
    )
    return MemoryChain(spec)


def vote(
    signer: Keypair,
    genesis_hash: bytes,
    *,
    round_: int = 7,
    phase: Phase = Phase.PRECOMMIT,
    target: bytes = b"\x01" * 32,
    number: int = 3,
    voter: AccountId | None = None,
) -> bytes:
    """A vote as the finality gadget signs and encodes it."""
    payload = Vote.payload(genesis_hash, round_, phase, target, number)
    return Vote(
        round_, phase, Hash32(target), number, voter or signer.public, signer.sign(payload)
    ).encode()


def header(signer: Keypair, *, slot: int = 11, state_root: bytes = b"\x02" * 32) -> bytes:
    unsealed = Header(
        Hash32(b"\x09" * 32),
        BlockNumber(4),
        Hash32(state_root),
        Hash32(b"\x03" * 32),
        TimestampMs(slot * 1000),
        Slot(slot),
        signer.public,
        b"",
    )
    return rlp.encode(unsealed.copy(seal=signer.sign(unsealed.pre_seal_hash())))  # type: ignore[no-any-return]


def report_votes(first: bytes, second: bytes) -> Call:
    return REPORT_VOTES.call(first=first, second=second)


def report_blocks(first: bytes, second: bytes) -> Call:
    return REPORT_BLOCKS.call(first=first, second=second)


def submit(chain: MemoryChain, call: Call, *, nonce: int = 0) -> bytes:
    """Sign as CHARLIE (no authority) and pass the pool's validation, dry run included."""
    encoded = chain.sign(CHARLIE, call, nonce=nonce)
    chain.runtime.validate_transaction(chain.state, encoded, chain.env())
    return encoded


def refused(chain: MemoryChain, call: Call, *, nonce: int = 0) -> InvalidTransaction:
    encoded = chain.sign(CHARLIE, call, nonce=nonce)
    with pytest.raises(InvalidTransaction) as info:
        chain.runtime.validate_transaction(chain.state, encoded, chain.env())
    return info.value


def test_a_vote_equivocation_is_recorded_with_an_event(chain: MemoryChain) -> None:
    g = chain.genesis_hash
    first, second = vote(BOB, g, target=b"\x01" * 32), vote(BOB, g, target=b"\x02" * 32)
    execution = chain.execute([submit(chain, report_votes(first, second))])
    assert execution.outcomes[0].error is None
    key = OffenceKey(OffenceKind.VOTE, BOB.public, 7)
    assert offences.get_offence(chain.state, key) == offences.OffenceRecord(
        CHARLIE.public, 1, Hash32(b"\x01" * 32), Hash32(b"\x02" * 32)
    )
    assert offences.offence_keys(chain.state) == [key]
    reported = [e for e in execution.events if e.module == "offences"]
    assert [(e.name, dict(e.data)) for e in reported] == [
        (
            "OffenceReported",
            {"kind": "vote", "offender": BOB.public, "at": 7, "reporter": CHARLIE.public},
        )
    ]


def test_a_prevote_equivocation_counts_as_well(chain: MemoryChain) -> None:
    g = chain.genesis_hash
    first = vote(ALICE, g, phase=Phase.PREVOTE, target=b"\x01" * 32)
    second = vote(ALICE, g, phase=Phase.PREVOTE, target=b"\x02" * 32)
    assert chain.execute([submit(chain, report_votes(first, second))]).outcomes[0].error is None


def test_a_block_equivocation_is_recorded(chain: MemoryChain) -> None:
    first, second = header(ALICE, state_root=b"\x02" * 32), header(ALICE, state_root=b"\x05" * 32)
    execution = chain.execute([submit(chain, report_blocks(first, second))])
    assert execution.outcomes[0].error is None
    record = offences.get_offence(chain.state, OffenceKey(OffenceKind.BLOCK, ALICE.public, 11))
    assert record is not None
    assert (record.first, record.second) == (blake2_256(first), blake2_256(second))


def test_the_same_offence_is_recorded_once(chain: MemoryChain) -> None:
    g = chain.genesis_hash
    a, b, c = (vote(BOB, g, target=bytes([i]) * 32) for i in (1, 2, 3))
    chain.execute([submit(chain, report_votes(a, b))])
    # The same pair, the pair swapped, or another pair of the same round: one offence.
    for first, second in ((a, b), (b, a), (a, c)):
        error = refused(chain, report_votes(first, second), nonce=1)
        # Outdated, not failed: the pool holds nothing against a reporter that came second.
        assert error.reason is TxRejection.OUTDATED
        assert error.message == (
            f"offences.AlreadyReported: the vote equivocation of 0x{BOB.public.hex()} at round 7 "
            "is already recorded"
        )
    # Another round of the same voter is another offence.
    d, e = (vote(BOB, g, round_=8, target=bytes([i]) * 32) for i in (1, 2))
    assert chain.execute([submit(chain, report_votes(d, e), nonce=1)]).outcomes[0].error is None
    assert len(offences.offence_keys(chain.state)) == 2


def test_a_duplicate_in_a_block_fails_and_pays_its_fee(chain: MemoryChain) -> None:
    """Two reporters' reports of one offence may meet in a block: the second is a failed call."""
    g = chain.genesis_hash
    a, b = vote(BOB, g, target=b"\x01" * 32), vote(BOB, g, target=b"\x02" * 32)
    first = submit(chain, report_votes(a, b))
    second = submit(chain, report_votes(b, a), nonce=1)
    before = system.account(chain.state, CHARLIE.public).free
    execution = chain.execute([first, second])
    error = execution.outcomes[1].error
    assert error is not None and error.error == "AlreadyReported"
    fees = chain.runtime.config.fee(len(first)) + chain.runtime.config.fee(len(second))
    assert system.account(chain.state, CHARLIE.public).free == before - fees
    assert len(offences.offence_keys(chain.state)) == 1


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (dict(target=b"\x01" * 32), "the votes are for the same block"),
        (dict(round_=8), "the votes are not of one round and phase"),
        (dict(phase=Phase.PREVOTE), "the votes are not of one round and phase"),
        (dict(signer="CHARLIE"), "the votes are by different voters"),
    ],
)
def test_votes_that_prove_nothing_are_bad_arguments(
    chain: MemoryChain, second: dict[str, object], message: str
) -> None:
    g = chain.genesis_hash
    first = vote(BOB, g, target=b"\x01" * 32)
    options = {"target": b"\x02" * 32, **second}
    signer = CHARLIE if options.pop("signer", None) else BOB
    other = vote(signer, g, **options)  # type: ignore[arg-type]
    error = refused(chain, report_votes(first, other))
    assert error.reason is TxRejection.BAD_ARGUMENTS
    assert error.message == f"offences.report_vote_equivocation: {message}"


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (b"\x00" * 144, "a vote is 145 bytes, got 144"),
        (b"\x00" * 8 + b"\x03" + b"\x00" * 136, "unknown vote phase 3"),
    ],
)
def test_bytes_that_are_not_votes_are_bad_arguments(
    chain: MemoryChain, first: bytes, message: str
) -> None:
    error = refused(chain, report_votes(first, vote(BOB, chain.genesis_hash)))
    assert (error.reason, error.message) == (
        TxRejection.BAD_ARGUMENTS,
        f"offences.report_vote_equivocation: {message}",
    )


def test_an_oversized_vote_is_refused_by_its_length(chain: MemoryChain) -> None:
    error = refused(chain, report_votes(b"\x00" * 146, vote(BOB, chain.genesis_hash)))
    assert (error.reason, error.message) == (
        TxRejection.BAD_ARGUMENTS,
        "first is 146 bytes, at most 145 allowed",
    )


def test_votes_of_a_non_authority_are_refused(chain: MemoryChain) -> None:
    g = chain.genesis_hash
    first, second = vote(DAVE, g, target=b"\x01" * 32), vote(DAVE, g, target=b"\x02" * 32)
    error = refused(chain, report_votes(first, second))
    assert (error.reason, error.message) == (
        TxRejection.CALL_FAILED,
        f"offences.NotAnAuthority: 0x{DAVE.public.hex()} is not an authority of this chain",
    )


def test_a_vote_not_signed_by_its_voter_is_refused(chain: MemoryChain) -> None:
    g = chain.genesis_hash
    first = vote(BOB, g, target=b"\x01" * 32)
    forged = vote(CHARLIE, g, target=b"\x02" * 32, voter=BOB.public)
    error = refused(chain, report_votes(first, forged))
    assert (error.reason, error.message) == (
        TxRejection.CALL_FAILED,
        f"offences.BadSignature: a vote for 0x{'02' * 32} is not signed by its voter for this "
        "chain",
    )


def test_votes_signed_for_another_chain_are_refused(chain: MemoryChain) -> None:
    other = b"\x77" * 32
    first, second = vote(BOB, other, target=b"\x01" * 32), vote(BOB, other, target=b"\x02" * 32)
    error = refused(chain, report_votes(first, second))
    assert error.reason is TxRejection.CALL_FAILED
    assert error.message.startswith("offences.BadSignature: ")
    assert offences.offence_keys(chain.state) == []


def test_a_failed_report_in_a_block_records_nothing(chain: MemoryChain) -> None:
    """Bypassing the pool: the block's author included a forged report; it pays and fails."""
    g = chain.genesis_hash
    first = vote(BOB, g, target=b"\x01" * 32)
    forged = vote(CHARLIE, g, target=b"\x02" * 32, voter=BOB.public)
    execution = chain.execute([chain.sign(CHARLIE, report_votes(first, forged), nonce=0)])
    error = execution.outcomes[0].error
    assert error is not None and error.error == "BadSignature"
    assert offences.offence_keys(chain.state) == []
    assert system.account(chain.state, CHARLIE.public).nonce == 1


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("same", "same", "the headers are the same block"),
        ("alice", "bob", "the blocks are by different authors"),
        ("alice", "other slot", "the blocks are for different slots"),
        ("junk", "alice", "first is not an encoded header"),
        ("unsealed", "alice", "first is not a sealed header"),
        ("huge slot", "huge slot 2", f"slot {2**64} is out of range"),
        ("list for a number", "alice", "first is not an encoded header"),
    ],
)
def test_headers_that_prove_nothing_are_bad_arguments(
    chain: MemoryChain, first: str, second: str, message: str
) -> None:
    made = {
        "same": header(ALICE),
        "alice": header(ALICE, state_root=b"\x05" * 32),
        "bob": header(BOB),
        "other slot": header(ALICE, slot=12),
        "junk": b"\xc0",
        "unsealed": rlp.encode(rlp.decode(header(ALICE), sedes=Header).copy(seal=b"")),
        "huge slot": header(ALICE, slot=2**64),
        "list for a number": rlp.encode(
            [[b"\x01"] if i == 1 else f for i, f in enumerate(rlp.decode(header(ALICE)))]
        ),
        "huge slot 2": header(ALICE, slot=2**64, state_root=b"\x05" * 32),
    }
    error = refused(chain, report_blocks(made[first], made[second]))
    assert (error.reason, error.message) == (
        TxRejection.BAD_ARGUMENTS,
        f"offences.report_block_equivocation: {message}",
    )


def test_blocks_of_a_non_authority_are_refused(chain: MemoryChain) -> None:
    first, second = header(DAVE), header(DAVE, state_root=b"\x05" * 32)
    error = refused(chain, report_blocks(first, second))
    assert error.message == (
        f"offences.NotAnAuthority: 0x{DAVE.public.hex()} is not an authority of this chain"
    )


def test_a_block_not_sealed_by_its_author_is_refused(chain: MemoryChain) -> None:
    first = header(ALICE)
    forged = rlp.decode(header(CHARLIE, state_root=b"\x05" * 32), sedes=Header).copy(
        author=ALICE.public
    )
    error = refused(chain, report_blocks(first, rlp.encode(forged)))
    assert (error.reason, error.message) == (
        TxRejection.CALL_FAILED,
        f"offences.BadSignature: block 0x{forged.hash.hex()} is not sealed by its author",
    )


def test_a_report_refused_for_its_shape_costs_no_signature_check(chain: MemoryChain) -> None:
    """Garbage is refused by the cheap checks, before the transaction's own signature: a peer
    that relays it cannot make this node verify anything."""
    encoded = bytearray(chain.sign(CHARLIE, report_votes(b"\x00" * 145, b"\x00" * 145), nonce=0))
    encoded[-1] ^= 1  # the transaction's signature is now wrong as well
    with pytest.raises(InvalidTransaction) as info:
        chain.runtime.precheck(chain.state, bytes(encoded))
    assert info.value.reason is TxRejection.BAD_ARGUMENTS


def test_a_known_offence_is_refused_before_its_signatures(chain: MemoryChain) -> None:
    """Once an offence is recorded, copies of its report cost a state read, not two signature
    checks: signed garbage for that (voter, round) is refused as already reported."""
    g = chain.genesis_hash
    a, b = vote(BOB, g, target=b"\x01" * 32), vote(BOB, g, target=b"\x02" * 32)
    chain.execute([submit(chain, report_votes(a, b))])
    bogus = vote(CHARLIE, g, target=b"\x03" * 32, voter=BOB.public)
    error = refused(chain, report_votes(a, bogus), nonce=1)
    assert error.message.startswith("offences.AlreadyReported: ")


def test_the_runtime_reads_votes_as_the_finality_gadget_signs_them() -> None:
    g, target = b"\x05" * 32, b"\x06" * 32
    assert offences.VOTE_PHASES == tuple(Phase)
    signed = Vote.decode(vote(BOB, g, round_=9, target=target, number=4))
    read = offences.SignedVote.decode(signed.encode())
    assert (read.round, read.phase, read.target_hash, read.target_number, read.voter) == (
        9, Phase.PRECOMMIT, target, 4, BOB.public
    )  # fmt: skip
    assert read.signed_by_voter(g) and not read.signed_by_voter(b"\x07" * 32)
