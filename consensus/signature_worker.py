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
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import BinaryIO, Final, TypeVar

import trio

from chain import codec
from chain.blocks import decode_transaction, tx_hash
from chain.signature import verify
from chain.wire import WireError, decode_block

log = logging.getLogger("statemesh.sync")
_T = TypeVar("_T")

_COUNT: Final = struct.Struct(">I")
HASH_SIZE: Final = 32
MAX_BLOCKS: Final = 4096
"""More than a sync batch holds; a request over it is refused by the child."""


def encode_request(blocks: Sequence[bytes]) -> bytes:
    parts = [_COUNT.pack(len(blocks))]
    for block in blocks:
        parts.append(_COUNT.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def verified_hashes(block: bytes) -> list[bytes]:
    """The hash of `block`'s header if its seal is its author's signature, then those of its
    transactions whose signature verifies; nothing for bytes that are not a block. Whether the
    author is the one of the block's slot is for the importer to say: it knows the authorities.
    """
    try:
        decoded = decode_block(block)
    except WireError:
        return []
    header = decoded.header
    hashes: list[bytes] = []
    if verify(header.author, header.pre_seal_hash(), header.seal):
        hashes.append(header.hash)
    for encoded in decoded.extrinsics:
        try:
            tx = decode_transaction(encoded)
        except codec.CodecError:
            continue
        if verify(tx.sender, tx.signing_payload, tx.signature):
            hashes.append(tx_hash(encoded))
    return hashes


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
        for _ in range(count):
            size = _read_exactly(requests, _COUNT.size)
            block = None if size is None else _read_exactly(requests, _COUNT.unpack(size)[0])
            if block is None:
                return
            hashes.extend(verified_hashes(block))
        replies.write(_COUNT.pack(len(hashes)) + b"".join(hashes))
        replies.flush()


class SignatureWorker:
    """The parent's side: one child, started on first use and kept until `aclose`.

    The worker is an optimisation only. If the child cannot be started or dies, `verified`
    answers nothing from then on (the importer verifies every signature itself) and says so once
    in the log; it never raises for the child's sake."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = (
            list(command)
            if command is not None
            else [sys.executable, "-m", "consensus.signature_worker"]
        )
        self._process: trio.Process | None = None
        self._broken = False
        self._lock = trio.Lock()
        self.blocks = 0
        """Blocks whose signatures the child checked."""

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the child now rather than at the first `verified` (it takes a few tenths of a
        second, which a caller can spend downloading)."""
        async with self._lock:
            await self._guarded(self._start)

    async def verified(self, blocks: Sequence[bytes]) -> list[bytes]:
        """Hashes of the transactions of `blocks` whose signature verified (in the child)."""
        if not blocks or len(blocks) > MAX_BLOCKS:
            return []
        async with self._lock:
            hashes = await self._guarded(lambda: self._exchange(blocks))
        return hashes or []

    async def _guarded(self, step: Callable[[], Awaitable[_T]]) -> _T | None:
        """`step` on a working child; None, and no child from then on, if it fails."""
        if self._broken:
            return None
        try:
            return await step()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, EOFError) as exc:
            log.warning("the signature worker failed (%s); verifying in the node", exc)
            self._broken = True
            await self.aclose()
            return None
        except BaseException:
            # Cancelled mid-exchange: the child's answer would be read by the next request.
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
        await process.stdin.send_all(encode_request(blocks))
        (count,) = _COUNT.unpack(await _receive(process.stdout, _COUNT.size))
        data = await _receive(process.stdout, count * HASH_SIZE)
        self.blocks += len(blocks)
        return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]

    async def aclose(self) -> None:
        """Stop the child, if any. Safe to call more than once, and when cancelled."""
        process, self._process = self._process, None
        if process is None:
            return
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()


async def _receive(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise EOFError(f"the worker ended {len(data)} bytes into a {size}-byte answer")
        data += chunk
    return bytes(data)


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
