"""Presence: register this node on chain (operator, class, measured capacity) and keep its Time
Tower growing with chained VDF proofs, submitted as `towers.submit_proof` transactions. It
follows the chain's new heads: what it waits for (its registration, a proof's inclusion, a newer
block after a refusal) comes with a block. What is not chain state it looks at on a timer: the
engine, while registration waits (at most `WAIT_FOR_ENGINE_SECONDS`) to learn whether it answers,
and the engine, disk pressure and address that the registration keeper watches."""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from chain.address import encode_address
from chain.blocks import Call, Header
from chain.broadcast import Broadcast
from chain.errors import InvalidTransaction
from chain.keys import Keypair
from chain.ledger import Ledger
from chain.runtime import apps, nodes, towers
from chain.runtime.nodes import Nodes, registration_payload
from chain.runtime.towers import Towers
from chain.state import StateReader
from vdf.errors import VdfError
from vdf.proof import VdfParams
from vdf.prover import Prover, TowerJob
from vdf.tower import TowerProof

log = logging.getLogger("statemesh.presence")

POLL_SECONDS = 0.25
"""How often registration looks whether the engine answers yet, while it waits for it."""
LOOK_SECONDS = 1.0
"""How often the registration keeper looks at what is not chain state (whether the engine runs,
its disk pressure, the node's address); it looks at each new best block too."""
RESUBMIT_AFTER_BLOCKS = 8
"""A transaction not included after this many blocks is sent again (it may have been dropped)."""

(REGISTER, UPDATE, _DEREGISTER) = Nodes().calls()

NO_COMPUTE_SECONDS = 10.0
"""How long compute must stay lost (or back) before the node declares it on chain: an engine
restart does not take the node's replicas away, an engine that is gone does."""
WAIT_FOR_ENGINE_SECONDS = 30.0
"""How long registration waits to learn whether the engine answers; then it declares none."""
(SUBMIT_PROOF,) = Towers().calls()


class PresenceError(VdfError):
    """The node cannot register as asked (declares more than it has, another operator's)."""


@dataclass(frozen=True, slots=True)
class Capacity:
    cores: int
    memory_mb: int
    disk_gb: int
    gpus: int


NO_CAPACITY = Capacity(0, 0, 0, 0)
"""What a node declares while it cannot run replicas: it validates and proves, and is given
none."""


def measure_capacity(path: Path) -> Capacity:
    """This machine's hardware: cores, memory, the disk holding `path`, NVIDIA GPUs."""
    cores = os.cpu_count() or 1
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    path.mkdir(parents=True, exist_ok=True)
    disk_gb = shutil.disk_usage(path).total // 2**30
    gpus = sum(1 for d in Path("/dev").glob("nvidia[0-9]*"))
    return Capacity(cores, memory_mb, disk_gb, gpus)


def allocated_disk_gib(state: StateReader, node_id: bytes) -> int:
    """The disk the chain has placed on this node, as the scheduler counts it: every replica
    copy assigned here (both copies of a replica during a rolling update) at its app's size."""
    total = 0
    for name, _ in apps.assignments_for(state, node_id):
        record = apps.get_app(state, name)
        if record is not None:
            total += record.resources.disk_gib
    return total


def under_disk_pressure(capacity: Capacity, allocated_gib: int, least_gib: int) -> Capacity:
    """What a node whose disk is under pressure declares: the disk already placed on it, so
    that no new disk request comes while every replica it holds stays (the scheduler keeps a
    placement as long as it fits; declaring less would move replicas away, and their data
    would not follow). Never below its class's least disk, which the chain asks of any node
    that offers compute: up to that much may still come (none, once that much is placed
    here). Never above its capacity. Replicas that request no disk may still come: disk
    pressure turns away disk requests, not every new replica."""
    return replace(capacity, disk_gb=min(capacity.disk_gb, max(allocated_gib, least_gib)))


def check_declared(declared: Capacity, measured: Capacity) -> None:
    for what in ("cores", "memory_mb", "disk_gb", "gpus"):
        if getattr(declared, what) > getattr(measured, what):
            raise PresenceError(
                f"declared {what} {getattr(declared, what)} is more than this machine has "
                f"({getattr(measured, what)})"
            )


class HeadSignal:
    """Wakes one waiting loop at each new best block (one per loop, so that none takes
    another's wake-up); heads that came while the loop was busy wake it at once."""

    __slots__ = ("_moved",)

    def __init__(self, heads: Broadcast[Header]) -> None:
        self._moved = trio.Event()
        heads.listen(self._on_head)

    def _on_head(self, _: Header) -> None:
        self._moved.set()

    async def wait(self, timeout: float = math.inf) -> None:  # noqa: ASYNC109 - also a look
        """Until a new best block (one published since the last wait), or `timeout` seconds."""
        with trio.move_on_after(timeout):
            await self._moved.wait()
        self._moved = trio.Event()


class PresenceService:
    def __init__(
        self,
        chain: Ledger,
        *,
        operator: Keypair,
        identity: Keypair,
        node_class: str,
        capacity: Capacity,
        address: str,
        iterations: int | None = None,
        compute: Callable[[], bool | None] = lambda: True,
        disk_pressure: Callable[[], bool] = lambda: False,
    ) -> None:
        self.chain = chain
        self.compute = compute
        """Whether the node can run replicas now (None: not known yet)."""
        self.disk_pressure = disk_pressure
        """Whether the engine's data root is too full to take more disk requests."""
        self._clock = chain.clock
        self.operator = operator
        self.identity = identity
        self.node_class = node_class
        self.capacity = capacity
        self.address = address
        config = chain.runtime.config.towers
        self.iterations = max(iterations or 0, config.min_iterations)
        self.params = VdfParams(discriminant_bits=config.discriminant_bits)
        self.interval = config.proof_interval
        self._pending: tuple[int, int] | None = None
        """(height, best block when sent) of the proof waiting to be included."""
        self._refused_at: int | None = None
        """The best block when a proof was last refused: the next one waits for a newer one."""
        self.prover: Prover | None = None
        self.proofs_sent: Counter[str] = Counter()
        """Proofs handed to the chain by outcome: submitted (pooled) or refused by the pool."""
        self._registration_heads = HeadSignal(chain.new_heads)
        """Wakes registration, then the registration keeper (one after the other)."""
        self._job_heads = HeadSignal(chain.new_heads)
        """Wakes the prover's wait for its next job."""

    @property
    def node_id(self) -> bytes:
        return self.identity.public

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not await self._ensure_registered():
            return
        self.prover = Prover(
            self.node_id,
            self.params,
            self.iterations,
            self._next_job,
            self._submit,
            clock=self._clock,
        )
        log.info(
            "proving presence as node %s (%d iterations a proof)",
            encode_address(self.node_id),
            self.iterations,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_registration)
            await self.prover.run()
            nursery.cancel_scope.cancel()

    def _declared(self, state: StateReader) -> Capacity:
        """What this node offers now: its capacity if it can run replicas, else none; under
        disk pressure, no more disk than is placed on it already."""
        if not self.compute():
            return NO_CAPACITY
        if self.disk_pressure():
            node_class = self.chain.runtime.config.towers.classes.get(self.node_class)
            least = node_class.min_disk_gb if node_class is not None else 0
            return under_disk_pressure(
                self.capacity, allocated_disk_gib(state, self.node_id), least
            )
        return self.capacity

    async def _keep_registration(self) -> None:
        """Declares no capacity on chain once compute has been lost for a while, and the
        node's capacity again once it is back: the scheduler then moves replicas away from a
        node that cannot run them, and back. A registration at another address than the
        node's is brought up to date the same way. A change of disk pressure alone is declared
        at once: its water marks already keep it from flapping."""
        store = self.chain.store
        changed_at: float | None = None
        sent_at: int | None = None
        sent: tuple[Capacity, bytes] | None = None
        """What was declared at `sent_at`: the same is sent again only after some blocks, a
        different declaration (pressure that came and went meanwhile) at once."""
        while True:
            await self._registration_heads.wait(LOOK_SECONDS)
            state = store.best_state()
            record = nodes.get_node(state, self.node_id)
            if record is None or record.operator != self.operator.public:
                continue
            want = self._declared(state)
            have = Capacity(record.cores, record.memory_mb, record.disk_gb, record.gpus)
            address = self.address.encode() if self.address else record.address
            now = self._clock.monotonic()
            if want == have and address == record.address:
                changed_at = sent_at = None
                continue
            if changed_at is None:
                changed_at = now
            best = store.best_header.number
            settle = (want == NO_CAPACITY) != (have == NO_CAPACITY) or address != record.address
            due = not settle or now - changed_at >= NO_COMPUTE_SECONDS
            if due and (
                sent_at is None or (want, address) != sent or best - sent_at > RESUBMIT_AFTER_BLOCKS
            ):
                call = UPDATE.call(
                    node_id=self.node_id,
                    cores=want.cores,
                    memory_mb=want.memory_mb,
                    disk_gb=want.disk_gb,
                    gpus=want.gpus,
                    address=address,
                )
                if self._send(call):
                    if address != record.address:
                        log.info("registering this node's address as %s", self.address)
                    if want != have and want == NO_CAPACITY:
                        log.warning("this node cannot run replicas now: it declares no compute")
                    elif want != have and have == NO_CAPACITY:
                        log.info("this node can run replicas again: it declares its capacity")
                    elif want.disk_gb != have.disk_gb:
                        log.info("declaring %d GB of disk (was %d)", want.disk_gb, have.disk_gb)
                sent_at, sent = best, (want, address)

    def _send(self, call: Call) -> bool:
        try:
            self.chain.submit_signed(self.operator, call)
        except InvalidTransaction as exc:
            log.warning("%s.%s refused: %s", call.module.decode(), call.function.decode(), exc)
            return False
        return True

    async def _ensure_registered(self) -> bool:
        store = self.chain.store
        sent_at: int | None = None
        waiting_since = self._clock.monotonic()
        while True:
            record = nodes.get_node(store.best_state(), self.node_id)
            if record is not None:
                if record.operator != self.operator.public:
                    log.error(
                        "node %s is registered by %s, not by this operator: not proving",
                        encode_address(self.node_id),
                        encode_address(record.operator),
                    )
                    return False
                return True
            best = store.best_header.number
            compute = self.compute()
            if (
                compute is None
                and self._clock.monotonic() - waiting_since < WAIT_FOR_ENGINE_SECONDS
            ):
                await self._registration_heads.wait(POLL_SECONDS)
                continue
            if sent_at is None or best - sent_at > RESUBMIT_AFTER_BLOCKS:
                c = self._declared(store.best_state())
                call = REGISTER.call(
                    node_id=self.node_id,
                    node_signature=self.identity.sign(registration_payload(self.operator.public)),
                    node_class=self.node_class,
                    cores=c.cores,
                    memory_mb=c.memory_mb,
                    disk_gb=c.disk_gb,
                    gpus=c.gpus,
                    address=self.address,
                )
                if self._send(call):
                    log.info(
                        "registering node %s (%s, %d cores, %d MB, %d GB) for %s",
                        encode_address(self.node_id), self.node_class, c.cores, c.memory_mb,
                        c.disk_gb, encode_address(self.operator.public),
                    )  # fmt: skip
                sent_at = best
            await self._registration_heads.wait()

    async def _next_job(self) -> TowerJob:
        store = self.chain.store
        while True:
            best = store.best_header
            tower = towers.get_tower(store.best_state(), self.node_id)
            if self._refused_at is not None and best.number <= self._refused_at:
                await self._job_heads.wait()
                continue
            self._refused_at = None
            pending = self._pending
            if pending is not None:
                height, sent_at = pending
                if tower.height < height and best.number - sent_at <= RESUBMIT_AFTER_BLOCKS:
                    await self._job_heads.wait()
                    continue
                self._pending = None
            if tower.height > 0 and best.number + 1 < tower.last_proof_block + self.interval:
                # The next block could not take a proof yet (`proofInterval`).
                await self._job_heads.wait()
                continue
            # Anchor on the best block's parent: the best state already records its hash, so
            # the pool's dry run accepts the proof, and it stays recent for `anchorWindow` blocks.
            anchor = store.require_header(best.parent_hash) if best.number > 0 else best
            return TowerJob(
                height=tower.height + 1,
                previous_y=tower.last_y,
                anchor_number=anchor.number,
                anchor_hash=anchor.hash,
            )

    async def _submit(self, proof: TowerProof) -> None:
        call = SUBMIT_PROOF.call(
            node_id=self.node_id,
            height=proof.height,
            anchor_number=proof.anchor_number,
            iterations=proof.iterations,
            y=proof.y,
            proof=proof.proof,
        )
        best = self.chain.store.best_header.number
        if self._send(call):
            self.proofs_sent["submitted"] += 1
            self._pending = (proof.height, best)
        else:
            self.proofs_sent["refused"] += 1
            self._refused_at = best
