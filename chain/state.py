"""State access for the runtime: storage keys, a read view at a state root, and write overlays.

Raw storage keys are `module/item/<key bytes>`; the trie stores them under blake2_256(raw key),
so every trie key has the same length and no caller can shape the trie."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from chain.primitives import Hash32, blake2_256
from chain.trie import NodeCache, NodeReader, Trie, TrieCommit


def storage_key(module: str, item: str, key: bytes = b"") -> bytes:
    return f"{module}/{item}/".encode() + key


def trie_key(raw_key: bytes) -> Hash32:
    return blake2_256(raw_key)


class StateReader(Protocol):
    def get(self, raw_key: bytes) -> bytes | None: ...


class TrieState:
    """The state at one root, read-only."""

    __slots__ = ("_trie", "root")

    def __init__(self, nodes: NodeReader, root: Hash32, cache: NodeCache | None = None) -> None:
        self.root = root
        self._trie = Trie(nodes, root, cache=cache)

    def get(self, raw_key: bytes) -> bytes | None:
        return self._trie.get(trie_key(raw_key))

    def commit(self, changes: Mapping[bytes, bytes | None]) -> TrieCommit:
        """The root and new nodes after applying raw-key changes (None deletes)."""
        return self._trie.update({trie_key(k): v for k, v in changes.items()})


_DELETED = None
_ABSENT: Final = object()
"""What `Overlay.get` finds for a key it holds no write for (a deletion is held as None)."""


class Overlay:
    """Pending writes on top of a reader. A child overlay is a transaction: `merge()` it into its
    parent to keep its writes, or drop it to discard them."""

    __slots__ = ("_parent", "changes")

    def __init__(self, parent: StateReader) -> None:
        self._parent = parent
        self.changes: dict[bytes, bytes | None] = {}

    def get(self, raw_key: bytes) -> bytes | None:
        # Most reads miss the overlay (a transfer misses twice for the receiver): a sentinel
        # costs a third of what raising and catching KeyError does.
        value = self.changes.get(raw_key, _ABSENT)
        if value is _ABSENT:
            return self._parent.get(raw_key)
        return value  # type: ignore[return-value]

    def put(self, raw_key: bytes, value: bytes) -> None:
        self.changes[raw_key] = value

    def delete(self, raw_key: bytes) -> None:
        self.changes[raw_key] = _DELETED

    def child(self) -> Overlay:
        return Overlay(self)

    def merge_into(self, parent: Overlay) -> None:
        parent.changes.update(self.changes)

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:
        return iter(self.changes.items())
