"""Request/response frames: lengths come first, limits are checked before reading, and a
stream that ends early is told apart from a complete frame."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from libp2p.network.stream.exceptions import StreamEOF

from p2p.errors import FrameTooLarge, MalformedFrame, StreamEnded, TruncatedFrame
from p2p.framing import (
    MAX_ERROR_BYTES,
    ResponseStatus,
    encode_request,
    encode_response,
    error_payload,
    read_request,
    read_response,
)


class FakeStream:
    """Hands out the given bytes at most `chunk` at a time, then raises StreamEOF as a
    libp2p stream does once the peer has closed (or was killed)."""

    def __init__(self, data: bytes, chunk: int = 7) -> None:
        self.data = data
        self.chunk = chunk
        self.reads = 0

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.data:
            raise StreamEOF()
        size = min(n or self.chunk, self.chunk)
        piece, self.data = self.data[:size], self.data[size:]
        self.reads += 1
        return piece

    async def write(self, data: bytes) -> None:
        raise AssertionError("framing reads only")


T = TypeVar("T")


def run(function: Callable[..., Awaitable[T]], *args: object) -> T:
    return trio.run(function, *args)


@given(st.binary(max_size=300), st.integers(1, 50))
def test_requests_round_trip_whatever_the_read_sizes(payload: bytes, chunk: int) -> None:
    assert run(read_request, FakeStream(encode_request(payload), chunk), 300) == payload


@given(st.sampled_from(ResponseStatus), st.binary(max_size=300), st.integers(1, 50))
def test_responses_round_trip(status: ResponseStatus, payload: bytes, chunk: int) -> None:
    if status is ResponseStatus.ERROR:
        payload = payload[:MAX_ERROR_BYTES]
    stream = FakeStream(encode_response(status, payload), chunk)
    assert run(read_response, stream, 300) == (status, payload)


def test_a_request_over_the_limit_is_refused_before_its_body_is_read() -> None:
    stream = FakeStream(encode_request(b"x" * 100), chunk=4)
    with pytest.raises(FrameTooLarge) as caught:
        run(read_request, stream, 99)
    assert str(caught.value) == "frame of 100 bytes exceeds the 99-byte limit"
    assert stream.reads == 1  # the header only


def test_a_response_cut_short_is_truncated_not_complete() -> None:
    cut = encode_response(ResponseStatus.OK, b"0123456789")[:-3]
    with pytest.raises(TruncatedFrame) as caught:
        run(read_response, FakeStream(cut), 100)
    assert str(caught.value) == "stream ended after 7 of 10 bytes (peer closed mid-frame)"


def test_an_empty_stream_is_truncated_at_the_header() -> None:
    with pytest.raises(TruncatedFrame) as caught:
        run(read_request, FakeStream(b""), 100)
    assert (caught.value.expected, caught.value.received) == (4, 0)


def test_frames_follow_each_other_and_an_end_between_them_is_not_a_truncation() -> None:
    async def main() -> None:
        requests = FakeStream(encode_request(b"one") + encode_request(b"two"), chunk=3)
        assert [await read_request(requests, 10), await read_request(requests, 10)] == [
            b"one",
            b"two",
        ]
        with pytest.raises(StreamEnded):
            await read_request(requests, 10)
        answers = FakeStream(encode_response(ResponseStatus.OK, b"a") + b"\x00\x00")
        assert await read_response(answers, 10) == (ResponseStatus.OK, b"a")
        with pytest.raises(TruncatedFrame) as caught:
            await read_response(answers, 10)  # ends inside the next header
        assert not isinstance(caught.value, StreamEnded)
        assert (caught.value.expected, caught.value.received) == (5, 2)

    trio.run(main)


def test_an_undefined_status_byte_is_malformed() -> None:
    with pytest.raises(MalformedFrame) as caught:
        run(read_response, FakeStream(b"\x07\x00\x00\x00\x00"), 100)
    assert str(caught.value) == "response status byte 7 is not defined"


def test_error_messages_are_bounded_whatever_the_response_limit() -> None:
    frame = encode_response(ResponseStatus.ERROR, b"e" * (MAX_ERROR_BYTES + 1))
    with pytest.raises(FrameTooLarge) as caught:
        run(read_response, FakeStream(frame), 10_000_000)
    assert str(caught.value) == f"frame of {MAX_ERROR_BYTES + 1} bytes exceeds the 1024-byte limit"


def test_error_payloads_are_cut_on_a_character_boundary() -> None:
    payload = error_payload("é" * 1000)  # 2 bytes each
    assert len(payload) == MAX_ERROR_BYTES
    assert payload.decode() == "é" * 512
    assert error_payload("€" * 400).decode() == "€" * 341  # 3 bytes each: 1023 of 1024
