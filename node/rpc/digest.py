"""A header's digest as Substrate shows it in JSON: `{"logs": [...]}`, each log the hex of one
SCALE-encoded `DigestItem`. Our headers keep the slot and the seal as fields of their own; the
digest restates them as the Aura items a Substrate client looks for (see docs/rpc.md)."""

from __future__ import annotations

from chain.blocks import Header

AURA_ENGINE_ID = b"aura"
"""The consensus engine id of Aura: slot authoring, author = authorities[slot % count]."""

PRE_RUNTIME = 6
"""`DigestItem::PreRuntime(engine id, bytes)`: what the author says before execution (the slot)."""
SEAL = 5
"""`DigestItem::Seal(engine id, bytes)`: the author's signature, always the last item."""

_SINGLE_BYTE_LIMIT = 1 << 6
_TWO_BYTE_LIMIT = 1 << 14
_FOUR_BYTE_LIMIT = 1 << 30
_BIG_LIMIT = 1 << (67 * 8)
"""SCALE's compact integers: one, two or four bytes with the mode in the low two bits, or a
byte giving the length (4 to 67 bytes) of a little-endian integer."""


def compact(value: int) -> bytes:
    """`value` in SCALE's compact encoding (the length prefix of a `Vec<u8>`)."""
    if value < 0 or value >= _BIG_LIMIT:
        raise ValueError(f"{value} has no SCALE compact encoding")
    if value < _SINGLE_BYTE_LIMIT:
        return bytes([value << 2])
    if value < _TWO_BYTE_LIMIT:
        return ((value << 2) | 0b01).to_bytes(2, "little")
    if value < _FOUR_BYTE_LIMIT:
        return ((value << 2) | 0b10).to_bytes(4, "little")
    size = max(4, (value.bit_length() + 7) // 8)
    return bytes([((size - 4) << 2) | 0b11]) + value.to_bytes(size, "little")


def digest_item(kind: int, engine: bytes, payload: bytes) -> bytes:
    """A `PreRuntime`, `Consensus` or `Seal` item: its variant index, the 4-byte engine id and
    the payload as a length-prefixed byte vector."""
    if len(engine) != 4:
        raise ValueError("a consensus engine id is 4 bytes")
    return bytes([kind]) + engine + compact(len(payload)) + payload


def digest_logs(header: Header) -> list[bytes]:
    """The digest items of `header`: none for the genesis block (Substrate's has none either);
    otherwise the slot (a little-endian u64, as Aura's pre-runtime item holds it), then the
    seal if the header has one (its 64-byte Ed25519 signature)."""
    if header.number == 0:
        return []
    logs = [digest_item(PRE_RUNTIME, AURA_ENGINE_ID, int(header.slot).to_bytes(8, "little"))]
    if header.seal:
        logs.append(digest_item(SEAL, AURA_ENGINE_ID, bytes(header.seal)))
    return logs


def digest_json(header: Header) -> dict[str, list[str]]:
    return {"logs": ["0x" + log.hex() for log in digest_logs(header)]}
