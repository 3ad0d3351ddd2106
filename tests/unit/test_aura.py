"""Aura's slot bounds: each block's slot comes after its parent's, never before the chain began,
and never later than our clock allows; a block ahead of our clock is FUTURE_SLOT (no one's
provable fault), every other broken bound is BAD_SLOT."""

from __future__ import annotations

import pytest

from chain.blocks import Header
from chain.errors import BlockRejection, InvalidBlock
from chain.keys import Keypair
from chain.primitives import ZERO_HASH, AccountId, BlockNumber, Hash32, Slot, TimestampMs
from consensus.aura import MAX_DRIFT_MS, check_seal, slot_author, verify_header
from tests.factories import ALICE, BOB

SLOT_MS = 1000
GENESIS_MS = 1_800_000_000_000
GENESIS_SLOT = Slot(GENESIS_MS // SLOT_MS)
AUTHORITIES: tuple[AccountId, ...] = (ALICE.public, BOB.public)
KEYS = {ALICE.public: ALICE, BOB.public: BOB}


def genesis_header() -> Header:
    return Header(
        ZERO_HASH, BlockNumber(0), b"\x01" * 32, b"\x02" * 32,
        TimestampMs(GENESIS_MS), GENESIS_SLOT, b"\x00" * 32, b"",
    )  # fmt: skip


def sealed(
    parent: Header, slot: int, *, offset_ms: int = 0, signer: Keypair | None = None
) -> Header:
    author = signer or KEYS[slot_author(slot, AUTHORITIES)]
    header = Header(
        Hash32(parent.hash), BlockNumber(parent.number + 1), b"\x03" * 32, b"\x04" * 32,
        TimestampMs(slot * SLOT_MS + offset_ms), Slot(slot), author.public, b"",
    )  # fmt: skip
    return header.copy(seal=author.sign(header.pre_seal_hash()))  # type: ignore[no-any-return]


def check(header: Header, parent: Header, now_ms: int) -> None:
    verify_header(header, parent, AUTHORITIES, SLOT_MS, now_ms, GENESIS_SLOT)


def rejection(header: Header, parent: Header, now_ms: int) -> tuple[BlockRejection, str]:
    with pytest.raises(InvalidBlock) as info:
        check(header, parent, now_ms)
    return info.value.reason, info.value.message


NOW = GENESIS_MS + 100 * SLOT_MS


def test_a_block_in_a_slot_that_began_is_accepted() -> None:
    genesis = genesis_header()
    first = sealed(genesis, GENESIS_SLOT + 1)
    check(first, genesis, NOW)
    second = sealed(first, GENESIS_SLOT + 2, offset_ms=999)
    check(second, first, NOW)


def test_the_first_block_cannot_claim_a_slot_before_genesis() -> None:
    """Before, block #1 was exempt from every slot bound: one authority could seal a chain from
    its own slots since 1970, thousands of blocks in seconds."""
    genesis = genesis_header()
    for slot in (0, 4, GENESIS_SLOT - 2, GENESIS_SLOT - 1):
        assert rejection(sealed(genesis, slot), genesis, NOW) == (
            BlockRejection.BAD_SLOT,
            f"slot {slot} is before the chain's genesis slot {GENESIS_SLOT}",
        )


def test_the_first_block_may_take_the_genesis_slot() -> None:
    """The genesis block is no one's: the chain's first slot is open to its author."""
    genesis = genesis_header()
    check(sealed(genesis, GENESIS_SLOT), genesis, NOW)


def test_the_genesis_bound_holds_whatever_the_parent_claims() -> None:
    """A parent whose own slot came before genesis (one that should never have been stored)
    does not let its children claim old slots either."""
    genesis = genesis_header()
    forged_parent = genesis.copy(number=5, slot=10, timestamp=10 * SLOT_MS)
    child = sealed(forged_parent, 11)
    assert rejection(child, forged_parent, NOW)[0] is BlockRejection.BAD_SLOT
    assert "before the chain's genesis slot" in rejection(child, forged_parent, NOW)[1]


@pytest.mark.parametrize("delta", [0, -1, -7])
def test_a_slot_must_be_after_the_parents(delta: int) -> None:
    genesis = genesis_header()
    parent = sealed(genesis, GENESIS_SLOT + 10)
    slot = GENESIS_SLOT + 10 + delta
    assert rejection(sealed(parent, slot), parent, NOW) == (
        BlockRejection.BAD_SLOT,
        f"slot {slot} is not after the parent's {GENESIS_SLOT + 10}",
    )


def test_a_slot_must_match_the_timestamp() -> None:
    genesis = genesis_header()
    header = sealed(genesis, GENESIS_SLOT + 3, offset_ms=SLOT_MS)
    assert rejection(header, genesis, NOW) == (
        BlockRejection.BAD_SLOT,
        f"slot {GENESIS_SLOT + 3} does not match timestamp {(GENESIS_SLOT + 4) * SLOT_MS}",
    )


def test_a_block_ahead_of_our_clock_is_a_future_slot_not_a_bad_one() -> None:
    genesis = genesis_header()
    slot = GENESIS_SLOT + 5
    header = sealed(genesis, slot)
    start = slot * SLOT_MS
    check(header, genesis, start - MAX_DRIFT_MS)  # within the drift
    assert rejection(header, genesis, start - MAX_DRIFT_MS - 1) == (
        BlockRejection.FUTURE_SLOT,
        f"slot {slot} is in the future (timestamp {start}, now {start - MAX_DRIFT_MS - 1})",
    )
    # Far ahead too: still not provably anyone's fault.
    assert rejection(header, genesis, GENESIS_MS)[0] is BlockRejection.FUTURE_SLOT


def test_slot_bounds_come_before_the_signature() -> None:
    """A block with no valid seal that breaks a slot bound is refused for the slot (the cheap
    check), and one in a good slot for its seal or author."""
    genesis = genesis_header()
    unsigned = sealed(genesis, 3).copy(seal=b"\x00" * 64)
    assert rejection(unsigned, genesis, NOW)[0] is BlockRejection.BAD_SLOT
    good_slot = sealed(genesis, GENESIS_SLOT + 1)
    assert rejection(good_slot.copy(seal=b"\x00" * 64), genesis, NOW)[0] is BlockRejection.BAD_SEAL
    intruder = sealed(
        genesis, GENESIS_SLOT + 1, signer=KEYS[slot_author(GENESIS_SLOT, AUTHORITIES)]
    )
    assert rejection(intruder, genesis, NOW)[0] is BlockRejection.WRONG_AUTHOR


def test_the_seal_is_checked_without_the_parent() -> None:
    genesis = genesis_header()
    header = sealed(genesis, GENESIS_SLOT + 1)
    check_seal(header, AUTHORITIES)
    with pytest.raises(InvalidBlock) as info:
        check_seal(header.copy(seal=b"\x00" * 64), AUTHORITIES)
    assert info.value.reason is BlockRejection.BAD_SEAL
    with pytest.raises(InvalidBlock) as info:
        check_seal(header.copy(slot=header.slot + 1), AUTHORITIES)
    assert info.value.reason is BlockRejection.WRONG_AUTHOR


def test_a_header_verified_before_skips_only_the_signature() -> None:
    """Sync's signature worker vouches for a header by its hash (seal included): the seal is not
    verified again, but the author must still be the slot's, and a header that differs in any
    byte, its seal included, is verified as usual."""
    genesis = genesis_header()
    header = sealed(genesis, GENESIS_SLOT + 1)
    forged = header.copy(seal=b"\x00" * 64)
    check_seal(forged, AUTHORITIES, verified={forged.hash})  # vouched for: not verified again
    with pytest.raises(InvalidBlock) as info:
        check_seal(forged, AUTHORITIES, verified={header.hash})
    assert info.value.reason is BlockRejection.BAD_SEAL
    other_slot = sealed(genesis, GENESIS_SLOT + 2, signer=KEYS[slot_author(1, AUTHORITIES)])
    with pytest.raises(InvalidBlock) as info:
        check_seal(other_slot, AUTHORITIES, verified={other_slot.hash})
    assert info.value.reason is BlockRejection.WRONG_AUTHOR
