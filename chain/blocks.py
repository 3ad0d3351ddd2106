"""Wire and storage types, RLP-encoded: calls, signed transactions, headers and blocks."""

from __future__ import annotations

from typing import Any

import rlp
from rlp.sedes import Binary, CountableList, big_endian_int, binary

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
        return TX_SIGNING_DOMAIN + rlp.encode(self)


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

    @property
    def hash(self) -> Hash32:
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
    """Decode RLP strictly (no trailing bytes); any failure raises `rlp.DecodingError`."""
    return rlp.decode(encoded, sedes=sedes, strict=True)
