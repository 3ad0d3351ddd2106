"""Which applications read which of their owner's configurations and secrets: an index kept as
applications are created, updated and deleted, so that deleting a configuration or secret in use
is refused with the name of an application that reads it, without reading every manifest."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from chain import codec
from chain.runtime.manifest import ApplicationSpec, references
from chain.state import Overlay, StateReader, storage_key

NAME = "references"
_USERS = storage_key(NAME, "users")
"""+ kind + owner + name: the owner's applications that read it, in name order."""
_OF = storage_key(NAME, "of")
"""+ owner + app: what the application reads, [[kind, name, [key, ...]], ...]: undone at its
next change, and the keys it names are kept by updates of what it reads."""


class Kind(enum.Enum):
    CONFIG = b"c"
    SECRET = b"s"


def _users_key(kind: Kind, owner: bytes, name: str) -> bytes:
    return _USERS + kind.value + owner + name.encode()


def users_of(state: StateReader, kind: Kind, owner: bytes, name: str) -> list[str]:
    """The owner's applications whose manifest reads this configuration or secret."""
    return _names(state.get(_users_key(kind, owner, name)))


def _names(data: bytes | None) -> list[str]:
    if data is None:
        return []
    item = codec.decode(data)
    if not isinstance(item, list) or not all(isinstance(x, bytes) for x in item):
        raise codec.CodecError("a reference index entry is a list of names")
    return [x.decode() for x in item if isinstance(x, bytes)]


def _put_names(state: Overlay, key: bytes, names: Iterable[str]) -> None:
    kept = sorted(set(names))
    if kept:
        state.put(key, codec.encode([n.encode() for n in kept]))
    else:
        state.delete(key)


Reads = dict[tuple[Kind, str], frozenset[str]]
"""(kind, name) -> the keys named one by one."""


def read(spec: ApplicationSpec) -> Reads:
    """What `spec` reads, by kind and name, with the keys it names."""
    found = references(spec)
    reads: Reads = {(Kind.CONFIG, n): keys for n, keys in found.configs.items()}
    reads.update({(Kind.SECRET, n): keys for n, keys in found.secrets.items()})
    return reads


def _of_key(owner: bytes, app: str) -> bytes:
    return _OF + owner + app.encode()


def reads_of(state: StateReader, owner: bytes, app: str) -> Reads:
    """What the application reads, as recorded when its manifest was last stored."""
    raw = state.get(_of_key(owner, app))
    if raw is None:
        return {}
    item = codec.decode(raw)
    if not isinstance(item, list):
        raise codec.CodecError("an application's references are a list")
    reads: Reads = {}
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 3:
            raise codec.CodecError("a reference is [kind, name, keys]")
        kind, name, keys = entry
        if not isinstance(kind, bytes) or not isinstance(name, bytes) or not isinstance(keys, list):
            raise codec.CodecError("a reference is [kind, name, keys]")
        reads[(Kind(kind), name.decode())] = frozenset(
            k.decode() for k in keys if isinstance(k, bytes)
        )
    return reads


def keys_named(state: StateReader, kind: Kind, owner: bytes, app: str, name: str) -> frozenset[str]:
    """The keys of that configuration or secret the application names one by one."""
    return reads_of(state, owner, app).get((kind, name), frozenset())


def dropped_key(
    state: StateReader, kind: Kind, owner: bytes, name: str, held: Iterable[str]
) -> tuple[str, str] | None:
    """(application, key) of the first application that names a key of that configuration or
    secret which `held` (its new keys) lacks; None when every named key stays."""
    kept = set(held)
    for app in users_of(state, kind, owner, name):
        absent = sorted(keys_named(state, kind, owner, app, name) - kept)
        if absent:
            return app, absent[0]
    return None


def follow(state: Overlay, owner: bytes, app: str, spec: ApplicationSpec | None) -> None:
    """Record that `app` of `owner` now reads what `spec` names (None: the app is deleted)."""
    before = set(reads_of(state, owner, app))
    reads = read(spec) if spec is not None else {}
    after = set(reads)
    for kind, name in before - after:
        key = _users_key(kind, owner, name)
        _put_names(state, key, [n for n in _names(state.get(key)) if n != app])
    for kind, name in after - before:
        key = _users_key(kind, owner, name)
        _put_names(state, key, [*_names(state.get(key)), app])
    if reads:
        ordered = sorted(reads.items(), key=lambda r: (r[0][0].value, r[0][1]))
        state.put(
            _of_key(owner, app),
            codec.encode(
                [
                    [k.value, n.encode(), [x.encode() for x in sorted(keys)]]
                    for (k, n), keys in ordered
                ]
            ),
        )
    else:
        state.delete(_of_key(owner, app))
