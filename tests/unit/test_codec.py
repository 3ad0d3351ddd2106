"""`chain.codec`: its encoder gives `rlp.encode`'s bytes for every value, at every length form,
and its strict reader reads back exactly what it wrote."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import codec
from chain.blocks import Header, decode

LENGTHS = [0, 1, 2, 55, 56, 57, 255, 256, 257, 65_535, 65_536]

items = st.recursive(
    st.binary(max_size=80) | st.sampled_from([b"\x00", b"\x7f", b"\x80", b"\xff"]),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(items)
def test_encode_is_the_library_encoding_and_decodes_back(item: codec.RlpItem) -> None:
    encoded = codec.encode(item)
    assert encoded == rlp.encode(item)
    assert codec.decode(encoded) == item


def test_every_length_form_of_strings_and_lists() -> None:
    for n in LENGTHS:
        data = bytes([0xAB]) * n
        assert codec.encode_string(data) == rlp.encode(data)
        payload = rlp.encode(data)
        assert codec.encode_list_payload(payload) == rlp.encode([data])
        assert codec.list_prefix(len(payload)) + payload == rlp.encode([data])
        assert codec.decode(codec.encode([data])) == [data]


def nested(depth: int) -> bytes:
    """An empty list inside `depth` more lists."""
    encoded = b"\xc0"
    for _ in range(depth):
        encoded = codec.list_prefix(len(encoded)) + encoded
    return encoded


def test_lists_nested_deeper_than_the_limit_are_refused_not_a_recursion_error() -> None:
    assert codec.decode(nested(codec.MAX_DEPTH - 1)) is not None
    for depth in (codec.MAX_DEPTH, 5_000):
        with pytest.raises(codec.CodecError, match="nested more than"):
            codec.decode(nested(depth))


def test_typed_decoding_refuses_deep_nesting_as_malformed() -> None:
    with pytest.raises(rlp.DecodingError):
        decode(nested(5_000), Header)
