"""Length-prefixed frames for request/response streams, with size limits checked before reading.

A request is `u32 length | payload`; a response is `u8 status | u32 length | payload`, status
0 for a response and 1 for an error message. The length comes first so that a peer killed
mid-stream, which shows up as a clean end of stream, is told apart from a complete answer.
Frames follow each other on a stream that carries several exchanges; a stream that ends where
a frame should begin raises `StreamEnded`, one that ends inside a frame `TruncatedFrame`.
"""

from __future__ import annotations

import enum
import struct
from typing import Protocol

from libp2p.network.stream.exceptions import StreamEOF

from p2p.errors import FrameTooLarge, MalformedFrame, StreamEnded, TruncatedFrame

_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">BI")

MAX_ERROR_BYTES = 1024
"""Error messages are for logs: a peer cannot make us read more than this for one."""


class ByteStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


class ResponseStatus(enum.IntEnum):
    OK = 0
    ERROR = 1


async def read_exactly(stream: ByteStream, n: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < n:
        try:
            chunk = await stream.read(n - len(buffer))
        except StreamEOF:
            raise TruncatedFrame(n, len(buffer)) from None
        if not chunk:
            raise TruncatedFrame(n, len(buffer))
        buffer += chunk
    return bytes(buffer)


async def _read_frame_start(stream: ByteStream, n: int) -> bytes:
    """The first `n` bytes of a frame; `StreamEnded` if the stream ends before any of them."""
    try:
        return await read_exactly(stream, n)
    except TruncatedFrame as error:
        if error.received == 0:
            raise StreamEnded(n) from None
        raise


def encode_request(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def encode_response(status: ResponseStatus, payload: bytes) -> bytes:
    return _HEADER.pack(status, len(payload)) + payload


async def read_request_length(stream: ByteStream) -> int:
    """The length prefix of the next request (a server may wait for it longer than for the
    rest of the request)."""
    (length,) = _LENGTH.unpack(await _read_frame_start(stream, _LENGTH.size))
    return int(length)


async def read_request_body(stream: ByteStream, length: int, limit: int) -> bytes:
    if length > limit:
        raise FrameTooLarge(length, limit)
    return await read_exactly(stream, length)


async def read_request(stream: ByteStream, limit: int) -> bytes:
    return await read_request_body(stream, await read_request_length(stream), limit)


async def read_response(stream: ByteStream, limit: int) -> tuple[ResponseStatus, bytes]:
    raw_status, length = _HEADER.unpack(await _read_frame_start(stream, _HEADER.size))
    try:
        status = ResponseStatus(raw_status)
    except ValueError:
        raise MalformedFrame(f"response status byte {raw_status} is not defined") from None
    bound = MAX_ERROR_BYTES if status is ResponseStatus.ERROR else limit
    if length > bound:
        raise FrameTooLarge(length, bound)
    return status, await read_exactly(stream, length)


def error_payload(message: str) -> bytes:
    """UTF-8, cut to `MAX_ERROR_BYTES` without splitting a character."""
    return message.encode()[:MAX_ERROR_BYTES].decode(errors="ignore").encode()
