"""Stored events: `Event.encoded` gives exactly the generic encoder's bytes for `Event.encode`
(the stored form, which every node and every older database share), and they decode back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import codec
from chain.runtime.framework import AccountRef, Event

values = (
    st.integers(min_value=0, max_value=2**256)
    | st.text(max_size=80)
    | st.binary(max_size=80)
    | st.binary(min_size=32, max_size=32).map(AccountRef)
)
events = st.builds(
    Event,
    st.text(min_size=1, max_size=60),
    st.text(min_size=1, max_size=60),
    st.lists(st.tuples(st.text(max_size=60), values), max_size=6).map(tuple),
    st.none() | st.integers(min_value=0, max_value=2**32 - 2),
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_encoded_is_the_generic_encoding_and_decodes_back(event: Event) -> None:
    encoded = event.encoded()
    assert encoded == codec.encode(event.encode())
    decoded = codec.decode(encoded)
    assert isinstance(decoded, list)
    back = Event.decode(decoded)
    assert type(back) is Event and back == event


def test_a_boolean_value_is_refused_as_before() -> None:
    event = Event("balances", "Flag", (("on", True),), 0)
    with pytest.raises(TypeError, match="event values are int, str, bytes or AccountRef"):
        event.encoded()
    with pytest.raises(TypeError, match="event values are int, str, bytes or AccountRef"):
        event.encode()
