"""Participant identifiers: the nonzero scalars 1..L-1 that name each signer and are the
x-coordinates of its Shamir share; on the wire each is a 32-byte scalar (SerializeScalar)."""

from __future__ import annotations

from typing import NewType

from wallet.frost.errors import InvalidIdentifier
from wallet.frost.group import GROUP_ORDER, Scalar

Identifier = NewType("Identifier", int)


def as_identifier(value: int) -> Identifier:
    """`value` as an identifier, or `InvalidIdentifier`. Zero is refused because the share at
    x = 0 is the group secret itself."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidIdentifier(f"an identifier is an integer, got {type(value).__name__}")
    if value == 0:
        raise InvalidIdentifier("identifier 0 is not allowed (identifiers are 1..L-1)")
    if not 0 < value < GROUP_ORDER:
        raise InvalidIdentifier("identifier is outside 1..L-1")
    return Identifier(value)


def identifier_scalar(identifier: Identifier) -> Scalar:
    return Scalar.from_int(identifier)


def encode_identifier(identifier: Identifier) -> bytes:
    return identifier_scalar(identifier).encoding


def decode_identifier(data: bytes) -> Identifier:
    return as_identifier(Scalar.decode(data).to_int())
