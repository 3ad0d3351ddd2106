"""The state trie against `trie.HexaryTrie`, the readable reference: same roots, same stored nodes,
each reads the other's; plus its errors, proofs and cache."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import rlp
from Crypto.Hash import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from chain.primitives import Hash32
from chain.trie import (
    BLANK_ROOT,
    CorruptTrieNode,
    MissingTrieNode,
    NodeCache,
    Trie,
    TrieCommit,
    _keccak,
    _keccak_cffi,
    _keccak_extension,
    _keccak_wrapped,
)

Changes = dict[bytes, bytes | None]


def keccak256(data: bytes) -> bytes:
    return keccak.new(data=data, digest_bits=256).digest()


class Pair:
    """Our trie and the reference trie over separate stores, fed the same batches."""

    def __init__(self, cache: NodeCache | None = None) -> None:
        self.store: dict[bytes, bytes] = {}
        self.cache = NodeCache() if cache is None else cache
        self.root = BLANK_ROOT
        self.reference_store: dict[bytes, bytes] = {}
        self.reference = HexaryTrie(self.reference_store)
        self.model: dict[bytes, bytes] = {}

    @property
    def trie(self) -> Trie:
        return Trie(self.store, self.root, cache=self.cache)

    def apply(self, changes: Changes) -> TrieCommit:
        commit = self.trie.update(changes)
        self.store.update(commit.nodes)
        self.root = commit.root
        with self.reference.squash_changes() as scratch:
            for key, value in changes.items():
                if value:
                    scratch[key] = value
                else:
                    del scratch[key]
        for key, value in changes.items():
            if value:
                self.model[key] = value
            else:
                self.model.pop(key, None)
        return commit


def assert_agrees(pair: Pair, keys: set[bytes], *, reference_reads_absent: bool) -> None:
    assert pair.root == pair.reference.root_hash
    # Same node encodings: both stores hold exactly the same nodes.
    assert pair.store == pair.reference_store
    cold = Trie(pair.store, pair.root, cache=NodeCache())
    reference_read_by_ours = Trie(pair.reference_store, pair.root, cache=NodeCache())
    ours_read_by_reference = HexaryTrie(pair.store, pair.root)
    for key in keys:
        expected = pair.model.get(key)
        assert pair.trie.get(key) == expected
        assert cold.get(key) == expected
        assert reference_read_by_ours.get(key) == expected
        if expected is not None or reference_reads_absent:
            # HexaryTrie.get fails on a key that ends inside an extension, so with keys of
            # different lengths it is asked only about keys that are present.
            assert ours_read_by_reference.get(key) == (expected or b"")


# Few distinct bytes, so keys share long prefixes: extensions, splits and merges at every depth.
fixed_keys = st.lists(
    st.sampled_from([0x00, 0x01, 0x10, 0x11, 0xFF]), min_size=32, max_size=32
).map(bytes)
short_keys = st.lists(st.sampled_from([0x00, 0x01, 0x10, 0xF1]), max_size=4).map(bytes)
# Short values make nodes shorter than 32 bytes, embedded in their parent; b"" deletes.
values = st.one_of(st.none(), st.binary(max_size=3), st.binary(min_size=20, max_size=40))


def batches_of(keys: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[Changes]]:
    return st.lists(st.dictionaries(keys, values, max_size=12), min_size=1, max_size=6)


SLOW_OK = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW_OK
@given(batches=batches_of(fixed_keys), capacity=st.sampled_from([1, 7, 10_000]))
def test_fixed_length_keys_match_hexary_trie_after_every_batch(
    batches: list[Changes], capacity: int
) -> None:
    pair = Pair(NodeCache(capacity))
    seen: set[bytes] = set()
    for changes in batches:
        pair.apply(changes)
        seen.update(changes)
        assert_agrees(pair, seen, reference_reads_absent=True)
    commit = pair.apply(dict.fromkeys(seen))
    assert commit == TrieCommit(BLANK_ROOT, {})
    assert pair.reference.root_hash == BLANK_ROOT
    assert_agrees(pair, seen, reference_reads_absent=True)


@SLOW_OK
@given(batches=batches_of(short_keys), capacity=st.sampled_from([1, 7, 10_000]))
def test_variable_length_keys_match_hexary_trie_after_every_batch(
    batches: list[Changes], capacity: int
) -> None:
    pair = Pair(NodeCache(capacity))
    seen: set[bytes] = set()
    for changes in batches:
        pair.apply(changes)
        seen.update(changes)
        assert_agrees(pair, seen, reference_reads_absent=False)
    pair.apply(dict.fromkeys(seen))
    assert pair.root == pair.reference.root_hash == BLANK_ROOT


@SLOW_OK
@given(batches=batches_of(fixed_keys))
def test_commit_nodes_are_hashed_reachable_and_include_the_root(batches: list[Changes]) -> None:
    pair = Pair()
    for changes in batches:
        commit = pair.apply(changes)
        for node_hash, encoding in commit.nodes.items():
            assert keccak256(encoding) == node_hash
        if commit.nodes:
            assert commit.root in commit.nodes
        assert set(commit.nodes) <= reachable(pair.store, commit.root)


def reachable(store: dict[bytes, bytes], root: bytes) -> set[bytes]:
    """Hashes of the stored nodes that the trie at `root` references, walked with plain rlp."""
    found: set[bytes] = set()

    def walk(node: list[object]) -> None:
        if len(node) == 17:
            children = node[:16]
        elif isinstance(node[0], bytes) and node[0][0] >> 4 in (0, 1):  # an extension
            children = node[1:]
        else:
            children = []
        for child in children:
            if isinstance(child, list):
                walk(child)
            elif child:
                assert isinstance(child, bytes)
                found.add(child)
                walk(rlp.decode(store[child]))

    if root != BLANK_ROOT:
        found.add(root)
        walk(rlp.decode(store[root]))
    return found


@pytest.mark.parametrize(
    ("items", "root"),
    [
        (
            {b"doe": b"reindeer", b"dog": b"puppy", b"dogglesworth": b"cat"},
            "8aad789dff2f538bca5d8ea56e8abe10f4c7ba3a5dea95fea4cd6e7c3a1168d3",
        ),
        (
            {b"do": b"verb", b"horse": b"stallion", b"doge": b"coin", b"dog": b"puppy"},
            "5991bb8c6514148a29db676a14ac506cd2cd5775ace63c30a4fe457715e9ac84",
        ),
    ],
)
def test_ethereum_trie_vectors(items: Changes, root: str) -> None:
    assert Trie({}).update(items).root.hex() == root


def test_blank_root_is_keccak_of_rlp_empty_string() -> None:
    assert BLANK_ROOT == keccak256(rlp.encode(b"")) == HexaryTrie({}).root_hash
    assert Trie({}).root == BLANK_ROOT


def test_a_trie_of_one_short_leaf_stores_its_root_by_hash() -> None:
    commit = Trie({}).update({b"k": b"v"})
    (encoding,) = commit.nodes.values()
    assert len(encoding) < 32
    assert commit.nodes == {keccak256(encoding): encoding}
    assert commit.root == keccak256(encoding)


def test_get_on_absent_keys() -> None:
    store: dict[bytes, bytes] = {}
    assert Trie(store).get(b"anything") is None
    commit = Trie(store).update({b"dog": b"puppy", b"doge": b"coin", b"horse": b"stallion"})
    store.update(commit.nodes)
    trie = Trie(store, commit.root)
    assert trie.get(b"do") is None  # ends inside an extension
    assert trie.get(b"") is None  # ends at the root branch, which has no value
    assert trie.get(b"dogs") is None  # runs past a branch with no such child
    assert trie.get(b"dogecoin") is None  # runs past a leaf
    assert trie.get(b"cat") is None  # leaves at the first nibble
    assert trie.get(b"doge") == b"coin"


def test_empty_value_deletes_like_hexary_trie() -> None:
    store: dict[bytes, bytes] = {}
    first = Trie(store).update({b"a": b"1", b"b": b"2"})
    store.update(first.nodes)
    by_empty = Trie(store, first.root).update({b"a": b""})
    by_none = Trie(store, first.root).update({b"a": None})
    assert by_empty == by_none
    reference = HexaryTrie({})
    reference[b"a"], reference[b"b"] = b"1", b"2"
    reference[b"a"] = b""
    assert by_empty.root == reference.root_hash


def test_update_returns_data_and_leaves_the_trie_as_it_was() -> None:
    store: dict[bytes, bytes] = {}
    first = Trie(store).update({b"a": b"1"})
    store.update(first.nodes)
    trie = Trie(store, first.root)
    second = trie.update({b"a": b"2", b"b": b"3"})
    assert trie.root == first.root
    assert trie.get(b"a") == b"1"
    assert trie.get(b"b") is None
    assert second.root != first.root


def test_changes_that_change_nothing_make_no_nodes() -> None:
    store: dict[bytes, bytes] = {}
    keys = {bytes([i]) * 32: bytes([i]) * 40 for i in range(40)}
    # Keys under one long extension, and absent keys that leave it midway.
    keys.update({b"\xab\xcd\xef" + bytes([i]) * 29: b"e" * 40 for i in range(3)})
    first = Trie(store).update(keys)
    store.update(first.nodes)
    trie = Trie(store, first.root)
    absent: Changes = {bytes([i, 0xEE]) * 16: None for i in range(40)}
    absent.update({b"\xab\xce" + bytes(30): None, b"\xab": None, b"\xab\xcd\xef": b""})
    assert trie.update(absent) == TrieCommit(first.root, {})
    assert trie.update(keys) == TrieCommit(first.root, {})
    assert trie.update({}) == TrieCommit(first.root, {})
    assert Trie(store).update({b"x": None}) == TrieCommit(BLANK_ROOT, {})


def test_missing_root_node_is_named() -> None:
    missing = Hash32(b"\x12" * 32)
    with pytest.raises(MissingTrieNode) as error:
        Trie({}, missing).get(b"key")
    assert str(error.value) == f"trie node 0x{'12' * 32} is not in the node store"
    assert error.value.node_hash == missing
    with pytest.raises(MissingTrieNode):
        Trie({}, missing).update({b"key": b"value"})


def test_missing_inner_node_is_named_on_get_and_update() -> None:
    store: dict[bytes, bytes] = {}
    keys = [keccak256(bytes([i])) for i in range(64)]
    commit = Trie(store).update({key: b"v" * 40 for key in keys})
    store.update(commit.nodes)
    victim = keys[5]
    proof = Trie(store, commit.root).get_proof(victim)
    lost = keccak256(proof[-1])
    del store[lost]
    trie = Trie(store, commit.root, cache=NodeCache())
    message = f"trie node 0x{lost.hex()} is not in the node store"
    with pytest.raises(MissingTrieNode) as error:
        trie.get(victim)
    assert str(error.value) == message
    with pytest.raises(MissingTrieNode) as error:
        trie.update({victim: b"w" * 40})
    assert str(error.value) == message
    assert trie.get(keys[6]) == b"v" * 40


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        (b"", "the RLP ends early"),
        (b"\x82ab", "not an RLP list"),
        (b"\xc3\x01\x02", "the RLP list does not end where the node does"),
        (b"\xc3\x01\x02\x03", "a list of 3 items"),
        (b"\xc2\x82\x01", "an RLP item runs past the end of the node"),
        (b"\xc3\x41\x81\x02", "a path with hex-prefix 0x41"),
        (b"\xc2\x00\x80", "an extension with an empty path"),
        (b"\xc3\x11\x81\xff", "extension child 0x81ff is not a node"),
        (b"\xc4\x20\xc2\x01\x02", "a list where a string belongs"),
        (b"\xc2\x20\x80", "a leaf without a value"),
        (rlp.encode([b"\x01\x02"] + [b""] * 16), "child 0x820102 is neither hash nor node"),
        (rlp.encode([b""] * 16 + [[b"x"]]), "a list where a string belongs"),
    ],
)
def test_corrupt_nodes_are_rejected_with_the_reason(encoding: bytes, reason: str) -> None:
    root = Hash32(keccak256(encoding))
    with pytest.raises(CorruptTrieNode) as error:
        Trie({root: encoding}, root).get(b"\x01")
    assert str(error.value) == f"trie node 0x{root.hex()} is corrupt: {reason}"
    assert error.value.node_hash == root


def test_wrong_types_are_refused() -> None:
    with pytest.raises(TypeError) as error:
        Trie({}).update({"key": b"v"})  # type: ignore[dict-item]
    assert str(error.value) == "trie keys are bytes, not str"
    with pytest.raises(TypeError) as error:
        Trie({}).update({b"key": 5})  # type: ignore[dict-item]
    assert str(error.value) == "trie values are bytes or None, not int"
    with pytest.raises(ValueError) as error:
        Trie({}, Hash32(b"short"))
    assert str(error.value) == "a trie root is 32 bytes, not b'short'"


@settings(max_examples=40, deadline=None)
@given(
    items=st.dictionaries(st.one_of(fixed_keys, short_keys), st.binary(min_size=1, max_size=40)),
    probe=st.one_of(fixed_keys, short_keys),
)
def test_proofs_are_the_hashed_nodes_of_the_reference_path(
    items: dict[bytes, bytes], probe: bytes
) -> None:
    store: dict[bytes, bytes] = {}
    commit = Trie(store).update(dict(items))
    store.update(commit.nodes)
    proof = Trie(store, commit.root).get_proof(probe)
    if not items:
        assert proof == []
        return
    reference = HexaryTrie(store, commit.root)
    expected = [rlp.encode(node) for node in reference.get_proof(probe)]
    # The root is referenced by hash even when short; embedded nodes are inside their parents.
    assert proof == expected[:1] + [node for node in expected[1:] if len(node) >= 32]
    for key in items:
        assert (
            HexaryTrie.get_from_proof(
                commit.root,
                key,
                [rlp.decode(node) for node in Trie(store, commit.root).get_proof(key)],
            )
            == items[key]
        )


def test_node_cache_is_bounded_and_shared() -> None:
    with pytest.raises(ValueError) as error:
        NodeCache(0)
    assert str(error.value) == "a node cache holds at least one node, not 0"
    store: dict[bytes, bytes] = {}
    cache = NodeCache(16)
    keys = [keccak256(bytes([i])) for i in range(200)]
    commit = Trie(store, cache=cache).update({key: key + key for key in keys})
    store.update(commit.nodes)
    assert len(cache) == 16
    reader = Trie(store, commit.root, cache=cache)
    assert all(reader.get(key) == key + key for key in keys)
    assert len(cache) == 16 and cache.capacity == 16
    cache.clear()
    assert len(cache) == 0


def test_nodes_made_by_update_are_read_from_the_cache() -> None:
    cache = NodeCache()
    commit = Trie({}, cache=cache).update({b"a" * 32: b"x" * 40, b"b" * 32: b"y" * 40})
    # An empty store: every read below is served by the cache that update filled.
    trie = Trie({}, commit.root, cache=cache)
    assert trie.get(b"a" * 32) == b"x" * 40
    assert trie.get(b"b" * 32) == b"y" * 40


class _EvictedAfterLookup(OrderedDict[bytes, Any]):
    """A cache's entries where every hit is evicted right after its lookup, as another thread
    sharing the cache may do between the lookup and the move to the back."""

    def get(self, key: bytes, default: Any = None) -> Any:
        value = super().get(key, default)
        self.pop(key, None)
        return value


def test_a_node_evicted_between_its_lookup_and_its_use_is_still_read() -> None:
    """Authoring and import read state in worker threads while RPC reads on the event loop, all
    through one cache: an entry may go between the lookup that found it and its move to the
    back, and the read goes on with the node it found."""
    store: dict[bytes, bytes] = {}
    keys = [keccak256(bytes([i])) for i in range(64)]
    cache = NodeCache()
    commit = Trie(store, cache=cache).update({key: key + key for key in keys})
    store.update(commit.nodes)
    cache._entries = _EvictedAfterLookup(cache._entries)
    trie = Trie(store, commit.root, cache=cache)
    assert all(trie.get(key) == key + key for key in keys)


def test_the_trie_hashes_with_the_extension() -> None:
    """safe-pysha3 is a dependency: without it the trie would quietly hash at half the speed."""
    extension = _keccak_extension()
    assert extension is not None
    assert _keccak.__qualname__ == extension.__qualname__


@pytest.mark.parametrize("fast", [_keccak_extension(), _keccak_cffi()], ids=["extension", "cffi"])
def test_the_fast_keccak_is_pycryptodomes_keccak_at_every_length_and_on_every_thread(
    fast: Callable[[bytes], bytes] | None,
) -> None:
    assert fast is not None
    rng = random.Random(3)
    samples = [rng.randbytes(n) for n in [*range(0, 300), 543, 544, 1000, 70_000]]
    assert [fast(s) for s in samples] == [_keccak_wrapped(s) for s in samples]
    assert fast(b"") == bytes.fromhex(
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )

    def hashes(offset: int) -> list[bytes]:
        return [fast(s) for s in samples[offset:] + samples[:offset]]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(hashes, range(0, 40, 10)))
    for offset, found in zip(range(0, 40, 10), results, strict=True):
        assert found == [_keccak_wrapped(s) for s in samples[offset:] + samples[:offset]]
