"""Canonical RLP of nested lists of byte strings: a strict, fast reader and the one encoder of
RLP headers.

Three ways to RLP, each where it fits (all give the same bytes for the same value):

- The `rlp` library, with typed sedes (`rlp.Serializable`), for blocks and headers
  (`chain.blocks`, `chain.store`): the block hash is blake2-256 of `rlp.encode(header)`, and its
  sedes check every field's type on decoding.
- This module for the hot path and for untyped records: `decode_signed_transaction` reads
  transactions with `decode` (thousands per second at import, where `rlp.decode` with sedes is
  several times slower), and runtime storage records, events and store indexes are written
  with `encode` and read with `decode`. It accepts canonical RLP only (the shortest length
  forms, no leading zeros), so every transaction has exactly one encoding and one hash.
- The state trie (`chain.trie`) builds its nodes with `encode_string` and `encode_list_payload`
  from here, over children that are already encoded (a 32-byte reference or an embedded node),
  so it never builds nested lists. It keeps its own reader, which slices a node into its raw
  items (a child's reference is its encoded bytes) and names the corruption it meets as a
  `CorruptTrieNode`; `decode` would hand back decoded lists that would have to be re-encoded."""

from __future__ import annotations

from typing import Final

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


MAX_DEPTH: Final = 32
"""Lists nested deeper than this are refused: every record of the chain nests a few levels,
and the reader recurses once per level, so a few kilobytes of nested lists from a peer would
otherwise end in a RecursionError instead of a CodecError."""


def _item(data: bytes, pos: int, depth: int = 0) -> tuple[RlpItem, int]:
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
    if depth >= MAX_DEPTH:
        raise CodecError(f"lists nested more than {MAX_DEPTH} deep")
    items: list[RlpItem] = []
    while start < end:
        # Short strings, nearly every item of a transaction or a record, are read here rather
        # than by a recursive call: the same checks in the same order as above, at half the cost.
        first = data[start]
        if first < 0x80:
            items.append(data[start : start + 1])
            start += 1
        elif first < 0xB8:
            stop = start + 1 + first - 0x80
            if stop > len(data):
                raise CodecError("truncated string")
            if first == 0x81 and data[start + 1] < 0x80:
                raise CodecError("single byte below 0x80 encoded as a string")
            items.append(data[start + 1 : stop])
            start = stop
        else:
            item, start = _item(data, start, depth + 1)
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


def list_end(data: bytes, pos: int) -> int:
    """Where the list encoded at `pos` of `data` ends, for data that `decode` has read."""
    first = data[pos]
    if first < 0xF8:
        return pos + 1 + first - 0xC0
    size = first - 0xF7
    return pos + 1 + size + int.from_bytes(data[pos + 1 : pos + 1 + size], "big")


_SHORT_STRING_HEADERS: Final = tuple(bytes((0x80 + n,)) for n in range(56))
_SHORT_LIST_HEADERS: Final = tuple(bytes((0xC0 + n,)) for n in range(56))


def _long_header(base: int, length: int) -> bytes:
    if length < 256:
        return bytes((base + 1, length))
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((base + len(size),)) + size


def list_prefix(length: int) -> bytes:
    """The header of a list whose items' encodings are `length` bytes together."""
    if length < 56:
        return _SHORT_LIST_HEADERS[length]
    return _long_header(0xF7, length)


def encode_list_payload(payload: bytes) -> bytes:
    """The list whose items, already encoded, are `payload` one after the other."""
    n = len(payload)
    if n < 56:
        return _SHORT_LIST_HEADERS[n] + payload
    return _long_header(0xF7, n) + payload


def encode_string(data: bytes) -> bytes:
    """RLP of one byte string: a single byte below 0x80 is itself, else a header and the bytes."""
    n = len(data)
    if n == 1 and data[0] < 0x80:
        return data
    if n < 56:
        return _SHORT_STRING_HEADERS[n] + data
    return _long_header(0xB7, n) + data


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


def encode(item: RlpItem) -> bytes:
    """Canonical RLP of nested lists of byte strings (what `rlp.encode` gives for them)."""
    if isinstance(item, bytes):
        return encode_string(item)
    return encode_list_payload(b"".join([encode(child) for child in item]))


def encode_uint(value: int) -> bytes:
    """The big-endian bytes of a non-negative integer as RLP carries it (zero is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")
