"""What configurations and secrets share: names and keys as manifests write them, and the index
of one owner's names, so that listing them reads one entry."""

from __future__ import annotations

import re

from chain import codec
from chain.errors import ChainError
from chain.state import Overlay, StateReader

MAX_NAME_BYTES = 63
MAX_KEYS = 64
MAX_KEY_BYTES = 253
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


class BadName(ChainError, ValueError):
    """A name or key that a manifest could not reference."""


def check_name(raw: bytes) -> str:
    """A DNS label, as `secretName` and `configMap.name` are."""
    text = raw.decode("ascii", errors="replace")
    if not _NAME.fullmatch(text):
        raise BadName(
            f"{text[:70]!r} is not a DNS label (lower-case letters, digits and '-', starting "
            "with a letter and not ending with '-', at most 63 characters)"
        )
    return text


def check_key(raw: bytes) -> str:
    text = raw.decode("ascii", errors="replace")
    if not _KEY.fullmatch(text):
        raise BadName(f"key {text[:70]!r} is not 1 to 253 letters, digits, '-', '_' and '.'")
    return text


def names(state: StateReader, index: bytes, owner: bytes) -> list[str]:
    data = state.get(index + owner)
    if data is None:
        return []
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError("a name index is a list")
    return [x.decode() for x in item if isinstance(x, bytes)]


def add_name(state: Overlay, index: bytes, owner: bytes, name: str) -> None:
    kept = sorted({*names(state, index, owner), name})
    state.put(index + owner, codec.encode([n.encode() for n in kept]))


def remove_name(state: Overlay, index: bytes, owner: bytes, name: str) -> None:
    kept = [n for n in names(state, index, owner) if n != name]
    if kept:
        state.put(index + owner, codec.encode([n.encode() for n in kept]))
    else:
        state.delete(index + owner)
