"""The live subscriptions of one WebSocket and the server's budget of them: ids, delivery of
notifications in order through the connection's outbox, and the end of a subscription (by
itself, by unsubscribe, too slow, closed).

Two kinds of source: an async iterator (one task per subscription pulls its items) and a `Feed`
(its items are pushed synchronously, already encoded, with no task: what new heads use, so that
thousands of head subscriptions cost a string join each per block)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from node.rpc.errors import (
    INTERNAL_ERROR,
    OVERSIZED_RESPONSE,
    SUBSCRIPTION_DROPPED,
    TOO_MANY_SUBSCRIPTIONS,
    RpcError,
)
from node.rpc.feeds import Feed, RawJson
from node.rpc.jsonrpc import dumps
from node.rpc.limits import RpcLimits
from node.rpc.outbox import Outbox, Queued
from node.rpc.registry import Subscription

logger = logging.getLogger(__name__)

# How long a subscription's iterator may take to clean up once the subscription ends.
_CLOSE_GRACE_SECONDS = 1.0

Source = AsyncIterator[object] | Feed[object]


class SubscriptionBudget:
    """The server-wide count of live subscriptions against `limits.max_subscriptions`."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


@dataclass(slots=True, eq=False)
class _Live(Queued):
    id: str
    spec: Subscription
    source: Source
    prefix: str
    """The notification's text up to its result, so a feed's item is spliced in by one join."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    detach: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        Queued.__init__(self)


def notification_text(spec: Subscription, subscription_id: str, result: object) -> str:
    if isinstance(result, RawJson):
        return _prefix(spec, subscription_id) + result.text + "}}"
    params = {"subscription": subscription_id, "result": result}
    return dumps({"jsonrpc": "2.0", "method": spec.notification, "params": params})


def ending_text(spec: Subscription, subscription_id: str, error: RpcError) -> str:
    params = {"subscription": subscription_id, "error": error.to_json()}
    return dumps({"jsonrpc": "2.0", "method": spec.notification, "params": params})


def _prefix(spec: Subscription, subscription_id: str) -> str:
    return (
        f'{{"jsonrpc":"2.0","method":{dumps(spec.notification)},'
        f'"params":{{"subscription":{dumps(subscription_id)},"result":'
    )


def _ending_text(live: _Live, error: RpcError) -> str:
    try:
        return ending_text(live.spec, live.id, error)
    except (TypeError, ValueError):
        logger.exception(
            "subscription %s ended with error data that is not JSON", live.spec.subscribe
        )
        return ending_text(live.spec, live.id, RpcError(INTERNAL_ERROR, "internal error"))


class ConnectionSubscriptions:
    """Subscriptions of one connection; iterator ones run as tasks in its nursery.

    A subscription opened by a message starts delivering only when `start_pending` is called,
    which the connection does after queueing that message's response: the client always learns
    the id before the first notification. Producers never wait for the client: a notification
    that does not fit in the outbox (too many of this subscription waiting, or too many bytes
    for the connection) ends the subscription with one final error notification instead.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        outbox: Outbox,
        limits: RpcLimits,
        budget: SubscriptionBudget | None = None,
    ) -> None:
        self._nursery = nursery
        self._outbox = outbox
        self._limits = limits
        self._budget = budget or SubscriptionBudget(limits.max_subscriptions)
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
        if self._budget.used >= self._budget.limit:
            raise RpcError(
                TOO_MANY_SUBSCRIPTIONS,
                f"too many subscriptions: the server already serves {self._budget.limit}, "
                "its limit, try again later",
            )

    def open(self, subscription: Subscription, source: Source) -> str:
        # The capacity was checked just before the handler ran, and a connection handles its
        # messages one at a time, so nothing else opened a subscription on it in between.
        subscription_id = secrets.token_hex(8)
        while subscription_id in self._live:
            subscription_id = secrets.token_hex(8)
        live = _Live(subscription_id, subscription, source, _prefix(subscription, subscription_id))
        self._live[subscription_id] = live
        self._budget.used += 1
        self._pending.append(live)
        return subscription_id

    def close(self, subscription: Subscription, subscription_id: str) -> bool:
        live = self._live.get(subscription_id)
        if live is None or live.spec is not subscription:
            return False
        self._forget(live)
        return True

    def close_all(self) -> None:
        """The connection is gone: end every subscription (iterator tasks end with its
        nursery)."""
        for live in list(self._live.values()):
            self._forget(live)
        self._pending.clear()

    def start_pending(self) -> None:
        """Start delivering every subscription opened since the last call (even cancelled
        iterator ones: their task is what closes their iterator)."""
        for live in self._pending:
            if isinstance(live.source, Feed):
                if live.id in self._live:
                    live.detach = live.source.attach(partial(self._push, live))
                    if live.id not in self._live:
                        # Ended by the feed's current item (too large): it must not stay on.
                        live.detach()
            else:
                self._nursery.start_soon(
                    self._run, live, live.source, name=f"subscription {live.spec.subscribe}"
                )
        self._pending.clear()

    def _forget(self, live: _Live) -> None:
        """End `live` (idempotent): it leaves the table and the budget, stops receiving."""
        if self._live.pop(live.id, None) is None:
            return
        self._budget.used -= 1
        if live.detach is not None:
            live.detach()
        live.scope.cancel()

    def _end(self, live: _Live, error: RpcError) -> None:
        """End `live` and tell the client why; ended before the client hears of it, so a racing
        unsubscribe answers false."""
        if live.id not in self._live:
            return
        self._forget(live)
        self._outbox.append(_ending_text(live, error))

    def _push(self, live: _Live, item: RawJson) -> None:
        """A feed's item for one subscription."""
        text = live.prefix + item.text + "}}"
        error = self._offer(live, text)
        if error is not None:
            self._end(live, error)

    def _offer(self, live: _Live, text: str) -> RpcError | None:
        if len(text) > self._limits.max_response_bytes:
            return RpcError(
                OVERSIZED_RESPONSE,
                f"notification too large: {len(text)} bytes, the limit is "
                f"{self._limits.max_response_bytes}",
            )
        why = self._outbox.offer(text, live)
        if why is None:
            return None
        message = f"subscription dropped: the client is too slow, {why}"
        return RpcError(SUBSCRIPTION_DROPPED, message)

    async def _run(self, live: _Live, items: AsyncIterator[object]) -> None:
        try:
            with live.scope:
                ending = await self._pump(live, items)
                if ending is not None:
                    self._end(live, ending)
        finally:
            self._forget(live)
            await _close_iterator(items)

    async def _pump(self, live: _Live, items: AsyncIterator[object]) -> RpcError | None:
        """Move items to the outbox until the source ends. Returns the error to notify the
        client with, or None when the subscription ended by itself."""
        try:
            async for item in items:
                try:
                    text = notification_text(live.spec, live.id, item)
                except (TypeError, ValueError):
                    logger.exception(
                        "subscription %s yielded an item that is not JSON", live.spec.subscribe
                    )
                    return RpcError(INTERNAL_ERROR, "internal error")
                error = self._offer(live, text)
                if error is not None:
                    return error
        except RpcError as error:
            return error
        except Exception:
            logger.exception("subscription %s failed", live.spec.subscribe)
            return RpcError(INTERNAL_ERROR, "internal error")
        return None


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
