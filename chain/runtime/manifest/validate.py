"""From decoded data to a checked manifest: JSON values only, then the schema, then every rule the
schema cannot express, then the bound on the canonical form."""

from __future__ import annotations

import re
from decimal import Decimal

from chain.runtime.manifest.application import Manifest
from chain.runtime.manifest.build import Builder
from chain.runtime.manifest.canonical import MAX_MANIFEST_BYTES
from chain.runtime.manifest.errors import FieldPath, ManifestError
from chain.runtime.manifest.schema import schema_issues
from chain.runtime.manifest.types import DEFAULT_ZONE

MAX_DEPTH = 32
"""How deeply a manifest document may nest objects and lists."""


def validate_manifest(data: object, *, zone: str = DEFAULT_ZONE) -> Manifest:
    """Check decoded JSON (or YAML) data against the schema, then against every rule the schema
    cannot express, and build the typed manifest. Raises one ManifestError listing every issue
    (the semantic rules are checked once the document has the schema's shape)."""
    issues: list[tuple[FieldPath, str]] = []
    plain = _plain(data, (), issues)
    if issues:
        raise ManifestError(issues)
    issues.extend(schema_issues(plain))
    if issues:
        raise ManifestError(issues)
    builder = Builder(zone)
    manifest = builder.manifest(plain)
    if builder.issues:
        raise ManifestError(builder.issues)
    size = len(manifest.canonical_json())
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            [((), f"has a canonical form of {size} bytes, more than {MAX_MANIFEST_BYTES}")]
        )
    return manifest


_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain(value: object, path: FieldPath, issues: list[tuple[FieldPath, str]]) -> object:
    """The data as JSON values only (objects with string keys, lists, strings, integers,
    decimals, booleans, null), within the depth bound. YAML floats become exact decimals."""
    if len(path) > MAX_DEPTH:
        issues.append((path, f"is nested more than {MAX_DEPTH} levels deep"))
        return None
    if isinstance(value, dict):
        result: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str) or _SURROGATE.search(key):
                issues.append(((*path, ascii(key)), "is not a text key"))
                continue
            result[key] = _plain(item, (*path, key), issues)
        return result
    if isinstance(value, list | tuple):
        return [_plain(item, (*path, index), issues) for index, item in enumerate(value)]
    if isinstance(value, str):
        if _SURROGATE.search(value):
            issues.append((path, "is not valid Unicode text"))
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            issues.append((path, "is not a finite number"))
            return None
        # repr is the shortest text that reads back as the same float: "0.5", not 0.5000001.
        return Decimal(repr(value))
    if value is None or isinstance(value, bool | int | Decimal):
        return value
    issues.append((path, f"is a {type(value).__name__}, not a JSON value (quote it)"))
    return None
