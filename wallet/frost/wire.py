"""The byte layout shared by FROST messages: fixed-size scalars, points and identifiers,
big-endian 16-bit counts, and a strict reader that refuses truncation and trailing bytes."""

from __future__ import annotations

from wallet.frost.errors import InvalidIdentifier, InvalidPoint, InvalidScalar, MalformedMessage
from wallet.frost.group import POINT_LENGTH, SCALAR_LENGTH, Point, Scalar
from wallet.frost.identifier import Identifier, decode_identifier

MAX_COUNT = 0xFFFF


def encode_count(count: int) -> bytes:
    if not 0 <= count <= MAX_COUNT:
        raise MalformedMessage(f"a count must be in 0..{MAX_COUNT}, got {count}")
    return count.to_bytes(2, "big")


class Reader:
    """Reads one message front to back; every error names the message type being read."""

    __slots__ = ("_data", "_offset", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._offset = 0
        self._what = what

    def take(self, length: int) -> bytes:
        end = self._offset + length
        if end > len(self._data):
            raise MalformedMessage(
                f"{self._what}: truncated, {length} bytes needed at offset {self._offset} "
                f"of {len(self._data)}"
            )
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def count(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def scalar(self, name: str) -> Scalar:
        try:
            return Scalar.decode(self.take(SCALAR_LENGTH))
        except InvalidScalar as error:
            raise InvalidScalar(f"{self._what}: {name}: {error}") from error

    def point(self, name: str) -> Point:
        try:
            return Point.decode(self.take(POINT_LENGTH))
        except InvalidPoint as error:
            raise InvalidPoint(f"{self._what}: {name}: {error}") from error

    def identifier(self, name: str) -> Identifier:
        raw = self.take(SCALAR_LENGTH)
        try:
            return decode_identifier(raw)
        except InvalidScalar as error:
            raise InvalidScalar(f"{self._what}: {name}: {error}") from error
        except InvalidIdentifier as error:
            raise InvalidIdentifier(f"{self._what}: {name}: {error}") from error

    def rest(self) -> bytes:
        chunk = self._data[self._offset :]
        self._offset = len(self._data)
        return chunk

    def finish(self) -> None:
        left = len(self._data) - self._offset
        if left:
            raise MalformedMessage(f"{self._what}: {left} trailing bytes")
