"""A strict, fast RLP reader for the hot path of transaction decoding.

`rlp` (the library) is the reference and is used everywhere else; this reader exists because
transaction import decodes thousands of transactions per second. It accepts canonical RLP only
(the shortest length forms, no leading zeros), so every transaction has exactly one encoding
and one hash."""

from __future__ import annotations

from chain.errors import ChainError

RlpItem = bytes | list["RlpItem"]


class CodecError(ChainError):
    """Bytes that are not canonical RLP of the expected shape."""


def _length(data: bytes, start: int, size: int) -> int:
    if start + size > len(data):
        raise CodecError("truncated length")
    if data[start] == 0:
        raise CodecError("length with a leading zero")
    length = int.from_bytes(data[start : start + size], "big")
    if length < 56:
        raise CodecError("long length form for a short item")
    return length


def _item(data: bytes, pos: int) -> tuple[RlpItem, int]:
    """Decode the item at `pos`; returns it and the position after it."""
    if pos >= len(data):
        raise CodecError("truncated item")
    first = data[pos]
    if first < 0x80:
        return data[pos : pos + 1], pos + 1
    if first < 0xB8:
        end = pos + 1 + first - 0x80
        if end > len(data):
            raise CodecError("truncated string")
        if first == 0x81 and data[pos + 1] < 0x80:
            raise CodecError("single byte below 0x80 encoded as a string")
        return data[pos + 1 : end], end
    if first < 0xC0:
        size = first - 0xB7
        length = _length(data, pos + 1, size)
        start = pos + 1 + size
        end = start + length
        if end > len(data):
            raise CodecError("truncated string")
        return data[start:end], end
    if first < 0xF8:
        start = pos + 1
        end = start + first - 0xC0
    else:
        size = first - 0xF7
        length = _length(data, pos + 1, size)
        start = pos + 1 + size
        end = start + length
    if end > len(data):
        raise CodecError("truncated list")
    items: list[RlpItem] = []
    while start < end:
        item, start = _item(data, start)
        items.append(item)
    if start != end:
        raise CodecError("list items overrun the list")
    return items, end


def decode(data: bytes) -> RlpItem:
    """Decode one RLP item that spans all of `data`."""
    item, end = _item(data, 0)
    if end != len(data):
        raise CodecError(f"{len(data) - end} trailing bytes")
    return item


def list_payload_start(data: bytes) -> int:
    """Where the payload of the list encoded in `data` begins."""
    first = data[0]
    return 1 if first < 0xF8 else 1 + first - 0xF7


def list_prefix(length: int) -> bytes:
    if length < 56:
        return bytes([0xC0 + length])
    size = (length.bit_length() + 7) // 8
    return bytes([0xF7 + size]) + length.to_bytes(size, "big")


def uint(raw: RlpItem, name: str) -> int:
    """A canonical big-endian unsigned integer (no leading zeros; zero is the empty string)."""
    if not isinstance(raw, bytes):
        raise CodecError(f"{name} must be an integer, got a list")
    if raw[:1] == b"\x00":
        raise CodecError(f"{name} has a leading zero byte")
    return int.from_bytes(raw, "big")


def fixed(raw: RlpItem, length: int, name: str) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != length:
        raise CodecError(f"{name} must be {length} bytes")
    return raw


def _string_prefix(length: int) -> bytes:
    if length < 56:
        return bytes([0x80 + length])
    size = (length.bit_length() + 7) // 8
    return bytes([0xB7 + size]) + length.to_bytes(size, "big")


def encode(item: RlpItem) -> bytes:
    """Canonical RLP of nested lists of byte strings (what `rlp.encode` gives for them)."""
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _string_prefix(len(item)) + item
    payload = b"".join([encode(child) for child in item])
    return list_prefix(len(payload)) + payload


def encode_uint(value: int) -> bytes:
    """The big-endian bytes of a non-negative integer as RLP carries it (zero is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")
