"""Block sync: a node behind its peers downloads their chain in batches over request/response,
imports every block, and applies the finality proofs that come with them. Also the responder.
Gossip is best effort; this is what makes every node catch up. The next batch downloads while
one imports, and a child process (`consensus.signature_worker`) checks the signatures of each
batch a few blocks at a time, ahead of the import.

A peer's status is a claim. Peers are chosen by their finalized block first (a justified chain
beats a longer unjustified one, and a finalized block is never reverted), then in turn; a peer
whose answers are empty, late, unattached or against its own status loses its turn, is backed
off from and penalized a little more each time; a peer whose finalized chain conflicts with ours
or with the checkpoint is refused for good. Justifications are checked cheaply on the event
loop and their signatures on a worker thread; one whose votes name blocks not imported yet
waits for the batch that brings them."""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import rlp
import trio

from chain.blocks import Header
from chain.errors import BlockRejection, InvalidBlock
from chain.primitives import Hash32
from chain.store import ChainStore
from chain.wire import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_RESPONSE_BYTES,
    Status,
    SyncItem,
    SyncRequest,
    WireError,
    decode_block,
    decode_sync_response,
    encode_sync_response,
)
from consensus.chain_service import ChainService
from consensus.finality import (
    InvalidJustification,
    UnknownVoteTarget,
    Vote,
    check_justification_ancestry,
    check_justification_signatures,
    check_justification_structure,
)
from consensus.signature_worker import SignatureWorker
from p2p.errors import PeerUnreachable, RequestFailed

log = logging.getLogger("statemesh.sync")

Checkpoint = tuple[int, Hash32]
"""A block number and the hash the chain must have there (weak subjectivity)."""

PROGRESS_EVERY = 2.0
IDLE_CHECK = 1.0
FIRST_TIMEOUT = 2.0
"""Seconds a peer has to answer a request while it has no failures behind it; each failure in a
row doubles it, up to REQUEST_TIMEOUT, so an honest but slow peer still gets its answers in."""
REQUEST_TIMEOUT = 8.0
BACKOFF_BASE = 2.0
"""A peer that failed n times in a row is asked again after BACKOFF_BASE**n seconds..."""
BACKOFF_MAX = 60.0
"""... at most this long."""
IDLE_BACKOFF = 2.0
"""A peer that claimed to be ahead and gave nothing new (without being wrong) waits this long."""
PENALTY_UNHELPFUL = 10
"""Times the failures in a row: an empty, late, unattached or self-contradicting answer. A peer
that answers now and then is forgiven (the score recovers a point a second and a good answer
resets the count); one that never does reaches the ban threshold (-100) within a minute."""
PENALTY_BAD_DATA = 50
"""Bytes that do not decode, blocks out of order or breaking the rules."""
PENALTY_BAN = 100
"""A forged justification, or a chain conflicting with our finalized one or the checkpoint."""
MAX_BATCHES_PER_TURN = 8
"""Then the next sync round chooses again, so that peers of equal standing take turns."""
MAX_PENDING_JUSTIFICATIONS = 32
"""Justifications waiting for their votes' target blocks; beyond this the lowest are dropped."""
MAX_REFUSED = 1024
NETWORK_PASSES = 2
"""While the next batch downloads, the import lets the event loop run this many passes more
after each block. A batch reaches the sync task through a few hundred hand-offs between the
connection's tasks (decryption, multiplexing), one per pass of the loop; with one pass per
imported block the download would mostly wait for the import to end. Measured with 128 blocks of
10 transfers: the next batch ready 0.1 s into a 0.25 s import, where it took the whole import."""
WORKER_MIN_BLOCKS = 32
"""A batch this long has its signatures checked in the signature worker (started with the first
such batch, stopped when no peer is ahead of us any more); a shorter one, as when following the
chain, is not worth a process."""
CHECK_CHUNK_BYTES = 32 * 1024
"""Blocks per request to the signature worker: as many as make this many bytes (at least one).
Each answer joins the verified set as it comes, so the import, which starts on a batch as soon
as it has arrived, skips the signatures of all but its first blocks: the worker checks some 20
blocks of 10 transfers in about 15 ms, where the import takes about 2 ms a block."""


class SyncPeers(Protocol):
    """What sync needs of the network."""

    def statuses(self) -> list[tuple[str, Status]]: ...

    async def request_sync(self, peer: str, request: bytes) -> bytes: ...

    def penalize(self, peer: str, amount: int, reason: str) -> None: ...


@dataclass(slots=True)
class SyncStatistics:
    syncing: bool = False
    target: int = 0
    imported: int = 0
    blocks_per_second: float = 0.0
    refused_peers: int = 0
    failed_requests: int = 0
    pending_justifications: int = 0
    verified_ahead: int = 0
    """Downloaded blocks whose signatures the signature worker checked (before their import
    or during it)."""


@dataclass(slots=True)
class PeerRecord:
    """How a peer's recent answers went."""

    failures: int = 0
    """Unhelpful answers in a row."""
    retry_at: float = 0.0
    """Not asked before this time (trio clock)."""


@dataclass(frozen=True, slots=True)
class PendingJustification:
    peer: str
    header: Header
    data: bytes
    votes: tuple[Vote, ...]


class Turn(enum.Enum):
    """How one peer's turn ended."""

    PROGRESS = "progress"
    NOTHING = "nothing"
    FAILED = "failed"
    WAIT = "wait"
    """A block for a slot our clock has not reached: retry later, nobody is at fault."""


class Batch(enum.Enum):
    OK = "ok"
    FORK = "fork"
    """The first block does not attach to anything we have."""
    FAILED = "failed"
    """Unhelpful (recorded and penalized a little)."""
    BAD = "bad"
    """Penalized as bad data."""
    REFUSED = "refused"
    """The peer is on another chain; refused for good."""
    WAIT = "wait"


def serve_sync(store: ChainStore, request: bytes) -> bytes:
    """Answer a sync request from our best chain: blocks from `start`, each with its
    finality proof if it has one, within the count and size limits."""
    wanted = SyncRequest.decode(request)
    items: list[SyncItem] = []
    size = 0
    for number in range(wanted.start, wanted.start + min(wanted.count, MAX_SYNC_BLOCKS)):
        block_hash = store.canonical_hash(number)
        if block_hash is None:
            break
        block = store.block(block_hash)
        if block is None:
            break
        item = SyncItem(rlp.encode(block), store.justification(block_hash) or b"")
        size += len(item.block) + len(item.justification) + 16
        if items and size > MAX_SYNC_RESPONSE_BYTES:
            break
        items.append(item)
    return encode_sync_response(items)


@dataclass(frozen=True, slots=True)
class _Unhelpful:
    """Why a request gave no batch, and what that costs the peer (`SyncService._record`)."""

    reason: str
    unreachable: bool = False
    """Not connected: nothing held against the peer, only a short wait."""
    penalize: bool = True
    bad_data: str | None = None
    """Also penalized as bad data, for this."""


@dataclass(slots=True)
class _Ahead:
    """The next batch, downloaded (then its signatures checked) while the one before imports.
    What it cost the peer is recorded only when the batch is due: after the batch before it
    imported well, as when the request was made after it."""

    start: int
    scope: trio.CancelScope
    downloaded: trio.Event
    fetched: list[SyncItem] | _Unhelpful = _Unhelpful("abandoned", penalize=False)


class SyncService:
    def __init__(
        self,
        chain: ChainService,
        peers: SyncPeers,
        *,
        checkpoint: Checkpoint | None = None,
        worker: SignatureWorker | None = None,
    ) -> None:
        self.chain = chain
        self.peers = peers
        self.checkpoint = checkpoint
        self.worker = worker if worker is not None else SignatureWorker()
        self.stats = SyncStatistics()
        self._wake_send, self._wake = trio.open_memory_channel[None](1)
        self._records: dict[str, PeerRecord] = {}
        self._refused: OrderedDict[str, str] = OrderedDict()
        self._pending: dict[Hash32, PendingJustification] = {}
        self._turn = 0
        self._suspect: tuple[str, trio.CancelScope] | None = None
        """The request in flight to a peer with failures behind it, if any, and that peer."""
        self._checking = trio.Lock()
        """Held by the batch whose signatures the worker is checking: the next batch's check,
        downloaded meanwhile, waits for it instead of sharing the worker with it."""

    def wake(self, *, by: str | None = None) -> None:
        """Look for work now (a block with an unknown parent arrived, a peer moved ahead). A
        request to a peer that failed before is abandoned: it may be stalling on purpose, and
        there is work the others can do; unless the wake comes `by` that peer itself (its own
        status, which it sends every few seconds, says nothing of the request)."""
        if self._suspect is not None and self._suspect[0] != by:
            self._suspect[1].cancel()
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:
            pass

    def refused(self, peer: str) -> str | None:
        """Why `peer` is refused as another chain, or None."""
        return self._refused.get(peer)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                if not await self.sync_once():
                    with trio.move_on_after(IDLE_CHECK):
                        await self._wake.receive()
        finally:
            await self.worker.aclose()

    # -- choosing peers ---------------------------------------------------------------------------

    def candidates(self) -> list[tuple[str, Status]]:
        """Peers ahead of us by finalized or best block, not backed off from nor refused, in
        the order to ask them: fewer failures in a row, then higher finalized block, then in
        turn among equals."""
        store = self.chain.store
        best, finalized = store.best_header, store.finalized_header
        now = trio.current_time()
        statuses = self.peers.statuses()
        connected = {peer for peer, _ in statuses}
        for gone in [p for p in self._records if p not in connected]:
            del self._records[gone]
        found: list[tuple[tuple[int, int], str, Status]] = []
        for peer, status in statuses:
            if peer in self._refused:
                continue
            if status.finalized_number <= finalized.number and status.best_number <= best.number:
                continue
            conflict = self._status_conflict(status)
            if conflict is not None:
                self._refuse(peer, conflict)
                continue
            record = self._records.get(peer)
            if record is not None and record.retry_at > now:
                continue
            failures = record.failures if record is not None else 0
            found.append(((failures, -status.finalized_number), peer, status))
        found.sort(key=lambda entry: (entry[0], entry[1]))
        ordered: list[tuple[str, Status]] = []
        i = 0
        while i < len(found):
            j = i
            while j < len(found) and found[j][0] == found[i][0]:
                j += 1
            group = [(peer, status) for _, peer, status in found[i:j]]
            shift = self._turn % len(group)
            ordered.extend(group[shift:] + group[:shift])
            i = j
        return ordered

    def _status_conflict(self, status: Status) -> str | None:
        """Why a peer's advertised finalized block cannot be on our chain, or None."""
        store = self.chain.store
        finalized = store.finalized_header
        if status.finalized_number <= finalized.number:
            ours = store.canonical_hash(status.finalized_number)
            if ours != status.finalized_hash:
                return (
                    f"its finalized block #{status.finalized_number} is "
                    f"0x{status.finalized_hash.hex()}, ours is 0x{(ours or b'').hex()}"
                )
        else:
            known = store.header(status.finalized_hash)
            if known is not None and not store.is_descendant(known.hash, finalized.hash):
                return (
                    f"its finalized block #{status.finalized_number} does not descend from "
                    f"our finalized block #{finalized.number}"
                )
        if self.checkpoint is not None:
            number, expected = self.checkpoint
            if status.finalized_number == number and status.finalized_hash != expected:
                return f"its finalized block #{number} is not the checkpoint 0x{expected.hex()}"
        return None

    def _refuse(self, peer: str, reason: str) -> None:
        log.warning("refusing to sync from %s, another chain: %s", peer, reason)
        self._refused[peer] = reason
        while len(self._refused) > MAX_REFUSED:
            self._refused.popitem(last=False)
        self._records.pop(peer, None)
        self.stats.refused_peers = len(self._refused)
        self.peers.penalize(peer, PENALTY_BAN, f"another chain: {reason}")

    def _fail(self, peer: str, reason: str, *, penalize: bool = True) -> None:
        """An unhelpful answer: the peer loses its turn, is backed off from and penalized."""
        record = self._records.setdefault(peer, PeerRecord())
        record.failures += 1
        delay = min(BACKOFF_BASE**record.failures, BACKOFF_MAX)
        record.retry_at = trio.current_time() + delay
        self.stats.failed_requests += 1
        log.info("sync from %s: %s; asking others (again in %.0f s)", peer, reason, delay)
        if penalize:
            self.peers.penalize(peer, PENALTY_UNHELPFUL * record.failures, f"sync: {reason}")

    def _succeed(self, peer: str) -> None:
        record = self._records.get(peer)
        if record is not None:
            record.failures = 0

    def _idle(self, peer: str) -> None:
        record = self._records.setdefault(peer, PeerRecord())
        record.retry_at = trio.current_time() + IDLE_BACKOFF

    def _timeout(self, peer: str) -> float:
        record = self._records.get(peer)
        return self._timeout_after(record.failures if record is not None else 0)

    @staticmethod
    def _timeout_after(failures: int) -> float:
        return float(min(FIRST_TIMEOUT * 2**failures, REQUEST_TIMEOUT))

    # -- downloading ------------------------------------------------------------------------------

    async def sync_once(self) -> bool:
        """One sync round: ask the best candidate, falling back to the next at once when one
        fails. True when blocks were imported or finality moved."""
        self._turn += 1
        candidates = self.candidates()
        if not candidates:
            self.stats.syncing = False
            await self.worker.aclose()  # caught up: no process kept for nothing
            return False
        self.stats.syncing = True
        self.stats.target = max(status.best_number for _, status in candidates)
        for peer, status in candidates:
            turn = await self._sync_from(peer, status)
            if turn is Turn.PROGRESS:
                return True
            if turn is Turn.WAIT:
                break
        self.stats.syncing = False
        return False

    def _start(self, status: Status) -> int:
        """Where to download from: above our best block while the peer claims more than it,
        else above our finalized block (the peer is ahead by finality only: its justified
        chain may not be our best chain)."""
        store = self.chain.store
        best = store.best_header
        if status.best_number > best.number:
            return best.number + 1
        return store.finalized_header.number + 1

    async def _sync_from(self, peer: str, status: Status) -> Turn:
        turn = Turn.NOTHING
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            try:
                turn = await self._sync_batches(peer, status, nursery)
            except Exception as exc:  # raised below as itself, not in the nursery's group
                error = exc
            finally:
                nursery.cancel_scope.cancel()  # a batch downloaded ahead is not wanted now
        if error is not None:
            raise error
        return turn

    async def _sync_batches(self, peer: str, status: Status, nursery: trio.Nursery) -> Turn:
        """Up to MAX_BATCHES_PER_TURN batches from `peer`, each after the first downloaded and
        its signatures checked (in `nursery`) while the one before it imports."""
        store = self.chain.store
        start = self._start(status)
        began = last_report = self.chain.clock.monotonic()
        imported = 0
        moved = False
        ahead: _Ahead | None = None
        for number in range(MAX_BATCHES_PER_TURN):
            if start > status.best_number:
                break
            if ahead is not None and ahead.start == start:
                # Only the download is awaited: signatures the worker has not vouched for by
                # the time a block imports are verified by the import itself.
                await ahead.downloaded.wait()
                fetched = ahead.fetched
                checking = ahead.scope  # the check runs on in the download's task
            else:
                if ahead is not None:
                    ahead.scope.cancel()
                checking = trio.CancelScope()
                fetched = await self._fetch(peer, start, status)
                if isinstance(fetched, list) and len(fetched) >= WORKER_MIN_BLOCKS:
                    nursery.start_soon(self._check_signatures, start, fetched, checking)
            ahead = None
            if isinstance(fetched, _Unhelpful):
                self._record(peer, fetched)
                return Turn.PROGRESS if imported or moved else Turn.FAILED
            items = fetched
            following = start + len(items)
            if following <= status.best_number and number + 1 < MAX_BATCHES_PER_TURN:
                ahead = self._download_ahead(nursery, peer, following, status)
            outcome, count, finalized = await self._import_batch(
                peer, status, start, items, ahead.downloaded if ahead is not None else None
            )
            checking.cancel()  # its blocks are imported, or will not be: no more checks
            imported += count
            moved = moved or finalized
            if outcome is Batch.FORK:
                floor = store.finalized_header.number + 1
                if start > floor:
                    start = floor  # our best chain is not theirs: from above the finalized block
                    continue
                if status.finalized_number >= store.finalized_header.number:
                    self._refuse(
                        peer, f"its chain does not extend our finalized block #{floor - 1}"
                    )
                else:
                    self._fail(peer, f"its chain does not attach above #{floor - 1}")
                break
            if outcome is Batch.WAIT:
                log.info("sync from %s paused: a block is ahead of our clock", peer)
                return Turn.WAIT if not (imported or moved) else Turn.PROGRESS
            if outcome is not Batch.OK:
                break
            self._succeed(peer)
            start += len(items)
            self.stats.imported += count
            now = self.chain.clock.monotonic()
            self.stats.blocks_per_second = imported / max(now - began, 1e-6)
            if now - last_report >= PROGRESS_EVERY:
                last_report = now
                log.info(
                    "syncing #%d of #%d (%.0f blocks/s)",
                    store.best_header.number,
                    status.best_number,
                    self.stats.blocks_per_second,
                )
            best, final = store.best_header, store.finalized_header
            if best.number >= status.best_number and final.number >= status.finalized_number:
                break
        if imported:
            log.info(
                "synced %d blocks from %s to #%d (%.0f blocks/s)",
                imported,
                peer,
                store.best_header.number,
                imported / max(self.chain.clock.monotonic() - began, 1e-6),
            )
        if imported or moved:
            return Turn.PROGRESS
        if peer not in self._refused:
            self._idle(peer)
        return Turn.NOTHING

    def _download_ahead(
        self, nursery: trio.Nursery, peer: str, start: int, status: Status
    ) -> _Ahead:
        ahead = _Ahead(start, trio.CancelScope(), trio.Event())

        async def download() -> None:
            with ahead.scope:
                try:
                    ahead.fetched = await self._fetch(peer, start, status, ahead=True)
                finally:
                    ahead.downloaded.set()
                if isinstance(ahead.fetched, list) and len(ahead.fetched) >= WORKER_MIN_BLOCKS:
                    await self._check_signatures(start, ahead.fetched)

        nursery.start_soon(download)
        return ahead

    async def _check_signatures(
        self, start: int, items: list[SyncItem], scope: trio.CancelScope | None = None
    ) -> None:
        """The signatures of a downloaded batch (its first block numbered `start`) checked in
        the signature worker, CHECK_CHUNK_BYTES at a time, while the batch before it or the
        batch itself imports: the hashes it vouches for join the chain's verified set, and the
        import skips them. A chunk the import has passed already (while the child was starting)
        is not sent, and nothing more once `scope` is cancelled."""
        with scope or trio.CancelScope():
            async with self._checking:  # batch after batch: the one importing first
                await self._check_chunks(start, items)

    async def _check_chunks(self, start: int, items: list[SyncItem]) -> None:
        verified = self.chain.verified_signatures
        store = self.chain.store
        chunk: list[bytes] = []
        size = 0
        for index, item in enumerate(items):
            chunk.append(item.block)
            size += len(item.block)
            if size < CHECK_CHUNK_BYTES and index + 1 < len(items):
                continue
            if store.best_header.number < start + index:
                hashes = await self.worker.verified(chunk)
                for signed in hashes:
                    verified.add(signed)
                if hashes:
                    self.stats.verified_ahead += len(chunk)
            chunk, size = [], 0

    async def _fetch(
        self, peer: str, start: int, status: Status, *, ahead: bool = False
    ) -> list[SyncItem] | _Unhelpful:
        """One batch from `start`, or why there is none: it did not come in time, did not
        decode, or was empty although the peer claims blocks there. Records nothing against the
        peer (`_record` does). A batch asked `ahead` waits as long as if the batch before it
        had imported well (it is only used if so), and is not abandoned by `wake`."""
        record = self._records.get(peer)
        suspect = not ahead and record is not None and record.failures > 0
        timeout = self._timeout(peer) if not ahead else self._timeout_after(0)
        raw: bytes | None = None
        try:
            with trio.move_on_after(timeout) as scope:
                if suspect:
                    self._suspect = (peer, scope)
                try:
                    raw = await self.peers.request_sync(
                        peer, SyncRequest(start, MAX_SYNC_BLOCKS).encode()
                    )
                finally:
                    if self._suspect is not None and self._suspect[1] is scope:
                        self._suspect = None
        except PeerUnreachable as exc:
            # Not connected (any more): nothing it sent, so nothing to hold against it. Scoring
            # it, or backing off from it for long, would keep a peer that merely reconnected
            # out, and with it maybe the only way back to the chain.
            return _Unhelpful(str(exc), unreachable=True)
        except RequestFailed as exc:
            return _Unhelpful(f"request failed: {exc}")
        if raw is None:
            if trio.current_time() >= scope.deadline:
                return _Unhelpful(f"no answer within {timeout:.0f} s")
            # Abandoned for other work (see `wake`), which anyone can cause: no penalty.
            return _Unhelpful("no answer yet, other work came", penalize=False)
        try:
            items = decode_sync_response(raw)
        except WireError as exc:
            return _Unhelpful("bad response", bad_data=f"bad sync response: {exc}")
        if not items:
            return _Unhelpful(f"claims best #{status.best_number} but sent no block from #{start}")
        return items

    def _record(self, peer: str, unhelpful: _Unhelpful) -> None:
        """What a request that gave no batch costs the peer."""
        if unhelpful.unreachable:
            log.info("sync from %s: %s; asking others", peer, unhelpful.reason)
            self._idle(peer)
            return
        self._fail(peer, unhelpful.reason, penalize=unhelpful.penalize)
        if unhelpful.bad_data is not None:
            self.peers.penalize(peer, PENALTY_BAD_DATA, unhelpful.bad_data)

    async def _import_batch(
        self,
        peer: str,
        status: Status,
        start: int,
        items: list[SyncItem],
        downloading: trio.Event | None = None,
    ) -> tuple[Batch, int, bool]:
        """Import a downloaded batch in order, then apply its justifications (and those that
        waited for its blocks); while `downloading` is not set (the next batch is on its way),
        the event loop gets NETWORK_PASSES more passes after each block. Returns how the batch
        ended, how many blocks were new and whether finality moved. Each block is still one
        atomic write, but the batch reaches the disk with one fsync at its end
        (`Database.deferred_sync`): a killed node loses none of it, a power cut at most this
        batch, and the database reopens consistent either way."""
        with self.chain.store.db.deferred_sync():
            return await self._import_batch_deferred(peer, status, start, items, downloading)

    async def _import_batch_deferred(
        self,
        peer: str,
        status: Status,
        start: int,
        items: list[SyncItem],
        downloading: trio.Event | None,
    ) -> tuple[Batch, int, bool]:
        """`_import_batch` with its writes flushed to the disk once, at its end."""
        store = self.chain.store
        imported = 0
        justified: list[tuple[Header, bytes]] = []
        outcome = Batch.OK
        previous: Header | None = None
        for index, item in enumerate(items):
            try:
                block = decode_block(item.block)
            except WireError as exc:
                self.peers.penalize(peer, PENALTY_BAD_DATA, f"sync block: {exc}")
                outcome = Batch.BAD
                break
            header = block.header
            if header.number != start + index or (
                previous is not None and header.parent_hash != previous.hash
            ):
                self.peers.penalize(
                    peer, PENALTY_BAD_DATA, f"sync: block #{header.number} out of order"
                )
                outcome = Batch.BAD
                break
            previous = header
            verdict = self._check_chain(peer, status, header)
            if verdict is not None:
                outcome = verdict
                break
            if header.number <= store.finalized_header.number:
                continue  # ours and final already (`_check_chain` compared it)
            try:
                if await self.chain.import_block(block):
                    imported += 1
            except InvalidBlock as exc:
                outcome = self._rejected(peer, status, index, exc)
                break
            if item.justification:
                justified.append((header, item.justification))
            if downloading is not None and not downloading.is_set():
                for _ in range(NETWORK_PASSES):
                    await trio.lowlevel.checkpoint()
        moved: bool | None = False
        if outcome is not Batch.REFUSED:
            moved = await self._apply_justifications(peer, justified)
            if outcome is Batch.OK and moved is None:
                outcome = Batch.BAD
        return outcome, imported, bool(moved)

    def _check_chain(self, peer: str, status: Status, header: Header) -> Batch | None:
        """A block's place against the checkpoint, our finalized chain and the peer's status,
        before anything is done with it."""
        store = self.chain.store
        if self.checkpoint is not None:
            number, expected = self.checkpoint
            if header.number == number and header.hash != expected:
                self._refuse(
                    peer,
                    f"its block #{number} is 0x{header.hash.hex()}, "
                    f"the checkpoint says 0x{expected.hex()}",
                )
                return Batch.REFUSED
        if header.number == status.finalized_number and header.hash != status.finalized_hash:
            self._fail(peer, f"its block #{header.number} is not the finalized one it announced")
            return Batch.FAILED
        finalized = store.finalized_header
        if header.number <= finalized.number and store.canonical_hash(header.number) != header.hash:
            if status.finalized_number >= header.number:
                self._refuse(peer, f"its block #{header.number} conflicts with our finalized chain")
                return Batch.REFUSED
            self._fail(peer, f"its chain leaves our finalized chain at #{header.number}")
            return Batch.FAILED
        return None

    def _rejected(self, peer: str, status: Status, index: int, exc: InvalidBlock) -> Batch:
        if exc.reason is BlockRejection.UNKNOWN_PARENT and index == 0:
            return Batch.FORK
        if exc.reason is BlockRejection.FUTURE_SLOT:
            return Batch.WAIT
        if exc.reason is BlockRejection.BELOW_FINALIZED:
            # The block's parent is not on our finalized chain (finality may have moved here
            # while this batch was on its way).
            finalized = self.chain.store.finalized_header.number
            if status.finalized_number >= finalized:
                self._refuse(peer, f"its chain does not extend our finalized block #{finalized}")
                return Batch.REFUSED
            self._fail(peer, f"its chain does not extend our finalized block #{finalized}")
            return Batch.FAILED
        self.peers.penalize(peer, PENALTY_BAD_DATA, f"sync block: {exc}")
        return Batch.BAD

    # -- justifications ---------------------------------------------------------------------------

    async def _apply_justifications(
        self, peer: str, found: list[tuple[Header, bytes]]
    ) -> bool | None:
        """Check a batch's justifications and finalize the highest that holds, trying those
        that waited for this batch's blocks too. True when finality moved, None when the peer
        sent a forged one (it is banned). A FinalityConflict goes up: the node must halt."""
        store = self.chain.store
        validators = self.chain.authorities
        checked: list[PendingJustification] = []
        for header, data in found:
            if header.number <= store.finalized_header.number:
                continue
            try:
                votes = check_justification_structure(data, validators)
            except InvalidJustification as exc:
                self._forged(peer, header, exc)
                return None
            checked.append(PendingJustification(peer, header, data, votes))
        candidates = sorted(
            [*checked, *self._pending.values()], key=lambda p: p.header.number, reverse=True
        )
        moved = False
        forged = False
        for pending in candidates:
            if pending.header.number <= store.finalized_header.number:
                self._pending.pop(Hash32(pending.header.hash), None)
                continue
            try:
                check_justification_ancestry(pending.votes, pending.header, store)
            except UnknownVoteTarget:
                self._keep(pending)
                continue
            except InvalidJustification as exc:
                self._pending.pop(Hash32(pending.header.hash), None)
                self._forged(pending.peer, pending.header, exc)
                forged = forged or pending.peer == peer
                continue
            self._pending.pop(Hash32(pending.header.hash), None)
            try:
                await trio.to_thread.run_sync(
                    check_justification_signatures, pending.votes, store.genesis_hash or b""
                )
            except InvalidJustification as exc:
                self._forged(pending.peer, pending.header, exc)
                forged = forged or pending.peer == peer
                continue
            if self.chain.finalize(Hash32(pending.header.hash), pending.data):
                moved = True
        self.stats.pending_justifications = len(self._pending)
        if forged and not moved:
            return None
        return moved

    def _keep(self, pending: PendingJustification) -> None:
        """Keep a justification whose votes name blocks we do not have yet (the proof may
        carry precommits for descendants of the block); the lowest go first when full."""
        self._pending[Hash32(pending.header.hash)] = pending
        while len(self._pending) > MAX_PENDING_JUSTIFICATIONS:
            lowest = min(self._pending.values(), key=lambda p: p.header.number)
            del self._pending[Hash32(lowest.header.hash)]

    def _forged(self, peer: str, header: Header, exc: InvalidJustification) -> None:
        log.warning("forged justification of #%d from %s: %s", header.number, peer, exc)
        self.peers.penalize(peer, PENALTY_BAN, f"bad justification: {exc}")
