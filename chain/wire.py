"""What nodes say to each other, as bytes: block announcements, sync requests and responses,
and the status each peer advertises. Decoding never trusts the sender: sizes are bounded and
every failure is a `WireError`."""

from __future__ import annotations

from dataclasses import dataclass

from chain import codec
from chain.blocks import Block, Header
from chain.codec import CodecError
from chain.errors import ChainError
from chain.primitives import ACCOUNT_ID_LENGTH, Hash32

MAX_SYNC_BLOCKS = 128
MAX_SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_GOSSIP_BLOCK_BYTES = 900 * 1024
"""Larger blocks are announced by header only and fetched over request/response."""

TOPIC_BLOCKS = "blocks"
TOPIC_TRANSACTIONS = "transactions"
TOPIC_VOTES = "votes"
PROTOCOL_SYNC = "sync"


class WireError(ChainError):
    """Bytes from a peer that are not a valid message."""


def decode_block(data: bytes) -> Block:
    """A block as `rlp.decode(data, sedes=Block, strict=True)` reads it, read by the strict
    reader of `chain.codec` (a tenth of the time for thousands of extrinsics), the header's
    fields then checked as its sedes checks them (tests compare the two on any bytes)."""
    try:
        item = codec.decode(data)
    except CodecError as exc:
        raise WireError(f"not a block: {exc}") from None
    if not isinstance(item, list) or len(item) != 2:
        raise WireError("not a block: expected a list of a header and a list of extrinsics")
    header_item, extrinsics = item
    if not isinstance(header_item, list) or not isinstance(extrinsics, list):
        raise WireError("not a block: expected a list of a header and a list of extrinsics")
    if not all(isinstance(e, bytes) for e in extrinsics):
        raise WireError("not a block: an extrinsic is a list, not bytes")
    header = _header(header_item)
    # The header's bytes as they came are its encoding: the reader and the field checks accept
    # canonical RLP only, which `rlp.encode(header)` would give again. Handed to the `rlp`
    # library's cache, they spare encoding the header for its hash and for the store.
    start = codec.list_payload_start(data)
    header._cached_rlp = data[start : codec.list_end(data, start)]
    return Block(header, tuple(extrinsics))  # type: ignore[arg-type]


def _header(item: list[codec.RlpItem]) -> Header:
    """The header's fields checked as its sedes checks them, at a tenth of the sedes' cost."""
    if len(item) != 8:
        raise WireError(f"not a block: a header has 8 fields, not {len(item)}")
    parent, number, state_root, extrinsics_root, timestamp, slot, author, seal = item
    try:
        if not isinstance(seal, bytes):
            raise CodecError("seal must be bytes, got a list")
        return Header(
            codec.fixed(parent, 32, "parent hash"),
            codec.uint(number, "number"),
            codec.fixed(state_root, 32, "state root"),
            codec.fixed(extrinsics_root, 32, "extrinsics root"),
            codec.uint(timestamp, "timestamp"),
            codec.uint(slot, "slot"),
            codec.fixed(author, ACCOUNT_ID_LENGTH, "author"),
            seal,
        )
    except CodecError as exc:
        raise WireError(f"not a block: {exc}") from None


MAX_GOSSIP_TRANSACTIONS = 1000


def encode_transactions(batch: list[bytes]) -> bytes:
    return codec.encode(list(batch))


def decode_transactions(data: bytes) -> list[bytes]:
    """A gossiped batch of encoded transactions (each is checked by the pool afterwards)."""
    try:
        item = codec.decode(data)
    except codec.CodecError as exc:
        raise WireError(f"bad transaction batch: {exc}") from None
    if (
        not isinstance(item, list)
        or not 1 <= len(item) <= MAX_GOSSIP_TRANSACTIONS
        or not all(isinstance(x, bytes) for x in item)
    ):
        raise WireError(
            f"a transaction batch is a list of 1..{MAX_GOSSIP_TRANSACTIONS} byte strings"
        )
    return item  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Blocks of the responder's best chain from `start` upward, at most `count`."""

    start: int
    count: int

    def encode(self) -> bytes:
        return codec.encode([codec.encode_uint(self.start), codec.encode_uint(self.count)])

    @classmethod
    def decode(cls, data: bytes) -> SyncRequest:
        try:
            item = codec.decode(data)
            if not isinstance(item, list) or len(item) != 2:
                raise WireError("a sync request is [start, count]")
            start, count = codec.uint(item[0], "start"), codec.uint(item[1], "count")
        except codec.CodecError as exc:
            raise WireError(f"bad sync request: {exc}") from None
        if not 1 <= count <= MAX_SYNC_BLOCKS:
            raise WireError(f"sync count must be 1..{MAX_SYNC_BLOCKS}, got {count}")
        return cls(start, count)


@dataclass(frozen=True, slots=True)
class SyncItem:
    block: bytes
    """The encoded block."""
    justification: bytes
    """Its finality proof, or empty."""


def encode_sync_response(items: list[SyncItem]) -> bytes:
    return codec.encode([[item.block, item.justification] for item in items])


def decode_sync_response(data: bytes) -> list[SyncItem]:
    try:
        item = codec.decode(data)
    except codec.CodecError as exc:
        raise WireError(f"bad sync response: {exc}") from None
    if not isinstance(item, list) or len(item) > MAX_SYNC_BLOCKS:
        raise WireError("a sync response is a list of at most 128 [block, justification]")
    items = []
    for entry in item:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(x, bytes) for x in entry)
        ):
            raise WireError("a sync response entry is [block, justification]")
        items.append(SyncItem(entry[0], entry[1]))  # type: ignore[arg-type]
    return items


@dataclass(frozen=True, slots=True)
class Status:
    """What a node tells its peers about its chain when they connect and as it grows."""

    genesis_hash: Hash32
    best_number: int
    best_hash: Hash32
    finalized_number: int
    finalized_hash: Hash32

    def encode(self) -> bytes:
        return codec.encode(
            [
                self.genesis_hash,
                codec.encode_uint(self.best_number),
                self.best_hash,
                codec.encode_uint(self.finalized_number),
                self.finalized_hash,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Status:
        try:
            item = codec.decode(data)
            if not isinstance(item, list) or len(item) != 5:
                raise WireError("a status has 5 fields")
            return cls(
                Hash32(codec.fixed(item[0], 32, "genesis hash")),
                codec.uint(item[1], "best number"),
                Hash32(codec.fixed(item[2], 32, "best hash")),
                codec.uint(item[3], "finalized number"),
                Hash32(codec.fixed(item[4], 32, "finalized hash")),
            )
        except codec.CodecError as exc:
            raise WireError(f"bad status: {exc}") from None
