"""Wire and storage types, RLP-encoded: calls, signed transactions, headers and blocks."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import rlp
from rlp.exceptions import DeserializationError
from rlp.sedes import BigEndianInt, Binary, CountableList, binary

from chain import codec
from chain.primitives import (
    ACCOUNT_ID_LENGTH,
    SIGNATURE_LENGTH,
    AccountId,
    BlockNumber,
    Hash32,
    Slot,
    TimestampMs,
    blake2_256,
)


class _Uint(BigEndianInt):  # type: ignore[misc]
    """pyrlp's big-endian integer, refusing a list where the number belongs with a decoding
    error: pyrlp's own raises TypeError there, which no caller expects of bad input, and reads
    an empty list as 0."""

    def deserialize(self, serial: Any) -> int:
        if not isinstance(serial, bytes):
            raise DeserializationError("expected a number, got a list", serial)
        value: int = super().deserialize(serial)
        return value


big_endian_int = _Uint()
hash32 = Binary.fixed_length(32)
account_id = Binary.fixed_length(ACCOUNT_ID_LENGTH)
signature = Binary.fixed_length(SIGNATURE_LENGTH)

TX_SIGNING_DOMAIN = b"statemesh/tx/v1"
SEAL_SIGNING_DOMAIN = b"statemesh/seal/v1"


class Call(rlp.Serializable):  # type: ignore[misc]
    """What a transaction asks the runtime to do."""

    fields = [
        ("module", binary),
        ("function", binary),
        ("args", binary),
    ]
    module: bytes
    """The module's name, e.g. b"balances"."""
    function: bytes
    """The call's name within the module, e.g. b"transfer"."""
    args: bytes
    """The arguments, RLP-encoded by the call's own schema (see `chain.runtime`)."""


class UnsignedTransaction(rlp.Serializable):  # type: ignore[misc]
    """The signed part of a transaction."""

    fields = [
        ("genesis_hash", hash32),
        ("sender", account_id),
        ("nonce", big_endian_int),
        ("tip", big_endian_int),
        ("call", Call),
    ]
    genesis_hash: Hash32
    """Replay protection: a transaction is valid on one chain only."""
    sender: AccountId
    nonce: int
    """The sender's transaction count before this one."""
    tip: int
    """Paid to the block author on top of the fee; orders the pool."""
    call: Call

    def signing_payload(self) -> bytes:
        encoded: bytes = rlp.encode(self)
        return TX_SIGNING_DOMAIN + encoded


class SignedTransaction(rlp.Serializable):  # type: ignore[misc]
    fields = [
        ("genesis_hash", hash32),
        ("sender", account_id),
        ("nonce", big_endian_int),
        ("tip", big_endian_int),
        ("call", Call),
        ("signature", signature),
    ]
    genesis_hash: Hash32
    sender: AccountId
    nonce: int
    tip: int
    call: Call
    signature: bytes
    """Ed25519 over `UnsignedTransaction.signing_payload()`; a FROST group signature verifies
    the same way."""

    def unsigned(self) -> UnsignedTransaction:
        return UnsignedTransaction(self.genesis_hash, self.sender, self.nonce, self.tip, self.call)

    def signing_payload(self) -> bytes:
        return self.unsigned().signing_payload()


class Header(rlp.Serializable):  # type: ignore[misc]
    fields = [
        ("parent_hash", hash32),
        ("number", big_endian_int),
        ("state_root", hash32),
        ("extrinsics_root", hash32),
        ("timestamp", big_endian_int),
        ("slot", big_endian_int),
        ("author", account_id),
        ("seal", binary),
    ]
    parent_hash: Hash32
    number: BlockNumber
    state_root: Hash32
    """Root of the state trie after this block's extrinsics and hooks ran."""
    extrinsics_root: Hash32
    """Merkle root of the hashes of the block's extrinsics, in order."""
    timestamp: TimestampMs
    slot: Slot
    """timestamp // slot duration: the slot that gave `author` the right to author."""
    author: AccountId
    seal: bytes
    """The author's Ed25519 signature over `pre_seal_hash()`; empty in the genesis header."""

    def pre_seal_hash(self) -> Hash32:
        return blake2_256(SEAL_SIGNING_DOMAIN + rlp.encode(self.copy(seal=b"")))

    @functools.cached_property
    def hash(self) -> Hash32:
        """Computed once per header object: import asks it some eight times a block (known?
        parent of? cache key, stored under), and a header never changes once built."""
        return blake2_256(rlp.encode(self))


class Block(rlp.Serializable):  # type: ignore[misc]
    fields = [
        ("header", Header),
        ("extrinsics", CountableList(binary)),
    ]
    header: Header
    extrinsics: tuple[bytes, ...]
    """Encoded `SignedTransaction`s, kept as bytes so their hashes and lengths are exact."""

    @property
    def hash(self) -> Hash32:
        return self.header.hash  # type: ignore[no-any-return]


def tx_hash(encoded: bytes) -> Hash32:
    return blake2_256(encoded)


def decode(encoded: bytes, sedes: Any) -> Any:
    """Decode RLP strictly (no trailing bytes); any failure raises `rlp.DecodingError` or
    `rlp.DeserializationError`. The bytes are read by `codec` first: the `rlp` library's reader
    recurses once per nested list without a bound, and a few kilobytes of nested lists would end
    in a RecursionError."""
    try:
        codec.decode(encoded)
    except codec.CodecError as exc:
        raise rlp.DecodingError(f"not canonical RLP: {exc}", encoded) from None
    return rlp.decode(encoded, sedes=sedes, strict=True)


_SIGNATURE_ITEM_LENGTH = 2 + SIGNATURE_LENGTH
"""A 64-byte string encodes as 0xb8 0x40 followed by the bytes."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """A signed transaction as the runtime reads it: decoded once, with the exact bytes its
    signature covers. Produced by `decode_transaction`; encode with `SignedTransaction`."""

    genesis_hash: Hash32
    sender: AccountId
    nonce: int
    tip: int
    module: bytes
    function: bytes
    args: bytes
    signature: bytes
    signing_payload: bytes


def decode_transaction(encoded: bytes) -> Transaction:
    """Decode canonical RLP of a `SignedTransaction`; raises `codec.CodecError` naming the field.

    The signing payload is cut from `encoded` itself rather than re-encoded: the bytes are
    canonical, so this equals `SignedTransaction.signing_payload()` at a fraction of the cost."""
    item = codec.decode(encoded)
    if not isinstance(item, list) or len(item) != 6:
        raise codec.CodecError("a signed transaction is a list of 6 fields")
    genesis_raw, sender_raw, nonce_raw, tip_raw, call_raw, signature_raw = item
    if not isinstance(call_raw, list) or len(call_raw) != 3:
        raise codec.CodecError("call must be a list of module, function and args")
    module, function, args = call_raw
    if (
        not isinstance(module, bytes)
        or not isinstance(function, bytes)
        or not isinstance(args, bytes)
    ):
        raise codec.CodecError("call fields must be byte strings")
    body = encoded[codec.list_payload_start(encoded) : len(encoded) - _SIGNATURE_ITEM_LENGTH]
    return Transaction(
        genesis_hash=Hash32(codec.fixed(genesis_raw, 32, "genesis_hash")),
        sender=AccountId(codec.fixed(sender_raw, ACCOUNT_ID_LENGTH, "sender")),
        nonce=codec.uint(nonce_raw, "nonce"),
        tip=codec.uint(tip_raw, "tip"),
        module=module,
        function=function,
        args=args,
        signature=codec.fixed(signature_raw, SIGNATURE_LENGTH, "signature"),
        signing_payload=TX_SIGNING_DOMAIN + codec.list_prefix(len(body)) + body,
    )
