"""The node's LevelDB database (plyvel): key spaces, the schema version, atomic write batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import plyvel

from chain.errors import DatabaseError

SCHEMA_VERSION = 3
"""The format of what the database holds. Bump it whenever a stored record changes shape, or
blocks already stored would no longer execute (2: app records carry their instance, usage
records their instance and disk; 3: `wallets.register` completes an on-chain
`wallets.request`), so that a node refuses an older database with a clear error instead of
failing to decode a record or to execute a block in it."""
_SCHEMA_KEY = b"meta:schema-version"

COMPRESSIONS = (None, "snappy")
COMPRESSION = None
"""How LevelDB stores its tables: uncompressed. Trie nodes, keys and signatures are hashes and
random bytes that do not compress, and trie nodes keyed by hash make every file of level 0
overlap all of level 1, so compaction rewrites the data many times over, compressing it again
each time. Importing 40,000 blocks of 10 transfers (about 700 MB), the process's CPU time per
block, background compaction included, is 1.53 ms uncompressed against 2.69 ms with snappy,
LevelDB's default (compaction 21 s against 61 s in all), for 13 % more disk (`bench.storage`)."""

# Key spaces. One byte each so that prefix iteration stays cheap and obvious.
TRIE_NODES = b"n"
BLOCKS = b"b"
CANONICAL = b"c"
EVENTS = b"e"
TX_INDEX = b"t"
META = b"meta:"


class WriteBatch(Protocol):
    def put(self, key: bytes, value: bytes, /) -> None: ...
    def delete(self, key: bytes, /) -> None: ...


class Database:
    """One LevelDB per node. Writes go through `batch()`: all of a block or nothing."""

    def __init__(self, path: Path, *, compression: str | None = COMPRESSION) -> None:
        """Opens (or creates) the database at `path`; `compression` ("snappy" or None) is how
        new tables are written (a table says how it was written, so either reads both)."""
        if compression not in COMPRESSIONS:
            raise DatabaseError(f"compression is one of {COMPRESSIONS}, not {compression!r}")
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(str(path), create_if_missing=True, compression=compression)
        except plyvel.IOError as exc:
            raise DatabaseError(f"cannot open the database at {path}: {exc}") from None
        except plyvel.CorruptionError as exc:
            raise DatabaseError(f"the database at {path} is corrupt: {exc}") from None
        self.path = path
        self._deferring = 0
        self.unsynced_writes = 0
        """Write batches since the last synced write (only inside `deferred_sync` are there any)."""
        self._check_schema()
        self.trie_nodes = _Prefixed(self._db, TRIE_NODES)

    def _check_schema(self) -> None:
        stored = self._db.get(_SCHEMA_KEY)
        if stored is None:
            if any(True for _ in self._db.iterator(include_value=False)):
                self._db.close()
                raise DatabaseError(
                    f"{self.path} holds data without a StateMesh schema version; "
                    "point --base-path at an empty folder"
                )
            self._db.put(_SCHEMA_KEY, str(SCHEMA_VERSION).encode(), sync=True)
            return
        if stored != str(SCHEMA_VERSION).encode():
            self._db.close()
            raise DatabaseError(
                f"the database at {self.path} has schema version {stored.decode(errors='replace')},"
                f" this node reads version {SCHEMA_VERSION}: run `statemesh purge-chain` "
                "or use another --base-path"
            )

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        """One durable write outside a block commit (evidence, finality votes)."""
        self._db.put(key, value, sync=True)

    @contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        """Collects writes and commits them atomically (and durably, unless inside
        `deferred_sync`) when the block exits without an exception; an exception discards all
        of them."""
        wb = self._db.write_batch(transaction=True, sync=self._deferring == 0)
        with wb:
            yield wb
        if self._deferring:
            self.unsynced_writes += 1
        else:
            self.unsynced_writes = 0

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Within, `batch()` writes are atomic but not flushed to the disk one by one; leaving
        flushes them all with one synced write, whether the body finished or raised. Sync
        imports a downloaded batch of blocks inside it: one fsync per batch instead of one per
        block.

        What it risks is bounded: LevelDB hands every write batch to the operating system as
        one record of its log before the write returns, so a killed process (`kill -9`) loses
        nothing; a power cut loses at most the records written since the last synced write,
        never part of one, so the database reopens consistent at a block boundary, at most one
        batch behind. Nests: the outermost exit flushes."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if self._deferring == 0:
                self.flush()

    def flush(self) -> None:
        """Make every write so far durable now (inside `deferred_sync` too): for what must not be
        lost even to a power cut, such as a block this node authored and is about to publish."""
        if self.unsynced_writes and not self._db.closed:
            # A synced write syncs the log up to it, and with it every record before. The
            # schema version is rewritten as it is: a key whose value never changes.
            self._db.put(_SCHEMA_KEY, str(SCHEMA_VERSION).encode(), sync=True)
            self.unsynced_writes = 0

    def property(self, name: str) -> str | None:
        """One of LevelDB's properties ("leveldb.stats": files, sizes and compaction totals by
        level), or None if LevelDB has no such property."""
        value: bytes | None = self._db.get_property(name.encode())
        return None if value is None else value.decode()

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        it: Iterator[tuple[bytes, bytes]] = self._db.iterator(prefix=prefix)
        return it

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


class _Prefixed:
    """Read access to one key space, shaped as the trie's node reader."""

    __slots__ = ("_db", "_prefix")

    def __init__(self, db: Any, prefix: bytes) -> None:
        self._db = db
        self._prefix = prefix

    def get(self, key: bytes, /) -> bytes | None:
        value: bytes | None = self._db.get(self._prefix + key)
        return value
