"""`vdf.prover` and `vdf.worker`: a chain of proofs against a fake chain, prompt cancellation
with nothing left running, and the pipe protocol with its failure modes."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trio

from chain import vdf as chain_vdf
from chain.primitives import blake2_256
from chain.runtime.towers import verify_vdf
from vdf import prover as prover_module
from vdf.proof import GENERATOR, MalformedProof, VdfParams, VdfProof, prove, verify
from vdf.prover import ProofWorker, Prover, ProverError, TowerJob
from vdf.tower import (
    GENESIS_PREVIOUS_Y,
    TOWER_INPUT,
    TowerProof,
    tower_challenge,
)
from vdf.worker import OK, READY, REQUEST_SIZE, encode_request, serve

ITERATIONS = 2_000
PARAMS = VdfParams()
NODE = bytes([0x5E]) * 32
CHALLENGE = bytes(range(32))
FOREVER = 10**8
"""Iterations that take about ten minutes: only cancellation ends such a proof in a test."""


@dataclass
class FakeTowerChain:
    """The chain's side of the prover: hands out the next height over a fresh anchor and accepts
    proofs by the runtime's rules. Stops handing out jobs after `wanted` proofs."""

    wanted: int
    height: int = 0
    last_y: bytes = GENESIS_PREVIOUS_Y
    block: int = 100
    accepted: list[TowerProof] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    job_taken: trio.Event = field(default_factory=trio.Event)

    def anchor(self, number: int) -> bytes:
        return bytes(blake2_256(number.to_bytes(8, "big")))

    async def next_job(self) -> TowerJob:
        if len(self.accepted) >= self.wanted:
            self.done.set()
            await trio.sleep_forever()
        self.block += 1
        self.job_taken.set()
        return TowerJob(self.height + 1, self.last_y, self.block, self.anchor(self.block))

    async def submit(self, proof: TowerProof) -> None:
        # What the runtime checks of a submitted proof: next height, fresh anchor, and a
        # VDF output over the chained challenge.
        assert proof.node_id == NODE and proof.height == self.height + 1
        assert proof.anchor_hash == self.anchor(self.block)
        assert verify_vdf(
            proof.challenge(self.last_y), proof.y, proof.proof, ITERATIONS,
            PARAMS.discriminant_bits,
        )  # fmt: skip
        self.height, self.last_y = proof.height, proof.y
        self.accepted.append(proof)


def run_trio(test: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        with trio.fail_after(60):
            await test()

    trio.run(guarded)


def prove_until_done(prover: Prover, chain: FakeTowerChain) -> None:
    """Run `prover` until `chain` has accepted the proofs it wanted."""

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(prover.run)
            await chain.done.wait()
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def process_is_gone(pid: int) -> bool:
    """Reaped, or exited and waiting for a parent that is not ours to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_prover_builds_a_tower_each_proof_over_the_last_output() -> None:
    chain = FakeTowerChain(wanted=3)
    prover = Prover(NODE, PARAMS, ITERATIONS, chain.next_job, chain.submit)
    prove_until_done(prover, chain)
    assert [proof.height for proof in chain.accepted] == [1, 2, 3]
    assert [proof.anchor_number for proof in chain.accepted] == [101, 102, 103]
    previous = GENESIS_PREVIOUS_Y
    for proof in chain.accepted:
        challenge = tower_challenge(NODE, previous, proof.anchor_hash, proof.height)
        assert verify(challenge, TOWER_INPUT, proof.vdf_proof(), ITERATIONS, PARAMS)
        previous = proof.y
    stats = prover.statistics()
    assert stats.proofs_made == 3
    assert stats.last_height == 3
    assert stats.proving_height is None
    assert stats.last_iterations_per_second is not None
    assert stats.last_iterations_per_second > 0
    assert stats.worker_pid is None


def test_the_prover_checks_each_proof_off_the_event_loop_and_the_chain_finds_it_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on_main_thread: list[bool] = []

    def recorded_verify(*args: object) -> bool:
        on_main_thread.append(threading.current_thread() is threading.main_thread())
        return verify(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(prover_module, "verify", recorded_verify)
    chain_vdf.forget_verdicts()
    chain = FakeTowerChain(wanted=2)
    prover = Prover(NODE, PARAMS, ITERATIONS, chain.next_job, chain.submit)
    prove_until_done(prover, chain)
    assert on_main_thread == [False, False]
    # The chain's checks in `FakeTowerChain.submit` were answered from the remembered verdicts.
    info = chain_vdf._verify_group.cache_info()
    assert (info.misses, info.hits) == (2, 2)


def test_a_proof_that_does_not_verify_is_never_submitted() -> None:
    chain = FakeTowerChain(wanted=1)
    # A worker that answers every request with y = proof = the generator: well formed, wrong.
    body = f"out.write(b'K' + {GENERATOR!r} * 2); out.flush()\nsys.stdin.buffer.read()"
    prover = Prover(
        NODE, PARAMS, ITERATIONS, chain.next_job, chain.submit, worker_command=_fake_worker(body)
    )

    async def scenario() -> None:
        with pytest.raises(ProverError) as caught:
            await prover.run()
        assert str(caught.value) == (
            "the proving process answered with a proof that does not verify"
        )

    run_trio(scenario)
    assert chain.accepted == []


def test_after_a_restart_the_prover_resumes_from_the_chain_height() -> None:
    earlier = prove(tower_challenge(NODE, GENESIS_PREVIOUS_Y, bytes(32), 1), GENERATOR, ITERATIONS)
    chain = FakeTowerChain(wanted=1, height=1, last_y=earlier.y)
    prover = Prover(NODE, PARAMS, ITERATIONS, chain.next_job, chain.submit)
    prove_until_done(prover, chain)
    assert [proof.height for proof in chain.accepted] == [2]


def test_cancelling_mid_proof_returns_at_once_and_leaves_nothing_running() -> None:
    chain = FakeTowerChain(wanted=1)
    prover = Prover(NODE, PARAMS, FOREVER, chain.next_job, chain.submit)
    threads_before = threading.active_count()
    seen: dict[str, float | int] = {}

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(prover.run)
            await chain.job_taken.wait()
            await trio.sleep(0.3)  # well into the squarings
            assert prover.statistics().proving_height == 1
            pid = prover.statistics().worker_pid
            assert pid is not None
            seen["pid"] = pid
            seen["cancelled_at"] = time.perf_counter()
            nursery.cancel_scope.cancel()
        seen["returned_at"] = time.perf_counter()

    run_trio(scenario)
    assert seen["returned_at"] - seen["cancelled_at"] < 1.0
    assert process_is_gone(int(seen["pid"]))
    assert threading.active_count() == threads_before
    assert chain.accepted == []
    assert prover.statistics().proofs_made == 0


def test_a_cancelled_proof_kills_the_worker_and_the_next_proof_starts_another() -> None:
    async def scenario() -> None:
        async with ProofWorker() as worker:
            first_pid = worker.pid
            assert first_pid is not None
            with trio.move_on_after(0.2):
                await worker.prove(CHALLENGE, GENERATOR, FOREVER, PARAMS)
            assert worker.pid is None
            assert process_is_gone(first_pid)
            result = await worker.prove(CHALLENGE, GENERATOR, ITERATIONS, PARAMS)
            assert worker.pid not in (None, first_pid)
            assert result == prove(CHALLENGE, GENERATOR, ITERATIONS, PARAMS)

    run_trio(scenario)


def test_bad_input_is_refused_before_it_reaches_the_worker() -> None:
    async def scenario() -> None:
        async with ProofWorker() as worker:
            pid = worker.pid
            with pytest.raises(MalformedProof) as caught:
                await worker.prove(CHALLENGE[:5], GENERATOR, ITERATIONS, PARAMS)
            assert str(caught.value) == "challenge is 5 bytes; it must be 32"
            with pytest.raises(MalformedProof):
                await worker.prove(CHALLENGE, GENERATOR, 0, PARAMS)
            assert worker.pid == pid

    run_trio(scenario)


def _fake_worker(body: str) -> list[str]:
    """A child speaking the worker protocol badly: says ready, reads a request, then `body`."""
    return [
        sys.executable,
        "-c",
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'R'); out.flush()\n"
        f"sys.stdin.buffer.read({REQUEST_SIZE})\n" + body,
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("sys.exit(3)", "the proving process exited with status 3 mid-request"),
        (
            "out.write(b'E\\x00\\x05nope!'); out.flush(); sys.stdin.buffer.read()",
            "the proving process refused the request: nope!",
        ),
        (
            "out.write(b'?'); out.flush(); sys.stdin.buffer.read()",
            "the proving process answered with unknown status b'?'",
        ),
        (
            "out.write(b'K' + bytes(20)); out.flush()",
            "the proving process exited with status 0 mid-request",
        ),
    ],
)
def test_a_failing_worker_is_a_prover_error_and_is_reaped(body: str, message: str) -> None:
    async def scenario() -> None:
        worker = ProofWorker(_fake_worker(body))
        async with worker:
            pid = worker.pid
            assert pid is not None
            with pytest.raises(ProverError) as caught:
                await worker.prove(CHALLENGE, GENERATOR, ITERATIONS, PARAMS)
            assert str(caught.value) == message
            assert worker.pid is None
            assert process_is_gone(pid)

    run_trio(scenario)


def test_a_worker_that_is_not_ready_is_refused() -> None:
    command = [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'X')"]

    async def scenario() -> None:
        worker = ProofWorker(command)
        with pytest.raises(ProverError) as caught:
            await worker.start()
        assert str(caught.value) == "the proving process said b'X' instead of ready"
        assert worker.pid is None

    run_trio(scenario)


def test_the_worker_protocol_answers_each_request_until_the_end_of_input() -> None:
    requests = encode_request(CHALLENGE, GENERATOR, ITERATIONS, PARAMS) * 2
    replies = io.BytesIO()
    serve(io.BytesIO(requests), replies)
    expected = prove(CHALLENGE, GENERATOR, ITERATIONS, PARAMS)
    answer = OK + expected.y + expected.proof
    assert replies.getvalue() == READY + answer + answer
    assert VdfProof(answer[1:101], answer[101:], ITERATIONS) == expected


def test_the_worker_reports_a_request_it_cannot_prove() -> None:
    request = encode_request(CHALLENGE, GENERATOR, 0, PARAMS)
    replies = io.BytesIO()
    serve(io.BytesIO(request), replies)
    message = b"iterations is 0; it must be from 1 to 10000000000"
    assert replies.getvalue() == READY + b"E" + len(message).to_bytes(2, "big") + message


@pytest.mark.parametrize(
    ("node_id", "iterations", "message"),
    [
        (NODE[:16], ITERATIONS, "node_id must be 32 bytes"),
        (NODE, 0, "iterations is 0; it must be from 1 to 10000000000"),
    ],
)
def test_a_prover_needs_a_node_id_and_a_sane_iteration_count(
    node_id: bytes, iterations: int, message: str
) -> None:
    chain = FakeTowerChain(wanted=0)
    with pytest.raises(ProverError) as caught:
        Prover(node_id, PARAMS, iterations, chain.next_job, chain.submit)
    assert str(caught.value) == message


_ORPHANING_PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from vdf.proof import GENERATOR, VdfParams
    from vdf.worker import encode_request

    worker = subprocess.Popen(
        [sys.executable, "-m", "vdf.worker", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert worker.stdout.read(1) == b"R"
    worker.stdin.write(encode_request(bytes(32), GENERATOR, 10**8, VdfParams()))
    worker.stdin.flush()
    print(worker.pid, flush=True)
    time.sleep(60)
    """
)


def test_a_worker_whose_parent_is_killed_stops_mid_proof() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_PARENT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        time.sleep(0.2)
        assert not process_is_gone(worker_pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 3.0
    while not process_is_gone(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_is_gone(worker_pid)
