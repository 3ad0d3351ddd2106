"""The signature worker: a real child process checks downloaded blocks' transaction signatures.
Its answer only ever saves work, so every failure (a forged signature, bytes that are not a
block, a dead or missing child, a cancelled exchange) must leave the hash out, never in, and
never raise into sync."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import pytest
import rlp
import trio
import trio.testing

from chain import codec
from chain.blocks import Block, Header, tx_hash
from chain.keys import Keypair, sign_transaction
from chain.primitives import Hash32
from consensus.signature_worker import (
    HASH_SIZE,
    MAX_BLOCKS,
    OWED_SECONDS,
    REST_SECONDS,
    RETRY_SECONDS,
    SignatureWorker,
    encode_request,
    serve,
    verified_hashes,
)
from tests.factories import ALICE, BOB, transfer_call

GENESIS = Hash32(b"\x07" * 32)


def signed(nonce: int) -> bytes:
    tx = sign_transaction(
        ALICE, genesis_hash=GENESIS, nonce=nonce, call=transfer_call(BOB.public, 5)
    )
    return bytes(rlp.encode(tx))


def forged(nonce: int) -> bytes:
    """A transfer whose last signature byte is flipped."""
    encoded = bytearray(signed(nonce))
    encoded[-1] ^= 1
    return bytes(encoded)


def sealed_header(number: int = 1, signer: Keypair = ALICE) -> Header:
    header = Header(
        Hash32(b"\x01" * 32), number, Hash32(b"\x02" * 32), Hash32(b"\x03" * 32), 1, 1,
        signer.public, b"",
    )  # fmt: skip
    return header.copy(seal=signer.sign(header.pre_seal_hash()))  # type: ignore[no-any-return]


def block(*extrinsics: bytes, header: Header | None = None) -> bytes:
    return bytes(rlp.encode(Block(header or sealed_header(), extrinsics)))


def test_the_sealed_header_then_the_transactions_whose_signature_verifies_are_named() -> None:
    header = sealed_header()
    good = [signed(0), signed(1)]
    found = verified_hashes(block(good[0], forged(2), b"not a transaction", good[1]))
    assert found == [header.hash, tx_hash(good[0]), tx_hash(good[1])]


def test_a_block_whose_seal_does_not_verify_is_not_checked_further() -> None:
    header = sealed_header()
    by_bob = header.copy(author=BOB.public)  # Alice's seal on a header naming Bob
    assert verified_hashes(block(signed(0), header=by_bob)) is None
    assert verified_hashes(block(signed(0), header=header.copy(seal=b""))) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc0", rlp.encode([b"a", b"b"]), rlp.encode([[], [[b"x"]]]), b"\xff" * 40],
)
def test_bytes_that_are_not_a_block_name_nothing(data: bytes) -> None:
    assert verified_hashes(data) is None


def test_a_transaction_of_deeply_nested_lists_is_left_out_not_a_crash() -> None:
    deep = b"\xc0"
    for _ in range(3_000):
        deep = codec.list_prefix(len(deep)) + deep
    good = signed(0)
    assert verified_hashes(block(deep, good)) == [sealed_header().hash, tx_hash(good)]


def test_the_child_loop_answers_each_request_and_stops_at_a_broken_one() -> None:
    good = signed(0)
    header = sealed_header()
    requests = io.BytesIO(
        encode_request([block(good)])
        + encode_request([block(forged(1))])
        + encode_request([block(good)])[:-3]  # cut short: the input ends inside a block
    )
    replies = io.BytesIO()
    serve(requests, replies)
    assert replies.getvalue() == (
        (2).to_bytes(4, "big") + header.hash + tx_hash(good)
        + (1).to_bytes(4, "big") + header.hash
    )  # fmt: skip


def test_the_child_stops_checking_a_request_at_its_first_unsealed_block() -> None:
    good = signed(0)
    unsealed = sealed_header(2).copy(seal=b"\x00" * 64)
    replies = io.BytesIO()
    serve(
        io.BytesIO(
            encode_request(
                [block(good), block(good, header=unsealed), block(good, header=sealed_header(3))]
            )
        ),
        replies,
    )
    assert replies.getvalue() == (2).to_bytes(4, "big") + sealed_header().hash + tx_hash(good)


def test_the_child_loop_refuses_a_count_over_its_limit() -> None:
    replies = io.BytesIO()
    serve(io.BytesIO((MAX_BLOCKS + 1).to_bytes(4, "big") + b"\x00" * 64), replies)
    assert replies.getvalue() == b""


def test_a_real_child_checks_blocks_and_is_kept_for_the_next_request() -> None:
    async def scenario() -> None:
        worker = SignatureWorker()
        try:
            txs = [signed(n) for n in range(6)]
            second = sealed_header(2)
            hashes = await worker.verified(
                [block(*txs[:3]), block(forged(9), *txs[3:], header=second)]
            )
            assert hashes == [
                sealed_header().hash, *[tx_hash(tx) for tx in txs[:3]],
                second.hash, *[tx_hash(tx) for tx in txs[3:]],
            ]  # fmt: skip
            assert all(len(h) == HASH_SIZE for h in hashes)
            pid = worker.pid
            assert await worker.verified([block(txs[0])]) == [sealed_header().hash, tx_hash(txs[0])]
            assert worker.pid == pid and worker.blocks == 3
        finally:
            await worker.aclose()
        assert not worker.running

    trio.run(scenario)


def test_a_dead_child_makes_the_worker_answer_nothing_for_a_while_then_start_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = signed(0)

    async def scenario() -> None:
        worker = SignatureWorker()
        try:
            assert await worker.verified([block(good)]) != []
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)
            with caplog.at_level(logging.WARNING, "statemesh.sync"):
                assert await worker.verified([block(good)]) == []
                assert await worker.verified([block(good)]) == []
            assert not worker.running
            await trio.sleep(RETRY_SECONDS)
            assert await worker.verified([block(good)]) == [sealed_header().hash, tx_hash(good)]
        finally:
            await worker.aclose()

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0.05))
    failures = [
        r.getMessage() for r in caplog.records if "signature worker failed" in r.getMessage()
    ]
    assert len(failures) == 1 and "for 60 s" in failures[0], failures


def test_a_child_that_cannot_start_answers_nothing() -> None:
    async def scenario() -> None:
        worker = SignatureWorker(["/nonexistent/python", "-m", "consensus.signature_worker"])
        assert await worker.verified([block(signed(0))]) == []
        assert not worker.running

    trio.run(scenario)


def test_a_child_that_exits_without_answering_is_dropped() -> None:
    async def scenario() -> None:
        worker = SignatureWorker([sys.executable, "-c", "pass"])
        assert await worker.verified([block(signed(0))]) == []
        assert not worker.running

    trio.run(scenario)


def test_a_request_cancelled_while_the_child_works_keeps_the_child_and_its_answer_is_dropped() -> (
    None
):
    """A sync turn that ends while the child checks a chunk costs no new child: the answer owed
    is read and dropped before the next request's, which gets its own."""

    async def scenario() -> None:
        worker = SignatureWorker()
        try:
            good = signed(0)
            assert await worker.verified([block(good)]) != []  # loaded and answering
            pid = worker.pid
            many = [block(*[signed(n) for n in range(100)])] * 3  # some 300 signatures
            assert len(encode_request(many)) < 65_536  # what a pipe holds: sent whole at once
            with trio.move_on_after(0.002):
                await worker.verified(many)
            assert worker.running and worker.pid == pid
            assert await worker.verified([block(good)]) == [sealed_header().hash, tx_hash(good)]
            assert worker.pid == pid
        finally:
            await worker.aclose()

    trio.run(scenario)


def test_a_request_cancelled_while_being_sent_stops_the_child() -> None:
    """A child that stopped reading: a request larger than the pipe holds cannot be sent whole,
    and a child left with half a request would read the next one as its rest."""

    stuck = [sys.executable, "-c", "import time; time.sleep(600)"]

    async def scenario() -> None:
        small, large = SignatureWorker(stuck), SignatureWorker(stuck)
        try:
            with trio.move_on_after(0.5):
                await small.verified([block(signed(0))])  # sent whole, never answered
            assert small.running
            with trio.move_on_after(0.5):
                await small.verified([block(signed(1))])  # still waiting for the first answer
            assert small.running
            with trio.move_on_after(0.5):
                await large.verified([block(*[signed(n) for n in range(50)])] * 100)  # 1 MB
            assert not large.running
        finally:
            await small.aclose()
            await large.aclose()

    trio.run(scenario)


def test_a_child_that_owes_an_answer_and_stopped_answering_is_replaced() -> None:
    """A child stuck before answering a cancelled request is not waited for by every later
    request: the next one gives it OWED_SECONDS, then the node verifies alone for a while."""

    async def scenario() -> None:
        worker = SignatureWorker([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            with trio.move_on_after(1):
                await worker.verified([block(signed(0))])
            assert worker.running  # owes an answer
            began = trio.current_time()
            assert await worker.verified([block(signed(1))]) == []
            assert trio.current_time() - began >= OWED_SECONDS
            assert not worker.running
            assert await worker.verified([block(signed(2))]) == []  # verifying alone now
            assert not worker.running
        finally:
            await worker.aclose()

    began = time.monotonic()
    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0.5))
    assert time.monotonic() - began < 20  # not until the child ended with its life


def test_a_child_that_stops_halfway_through_an_answer_is_stopped() -> None:
    """Once an answer has begun, its caller waits for the rest shielded from cancellation, but
    not for ever: after REST_SECONDS the child counts as failed."""
    one_byte_then_nothing = [
        sys.executable,
        "-c",
        "import sys, time; sys.stdout.buffer.write(b'\\x00'); sys.stdout.buffer.flush(); "
        "time.sleep(30)",
    ]

    async def scenario() -> None:
        worker = SignatureWorker(one_byte_then_nothing)
        try:
            with trio.move_on_after(1):  # comes once the answer has begun: shielded from it
                assert await worker.verified([b"x"]) == []
            assert trio.current_time() >= REST_SECONDS
            assert not worker.running
        finally:
            await worker.aclose()

    began = time.monotonic()
    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=1.0))
    assert time.monotonic() - began < 20  # not until the child ended its answer with its life


class _Answers(trio.abc.ReceiveStream):
    """Two empty answers (count 0) given a byte at first: `on_first` runs when the first byte
    goes out, while the owed answer is being read."""

    def __init__(self, on_first: Callable[[], None]) -> None:
        self.data = b"\x00" * 8
        self.on_first: Callable[[], None] | None = on_first

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        size = 1 if self.on_first is not None else (max_bytes or 1)
        out, self.data = self.data[:size], self.data[size:]
        if self.on_first is not None:
            self.on_first()
            self.on_first = None
        return out

    async def aclose(self) -> None:
        pass


class _Requests(trio.abc.SendStream):
    def __init__(self) -> None:
        self.sent = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sent += bytes(data)

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class _Child:
    def __init__(self, stdout: _Answers, stdin: _Requests) -> None:
        self.stdout, self.stdin, self.pid, self.killed = stdout, stdin, 4242, False

    def kill(self) -> None:
        self.killed = True

    async def wait(self) -> int:
        return 0


def test_a_cancellation_while_an_owed_answer_is_read_leaves_the_child_and_sends_nothing() -> None:
    """The caller is cancelled while the answer it must drop first comes in (read shielded):
    the cancellation lands before any byte of its own request, so the child is kept and owes
    nothing more."""

    async def scenario() -> None:
        worker = SignatureWorker(["unused"])
        scope = trio.CancelScope()
        child = _Child(_Answers(scope.cancel), _Requests())
        worker._process = child  # type: ignore[assignment]
        worker._owed = 1  # the answer to a request whose caller was cancelled
        with scope:
            await worker.verified([b"x"])
        assert scope.cancelled_caught
        assert child.stdin.sent == b"" and not child.killed
        assert worker.running and worker._owed == 0

    trio.run(scenario)


def test_more_blocks_than_a_request_may_hold_are_not_sent() -> None:
    async def scenario() -> None:
        worker = SignatureWorker()
        assert await worker.verified([block(signed(0))] * (MAX_BLOCKS + 1)) == []
        assert await worker.verified([]) == []
        assert not worker.running

    trio.run(scenario)
