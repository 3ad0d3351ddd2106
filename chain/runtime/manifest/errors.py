"""How a manifest reports what is wrong with it: every issue with the path of the field it is
about, in one error."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal

from chain.errors import ChainError

FieldPath = tuple[str | int, ...]
"""Where in a manifest document an issue is: keys and list indexes from the top."""


class ManifestError(ChainError, ValueError):
    """A manifest that cannot be accepted, with every issue found as (path, message), the path
    written like `spec.containers[0].resources.limits.cpu`."""

    def __init__(self, issues: Iterable[tuple[FieldPath, str]]) -> None:
        unique = sorted(set(issues), key=lambda issue: (_path_key(issue[0]), issue[1]))
        self.issues: tuple[tuple[str, str], ...] = tuple(
            (format_path(path), message) for path, message in unique
        )
        shown = "; ".join(f"{path}: {message}" for path, message in self.issues)
        super().__init__(f"invalid manifest: {shown}")


def format_path(path: FieldPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if len(part) <= 64 else part[:64] + "..."
            text += f".{shown}" if text else shown
    return text or "manifest"


def _path_key(path: FieldPath) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


def shown_value(value: object) -> str:
    """A bounded rendering of a user's value for an error message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return "a number of more than 40 digits"
    if isinstance(value, bool | int | Decimal) or value is None:
        text = str(value) if isinstance(value, Decimal) else json.dumps(value)
        return text if len(text) <= 40 else text[:40] + "..."
    return "a list" if isinstance(value, list) else "an object"
