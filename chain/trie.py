"""The state trie: a hexary Merkle-Patricia trie, batch-updated, whose node encodings and root
hashes are byte-for-byte those of Ethereum (and of `trie.HexaryTrie`), so either can read the
other's nodes. Owns the node codec, the decoded-node cache and the trie itself."""

from __future__ import annotations

import re
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, Protocol, TypeAlias, final

from Crypto.Hash import keccak

from chain.codec import encode_list_payload, encode_string
from chain.errors import ChainError, DatabaseError
from chain.primitives import Hash32


def _keccak_wrapped(data: bytes) -> Hash32:
    return Hash32(keccak.new(data=data, digest_bits=256).digest())


def _keccak_function() -> Callable[[bytes], Hash32]:
    """keccak-256 by a C extension (`safe-pysha3`, the backend `eth-hash` names for it), else by
    pycryptodome's own C core with one reusable state per thread.

    A block's trie update hashes every node it rewrites (some 60 for 10 transfers, 17,000 for
    5,000), and `keccak.new(...).digest()` spends two thirds of its 10 µs building Python
    objects around three C calls. The same three calls on a state kept per thread take about
    2-3 µs, and the extension's one call 0.9-2 µs (a leaf, a full branch). pycryptodome's
    wrapper is the last fallback; tests compare them all, and the trie's roots against
    `trie.HexaryTrie`'s."""
    return _keccak_extension() or _keccak_cffi()


def _keccak_extension() -> Callable[[bytes], Hash32] | None:
    """keccak-256 by `safe-pysha3`, or None without it."""
    try:
        from sha3 import keccak_256  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the extension is a dependency
        return None

    def keccak256(data: bytes) -> Hash32:
        return Hash32(keccak_256(data).digest())

    return keccak256


def _keccak_cffi() -> Callable[[bytes], Hash32]:
    """keccak-256 by pycryptodome's C core through cffi, one reusable state per thread; its
    wrapper when that core is not reached through cffi."""
    try:
        from Crypto.Hash.keccak import _raw_keccak_lib as lib  # type: ignore[attr-defined]
        from Crypto.Util import _raw_api
    except ImportError:  # pragma: no cover - another pycryptodome layout
        return _keccak_wrapped
    if getattr(_raw_api, "backend", None) != "cffi":  # pragma: no cover
        return _keccak_wrapped
    ffi = _raw_api.ffi
    local = threading.local()

    def state() -> tuple[Any, Any]:
        pointer = ffi.new("void **")
        if lib.keccak_init(pointer, 64, 24) != 0:  # capacity 2 x 32 bytes, 24 rounds
            raise ChainError("keccak-256 state could not be made")
        made = (ffi.gc(pointer[0], lib.keccak_destroy), ffi.new("uint8_t[32]"))
        local.state = made
        return made

    def keccak256(data: bytes) -> Hash32:
        current, out = getattr(local, "state", None) or state()
        lib.keccak_reset(current)
        lib.keccak_absorb(current, data, len(data))
        lib.keccak_digest(current, out, 32, 0x01)  # 0x01: Keccak's padding, not SHA-3's
        return Hash32(ffi.buffer(out)[:])

    return keccak256


_keccak: Final = _keccak_function()


BLANK_ROOT: Final[Hash32] = _keccak(b"\x80")
"""The root of the empty trie: keccak-256 of the RLP of the empty string."""

DEFAULT_CACHE_NODES: Final = 32_768
"""Decoded nodes kept by a default `NodeCache`. On an account trie a node averages some 400 bytes
(a full branch about 1.3 KB), so about 13 MB."""


class MissingTrieNode(ChainError):
    """A node that the trie needs is not in the node store (nor in the cache)."""

    def __init__(self, node_hash: Hash32) -> None:
        super().__init__(f"trie node 0x{node_hash.hex()} is not in the node store")
        self.node_hash = node_hash


class CorruptTrieNode(DatabaseError):
    """A stored trie node that is not a valid leaf, extension or branch encoding."""

    def __init__(self, node_hash: Hash32 | None, reason: str) -> None:
        where = "embedded trie node" if node_hash is None else f"trie node 0x{node_hash.hex()}"
        super().__init__(f"{where} is corrupt: {reason}")
        self.node_hash = node_hash
        self.reason = reason


class NodeReader(Protocol):
    """Where committed nodes are read from: node hash -> encoded node (a plyvel DB, a dict)."""

    def get(self, key: bytes, /) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class TrieCommit:
    """What one `Trie.update` made: the new root and the nodes the caller must persist."""

    root: Hash32
    """The root hash after the changes; `BLANK_ROOT` once every key is deleted."""
    nodes: dict[Hash32, bytes]
    """New nodes by hash, each reachable from the new root. Nodes embedded in their parent (RLP
    shorter than 32 bytes) are not here; the root node always is, whatever its size, because the
    root is always referenced by hash."""


# --- Nodes in memory ---------------------------------------------------------------------------
#
# A path is a `str` of lowercase hex digits, one per nibble: `key.hex()` makes one, slicing,
# prefix tests and sorting then run at C speed, and `bytes.fromhex` packs it back.
#
# A child reference (`ref`) is kept exactly as it appears in the parent's RLP: b"\xa0" + hash for
# a hashed child, the child's own RLP (< 32 bytes, a list) for an embedded one, and `_EMPTY` for
# none. Re-encoding a parent is then a join, and the cache is keyed by the same bytes.

_EMPTY: Final = b"\x80"
"""The empty child reference (RLP of b""); compared with ==, never `is`."""

_HASH_REF_PREFIX: Final = b"\xa0"
_HASH_REF_LENGTH: Final = 33
_EMBED_LIMIT: Final = 32
"""Nodes whose RLP is shorter than this are embedded in their parent instead of hashed."""

_HEX: Final = "0123456789abcdef"
_NIBBLE: Final[dict[str, int]] = {c: i for i, c in enumerate(_HEX)}


@final
@dataclass(frozen=True, slots=True, eq=False)
class _Leaf:
    """The end of one key, holding its value."""

    path: str
    """The rest of the key below the parent, possibly empty."""
    value: bytes

    def encode(self) -> bytes:
        flagged = ("3" + self.path) if len(self.path) & 1 else ("20" + self.path)
        return encode_list_payload(
            encode_string(bytes.fromhex(flagged)) + encode_string(self.value)
        )


@final
@dataclass(frozen=True, slots=True, eq=False)
class _Extension:
    """A run of nibbles shared by every key below, above the branch where they part."""

    path: str
    """The shared part of every key below, never empty."""
    child: bytes
    """A reference to a branch."""

    def encode(self) -> bytes:
        flagged = ("1" + self.path) if len(self.path) & 1 else ("00" + self.path)
        return encode_list_payload(encode_string(bytes.fromhex(flagged)) + self.child)


@final
@dataclass(frozen=True, slots=True, eq=False)
class _Branch:
    """Where keys part: one child per next nibble."""

    children: tuple[bytes, ...]
    """Sixteen references, one per next nibble."""
    value: bytes
    """The value of the key that ends here, b"" if none (only with keys of different lengths)."""

    def encode(self) -> bytes:
        value = self.value
        return encode_list_payload(
            b"".join(self.children) + (encode_string(value) if value else _EMPTY)
        )


_Node: TypeAlias = _Leaf | _Extension | _Branch

# (key as hex path, new value); b"" stands for deletion once `Trie.update` has checked its input.
_Change: TypeAlias = tuple[str, bytes]
_change_path = itemgetter(0)


# --- RLP for exactly the shapes a node can take -------------------------------------------------
# Nodes are encoded with `chain.codec`'s header encoder; this reader slices a node into its raw
# items, since a child's reference is its encoded bytes (see the `chain.codec` docstring).


def _string_bounds(enc: bytes, pos: int) -> tuple[int, int] | None:
    """Payload start and end of the RLP string at `pos`; None if a list starts there."""
    head = enc[pos]
    if head < 0x80:
        return pos, pos + 1
    if head < 0xB8:
        return pos + 1, pos + 1 + head - 0x80
    if head < 0xC0:
        start = pos + 1 + head - 0xB7
        return start, start + int.from_bytes(enc[pos + 1 : start], "big")
    return None


def _item_starts(enc: bytes, node_hash: Hash32 | None) -> list[int]:
    """Where each item of the RLP list `enc` starts, then where the list ends."""
    head = enc[0]
    if head < 0xC0:
        raise CorruptTrieNode(node_hash, "not an RLP list")
    if head < 0xF8:
        pos, end = 1, 1 + head - 0xC0
    else:
        pos = 1 + head - 0xF7
        end = pos + int.from_bytes(enc[1:pos], "big")
    if end != len(enc):
        raise CorruptTrieNode(node_hash, "the RLP list does not end where the node does")
    starts = []
    while pos < end:
        starts.append(pos)
        bounds = _string_bounds(enc, pos)
        if bounds is not None:
            pos = bounds[1]
            continue
        head = enc[pos]
        if head < 0xF8:
            pos += 1 + head - 0xC0
        else:
            size = head - 0xF7
            pos += 1 + size + int.from_bytes(enc[pos + 1 : pos + 1 + size], "big")
    if pos != end:
        raise CorruptTrieNode(node_hash, "an RLP item runs past the end of the node")
    starts.append(end)
    return starts


def _string_payload(item: bytes, node_hash: Hash32 | None) -> bytes:
    """The payload of `item`, one whole RLP item, which must be a string."""
    bounds = _string_bounds(item, 0)
    if bounds is None:
        raise CorruptTrieNode(node_hash, "a list where a string belongs")
    return item[bounds[0] : bounds[1]]


def _is_ref(item: bytes) -> bool:
    if len(item) == _HASH_REF_LENGTH:
        return item[0] == 0xA0
    return item == _EMPTY or (item[0] >= 0xC0 and len(item) < _EMBED_LIMIT)


def _decode_node(enc: bytes, node_hash: Hash32 | None) -> _Node:
    """Decode one node; `node_hash` is None for a node embedded in its parent."""
    branch = _decode_branch(enc)
    if branch is not None:
        return branch
    # Leaves, extensions, and whatever the fast path refused: item by item, every check named.
    try:
        starts = _item_starts(enc, node_hash)
    except IndexError:
        raise CorruptTrieNode(node_hash, "the RLP ends early") from None
    items = [enc[starts[i] : starts[i + 1]] for i in range(len(starts) - 1)]
    if len(items) == 17:
        for item in items[:16]:
            if not _is_ref(item):
                raise CorruptTrieNode(node_hash, f"child 0x{item.hex()} is neither hash nor node")
        return _Branch(tuple(items[:16]), _string_payload(items[16], node_hash))
    if len(items) != 2:
        raise CorruptTrieNode(node_hash, f"a list of {len(items)} items")
    flagged = _string_payload(items[0], node_hash).hex()
    flag = flagged[:1]
    if flag not in ("0", "1", "2", "3") or (flag in ("0", "2") and flagged[1] != "0"):
        raise CorruptTrieNode(node_hash, f"a path with hex-prefix 0x{flagged[:2]}")
    path = flagged[1:] if flag in ("1", "3") else flagged[2:]
    if flag in ("2", "3"):
        value = _string_payload(items[1], node_hash)
        if not value:
            raise CorruptTrieNode(node_hash, "a leaf without a value")
        return _Leaf(path, value)
    if not path:
        raise CorruptTrieNode(node_hash, "an extension with an empty path")
    if not _is_ref(items[1]) or items[1] == _EMPTY:
        raise CorruptTrieNode(node_hash, f"extension child 0x{items[1].hex()} is not a node")
    return _Extension(path, items[1])


# Almost every branch of a trie with 32-byte keys and account-sized values has only hashed or
# empty children; one regular expression splits those in C, at twice the speed of a Python loop.
_HASHED_CHILDREN = re.compile(rb"(\x80|\xa0[\x00-\xff]{32})" * 16)


def _decode_branch(enc: bytes) -> _Branch | None:
    """A well-formed branch whose children are all hashed or empty, or None for anything else: a
    leaf, an extension, a branch with embedded children, or a corrupt node, for `_decode_node`."""
    head = enc[0] if enc else 0
    if 0xC0 <= head < 0xF8:
        pos, length = 1, head - 0xC0
    elif 0xF8 <= head < 0xFB:
        pos = head - 0xF6
        length = int.from_bytes(enc[1:pos], "big")
    else:
        return None
    end = len(enc)
    if pos + length != end:
        return None
    match = _HASHED_CHILDREN.match(enc, pos)
    if match is None:
        return None
    pos = match.end()
    bounds = _string_bounds(enc, pos) if pos < end else None
    if bounds is None or bounds[1] != end:
        return None
    return _Branch(match.groups(), enc[bounds[0] : end])


# --- Cache -------------------------------------------------------------------------------------


class NodeCache:
    """A bounded LRU of decoded nodes, shared by every `Trie` over one node store.

    Keyed by node reference: b"\\xa0" + hash, or the RLP itself for a node embedded in its parent.
    Content-addressed, so it never goes stale; nodes made by `Trie.update` enter it at once, before
    the caller persists them. The node's threads share it (authoring and import run in worker
    threads while RPC reads on the event loop): each operation on it is one OrderedDict call,
    atomic under the GIL, and an entry evicted by another thread between a lookup and its move
    to the back, or between an insert and the eviction it causes, is simply gone."""

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int = DEFAULT_CACHE_NODES) -> None:
        if capacity < 1:
            raise ValueError(f"a node cache holds at least one node, not {capacity}")
        self._capacity = capacity
        self._entries: OrderedDict[bytes, _Node] = OrderedDict()

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def _put(self, ref: bytes, node: _Node) -> None:
        entries = self._entries
        entries[ref] = node
        if len(entries) > self._capacity:
            try:
                entries.popitem(last=False)
            except KeyError:  # emptied meanwhile by another thread's clear()
                pass


def _load(reader: NodeReader, cache: NodeCache, ref: bytes) -> _Node:
    """Decode the node behind `ref` (a cache miss) and cache it."""
    if len(ref) == _HASH_REF_LENGTH:
        node_hash = Hash32(ref[1:])
        enc = reader.get(node_hash)
        if enc is None:
            raise MissingTrieNode(node_hash)
        node = _decode_node(enc, node_hash)
    else:
        node = _decode_node(ref, None)
    cache._put(ref, node)
    return node


# --- The trie ----------------------------------------------------------------------------------


class Trie:
    """A read-only view of the trie at one root; `update` returns the next root and its nodes.

    Keys are bytes of any length (the chain uses 32-byte hashed keys); values are non-empty bytes.
    As in `trie.HexaryTrie`, setting a key to b"" deletes it."""

    __slots__ = ("_cache", "_reader", "_root", "_root_ref")

    def __init__(
        self, nodes: NodeReader, root: Hash32 = BLANK_ROOT, *, cache: NodeCache | None = None
    ) -> None:
        if not isinstance(root, bytes) or len(root) != 32:
            raise ValueError(f"a trie root is 32 bytes, not {root!r}")
        self._reader = nodes
        self._root = root
        self._root_ref: bytes | None = None if root == BLANK_ROOT else _HASH_REF_PREFIX + root
        self._cache = NodeCache() if cache is None else cache

    @property
    def root(self) -> Hash32:
        return self._root

    def __repr__(self) -> str:
        return f"Trie(root=0x{self._root.hex()})"

    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None. Raises `MissingTrieNode`."""
        ref = self._root_ref
        if ref is None:
            return None
        path = key.hex()
        depth = 0
        entries = self._cache._entries
        while True:
            node = entries.get(ref)
            if node is None:
                node = _load(self._reader, self._cache, ref)
            else:
                try:
                    entries.move_to_end(ref)
                except KeyError:  # evicted by another thread since the lookup: we hold the node
                    pass
            if type(node) is _Branch:
                if depth == len(path):
                    return node.value or None
                ref = node.children[_NIBBLE[path[depth]]]
                if ref == _EMPTY:
                    return None
                depth += 1
            elif type(node) is _Leaf:
                return node.value if path[depth:] == node.path else None
            else:
                if not path.startswith(node.path, depth):
                    return None
                depth += len(node.path)
                ref = node.child

    def get_proof(self, key: bytes) -> list[bytes]:
        """The encoded hashed nodes from the root down the path of `key`, whether it is present or
        not (embedded nodes are inside their parents). Empty for the empty trie."""
        proof: list[bytes] = []
        ref = self._root_ref
        path = key.hex()
        depth = 0
        while ref is not None:
            node = self._node(ref)
            if len(ref) == _HASH_REF_LENGTH:
                proof.append(node.encode())
            ref = None
            if isinstance(node, _Branch):
                if depth < len(path):
                    child = node.children[_NIBBLE[path[depth]]]
                    ref = None if child == _EMPTY else child
                    depth += 1
            elif isinstance(node, _Extension) and path.startswith(node.path, depth):
                depth += len(node.path)
                ref = node.child
        return proof

    def update(self, changes: Mapping[bytes, bytes | None]) -> TrieCommit:
        """Apply every change at once (None or b"" deletes) and return the new root with the
        nodes to persist. `self` is unchanged: open `Trie(nodes, commit.root)` after persisting.

        Each touched node is decoded at most once and encoded and hashed once: the keys are
        sorted, then one descent visits each shared node with all the changes below it."""
        batch: list[_Change] = []
        for key, value in changes.items():
            if not isinstance(key, bytes):
                raise TypeError(f"trie keys are bytes, not {type(key).__name__}")
            if value is None:
                value = b""
            elif not isinstance(value, bytes):
                raise TypeError(f"trie values are bytes or None, not {type(value).__name__}")
            batch.append((key.hex(), value))
        if not batch:
            return TrieCommit(self._root, {})
        batch.sort()
        builder = _BatchUpdate(self._reader, self._cache)
        old = None if self._root_ref is None else self._node(self._root_ref)
        new = builder.apply(old, 0, batch, 0, len(batch))
        if new is old:
            return TrieCommit(self._root, {})
        if new is None:
            return TrieCommit(BLANK_ROOT, {})
        return TrieCommit(builder.commit_root(new), builder.nodes)

    def _node(self, ref: bytes) -> _Node:
        node = self._cache._entries.get(ref)
        return _load(self._reader, self._cache, ref) if node is None else node


class _BatchUpdate:
    """One `Trie.update`: rebuilds the touched part of the trie from sorted changes.

    Every method takes the changes `batch[lo:hi]` (sorted, non-empty, all sharing the first
    `depth` nibbles) and the node at that depth (None for an empty subtrie), and returns the
    new node: the very same object when nothing below changed, so its parent keeps its reference
    instead of encoding and hashing again. New nodes stay unencoded until their parent is final,
    so a node is hashed only if it ends up in the new trie."""

    __slots__ = ("_cache", "_capacity", "_entries", "_reader", "nodes")

    def __init__(self, reader: NodeReader, cache: NodeCache) -> None:
        self._reader = reader
        self._cache = cache
        self._entries = cache._entries
        self._capacity = cache._capacity
        self.nodes: dict[Hash32, bytes] = {}

    def commit(self, node: _Node) -> bytes:
        """Encode `node`, record it if hashed, and return its reference for the parent."""
        enc = node.encode()
        if len(enc) < _EMBED_LIMIT:
            ref = enc
        else:
            node_hash = _keccak(enc)
            self.nodes[node_hash] = enc
            ref = _HASH_REF_PREFIX + node_hash
        # NodeCache._put, inlined: this runs once per new node.
        entries = self._entries
        entries[ref] = node
        if len(entries) > self._capacity:
            try:
                entries.popitem(last=False)
            except KeyError:  # emptied meanwhile by another thread's clear()
                pass
        return ref

    def commit_root(self, node: _Node) -> Hash32:
        # The root is hashed and stored even when short, as HexaryTrie does.
        enc = node.encode()
        root = _keccak(enc)
        self.nodes[root] = enc
        self._cache._put(_HASH_REF_PREFIX + root, node)
        return root

    def resolve(self, ref: bytes) -> _Node | None:
        if ref == _EMPTY:
            return None
        node = self._entries.get(ref)
        return _load(self._reader, self._cache, ref) if node is None else node

    def apply(
        self, node: _Node | None, depth: int, batch: list[_Change], lo: int, hi: int
    ) -> _Node | None:
        if node is None:
            return self.build(depth, batch, lo, hi)
        if isinstance(node, _Branch):
            kids: list[bytes | _Node] = list(node.children)
            changed, value = self.apply_to_children(kids, node.value, depth, batch, lo, hi)
            return self.finish_branch(kids, value) if changed else node
        if isinstance(node, _Leaf):
            return self.apply_to_leaf(node, depth, batch, lo, hi)
        return self.apply_to_extension(node, depth, batch, lo, hi)

    def build(self, depth: int, batch: list[_Change], lo: int, hi: int) -> _Node | None:
        """A new subtrie holding the non-deleting changes of `batch[lo:hi]`."""
        while lo < hi and not batch[lo][1]:
            lo += 1
        while hi > lo and not batch[hi - 1][1]:
            hi -= 1
        if lo == hi:
            return None
        first_path, first_value = batch[lo]
        if hi - lo == 1:
            return _Leaf(first_path[depth:], first_value)
        # Sorted paths: the prefix shared by the first and the last is shared by all between.
        last_path = batch[hi - 1][0]
        fork = depth
        limit = min(len(first_path), len(last_path))
        while fork < limit and first_path[fork] == last_path[fork]:
            fork += 1
        children = [_EMPTY] * 16
        value = b""
        i = lo
        if len(first_path) == fork:
            value = first_value
            i += 1
        while i < hi:
            nibble = batch[i][0][fork]
            j = i + 1
            while j < hi and batch[j][0][fork] == nibble:
                j += 1
            child = self.build(fork + 1, batch, i, j)
            if child is not None:
                children[_NIBBLE[nibble]] = self.commit(child)
            i = j
        # The first and last changes are kept and differ at `fork`, so the branch has two
        # entries or more and is final.
        branch = _Branch(tuple(children), value)
        if fork == depth:
            return branch
        return _Extension(first_path[depth:fork], self.commit(branch))

    def apply_to_children(
        self,
        kids: list[bytes | _Node],
        value: bytes,
        depth: int,
        batch: list[_Change],
        lo: int,
        hi: int,
    ) -> tuple[bool, bytes]:
        """Apply `batch[lo:hi]` to a branch at `depth` whose children are `kids` (references or
        new nodes not yet committed), in place; return whether anything changed and the value."""
        changed = False
        i = lo
        if len(batch[i][0]) == depth:
            # Only the first change can end here: its path is a prefix of all the others.
            if batch[i][1] != value:
                value = batch[i][1]
                changed = True
            i += 1
        while i < hi:
            nibble = batch[i][0][depth]
            j = i + 1
            while j < hi and batch[j][0][depth] == nibble:
                j += 1
            slot = _NIBBLE[nibble]
            kid = kids[slot]
            old = self.resolve(kid) if isinstance(kid, bytes) else kid
            new = self.apply(old, depth + 1, batch, i, j)
            if new is not old:
                kids[slot] = _EMPTY if new is None else new
                changed = True
            i = j
        return changed, value

    def finish_branch(self, kids: list[bytes | _Node], value: bytes) -> _Node | None:
        """The canonical node for a branch's new contents: a branch with two entries or more,
        else what its single entry collapses into."""
        empty = kids.count(_EMPTY)
        if empty < 15 or (empty == 15 and value):
            commit = self.commit
            return _Branch(
                tuple([kid if isinstance(kid, bytes) else commit(kid) for kid in kids]), value
            )
        if empty == 16:
            return _Leaf("", value) if value else None
        slot = next(slot for slot, kid in enumerate(kids) if kid != _EMPTY)
        kid = kids[slot]
        if isinstance(kid, bytes):
            return self.with_prefix(_HEX[slot], self.resolve(kid), kid)
        return self.with_prefix(_HEX[slot], kid, None)

    def with_prefix(self, prefix: str, node: _Node | None, ref: bytes | None) -> _Node | None:
        """`node` moved `prefix` deeper: paths of leaves and extensions grow, a branch gets an
        extension above it (`ref` is its reference if it already has one)."""
        if node is None or not prefix:
            return node
        if isinstance(node, _Leaf):
            return _Leaf(prefix + node.path, node.value)
        if isinstance(node, _Extension):
            return _Extension(prefix + node.path, node.child)
        return _Extension(prefix, self.commit(node) if ref is None else ref)

    def apply_to_leaf(
        self, leaf: _Leaf, depth: int, batch: list[_Change], lo: int, hi: int
    ) -> _Node | None:
        if hi - lo == 1:
            path, value = batch[lo]
            if len(path) - depth == len(leaf.path) and path.endswith(leaf.path):
                if not value:
                    return None
                return leaf if value == leaf.value else _Leaf(leaf.path, value)
            if not value:
                return leaf
        leaf_path = batch[lo][0][:depth] + leaf.path
        at = bisect_left(batch, leaf_path, lo, hi, key=_change_path)
        if at < hi and batch[at][0] == leaf_path:
            # The batch sets or deletes the leaf's own key: the batch alone says what remains.
            return self.build(depth, batch, lo, hi)
        if not any(batch[i][1] for i in range(lo, hi)):
            return leaf
        merged = batch[lo:at]
        merged.append((leaf_path, leaf.value))
        merged.extend(batch[at:hi])
        return self.build(depth, merged, 0, len(merged))

    def apply_to_extension(
        self, ext: _Extension, depth: int, batch: list[_Change], lo: int, hi: int
    ) -> _Node | None:
        path = ext.path
        # Changes under the extension are contiguous in the sorted batch.
        inner_lo = lo
        while inner_lo < hi and not batch[inner_lo][0].startswith(path, depth):
            inner_lo += 1
        inner_hi = inner_lo
        while inner_hi < hi and batch[inner_hi][0].startswith(path, depth):
            inner_hi += 1
        outside = (*range(lo, inner_lo), *range(inner_hi, hi))
        if not any(batch[i][1] for i in outside):
            # Deleting keys that are not there changes nothing.
            if inner_lo == inner_hi:
                return ext
            child = self.resolve(ext.child)
            new = self.apply(child, depth + len(path), batch, inner_lo, inner_hi)
            return ext if new is child else self.with_prefix(path, new, None)
        # Some key leaves the path: split it where the first such key leaves, into a branch
        # whose slot for the path's next nibble holds the rest of the extension.
        keep = min(
            _shared_length(batch[lo][0], depth, path), _shared_length(batch[hi - 1][0], depth, path)
        )
        rest = path[keep + 1 :]
        kids: list[bytes | _Node] = [_EMPTY] * 16
        kids[_NIBBLE[path[keep]]] = _Extension(rest, ext.child) if rest else ext.child
        _, value = self.apply_to_children(kids, b"", depth + keep, batch, lo, hi)
        return self.with_prefix(path[:keep], self.finish_branch(kids, value), None)


def _shared_length(path: str, depth: int, other: str) -> int:
    """How many nibbles of `path` from `depth` on agree with the start of `other`."""
    n = 0
    limit = min(len(path) - depth, len(other))
    while n < limit and path[depth + n] == other[n]:
        n += 1
    return n
