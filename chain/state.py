"""State access for the runtime: storage keys, a read view at a state root, and write overlays.

Raw storage keys are `module/item/<key bytes>`; the trie stores them under blake2_256(raw key),
so every trie key has the same length and no caller can shape the trie."""

from __future__ import annotations

import threading
from collections import OrderedDict
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


DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
"""What a default `ValueCache` may hold: some 110,000 accounts (an account's raw key, record and
the dictionary's own cost are about 290 bytes)."""

ENTRY_OVERHEAD = 200
"""Bytes a held value costs beyond its key's and its own: two bytes objects' headers and the
ordered dictionary's slot and link, rounded up."""

_MISS: Final = object()
"""What `ValueCache.lookup` answers for a key it does not hold at that root."""


class ValueCache:
    """The values of the state at one root, by raw key (None for an absent key): the best
    block's state, which the next block, the pool's dry runs and RPC read. A read through the
    trie walks five or six nodes and hashes the key; one here is a dictionary lookup.

    The store moves it along the chain: when a block on top of `root` becomes best, its changes
    are applied and `root` becomes the block's (`advance`); when the best block moves anywhere
    else it starts empty at the new root (`reset`). Since a state root names one state, a value
    held here is right for every reader at `root`, whoever filled it. Worker threads read it
    while the event loop moves it, so each operation holds a lock: a reader never sees one
    root's values under another's name, and a value read through the trie at a root that is no
    longer the cache's is not kept.

    Bounded by bytes, keys included, the least recently used going first: any RPC client names
    the keys it reads, and a key or value larger than `largest` is never held."""

    __slots__ = ("_capacity", "_largest", "_lock", "_size", "_values", "root")

    def __init__(self, capacity: int = DEFAULT_CACHE_BYTES, *, largest: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"a value cache holds at least one byte, not {capacity}")
        self._capacity = capacity
        self._largest = capacity // 16 if largest is None else largest
        self._lock = threading.Lock()
        self._values: OrderedDict[bytes, bytes | None] = OrderedDict()
        self._size = 0
        self.root: Hash32 | None = None

    def __len__(self) -> int:
        return len(self._values)

    @property
    def size(self) -> int:
        """What the held values cost, in bytes (see `ENTRY_OVERHEAD`)."""
        return self._size

    def lookup(self, root: Hash32, raw_key: bytes) -> bytes | object | None:
        """The value of `raw_key` at `root`, or `_MISS` if not held (or `root` is not ours)."""
        with self._lock:
            if root != self.root:
                return _MISS
            values = self._values
            value = values.get(raw_key, _MISS)
            if value is not _MISS:
                values.move_to_end(raw_key)
            return value

    def fill(self, root: Hash32, raw_key: bytes, value: bytes | None) -> None:
        """Keep a value read through the trie at `root`, if `root` is still the cache's."""
        with self._lock:
            if root == self.root:
                self._put(raw_key, value)
                self._evict()

    def advance(self, base: Hash32, root: Hash32, changes: Mapping[bytes, bytes | None]) -> None:
        """`root` is the state `base` becomes with `changes` (None or b"" deletes, as in the
        trie): follow it, keeping what is held when `base` is the cache's root, starting empty
        otherwise."""
        with self._lock:
            if base != self.root:
                self._values.clear()
                self._size = 0
            self.root = root
            for raw_key, value in changes.items():
                self._put(raw_key, value or None)
            self._evict()

    def reset(self, root: Hash32 | None) -> None:
        """Hold nothing, at `root` (None: at no root); what is held stays if `root` is ours."""
        with self._lock:
            if root != self.root:
                self._values.clear()
                self._size = 0
                self.root = root

    def _put(self, raw_key: bytes, value: bytes | None) -> None:
        values = self._values
        old = values.pop(raw_key, _MISS)
        if old is not _MISS:
            self._size -= _cost(raw_key, old)  # type: ignore[arg-type]
        cost = _cost(raw_key, value)
        if cost <= self._largest:  # else it is simply not held (nor is what it replaced)
            values[raw_key] = value
            self._size += cost

    def _evict(self) -> None:
        values = self._values
        while self._size > self._capacity:
            raw_key, value = values.popitem(last=False)
            self._size -= _cost(raw_key, value)


def _cost(raw_key: bytes, value: bytes | None) -> int:
    return len(raw_key) + (0 if value is None else len(value)) + ENTRY_OVERHEAD


class TrieState:
    """The state at one root, read-only; reads go through `values` when it is at this root."""

    __slots__ = ("_trie", "_values", "root")

    def __init__(
        self,
        nodes: NodeReader,
        root: Hash32,
        cache: NodeCache | None = None,
        values: ValueCache | None = None,
    ) -> None:
        self.root = root
        self._trie = Trie(nodes, root, cache=cache)
        self._values = values

    def get(self, raw_key: bytes) -> bytes | None:
        values = self._values
        if values is None:
            return self._trie.get(trie_key(raw_key))
        found = values.lookup(self.root, raw_key)
        if found is not _MISS:
            return found  # type: ignore[return-value]
        value = self._trie.get(trie_key(raw_key))
        values.fill(self.root, raw_key, value)
        return value

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
