"""The human form of an account: base58 of a network byte, the public key and a 2-byte checksum.

The checksum catches a mistyped character; the network byte keeps addresses of other
systems from being mistaken for ours."""

from __future__ import annotations

import hashlib

import base58

from chain.errors import ChainError
from chain.primitives import ACCOUNT_ID_LENGTH, AccountId

NETWORK_BYTE = 0x2A
_CHECKSUM_DOMAIN = b"statemesh/address"
_CHECKSUM_LENGTH = 2


class AddressError(ChainError):
    """A string that is not a StateMesh address; the message says why."""


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(_CHECKSUM_DOMAIN + payload, digest_size=32).digest()[:_CHECKSUM_LENGTH]


def encode_address(account: bytes) -> str:
    if len(account) != ACCOUNT_ID_LENGTH:
        raise AddressError(f"an account id is {ACCOUNT_ID_LENGTH} bytes, got {len(account)}")
    payload = bytes([NETWORK_BYTE]) + account
    return base58.b58encode(payload + _checksum(payload)).decode("ascii")


def decode_address(text: str) -> AccountId:
    """Parse an address, or a 0x-prefixed 64-hex-digit account id."""
    text = text.strip()
    if text.startswith("0x"):
        try:
            raw = bytes.fromhex(text[2:])
        except ValueError:
            raise AddressError(f"{text!r} is not valid hex") from None
        if len(raw) != ACCOUNT_ID_LENGTH:
            raise AddressError(f"a hex account id is {ACCOUNT_ID_LENGTH} bytes, got {len(raw)}")
        return AccountId(raw)
    try:
        raw = base58.b58decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise AddressError(f"{text!r} is not base58") from None
    if len(raw) != 1 + ACCOUNT_ID_LENGTH + _CHECKSUM_LENGTH:
        raise AddressError(f"{text!r} has the wrong length for an address")
    payload, checksum = raw[:-_CHECKSUM_LENGTH], raw[-_CHECKSUM_LENGTH:]
    if payload[0] != NETWORK_BYTE:
        raise AddressError(f"{text!r} is an address of another network (byte {payload[0]})")
    if _checksum(payload) != checksum:
        raise AddressError(f"{text!r} has a bad checksum (mistyped?)")
    return AccountId(payload[1:])
