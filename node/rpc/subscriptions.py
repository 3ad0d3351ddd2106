"""The live subscriptions of one WebSocket: ids, the per-subscription bounded buffer, delivery of
notifications in order, and the end of a subscription (by itself, by unsubscribe, too slow, closed).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio

from node.rpc.errors import (
    INTERNAL_ERROR,
    OVERSIZED_RESPONSE,
    SUBSCRIPTION_DROPPED,
    TOO_MANY_SUBSCRIPTIONS,
    RpcError,
)
from node.rpc.jsonrpc import dumps
from node.rpc.limits import RpcLimits
from node.rpc.registry import Subscription

logger = logging.getLogger(__name__)

# How long a subscription's iterator may take to clean up once the subscription ends.
_CLOSE_GRACE_SECONDS = 1.0


@dataclass(slots=True, eq=False)
class _Live:
    id: str
    spec: Subscription
    items: AsyncIterator[object]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


def notification_text(spec: Subscription, subscription_id: str, result: object) -> str:
    params = {"subscription": subscription_id, "result": result}
    return dumps({"jsonrpc": "2.0", "method": spec.notification, "params": params})


def ending_text(spec: Subscription, subscription_id: str, error: RpcError) -> str:
    params = {"subscription": subscription_id, "error": error.to_json()}
    return dumps({"jsonrpc": "2.0", "method": spec.notification, "params": params})


def _ending_text(live: _Live, error: RpcError) -> str:
    try:
        return ending_text(live.spec, live.id, error)
    except (TypeError, ValueError):
        logger.exception(
            "subscription %s ended with error data that is not JSON", live.spec.subscribe
        )
        return ending_text(live.spec, live.id, RpcError(INTERNAL_ERROR, "internal error"))


class ConnectionSubscriptions:
    """Subscriptions of one connection, run as tasks in that connection's nursery.

    A subscription opened by a message starts delivering only when `start_pending` is called,
    which the connection does after queueing that message's response: the client always learns
    the id before the first notification. Each subscription has a buffer of
    `limits.subscription_buffer` notifications between its producer (never blocked) and the
    socket; when it overflows the client gets one final error notification and the
    subscription ends. Every queued text goes to `outgoing`, the connection's only writer.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        outgoing: trio.MemorySendChannel[str],
        limits: RpcLimits,
    ) -> None:
        self._nursery = nursery
        self._outgoing = outgoing
        self._limits = limits
        self._live: dict[str, _Live] = {}
        self._pending: list[_Live] = []

    def __len__(self) -> int:
        return len(self._live)

    def check_capacity(self) -> None:
        limit = self._limits.max_subscriptions_per_connection
        if len(self._live) >= limit:
            raise RpcError(
                TOO_MANY_SUBSCRIPTIONS,
                f"too many subscriptions: this connection already has {limit}, the limit",
            )

    def open(self, subscription: Subscription, items: AsyncIterator[object]) -> str:
        # The capacity was checked just before the handler ran, and a connection handles its
        # messages one at a time, so nothing else opened a subscription in between.
        subscription_id = secrets.token_hex(8)
        while subscription_id in self._live:
            subscription_id = secrets.token_hex(8)
        live = _Live(subscription_id, subscription, items)
        self._live[subscription_id] = live
        self._pending.append(live)
        return subscription_id

    def close(self, subscription: Subscription, subscription_id: str) -> bool:
        live = self._live.get(subscription_id)
        if live is None or live.spec is not subscription:
            return False
        del self._live[subscription_id]
        live.scope.cancel()
        return True

    def start_pending(self) -> None:
        """Start delivering every subscription opened since the last call (even cancelled
        ones: their task is what closes their iterator)."""
        for live in self._pending:
            self._nursery.start_soon(self._run, live, name=f"subscription {live.spec.subscribe}")
        self._pending.clear()

    async def _run(self, live: _Live) -> None:
        try:
            with live.scope:
                ending = await self._deliver(live)
                if ending is not None:
                    # Dropped before the client hears of it, so a racing unsubscribe says false.
                    self._live.pop(live.id, None)
                    await self._outgoing.send(_ending_text(live, ending))
        finally:
            self._live.pop(live.id, None)
            await _close_iterator(live.items)

    async def _deliver(self, live: _Live) -> RpcError | None:
        """Pump items into the buffer while a forwarder drains it to the socket. Returns the
        error to notify the client with, or None when the subscription ended by itself."""
        buffer_size = self._limits.subscription_buffer
        send_buffer, receive_buffer = trio.open_memory_channel[str](buffer_size)
        ending: RpcError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward, receive_buffer)
            try:
                ending = await self._pump(live, send_buffer)
            finally:
                # Closing lets the forwarder drain what is queued and finish.
                send_buffer.close()
            if ending is not None and ending.code == SUBSCRIPTION_DROPPED:
                # What is still queued is stale for a client that fell this far behind.
                nursery.cancel_scope.cancel()
        return ending

    async def _pump(self, live: _Live, buffer: trio.MemorySendChannel[str]) -> RpcError | None:
        try:
            async for item in live.items:
                try:
                    text = notification_text(live.spec, live.id, item)
                except (TypeError, ValueError):
                    logger.exception(
                        "subscription %s yielded an item that is not JSON", live.spec.subscribe
                    )
                    return RpcError(INTERNAL_ERROR, "internal error")
                if len(text) > self._limits.max_response_bytes:
                    return RpcError(
                        OVERSIZED_RESPONSE,
                        f"notification too large: {len(text)} bytes, the limit is "
                        f"{self._limits.max_response_bytes}",
                    )
                try:
                    buffer.send_nowait(text)
                except trio.WouldBlock:
                    return RpcError(
                        SUBSCRIPTION_DROPPED,
                        "subscription dropped: the client is too slow, "
                        f"{self._limits.subscription_buffer} notifications were waiting",
                    )
        except RpcError as error:
            return error
        except Exception:
            logger.exception("subscription %s failed", live.spec.subscribe)
            return RpcError(INTERNAL_ERROR, "internal error")
        return None

    async def _forward(self, buffer: trio.MemoryReceiveChannel[str]) -> None:
        async for text in buffer:
            await self._outgoing.send(text)


async def _close_iterator(items: AsyncIterator[object]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is None:
        return
    # Shielded so a cancelled connection still lets producers unregister; bounded so a
    # misbehaving one cannot hold the connection open.
    with trio.CancelScope(deadline=trio.current_time() + _CLOSE_GRACE_SECONDS, shield=True):
        try:
            await aclose()
        except Exception:
            logger.exception("closing a subscription's items failed")
