"""Aura-style slot rules: slot = timestamp // slot duration, author = authorities[slot mod n],
the header sealed by that author. Pure functions: the caller passes the clock reading."""

from __future__ import annotations

from collections.abc import Container

from chain.address import encode_address
from chain.blocks import Header
from chain.errors import BlockRejection, InvalidBlock
from chain.primitives import AccountId, Slot
from chain.signature import verify

MAX_DRIFT_MS = 500
"""How far ahead of our clock a block's timestamp may be (clocks are never perfectly in sync)."""


def slot_at(timestamp_ms: int, slot_duration_ms: int) -> Slot:
    return Slot(timestamp_ms // slot_duration_ms)


def slot_author(slot: int, authorities: tuple[AccountId, ...]) -> AccountId:
    return authorities[slot % len(authorities)]


def verify_header(
    header: Header,
    parent: Header,
    authorities: tuple[AccountId, ...],
    slot_duration_ms: int,
    now_ms: int,
    genesis_slot: Slot,
    *,
    verified: Container[bytes] = frozenset(),
) -> None:
    """Raise InvalidBlock unless `header` is a well-formed Aura block on top of `parent`; the
    seal's signature is not checked again if the header's hash is in `verified`.

    The slot bounds are what keep one authority from sealing a long chain in an instant: a
    block's slot is never before the chain began (`genesis_slot`, the first block's included),
    after its parent's, and never later than our clock allows. A block too far ahead is
    FUTURE_SLOT, not BAD_SLOT: it may be our clock that is behind."""
    check_slot(header, parent, slot_duration_ms, now_ms, genesis_slot)
    check_seal(header, authorities, verified=verified)


def check_slot(
    header: Header, parent: Header | None, slot_duration_ms: int, now_ms: int, genesis_slot: Slot
) -> None:
    """The slot bounds of `verify_header`; without the parent (not known yet), all but the
    bound that the slot is after the parent's."""
    if header.slot != slot_at(header.timestamp, slot_duration_ms):
        raise InvalidBlock(
            BlockRejection.BAD_SLOT,
            f"slot {header.slot} does not match timestamp {header.timestamp}",
        )
    if header.slot < genesis_slot:
        raise InvalidBlock(
            BlockRejection.BAD_SLOT,
            f"slot {header.slot} is before the chain's genesis slot {genesis_slot}",
        )
    # The genesis block is no one's: the first block may take the genesis slot itself.
    if parent is not None and parent.number > 0 and header.slot <= parent.slot:
        raise InvalidBlock(
            BlockRejection.BAD_SLOT, f"slot {header.slot} is not after the parent's {parent.slot}"
        )
    if header.timestamp > now_ms + MAX_DRIFT_MS:
        raise InvalidBlock(
            BlockRejection.FUTURE_SLOT,
            f"slot {header.slot} is in the future (timestamp {header.timestamp}, now {now_ms})",
        )


def check_seal(
    header: Header,
    authorities: tuple[AccountId, ...],
    *,
    verified: Container[bytes] = frozenset(),
) -> None:
    """The author is the one of the header's slot and the seal is its signature: checked
    without the parent, so a block from an unknown fork can be judged before syncing it."""
    expected = slot_author(header.slot, authorities)
    if header.author != expected:
        raise InvalidBlock(
            BlockRejection.WRONG_AUTHOR,
            f"slot {header.slot} belongs to {encode_address(expected)}, "
            f"block is by {encode_address(header.author)}",
        )
    if header.hash in verified:
        return  # these very bytes, seal included, verified before
    if not verify(header.author, header.pre_seal_hash(), header.seal):
        raise InvalidBlock(BlockRejection.BAD_SEAL, "the seal is not the author's signature")
