"""The child process that runs chiavdf.prove for the prover service, and its pipe protocol.

Run as `python -m vdf.worker PARENT_PID`: it answers one request at a time on stdin/stdout
and exits at end of input. It is killed, never asked, when a proof is cancelled."""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from typing import BinaryIO, Final

from vdf.errors import VdfError
from vdf.proof import CHALLENGE_SIZE, FORM_SIZE, PROOF_SIZE, VdfParams, prove

READY: Final = b"R"
OK: Final = b"K"
FAILED: Final = b"E"

_HEADER: Final = struct.Struct(">HQ")
REQUEST_SIZE: Final = _HEADER.size + CHALLENGE_SIZE + FORM_SIZE
"""discriminant bits (u16) ‖ iterations (u64) ‖ challenge (32) ‖ x (100)."""
RESULT_SIZE: Final = FORM_SIZE + PROOF_SIZE
"""After OK: y ‖ proof. After FAILED: a u16 length and that many bytes of UTF-8 message."""

PARENT_POLL_SECONDS: Final = 0.5


def encode_request(challenge: bytes, x: bytes, iterations: int, params: VdfParams) -> bytes:
    return _HEADER.pack(params.discriminant_bits, iterations) + challenge + x


def decode_request(data: bytes) -> tuple[bytes, bytes, int, VdfParams]:
    """(challenge, x, iterations, params) from a REQUEST_SIZE request."""
    bits, iterations = _HEADER.unpack_from(data)
    challenge = data[_HEADER.size : _HEADER.size + CHALLENGE_SIZE]
    x = data[_HEADER.size + CHALLENGE_SIZE : REQUEST_SIZE]
    return challenge, x, iterations, VdfParams(bits)


def encode_failure(message: str) -> bytes:
    text = message.encode()[:0xFFFF]
    return FAILED + len(text).to_bytes(2, "big") + text


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """`size` bytes, or None at a clean end of input before the first byte."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            if data:
                raise EOFError(f"input ended {len(data)} bytes into a {size}-byte request")
            return None
        data += chunk
    return data


def _watch_parent(parent_pid: int) -> None:
    """Exit as soon as the parent is gone (reparented away), even mid-proof: chiavdf.prove
    releases the GIL, so this thread runs beside it. A node killed with -9 leaves no proof
    burning a core. (Linux's parent-death signal cannot be used: trio starts children from a
    worker thread, and that signal fires when the thread, not the process, ends.)"""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the end of input."""
    replies.write(READY)
    replies.flush()
    while (request := _read_exactly(requests, REQUEST_SIZE)) is not None:
        try:
            challenge, x, iterations, params = decode_request(request)
            result = prove(challenge, x, iterations, params)
        except VdfError as exc:
            replies.write(encode_failure(str(exc)))
        else:
            replies.write(OK + result.y + result.proof)
        replies.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m vdf.worker PARENT_PID", file=sys.stderr)
        return 2
    threading.Thread(target=_watch_parent, args=(int(argv[0]),), daemon=True).start()
    # The protocol gets its own copy of stdout, and file descriptor 1 becomes stderr: anything
    # the native library prints can then never corrupt an answer.
    with os.fdopen(os.dup(sys.stdout.fileno()), "wb") as replies:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        serve(sys.stdin.buffer, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
