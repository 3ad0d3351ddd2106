"""A manifest from the text of a file, YAML or JSON: the form users write. The chain reads only
JSON (`decode_manifest`) and stores the canonical form, so YAML is read here, where files are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs unless types-PyYAML is installed

from chain.runtime.manifest import (
    DEFAULT_ZONE,
    MAX_DEPTH,
    FieldPath,
    Manifest,
    ManifestError,
    bounded_bytes,
    decode_manifest,
    shown_value,
    validate_manifest,
)


def parse_manifest(text: str | bytes, *, zone: str = DEFAULT_ZONE) -> Manifest:
    """A manifest from YAML or JSON text (JSON when it starts with '{'), checked as the chain
    checks it."""
    raw = bounded_bytes(text)
    if raw.lstrip().startswith(b"{"):
        return decode_manifest(raw, zone=zone)
    return validate_manifest(_load_yaml(raw), zone=zone)


def _load_yaml(raw: bytes) -> object:
    node = _read_yaml(lambda: yaml.compose(raw, Loader=yaml.SafeLoader))
    _check_yaml_node(node, (), set())
    return _read_yaml(lambda: yaml.safe_load(raw))


def _read_yaml(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ManifestError([((), f"is not valid YAML: {exc.problem}{where}")]) from None
    except yaml.YAMLError as exc:
        shown = " ".join(str(exc).split())
        raise ManifestError([((), f"is not valid YAML: {shown}")]) from None
    except ValueError as exc:  # an integer of thousands of digits
        raise ManifestError([((), f"is not valid YAML: {exc}")]) from None
    except RecursionError:
        raise ManifestError([((), f"is nested more than {MAX_DEPTH} levels deep")]) from None


def _check_yaml_node(node: Any, path: FieldPath, seen: set[int]) -> None:
    """Refuse aliases (a few lines of them expand to gigabytes) and repeated keys, which the
    YAML loader would otherwise resolve silently to the last one."""
    if node is None:
        return
    if id(node) in seen:
        raise ManifestError([(path, "uses a YAML alias; write the value out")])
    seen.add(id(node))
    if len(path) > MAX_DEPTH:
        raise ManifestError([(path, f"is nested more than {MAX_DEPTH} levels deep")])
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
            if key in keys:
                raise ManifestError([(path, f"repeats the key {shown_value(key)}")])
            keys.add(key)
            _check_yaml_node(key_node, path, seen)
            _check_yaml_node(value_node, (*path, key), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_yaml_node(item, (*path, index), seen)
