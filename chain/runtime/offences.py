"""The `offences` module: equivocations of the chain's authorities, proven by their own signatures
(two finality votes of one round and phase for different blocks, or two blocks sealed by one
author for one slot) and recorded once each from a report that any account submits and pays for.

An offence costs its authority nothing yet: the authorities are fixed in genesis. Penalties
(slashing a bond, removal from the set) come with a validator set that rotates."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import rlp

from chain import codec
from chain.blocks import Header, decode
from chain.errors import OutdatedCall
from chain.primitives import SIGNATURE_LENGTH, AccountId, Hash32
from chain.runtime import system
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.signature import verify
from chain.state import Overlay, StateReader, storage_key
from chain.votes import PRECOMMIT, PREVOTE, VOTE_LENGTH, vote_payload

NAME = "offences"

VOTE_PHASES = (PREVOTE, PRECOMMIT)
MAX_HEADER_BYTES = 512
"""An encoded sealed header is about 230 bytes; anything much larger is not one."""

MAX_SLOT = 2**64 - 1
"""Slots, like rounds, are recorded in 8 bytes; no chain reaches a larger one."""

_OFFENCE = storage_key(NAME, "offence")
INDEX_KEY = storage_key(NAME, "index")


class OffenceKind(enum.IntEnum):
    VOTE = 1
    """Two finality votes of one round and phase for different blocks."""
    BLOCK = 2
    """Two different blocks sealed by one author for one slot."""


class OffencesError(enum.Enum):
    NOT_AN_AUTHORITY = "NotAnAuthority"
    ALREADY_REPORTED = "AlreadyReported"
    BAD_SIGNATURE = "BadSignature"


@dataclass(frozen=True, slots=True)
class SignedVote:
    """A finality vote as signed and gossiped; the layout is `consensus.finality.Vote`'s."""

    round: int
    phase: int
    target_hash: Hash32
    target_number: int
    voter: AccountId
    signature: bytes

    @classmethod
    def decode(cls, data: bytes) -> SignedVote:
        """Raises ValueError for bytes that are not a vote."""
        if len(data) != VOTE_LENGTH:
            raise ValueError(f"a vote is {VOTE_LENGTH} bytes, got {len(data)}")
        if data[8] not in VOTE_PHASES:
            raise ValueError(f"unknown vote phase {data[8]}")
        return cls(
            int.from_bytes(data[0:8], "big"),
            data[8],
            Hash32(data[9:41]),
            int.from_bytes(data[41:49], "big"),
            AccountId(data[49:81]),
            data[81:145],
        )

    def signed_by_voter(self, genesis_hash: bytes) -> bool:
        payload = vote_payload(
            genesis_hash, self.round, self.phase, self.target_hash, self.target_number
        )
        return verify(self.voter, payload, self.signature)


@dataclass(frozen=True, slots=True)
class OffenceKey:
    kind: OffenceKind
    offender: AccountId
    at: int
    """The round (a vote offence) or the slot (a block offence)."""

    def encode(self) -> bytes:
        return bytes([self.kind]) + self.offender + self.at.to_bytes(8, "big")

    @classmethod
    def decode(cls, data: bytes) -> OffenceKey:
        return cls(OffenceKind(data[0]), AccountId(data[1:33]), int.from_bytes(data[33:41], "big"))


OFFENCE_KEY_LENGTH = 1 + 32 + 8


@dataclass(frozen=True, slots=True)
class OffenceRecord:
    reporter: AccountId
    block: int
    """The block that recorded it."""
    first: Hash32
    second: Hash32
    """The two conflicting targets (votes) or block hashes (blocks)."""

    def encode(self) -> bytes:
        return codec.encode([self.reporter, codec.encode_uint(self.block), self.first, self.second])

    @classmethod
    def decode(cls, data: bytes) -> OffenceRecord:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 4:
            raise codec.CodecError("an offence record has 4 fields")
        reporter, block, first, second = item
        return cls(
            AccountId(codec.fixed(reporter, 32, "reporter")),
            codec.uint(block, "block"),
            Hash32(codec.fixed(first, 32, "first")),
            Hash32(codec.fixed(second, 32, "second")),
        )


def vote_evidence(first: bytes, second: bytes) -> tuple[OffenceKey, SignedVote, SignedVote]:
    """The offence two encoded votes would prove, if both are signed by their voter. Raises
    ValueError when no signature could make them one: not votes, not of one voter, round and
    phase, or for the same block."""
    a, b = SignedVote.decode(first), SignedVote.decode(second)
    if a.voter != b.voter:
        raise ValueError("the votes are by different voters")
    if a.round != b.round or a.phase != b.phase:
        raise ValueError("the votes are not of one round and phase")
    if a.target_hash == b.target_hash:
        raise ValueError("the votes are for the same block")
    return OffenceKey(OffenceKind.VOTE, a.voter, a.round), a, b


def _header(data: bytes, name: str) -> Header:
    try:
        header: Header = decode(data, Header)
    except (rlp.DecodingError, rlp.DeserializationError):
        raise ValueError(f"{name} is not an encoded header") from None
    if len(header.seal) != SIGNATURE_LENGTH:
        raise ValueError(f"{name} is not a sealed header")
    return header


def block_evidence(first: bytes, second: bytes) -> tuple[OffenceKey, Header, Header]:
    """The offence two encoded headers would prove, if both are sealed by their author. Raises
    ValueError when no seal could make them one: not headers, not of one author and slot, or
    the same block."""
    a, b = _header(first, "first"), _header(second, "second")
    if a.author != b.author:
        raise ValueError("the blocks are by different authors")
    if a.slot != b.slot:
        raise ValueError("the blocks are for different slots")
    if a.slot > MAX_SLOT:
        raise ValueError(f"slot {a.slot} is out of range")
    if a.hash == b.hash:
        raise ValueError("the headers are the same block")
    return OffenceKey(OffenceKind.BLOCK, AccountId(a.author), a.slot), a, b


def _check_votes(first: bytes, second: bytes) -> None:
    vote_evidence(first, second)


def _check_blocks(first: bytes, second: bytes) -> None:
    block_evidence(first, second)


def offence_key(key: OffenceKey) -> bytes:
    return _OFFENCE + key.encode()


def get_offence(state: StateReader, key: OffenceKey) -> OffenceRecord | None:
    data = state.get(offence_key(key))
    return None if data is None else OffenceRecord.decode(data)


def offence_keys(state: StateReader) -> list[OffenceKey]:
    """Every recorded offence, in the order they were recorded."""
    data = state.get(INDEX_KEY) or b""
    step = OFFENCE_KEY_LENGTH
    return [OffenceKey.decode(data[i : i + step]) for i in range(0, len(data), step)]


def _record(state: Overlay, key: OffenceKey, record: OffenceRecord) -> None:
    state.put(offence_key(key), record.encode())
    state.put(INDEX_KEY, (state.get(INDEX_KEY) or b"") + key.encode())


class Offences(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        return [
            CallDef(
                NAME,
                "report_vote_equivocation",
                (
                    Arg("first", ArgKind.BYTES, max_length=VOTE_LENGTH),
                    Arg("second", ArgKind.BYTES, max_length=VOTE_LENGTH),
                ),
                self.report_votes,
                "Prove that an authority signed two finality votes of one round and phase for "
                "different blocks.",
                check_shape=_check_votes,
            ),
            CallDef(
                NAME,
                "report_block_equivocation",
                (
                    Arg("first", ArgKind.BYTES, max_length=MAX_HEADER_BYTES),
                    Arg("second", ArgKind.BYTES, max_length=MAX_HEADER_BYTES),
                ),
                self.report_blocks,
                "Prove that an authority sealed two different blocks for one slot.",
                check_shape=_check_blocks,
            ),
        ]

    def report_votes(self, ctx: Context, sender: AccountId, first: bytes, second: bytes) -> None:
        key, a, b = vote_evidence(first, second)
        self._check_new(ctx, key)
        # Signatures last: a report of a known offence or of a non-authority costs none.
        for vote in (a, b):
            if not vote.signed_by_voter(ctx.genesis_hash):
                raise self.fail(
                    OffencesError.BAD_SIGNATURE,
                    f"a vote for 0x{vote.target_hash.hex()} is not signed by its voter for this "
                    "chain",
                )
        self._record(ctx, sender, key, a.target_hash, b.target_hash)

    def report_blocks(self, ctx: Context, sender: AccountId, first: bytes, second: bytes) -> None:
        key, a, b = block_evidence(first, second)
        self._check_new(ctx, key)
        for header in (a, b):
            if not verify(header.author, header.pre_seal_hash(), header.seal):
                raise self.fail(
                    OffencesError.BAD_SIGNATURE,
                    f"block 0x{header.hash.hex()} is not sealed by its author",
                )
        self._record(ctx, sender, key, a.hash, b.hash)

    def _check_new(self, ctx: Context, key: OffenceKey) -> None:
        if key.offender not in system.authorities(ctx.state):
            raise self.fail(
                OffencesError.NOT_AN_AUTHORITY,
                f"0x{key.offender.hex()} is not an authority of this chain",
            )
        if get_offence(ctx.state, key) is not None:
            # Outdated rather than failed: every node that saw the offence reports it, and the
            # pools must not hold the losers of that race against their senders.
            raise OutdatedCall(
                NAME,
                OffencesError.ALREADY_REPORTED.value,
                f"the {key.kind.name.lower()} equivocation of 0x{key.offender.hex()} at "
                f"{_at_name(key.kind)} {key.at} is already recorded",
            )

    def _record(
        self, ctx: Context, sender: AccountId, key: OffenceKey, first: Hash32, second: Hash32
    ) -> None:
        _record(ctx.state, key, OffenceRecord(sender, ctx.env.number, first, second))
        ctx.emit(
            NAME,
            "OffenceReported",
            kind=key.kind.name.lower(),
            offender=AccountRef(key.offender),
            at=key.at,
            reporter=AccountRef(sender),
        )


def _at_name(kind: OffenceKind) -> str:
    return "round" if kind is OffenceKind.VOTE else "slot"
