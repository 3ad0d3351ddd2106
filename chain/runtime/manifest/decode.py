"""A manifest from JSON bytes, the only form the chain reads: bounded in size and depth, exact
decimals instead of floats, repeated keys refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from chain.runtime.manifest.application import Manifest
from chain.runtime.manifest.canonical import MAX_MANIFEST_BYTES
from chain.runtime.manifest.errors import ManifestError, shown_value
from chain.runtime.manifest.types import DEFAULT_ZONE
from chain.runtime.manifest.validate import MAX_DEPTH, validate_manifest


def decode_manifest(data: bytes, *, zone: str = DEFAULT_ZONE) -> Manifest:
    """A manifest from JSON bytes: what the runtime accepts in a transaction or reads back."""
    return validate_manifest(_load_json(bounded_bytes(data)), zone=zone)


def bounded_bytes(text: str | bytes) -> bytes:
    """`text` as UTF-8 bytes, refused when over MAX_MANIFEST_BYTES."""
    if isinstance(text, str):
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError([((), f"is more than {MAX_MANIFEST_BYTES} bytes")])
        try:
            text = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError([((), "is not valid Unicode text")]) from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError([((), f"is {len(text)} bytes, more than {MAX_MANIFEST_BYTES}")])
    return text


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _load_json(raw: bytes) -> object:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError([((), "is not UTF-8 text")]) from None
    try:
        # Decimals, never floats: "0.5" cpu stays exact and the runtime stays float-free.
        data = json.loads(
            text, parse_float=Decimal, parse_constant=_refuse_constant, object_pairs_hook=pairs
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ManifestError([((), f"is not valid JSON: {exc.msg} at {where}")]) from None
    except ValueError as exc:  # a NaN or Infinity, or an integer of thousands of digits
        raise ManifestError([((), f"is not valid JSON: {exc}")]) from None
    except RecursionError:
        raise ManifestError([((), f"is nested more than {MAX_DEPTH} levels deep")]) from None
    if duplicates:
        raise ManifestError(
            [((), f"repeats the key {shown_value(key)} in one object") for key in duplicates]
        )
    return data
