"""The Time Tower prover service: proves the node's next tower height, submits it, and repeats.
Proving runs in a child process (`vdf.worker`), killed the moment the service is cancelled."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from chain.clock import Clock, SystemClock
from vdf.errors import VdfError
from vdf.proof import (
    FORM_SIZE,
    MalformedProof,
    VdfParams,
    VdfProof,
    check_challenge,
    check_form,
    check_iterations,
    verify,
)
from vdf.tower import NODE_ID_SIZE, TOWER_INPUT, TowerProof, tower_challenge
from vdf.worker import FAILED, OK, READY, RESULT_SIZE, encode_request

if TYPE_CHECKING:
    # trio-typing's stubs (a libp2p dependency) shadow trio's own types and keep TaskStatus here.
    from trio_typing import TaskStatus


class ProverError(VdfError):
    """The prover cannot go on: bad configuration, or its proving process failed."""


@dataclass(frozen=True, slots=True)
class TowerJob:
    """What to prove next, as the chain (and any proof still pending in the pool) says.
    Fields of the wrong size make `Prover.run` raise MalformedProof: a fault of the job source."""

    height: int
    """The height to prove: one above the last accepted or pending proof."""
    previous_y: bytes
    """The output of proof height-1, or GENESIS_PREVIOUS_Y for height 1."""
    anchor_number: int
    """A recent block, as fresh as the job source knows: the proof must still be anchored to a
    recent block when it lands, one proof interval later."""
    anchor_hash: bytes


NextJob = Callable[[], Awaitable[TowerJob]]
"""Returns the next job, waiting as long as there is none (e.g. the node is not registered).
After a restart it resumes from the chain's last accepted height: the prover keeps no state."""

Submit = Callable[[TowerProof], Awaitable[None]]
"""Hands a finished proof to the node (a signed `towers.submit_proof` into the pool)."""


@dataclass(frozen=True, slots=True)
class ProverStatistics:
    proofs_made: int
    proving_height: int | None
    """The height being proved now; None while waiting for a job or submitting."""
    last_height: int | None
    """The height of the last proof made by this run."""
    last_iterations_per_second: float | None
    """Speed of the last proof, measured around the worker call (squarings and proof)."""
    last_proof_seconds: float | None
    worker_pid: int | None


def default_worker_command() -> list[str]:
    return [sys.executable, "-m", "vdf.worker", str(os.getpid())]


@dataclass(frozen=True, slots=True)
class _Child:
    process: trio.Process
    requests: trio.abc.SendStream
    replies: trio.abc.ReceiveStream


class ProofWorker:
    """One proving child process, started on first use and kept for the next proofs.

    A proof that is cancelled (or fails half-way) kills the child rather than waiting for it:
    chiavdf.prove cannot be interrupted, and a 10^7-iteration proof runs for about a minute.
    The next proof starts a fresh child (~0.1 s)."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = list(command) if command is not None else default_worker_command()
        self._child: _Child | None = None

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.process.pid

    async def __aenter__(self) -> ProofWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the child if none runs, and wait until it can take a request."""
        if self._child is not None:
            return
        process = await trio.lowlevel.open_process(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        if process.stdin is None or process.stdout is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
            raise ProverError("the proving process was started without pipes")
        self._child = _Child(process, process.stdin, process.stdout)
        try:
            ready = await self._receive(1)
            if ready != READY:
                raise ProverError(f"the proving process said {ready!r} instead of ready")
        except BaseException:
            await self.aclose()
            raise

    async def prove(
        self, challenge: bytes, x: bytes, iterations: int, params: VdfParams
    ) -> VdfProof:
        """vdf.proof.prove in the child. Inputs are checked here, so a bad one raises
        MalformedProof without costing the child."""
        check_challenge(challenge)
        check_form("x", x)
        check_iterations(iterations)
        await self.start()
        child = self._child
        if child is None:
            raise ProverError("the proving process is not running")
        try:
            try:
                await child.requests.send_all(encode_request(challenge, x, iterations, params))
            except trio.BrokenResourceError:
                code = await child.process.wait()
                raise ProverError(f"the proving process exited with status {code}") from None
            status = await self._receive(1)
            if status == OK:
                result = await self._receive(RESULT_SIZE)
                return VdfProof(result[:FORM_SIZE], result[FORM_SIZE:], iterations)
            if status == FAILED:
                length = int.from_bytes(await self._receive(2), "big")
                message = (await self._receive(length)).decode(errors="replace")
                raise ProverError(f"the proving process refused the request: {message}")
            raise ProverError(f"the proving process answered with unknown status {status!r}")
        except BaseException:
            # Cancelled or failed mid-exchange: the child is mid-proof or mid-message and cannot
            # be reused. Killing it is what makes cancellation prompt.
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Kill and reap the child, if any. Safe to call more than once, and when cancelled."""
        child, self._child = self._child, None
        if child is None:
            return
        with trio.CancelScope(shield=True):
            child.process.kill()
            await child.process.wait()
            await child.requests.aclose()
            await child.replies.aclose()

    async def _receive(self, size: int) -> bytes:
        child = self._child
        if child is None:
            raise ProverError("the proving process is not running")
        data = b""
        while len(data) < size:
            chunk = await child.replies.receive_some(size - len(data))
            if not chunk:
                code = await child.process.wait()
                raise ProverError(f"the proving process exited with status {code} mid-request")
            data += chunk
        return data


class Prover:
    """Keeps the node's Time Tower growing: job → proof → submit, one height at a time.

    Proof k needs the output of proof k-1, so there is never more than one proof in flight."""

    def __init__(
        self,
        node_id: bytes,
        params: VdfParams,
        iterations: int,
        next_job: NextJob,
        submit: Submit,
        *,
        worker_command: Sequence[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`clock` times each proof for `statistics` (the system's clock unless given)."""
        if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_SIZE:
            raise ProverError(f"node_id must be {NODE_ID_SIZE} bytes")
        try:
            check_iterations(iterations)
        except MalformedProof as exc:
            raise ProverError(str(exc)) from None
        self._node_id = node_id
        self._params = params
        self._iterations = iterations
        self._next_job = next_job
        self._submit = submit
        self._worker = ProofWorker(worker_command)
        self._clock = clock or SystemClock()
        self._proofs_made = 0
        self._proving_height: int | None = None
        self._last_height: int | None = None
        self._last_rate: float | None = None
        self._last_seconds: float | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prove until cancelled. Ready once the proving process is up."""
        async with self._worker:
            task_status.started()
            while True:
                job = await self._next_job()
                proof = await self._prove(job)
                await self._submit(proof)

    def statistics(self) -> ProverStatistics:
        return ProverStatistics(
            proofs_made=self._proofs_made,
            proving_height=self._proving_height,
            last_height=self._last_height,
            last_iterations_per_second=self._last_rate,
            last_proof_seconds=self._last_seconds,
            worker_pid=self._worker.pid,
        )

    async def _prove(self, job: TowerJob) -> TowerProof:
        challenge = tower_challenge(self._node_id, job.previous_y, job.anchor_hash, job.height)
        self._proving_height = job.height
        started = self._clock.monotonic()
        try:
            result = await self._worker.prove(
                challenge, TOWER_INPUT, self._iterations, self._params
            )
        finally:
            self._proving_height = None
        elapsed = self._clock.monotonic() - started
        # Checked here, on a worker thread (chiavdf lets go of the GIL), before it is sent: the
        # pool's check of the submission, on the event loop, then finds the verdict remembered
        # (`chain.vdf`) instead of spending 15-50 ms there, and a wrong answer of the proving
        # process is never submitted.
        if not await trio.to_thread.run_sync(
            verify, challenge, TOWER_INPUT, result, self._iterations, self._params
        ):
            raise ProverError("the proving process answered with a proof that does not verify")
        self._proofs_made += 1
        self._last_height = job.height
        self._last_seconds = elapsed
        self._last_rate = self._iterations / elapsed if elapsed > 0 else None
        return TowerProof(
            node_id=self._node_id,
            height=job.height,
            anchor_number=job.anchor_number,
            anchor_hash=job.anchor_hash,
            iterations=self._iterations,
            y=result.y,
            proof=result.proof,
        )
