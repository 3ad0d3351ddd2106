"""The published JSON Schema of a manifest and its findings in the project's own words."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from chain.runtime.manifest.errors import FieldPath, shown_value


def _load_schema() -> dict[str, Any]:
    text = resources.files("chain.runtime").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


SCHEMA: dict[str, Any] = _load_schema()
"""The published JSON Schema (draft 2020-12) of a manifest."""
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


_TYPE_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def schema_issues(data: object) -> list[tuple[FieldPath, str]]:
    """The schema's findings in our own words, so that messages do not depend on the version
    of the validator (they can end up in chain events)."""
    # One finding per value, the most basic: a value of the wrong type also breaks the rules
    # about its contents, and a name that is too long also breaks its pattern.
    first: dict[FieldPath, Any] = {}
    for error in _VALIDATOR.iter_errors(data):
        path: FieldPath = tuple(error.absolute_path)
        rank = _RANK.get(error.validator, len(_RANK))
        if error.validator in ("required", "additionalProperties"):
            path = (*path, "", error.validator)  # about the fields below, not the value
        if path not in first or rank < _RANK.get(first[path].validator, len(_RANK)):
            first[path] = error
    issues: list[tuple[FieldPath, str]] = []
    for error in first.values():
        path = tuple(error.absolute_path)
        kind = error.validator
        expected = error.validator_value
        instance = error.instance
        if kind == "required":
            issues.extend(
                ((*path, name), "is required") for name in expected if name not in instance
            )
        elif kind == "additionalProperties":
            known = error.schema.get("properties", {})
            issues.extend(
                ((*path, key), "is not a known field") for key in instance if key not in known
            )
        else:
            issues.append((path, _schema_message(kind, expected, instance, error.schema)))
    return issues


_RANK = {
    kind: rank
    for rank, kind in enumerate(
        ("type", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "const",
         "enum", "pattern", "oneOf")
    )
}  # fmt: skip


def _schema_message(kind: str, expected: Any, instance: Any, schema: dict[str, Any]) -> str:
    if kind == "type":
        names = [expected] if isinstance(expected, str) else expected
        return "must be " + " or ".join(_TYPE_NAMES[name] for name in names)
    if kind == "const":
        return f"must be {expected}"
    if kind == "enum":
        return f"{shown_value(instance)} is not one of {', '.join(expected)}"
    if kind == "pattern":
        return f"{shown_value(instance)} is not {schema['description']}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "maxLength":
        return f"must be at most {expected} characters"
    if kind == "minimum":
        return f"{shown_value(instance)} is less than {expected}"
    if kind == "maximum":
        return f"{shown_value(instance)} is more than {expected}"
    if kind == "minItems":
        return f"needs at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "maxItems":
        return f"has more than {expected} items"
    if kind == "oneOf":
        names = [branch["required"][0] for branch in expected]
        return f"needs exactly one of {', '.join(names)}"
    raise ValueError(f"the manifest schema uses {kind!r}, which has no message")
