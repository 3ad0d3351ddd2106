"""The value cache of the best state (`chain.state.ValueCache`): what it answers is what the trie
holds at the root it is asked at, while blocks are imported, forks are stored, the best block
moves, a bad block is refused and worker threads read as the event loop moves it."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chain.errors import BlockRejection, InvalidBlock
from chain.importer import BlockImporter
from chain.primitives import Hash32
from chain.runtime import system
from chain.state import _MISS, DEFAULT_CACHE_BYTES, ENTRY_OVERHEAD, TrieState, ValueCache
from chain.store import ChainStore
from chain.trie import BLANK_ROOT
from tests.factories import ALICE, BOB, CHARLIE, DAVE
from tests.unit.test_store import author, build_on, open_store, transfer

R1, R2, R3 = (Hash32(bytes([n]) * 32) for n in (1, 2, 3))


def test_a_value_is_answered_only_at_the_root_it_was_read_at() -> None:
    cache = ValueCache()
    cache.reset(R1)
    cache.fill(R1, b"k", b"v")
    cache.fill(R1, b"gone", None)  # an absent key is remembered as absent
    assert cache.lookup(R1, b"k") == b"v"
    assert cache.lookup(R1, b"gone") is None
    assert cache.lookup(R2, b"k") is _MISS
    assert cache.lookup(R1, b"other") is _MISS
    # A reader that went to the trie at R2 keeps nothing: R2 is not the cache's root.
    cache.fill(R2, b"k", b"w")
    assert cache.lookup(R1, b"k") == b"v" and len(cache) == 2


def test_advancing_applies_a_blocks_changes_and_forgets_a_state_it_does_not_follow() -> None:
    cache = ValueCache()
    cache.reset(R1)
    cache.fill(R1, b"kept", b"1")
    cache.fill(R1, b"changed", b"2")
    cache.advance(R1, R2, {b"changed": b"3", b"deleted": None, b"new": b"4"})
    assert cache.root == R2
    assert [cache.lookup(R2, k) for k in (b"kept", b"changed", b"deleted", b"new")] == [
        b"1",
        b"3",
        None,
        b"4",
    ]
    assert cache.lookup(R1, b"kept") is _MISS
    # A block on top of another state (a fork that became best): nothing of R2 is kept.
    cache.advance(R3, R1, {b"new": b"5"})
    assert cache.root == R1 and len(cache) == 1
    assert cache.lookup(R1, b"kept") is _MISS and cache.lookup(R1, b"new") == b"5"
    cache.reset(R1)  # the same root: the same state, kept
    assert len(cache) == 1
    cache.reset(R2)
    assert len(cache) == 0 and cache.root == R2


def test_the_least_recently_used_values_go_first() -> None:
    three = 3 * (2 + ENTRY_OVERHEAD)  # three one-byte keys and values
    cache = ValueCache(capacity=three, largest=three)
    cache.reset(R1)
    for key in (b"a", b"b", b"c"):
        cache.fill(R1, key, key)
    assert cache.lookup(R1, b"a") == b"a"  # now the most recent
    cache.fill(R1, b"d", b"d")
    assert cache.lookup(R1, b"b") is _MISS
    cache.advance(R1, R2, {b"e": b"e"})  # c is now the least recently used
    assert [cache.lookup(R2, k) for k in (b"a", b"c", b"d", b"e")] == [b"a", _MISS, b"d", b"e"]
    assert cache.size == three
    with pytest.raises(ValueError, match="at least one byte"):
        ValueCache(capacity=0)


def test_a_key_written_empty_is_held_as_absent_as_the_trie_deletes_it() -> None:
    """The trie deletes a key set to b"": so does the cache, or a warm node would answer "0x"
    where a cold one answers null."""
    nodes: dict[bytes, bytes] = {}
    before = TrieState(nodes, BLANK_ROOT).commit({b"index": b"1", b"other": b"2"})
    nodes.update(before.nodes)
    after = TrieState(nodes, before.root).commit({b"index": b""})
    nodes.update(after.nodes)
    cache = ValueCache()
    cache.reset(before.root)
    cache.advance(before.root, after.root, {b"index": b""})
    assert TrieState(nodes, after.root).get(b"index") is None
    assert TrieState(nodes, after.root, values=cache).get(b"index") is None


def test_a_clients_flood_of_large_keys_through_the_store_stays_within_the_cache(
    tmp_path: Path,
) -> None:
    """`state_getStorage` reads `store.state_at(block).get(key)` with the client's key: 300 reads
    of absent 256 KiB keys (75 MiB) leave the store's cache within its 32 MiB, and an
    account read after them is still answered right."""
    db, store, _runtime = open_store(tmp_path / "db")
    best = store.best_hash or b""
    for n in range(300):
        assert store.state_at(best).get(n.to_bytes(4, "big") * 65_536) is None
        assert store.values.size <= DEFAULT_CACHE_BYTES
    assert store.values.size > DEFAULT_CACHE_BYTES // 2  # the keys were held, within the bound
    assert system.account(store.best_state(), BOB.public).free == 10**18
    db.close()


def test_memory_is_bounded_by_bytes_whatever_keys_a_client_asks_for() -> None:
    """An RPC client names the keys it reads: a flood of large keys, each absent, leaves the
    cache within its bytes, and a key or value above `largest` is never held (nor is the value
    it replaced)."""
    cache = ValueCache(capacity=64 * 1024, largest=8 * 1024)
    cache.reset(R1)
    cache.fill(R1, b"account", b"x" * 40)
    for n in range(1_000):
        cache.fill(R1, n.to_bytes(4, "big") * 1024, None)  # 4 KiB keys
        assert cache.size <= 64 * 1024
    assert cache.size == sum(len(k) + ENTRY_OVERHEAD for k in cache._values)
    cache.fill(R1, b"huge" * 4096, None)
    assert cache.lookup(R1, b"huge" * 4096) is _MISS
    cache.fill(R1, b"manifest", b"m")
    cache.advance(R1, R2, {b"manifest": b"m" * 16 * 1024})
    assert cache.lookup(R2, b"manifest") is _MISS  # not the old b"m"
    assert cache.size == sum(
        len(k) + len(v or b"") + ENTRY_OVERHEAD for k, v in cache._values.items()
    )


def keys_of_interest() -> list[bytes]:
    accounts = [system.account_key(k.public) for k in (ALICE, BOB, CHARLIE, DAVE)]
    return [*accounts, system.NUMBER_KEY, system.TIMESTAMP_KEY, system.block_hash_key(1)]


def assert_matches_the_trie(store: ChainStore, block_hash: bytes) -> None:
    """Every key of interest reads the same through the store's state (and its cache) as
    through the trie alone, twice (the second read is answered by the cache when it follows)."""
    state = store.state_at(block_hash)
    trie = TrieState(store.db.trie_nodes, state.root)
    for key in keys_of_interest():
        assert state.get(key) == trie.get(key), key
        assert state.get(key) == trie.get(key), key


def test_the_store_keeps_the_cache_at_the_best_state_through_forks_and_reorgs(
    tmp_path: Path,
) -> None:
    db, store, runtime = open_store(tmp_path / "db")
    genesis = store.best_hash
    assert genesis is not None
    assert store.values.root == store.best_header.state_root
    assert_matches_the_trie(store, genesis)
    assert len(store.values) > 0

    a1, ea1 = build_on(store, runtime, genesis, [transfer(runtime, 0)], slot=1)
    store.commit_block(a1, ea1)  # type: ignore[arg-type]
    assert store.values.root == a1.header.state_root
    # The block's writes are held at once: DAVE's new balance is read without the trie.
    assert store.values.lookup(a1.header.state_root, system.account_key(DAVE.public)) is not _MISS
    assert system.account(store.best_state(), DAVE.public).free == 5_000_000
    assert_matches_the_trie(store, a1.hash)

    # A fork that does not become best leaves the cache where it is.
    b1, eb1 = build_on(store, runtime, genesis, [transfer(runtime, 0, amount=7_000_000)], slot=2)
    store.commit_block(b1, eb1, best=False)  # type: ignore[arg-type]
    assert store.values.root == a1.header.state_root
    assert_matches_the_trie(store, b1.hash)
    assert system.account(store.state_at(b1.hash), DAVE.public).free == 7_000_000

    # The fork becomes best on a block whose parent is not the cache's state: a1's DAVE is gone.
    b2, eb2 = build_on(store, runtime, b1.hash, [], slot=3)
    store.commit_block(b2, eb2)  # type: ignore[arg-type]
    assert store.values.root == b2.header.state_root
    assert system.account(store.best_state(), DAVE.public).free == 7_000_000
    assert_matches_the_trie(store, b2.hash)
    assert_matches_the_trie(store, a1.hash)

    # Fork choice moves back: the cache starts again at the new best state.
    store.set_best(b1.hash)
    assert store.values.root == b1.header.state_root
    assert system.account(store.best_state(), DAVE.public).free == 7_000_000
    assert_matches_the_trie(store, b1.hash)

    # Reopened, the store's cache is at the stored best state.
    db.close()
    db, store, runtime = open_store(tmp_path / "db")
    assert store.values.root == b1.header.state_root
    assert_matches_the_trie(store, b1.hash)
    db.close()


def test_a_refused_block_leaves_the_cache_at_the_best_state(tmp_path: Path) -> None:
    """A block that executes but claims another state root is refused: its writes never reach
    the cache, which still answers with the best state's values."""
    db, store, runtime = open_store(tmp_path / "db")
    importer = BlockImporter(store, runtime)
    importer.import_block(author(store, runtime, [transfer(runtime, 0)], slot=1), finalize=True)
    best_root = store.best_header.state_root
    block = author(store, runtime, [transfer(runtime, 1, amount=1_000_000)], slot=2)
    bad = block.copy(header=block.header.copy(state_root=b"\x33" * 32))
    with pytest.raises(InvalidBlock) as info:
        importer.import_block(bad, finalize=True)
    assert info.value.reason is BlockRejection.BAD_STATE_ROOT
    assert store.values.root == best_root
    assert system.account(store.best_state(), DAVE.public).free == 5_000_000
    assert_matches_the_trie(store, store.best_hash or b"")
    importer.import_block(block, finalize=True)
    assert system.account(store.best_state(), DAVE.public).free == 6_000_000
    db.close()


class _MovedMidLookup(OrderedDict[bytes, bytes | None]):
    """A cache's dictionary whose first lookup has another thread move the cache, and gives
    that thread 0.2 s to finish before it answers: the worst moment for a reader."""

    def __init__(self, move: Callable[[], None]) -> None:
        super().__init__()
        self.mover = threading.Thread(target=move)

    def get(self, key: bytes, default: object = None) -> object:  # type: ignore[override]
        if not self.mover.is_alive() and self.mover.ident is None:
            self.mover.start()
            self.mover.join(0.2)
        return super().get(key, default)


def test_a_move_during_a_lookup_waits_for_it() -> None:
    """The event loop moves the cache to the next block while a worker thread is inside a
    lookup at the block before: the reader gets its own root's value, and the move lands
    after it."""
    cache = ValueCache()
    moved = _MovedMidLookup(lambda: cache.advance(R1, R2, {b"k": b"after"}))
    cache._values = moved
    cache.reset(R1)
    cache.fill(R1, b"k", b"before")
    assert cache.lookup(R1, b"k") == b"before"
    moved.mover.join()
    assert cache.root == R2 and cache.lookup(R2, b"k") == b"after"


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows, so that a race has every chance."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_switching")
def test_readers_in_threads_never_see_one_roots_value_under_anothers_name() -> None:
    """Worker threads read the best state (authoring, dry runs) while the event loop moves the
    cache to the next block and back: each reader, at its own root, only ever gets the trie's
    value at that root, for values it finds held and values it reads through the trie."""
    nodes: dict[bytes, bytes] = {}
    keys = [f"account/{i}".encode() for i in range(64)]

    def commit(root: Hash32, changes: dict[bytes, bytes]) -> Hash32:
        state = TrieState(nodes, root)
        made = state.commit(changes)
        nodes.update(made.nodes)
        return made.root

    before = commit(BLANK_ROOT, {k: b"before" for k in keys})
    changes = {k: b"after" for k in keys}
    after = commit(before, changes)
    cache = ValueCache()
    cache.reset(before)
    stop = threading.Event()
    wrong: list[tuple[str, bytes, bytes | None]] = []
    failed: list[BaseException] = []
    reads = [0, 0]

    def read(root: Hash32, expected: bytes, slot: int) -> None:
        try:
            while not stop.is_set():
                state = TrieState(nodes, root, values=cache)
                for key in keys:
                    value = state.get(key)
                    reads[slot] += 1
                    if value != expected:
                        wrong.append((expected.decode(), key, value))
        except BaseException as exc:
            failed.append(exc)

    threads = [
        threading.Thread(target=read, args=(before, b"before", 0)),
        threading.Thread(target=read, args=(after, b"after", 1)),
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(2_000):
            cache.advance(before, after, changes)
            cache.reset(before)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failed == []
    assert wrong == []
    assert min(reads) > 0
