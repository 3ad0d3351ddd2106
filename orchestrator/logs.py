"""Reading and following the logs of the containers this node runs. A follow is one task per
container in this service's nursery: each follows its container's stream, across restarts and
replacements, into the follower's bounded channel, and ends when the replica leaves this node."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import trio

from chain.clock import Clock
from orchestrator.controller import Controller
from orchestrator.engine import ContainerEngine
from orchestrator.errors import EngineFailure, OrchestratorError
from orchestrator.labels import ContainerKey
from orchestrator.status import ContainerPhase, ContainerStatus

log = logging.getLogger("statemesh.workloads.logs")

MAX_BATCH_LINES = 500
MAX_BATCH_BYTES = 1024 * 1024
"""A batch is what has arrived since the last one, cut to these bounds."""
CHANNEL_LINES = 1024
"""Lines buffered per follow; when full, reading the engine's streams waits for the follower."""


@dataclass(frozen=True, slots=True)
class LogLine:
    container: ContainerKey
    text: str
    """One line the container wrote, without its newline."""


class LogsEnded(OrchestratorError):
    """A follow ended because none of its containers runs on this node any more."""


class TooManyFollows(OrchestratorError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"too many log follows: this node already serves {limit}, the limit")
        self.limit = limit


class LogFollow:
    """The follower's end of a follow: an async iterator of batches of lines, in the order
    each container wrote them. `aclose` stops the follow and closes the engine's streams."""

    def __init__(self, receive: trio.MemoryReceiveChannel[LogLine]) -> None:
        self._receive = receive
        self.scope = trio.CancelScope()
        self.ended = ""
        """Why the follow ended by itself (then the iterator raises `LogsEnded`)."""

    def __aiter__(self) -> LogFollow:
        return self

    async def __anext__(self) -> list[LogLine]:
        try:
            first = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.ended:
                raise LogsEnded(self.ended) from None
            raise StopAsyncIteration from None
        batch, size = [first], len(first.text)
        while len(batch) < MAX_BATCH_LINES and size < MAX_BATCH_BYTES:
            try:
                line = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(line)
            size += len(line.text)
        return batch

    async def aclose(self) -> None:
        self.scope.cancel()
        await self._receive.aclose()


class WorkloadLogs:
    """The logs of this node's containers, through its container engine. Start `run` in a
    nursery before calling `follow`."""

    def __init__(
        self,
        engine: ContainerEngine,
        controller: Controller,
        *,
        clock: Clock,
        max_follows: int = 32,
        retry_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.controller = controller
        self.max_follows = max_follows
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._nursery: trio.Nursery | None = None
        self._follows = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def _since(self) -> float:
        """Now, as the engine's `since` takes it: wall-clock seconds."""
        return self._clock.now_ms() / 1000

    @property
    def follows(self) -> int:
        """Follows being served now."""
        return self._follows

    async def read(self, container_id: str, *, tail: int | None) -> bytes:
        """The container's log (its last `tail` lines, or all); `EngineFailure`."""
        return await self.engine.logs(container_id, tail=tail)

    def follow(self, containers: Sequence[ContainerKey], *, tail: int | None) -> LogFollow:
        """Follows the containers: first the last `tail` lines of each one running now (all if
        None), then every line written from now on. `TooManyFollows` past the limit."""
        if tail is not None and tail < 0:
            raise ValueError(f"tail must not be negative, got {tail}")
        if self._nursery is None:
            raise RuntimeError("WorkloadLogs.run is not running")
        if self._follows >= self.max_follows:
            raise TooManyFollows(self.max_follows)
        send, receive = trio.open_memory_channel[LogLine](CHANNEL_LINES)
        follow = LogFollow(receive)
        self._follows += 1
        self._nursery.start_soon(self._follow, tuple(containers), tail, self._since(), send, follow)
        return follow

    async def _follow(
        self,
        containers: tuple[ContainerKey, ...],
        tail: int | None,
        began: float,
        send: trio.MemorySendChannel[LogLine],
        follow: LogFollow,
    ) -> None:
        try:
            with follow.scope:
                async with send:
                    try:
                        async with trio.open_nursery() as nursery:
                            for key in containers:
                                nursery.start_soon(
                                    self._follow_container, key, tail, began, send.clone()
                                )
                    except Exception:
                        # A bug here must end this follow, not the node's compute.
                        log.exception(
                            "following the logs of %s failed", ", ".join(map(str, containers))
                        )
                        follow.ended = "following the logs failed (see the node's log)"
                        return
                    follow.ended = "no followed container runs on this node any more"
        finally:
            self._follows -= 1

    def _status(self, key: ContainerKey) -> ContainerStatus | None:
        replica = self.controller.status().get(key.replica)
        if replica is None:
            return None
        return next((c for c in replica.containers if c.name == key.container), None)

    async def _follow_container(
        self,
        key: ContainerKey,
        tail: int | None,
        began: float,
        send: trio.MemorySendChannel[LogLine],
    ) -> None:
        """Follows whichever container runs `key` on this node until its replica leaves it.

        The first container, if it runs when the follow begins, starts with its last `tail`
        lines; a container first seen later starts with what it wrote since the follow began,
        and one followed before with what it wrote since its last stream ended."""
        async with send:
            followed = ""
            ended_at = began
            first = True
            while True:
                status = self._status(key)
                if status is None:
                    return  # the replica, or this container of it, no longer runs here
                cid = status.container_id
                if cid and status.phase is ContainerPhase.RUNNING:
                    if first:
                        window: dict[str, Any] = {"tail": tail}
                    else:
                        window = {"since": ended_at if cid == followed else began}
                    followed = cid
                    try:
                        async with aclosing(self.engine.follow_logs(cid, **window)) as lines:
                            async for line in lines:
                                await send.send(LogLine(key, line.decode(errors="replace")))
                    except trio.BrokenResourceError:
                        return  # the follower is gone
                    except EngineFailure as e:
                        log.debug("following the logs of %s: %s", key, e.message)
                    ended_at = self._since()
                first = False
                # A stream ends when its container stops: wait for the controller to see it.
                with trio.move_on_after(self._retry_seconds):
                    await self.controller.changed()
