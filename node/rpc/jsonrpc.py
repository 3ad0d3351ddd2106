"""JSON-RPC 2.0 itself: parse a payload, validate requests, dispatch them through a `Registry`,
and serialize responses (single, batch, notification) within the size limits. No transport here.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    OVERSIZED_RESPONSE,
    PARSE_ERROR,
    WEBSOCKET_REQUIRED,
    RpcError,
)
from node.rpc.exposure import unsafe_method_error
from node.rpc.feeds import Feed
from node.rpc.limits import RpcLimits
from node.rpc.registry import (
    UNSUBSCRIBE_PARAMS,
    Method,
    Registry,
    Subscription,
    Unsubscribe,
    json_type_name,
)

logger = logging.getLogger(__name__)

RequestId = str | int | float | None


class SubscriptionHost(Protocol):
    """Where a connection that can carry notifications keeps its subscriptions."""

    def check_capacity(self) -> None:
        """Raise `RpcError` if this connection may not open another subscription."""

    def open(self, subscription: Subscription, items: AsyncIterator[object] | Feed[object]) -> str:
        """Take ownership of `items` and return the new subscription's id."""

    def close(self, subscription: Subscription, subscription_id: str) -> bool:
        """Cancel the subscription; False if no such one of this kind is open."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    params: list[object] | dict[str, object] | None
    id: RequestId
    is_notification: bool
    """No "id" member: the caller wants no response."""


@dataclass(frozen=True, slots=True)
class Reply:
    body: str | None
    """The serialized response, or None when nothing is owed (only notifications)."""
    calls: int
    """How many calls were executed, for the server's statistics."""


def dumps(value: object) -> str:
    # ASCII-only output, so the character count is the byte count the limits speak of.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def error_text(request_id: RequestId, error: RpcError) -> str:
    return dumps({"jsonrpc": "2.0", "error": error.to_json(), "id": request_id})


def _result_text(request_id: RequestId, result: object) -> str:
    return dumps({"jsonrpc": "2.0", "result": result, "id": request_id})


def parse_error_message(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"parse error: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "parse error: the payload is not valid UTF-8"
    if isinstance(exc, RecursionError):
        return "parse error: JSON nested too deeply"
    return "parse error: invalid JSON"


async def handle_payload(
    payload: bytes | str,
    registry: Registry,
    limits: RpcLimits,
    host: SubscriptionHost | None,
) -> Reply:
    """Answer one HTTP body or WebSocket message. `host` is None where subscriptions are not
    possible (HTTP). Handler failures become error responses; only cancellation propagates."""
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return Reply(error_text(None, RpcError(PARSE_ERROR, parse_error_message(exc))), 0)
    if not isinstance(decoded, list):
        return Reply(await _answer(decoded, registry, limits, host), 1)
    if not decoded:
        error = RpcError(INVALID_REQUEST, "invalid request: empty batch")
        return Reply(error_text(None, error), 0)
    if len(decoded) > limits.max_batch_size:
        error = RpcError(
            INVALID_REQUEST,
            f"batch too large: {len(decoded)} calls, at most {limits.max_batch_size} allowed",
        )
        return Reply(error_text(None, error), 0)
    # In order, one at a time: calls in a batch may depend on each other (nonces, subscribe
    # then unsubscribe), and a batch must not multiply the server's concurrency.
    parts: list[str] = []
    size = 2
    for calls, entry in enumerate(decoded, 1):
        text = await _answer(entry, registry, limits, host)
        if text is None:
            continue
        parts.append(text)
        size += len(text) + 1
        if size > limits.max_response_bytes:
            # As Substrate: the batch ends here, its answer is this error alone.
            error = RpcError(
                OVERSIZED_RESPONSE,
                "response too large: the batch's responses exceed "
                f"{limits.max_response_bytes} bytes",
            )
            return Reply(error_text(None, error), calls)
    if not parts:
        return Reply(None, len(decoded))
    return Reply("[" + ",".join(parts) + "]", len(decoded))


def validate(entry: object) -> Request | tuple[RequestId, RpcError]:
    """A well-formed request, or the id to answer with and the -32600 error saying why not."""
    if not isinstance(entry, dict):
        message = f"invalid request: expected an object, got {json_type_name(entry)}"
        return None, RpcError(INVALID_REQUEST, message)
    is_notification = "id" not in entry
    request_id = entry.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
        message = (
            'invalid request: "id" must be a string, a number or null, got '
            f"{json_type_name(request_id)}"
        )
        return None, RpcError(INVALID_REQUEST, message)
    # An invalid request is always answered, with the id it carried when that id is usable.
    answer_id: RequestId = request_id
    if entry.get("jsonrpc") != "2.0":
        return answer_id, RpcError(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
    method = entry.get("method")
    if not isinstance(method, str):
        message = f'invalid request: "method" must be a string, got {json_type_name(method)}'
        return answer_id, RpcError(INVALID_REQUEST, message)
    params = entry.get("params")
    if params is not None and not isinstance(params, list | dict):
        message = (
            f'invalid request: "params" must be an array or an object, got {json_type_name(params)}'
        )
        return answer_id, RpcError(INVALID_REQUEST, message)
    return Request(method, params, request_id, is_notification)


async def _answer(
    entry: object, registry: Registry, limits: RpcLimits, host: SubscriptionHost | None
) -> str | None:
    checked = validate(entry)
    if not isinstance(checked, Request):
        request_id, error = checked
        return error_text(request_id, error)
    request = checked
    try:
        with registry.timed(request.method):
            result = await _execute(request, registry, host)
    except RpcError as error:
        if request.is_notification:
            return None
        try:
            text = error_text(request.id, error)
        except (TypeError, ValueError):
            logger.exception("RPC method %s raised an error whose data is not JSON", request.method)
            return error_text(request.id, RpcError(INTERNAL_ERROR, "internal error"))
        return _fit(text, request.id, limits)
    except Exception:
        # The traceback stays in the log; the client learns only that it was our fault.
        # Params are never logged: some carry secrets (author_insertKey).
        logger.exception("RPC method %s failed", request.method)
        if request.is_notification:
            return None
        return error_text(request.id, RpcError(INTERNAL_ERROR, "internal error"))
    if request.is_notification:
        return None
    request_id = request.id
    try:
        text = _result_text(request_id, result)
    except (TypeError, ValueError):
        logger.exception("RPC method %s returned a result that is not JSON", request.method)
        return error_text(request_id, RpcError(INTERNAL_ERROR, "internal error"))
    return _fit(text, request_id, limits)


def _fit(text: str, request_id: RequestId, limits: RpcLimits) -> str:
    if len(text) <= limits.max_response_bytes:
        return text
    error = RpcError(
        OVERSIZED_RESPONSE,
        f"response too large: {len(text)} bytes, the limit is {limits.max_response_bytes}",
    )
    return error_text(request_id, error)


async def _execute(request: Request, registry: Registry, host: SubscriptionHost | None) -> object:
    entry = registry.get(request.method)
    if entry is None:
        if registry.is_withheld(request.method):
            raise unsafe_method_error(request.method)
        raise RpcError(METHOD_NOT_FOUND, f"method not found: {request.method}")
    if isinstance(entry, Method):
        params = entry.params.bind(request.method, request.params)
        result = entry.handler(params)
        if inspect.isawaitable(result):
            result = await result
        return result
    if host is None:
        raise RpcError(
            WEBSOCKET_REQUIRED,
            f"{request.method} is a subscription method: subscriptions need a WebSocket connection",
        )
    if isinstance(entry, Unsubscribe):
        params = UNSUBSCRIBE_PARAMS.bind(request.method, request.params)
        return host.close(entry.subscription, params.required("subscription", str))
    return await _subscribe(request, entry, host)


async def _subscribe(request: Request, entry: Subscription, host: SubscriptionHost) -> object:
    if request.is_notification:
        # Nobody would learn the subscription id, so nothing is opened.
        return None
    params = entry.params.bind(request.method, request.params)
    # Before the handler: it may act (submitAndWatch submits), and a refusal must act on nothing.
    host.check_capacity()
    items = entry.handler(params)
    if inspect.isawaitable(items):
        items = await items
    if not isinstance(items, AsyncIterator | Feed):
        raise TypeError(
            f"{request.method} returned {type(items).__name__}, not an async iterator or a feed"
        )
    return host.open(entry, items)
