"""A child process that verifies the signatures of downloaded blocks (seals and transactions), so
that sync checks them on the second core while the event loop imports the batch before.

Run as `python -m consensus.signature_worker`: it reads requests on stdin and answers on stdout
until the end of its input, which also comes when the node dies. A request is a u32 count and
that many u32-length-prefixed encoded blocks; the answer is a u32 count and that many 32-byte
hashes: those of the headers whose seal and of the signed transactions whose signature verified
(a hash of the very bytes the signature is part of, as `chain.signature.VerifiedSignatures`
keeps them). Anything that does not decode is left out of the answer, and so is verified again,
with its proper error, when the block is imported: the answer only ever saves work."""

from __future__ import annotations

import logging
import signal
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import BinaryIO, Final, TypeVar

import trio

from chain import codec
from chain.blocks import decode_transaction, tx_hash
from chain.signature import verify
from chain.wire import decode_block

log = logging.getLogger("statemesh.sync")
_T = TypeVar("_T")

_COUNT: Final = struct.Struct(">I")
HASH_SIZE: Final = 32
MAX_BLOCKS: Final = 4096
"""More than a sync batch holds; a request over it is refused by the child."""
RETRY_SECONDS: Final = 60.0
"""How long the node verifies alone after its child failed, before it starts another."""
OWED_SECONDS: Final = 5.0
"""How long an answer still owed to a cancelled request may take before the child counts as
failed: a child that stopped answering is replaced, not waited for by every later request."""
REST_SECONDS: Final = 10.0
"""How long the rest of an answer may take once its first byte is in (the child writes an answer
at once, and the caller cannot be cancelled meanwhile) before the child counts as failed."""


def encode_request(blocks: Sequence[bytes]) -> bytes:
    parts = [_COUNT.pack(len(blocks))]
    for block in blocks:
        parts.append(_COUNT.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def verified_hashes(block: bytes) -> list[bytes] | None:
    """The hash of `block`'s header if its seal is its author's signature, then those of its
    transactions whose signature verifies. None for bytes that are not a block or a seal that
    does not verify: the importer refuses that block, and the blocks after it in a batch do not
    attach, so they are not worth checking. Whether the author is the one of the block's slot is
    for the importer to say: it knows the authorities."""
    try:
        decoded = decode_block(block)
        header = decoded.header
        if not verify(header.author, header.pre_seal_hash(), header.seal):
            return None
        hashes: list[bytes] = [header.hash]
        for encoded in decoded.extrinsics:
            try:
                tx = decode_transaction(encoded)
            except codec.CodecError:
                continue
            if verify(tx.sender, tx.signing_payload, tx.signature):
                hashes.append(tx_hash(encoded))
        return hashes
    except Exception:  # whatever a peer's bytes do here, the answer only leaves them out
        return None


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """`size` bytes, or None when the input ends first."""
    data = stream.read(size)
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the end of input (or one that breaks the format)."""
    while (head := _read_exactly(requests, _COUNT.size)) is not None:
        (count,) = _COUNT.unpack(head)
        if count > MAX_BLOCKS:
            return
        hashes: list[bytes] = []
        checking = True
        for _ in range(count):
            size = _read_exactly(requests, _COUNT.size)
            block = None if size is None else _read_exactly(requests, _COUNT.unpack(size)[0])
            if block is None:
                return
            found = verified_hashes(block) if checking else None
            if found is None:
                checking = False  # the rest is read, not checked
            else:
                hashes.extend(found)
        replies.write(_COUNT.pack(len(hashes)) + b"".join(hashes))
        replies.flush()


class SignatureWorker:
    """The parent's side: one child, started on first use and kept until `aclose`.

    The worker is an optimisation only. If the child cannot be started or dies, `verified`
    answers nothing for RETRY_SECONDS (the importer verifies every signature itself), says so in
    the log, then starts a new child; it never raises for the child's sake."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = (
            list(command)
            if command is not None
            else [sys.executable, "-m", "consensus.signature_worker"]
        )
        self._process: trio.Process | None = None
        self._sending = False
        self._owed = 0
        """Answers the child owes. One left when a request ends is the answer to a request
        whose caller was cancelled before the answer began: it is read and dropped before the
        next answer, so that a sync turn ending while the child works costs no new child (one
        takes some 0.4 s to start)."""
        self._retry_at = float("-inf")
        """After a failure, no child before this time (trio clock)."""
        self._lock = trio.Lock()
        self.blocks = 0
        """Blocks whose signatures the child checked."""

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def verified(self, blocks: Sequence[bytes]) -> list[bytes]:
        """Hashes of the headers of `blocks` whose seal and of their transactions whose
        signature verified in the child (see the module's docstring)."""
        if not blocks or len(blocks) > MAX_BLOCKS:
            return []
        async with self._lock:
            hashes = await self._guarded(lambda: self._exchange(blocks))
        return hashes or []

    async def _guarded(self, step: Callable[[], Awaitable[_T]]) -> _T | None:
        """`step` on a working child; None, and no child for RETRY_SECONDS, if it fails."""
        if trio.current_time() < self._retry_at:
            return None
        try:
            return await step()
        except (
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            EOFError,
        ) as exc:
            log.warning(
                "the signature worker failed (%r); verifying in the node for %.0f s",
                exc,
                RETRY_SECONDS,
            )
            self._retry_at = trio.current_time() + RETRY_SECONDS
            await self.aclose()
            return None
        except BaseException:
            if self._sending:
                # Cancelled mid-request: the child would read the next request as its rest.
                await self.aclose()
            raise

    async def _start(self) -> trio.Process:
        if self._process is None:
            self._process = await trio.lowlevel.open_process(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        return self._process

    async def _exchange(self, blocks: Sequence[bytes]) -> list[bytes]:
        process = await self._start()
        if process.stdin is None or process.stdout is None:
            raise OSError("the signature worker was started without pipes")
        while self._owed:
            with trio.fail_after(OWED_SECONDS):
                await _answer(process.stdout)
            self._owed -= 1
        # A cancellation that came while an owed answer was read shielded is raised here, before
        # a byte of the request is sent, rather than inside the send, which would stop the child.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._sending = True
        await process.stdin.send_all(encode_request(blocks))
        self._sending = False
        self._owed += 1
        data = await _answer(process.stdout)
        self._owed -= 1
        self.blocks += len(blocks)
        return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]

    async def aclose(self) -> None:
        """Stop the child, if any. Safe to call more than once, and when cancelled."""
        process, self._process = self._process, None
        self._sending = False
        self._owed = 0
        if process is None:
            return
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()


async def _answer(stream: trio.abc.ReceiveStream) -> bytes:
    """The hashes of one answer. Cancelled before the answer begins, nothing is read and the
    answer is still owed (`trio.Cancelled` carries no partial state); once it has begun, the
    rest is read shielded, within REST_SECONDS, as the child writes an answer at once and in
    whole."""
    head = await stream.receive_some(_COUNT.size)
    if not head:
        raise EOFError("the worker ended before its answer")
    with trio.CancelScope(shield=True), trio.fail_after(REST_SECONDS):
        head += await _receive(stream, _COUNT.size - len(head))
        (count,) = _COUNT.unpack(head)
        return await _receive(stream, count * HASH_SIZE)


async def _receive(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise EOFError(f"the worker ended {len(data)} bytes into a {size}-byte answer")
        data += chunk
    return bytes(data)


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the node stops this child itself,
    # and the end of its input stops it too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
