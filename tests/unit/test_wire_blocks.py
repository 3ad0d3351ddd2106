"""`chain.wire.decode_block` reads exactly what `rlp.decode(data, sedes=Block, strict=True)`
reads, and refuses exactly what it refuses, whatever the bytes; the header bytes it keeps as
the header's encoding (its hash, what the store writes) are what encoding the header gives."""

from __future__ import annotations

import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.blocks import Block, Header
from chain.primitives import blake2_256
from chain.wire import WireError, decode_block

hashes = st.binary(min_size=32, max_size=32)
headers = st.builds(
    Header,
    hashes,
    st.integers(min_value=0, max_value=2**64),
    hashes,
    hashes,
    st.integers(min_value=0, max_value=2**64),
    st.integers(min_value=0, max_value=2**64),
    hashes,
    st.binary(max_size=70),
)
blocks = st.builds(Block, headers, st.lists(st.binary(max_size=300), max_size=8).map(tuple))


def library(data: bytes) -> Block | None:
    try:
        block: Block = rlp.decode(data, sedes=Block, strict=True)
    except (rlp.DecodingError, rlp.DeserializationError):
        return None
    return block


def ours(data: bytes) -> Block | None:
    try:
        block = decode_block(data)
    except WireError:
        return None
    fresh = rlp.encode(block.header, sedes=Header)  # with a sedes, the library's cache is not read
    assert rlp.encode(block.header) == fresh
    assert block.hash == blake2_256(fresh)
    return block


@settings(max_examples=300, deadline=None)
@given(blocks)
def test_a_block_reads_back_as_the_library_reads_it(block: Block) -> None:
    data = rlp.encode(block)
    decoded = ours(data)
    assert decoded == library(data) == block
    assert decoded is not None and decoded.hash == block.hash


@settings(max_examples=500, deadline=None)
@given(blocks, st.integers(min_value=0), st.integers(min_value=0, max_value=255), st.booleans())
def test_damaged_bytes_are_refused_or_read_as_the_library_does(
    block: Block, where: int, value: int, cut: bool
) -> None:
    data = bytearray(rlp.encode(block))
    position = where % len(data)
    damaged = (
        bytes(data[:position])
        if cut
        else bytes(data[:position] + bytes([value]) + data[position + 1 :])
    )
    assert ours(damaged) == library(damaged)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_or_read_as_the_library_does(data: bytes) -> None:
    assert ours(data) == library(data)
