"""JSON-RPC 2.0 parsing, validation, dispatch, batches and errors, without a transport."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.errors import InvalidTransaction, TxRejection
from node.rpc.errors import RpcError, invalid_transaction_error
from node.rpc.jsonrpc import Reply, handle_payload
from node.rpc.limits import RpcLimits, RpcLimitsError
from node.rpc.registry import (
    MethodRegistrationError,
    Params,
    ParamSpec,
    Registry,
    Subscription,
)

# -- fixtures --------------------------------------------------------------------------------


class FakeHost:
    """A subscription host that records what it is asked to do."""

    def __init__(self, capacity: int = 10) -> None:
        self.capacity = capacity
        self.opened: dict[str, tuple[Subscription, AsyncIterator[object]]] = {}

    def check_capacity(self) -> None:
        if len(self.opened) >= self.capacity:
            raise RpcError(-32006, "too many subscriptions")

    def open(self, subscription: Subscription, items: AsyncIterator[object]) -> str:
        subscription_id = f"sub{len(self.opened)}"
        self.opened[subscription_id] = (subscription, items)
        return subscription_id

    def close(self, subscription: Subscription, subscription_id: str) -> bool:
        entry = self.opened.get(subscription_id)
        if entry is None or entry[0] is not subscription:
            return False
        del self.opened[subscription_id]
        return True


async def _ticks(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


def build_registry(side_effects: list[str] | None = None) -> Registry:
    effects = side_effects if side_effects is not None else []
    registry = Registry()

    @registry.method("echo_add", params=["a", "b?"])
    def add(params: Params) -> int:
        return params.required("a", int) + params.optional("b", int, 0)

    @registry.method("echo_async", params=["text"])
    async def echo(params: Params) -> str:
        await trio.lowlevel.checkpoint()
        return params.required("text", str)

    @registry.method("echo_kinds", params=["s?", "i?", "f?", "b?", "l?", "o?"])
    def kinds(params: Params) -> list[object]:
        return [
            params.optional("s", str),
            params.optional("i", int),
            params.optional("f", float),
            params.optional("b", bool),
            params.optional("l", list),
            params.optional("o", dict),
        ]

    def even(value: Any) -> int:
        if not isinstance(value, int) or value % 2:
            raise ValueError("must be an even integer")
        return value

    @registry.method("echo_even", params=["n"])
    def echo_even(params: Params) -> int:
        return params.required("n", even)

    @registry.method("echo_fail")
    def fail(params: Params) -> None:
        raise RpcError(1010, "bad signature: the signature does not match", {"index": 0})

    @registry.method("echo_crash", params=["secret?"])
    def crash(params: Params) -> None:
        raise KeyError("internal-detail-x")

    @registry.method("echo_undeclared")
    def undeclared(params: Params) -> object:
        return params.optional("nope", str)

    registry.add_method("echo_notjson", lambda params: {1, 2})

    @registry.method("echo_baddata")
    def bad_data(params: Params) -> None:
        raise RpcError(1010, "invalid", data=object())

    registry.add_method("echo_big", lambda params: "x" * 200)
    registry.add_method("echo_effect", lambda params: effects.append("called"))

    @registry.subscription(
        "test_subscribe",
        unsubscribe="test_unsubscribe",
        notification="test_item",
        params=["count"],
    )
    async def subscribe(params: Params) -> AsyncIterator[int]:
        count = params.required("count", int)
        effects.append(f"subscribed {count}")
        return _ticks(count)

    return registry


def call(
    payload: object,
    *,
    registry: Registry | None = None,
    limits: RpcLimits | None = None,
    host: FakeHost | None = None,
) -> Any:
    """Dispatch `payload` (JSON-encoded unless already bytes) and decode the response."""
    reply = dispatch(payload, registry=registry, limits=limits, host=host)
    return None if reply.body is None else json.loads(reply.body)


def dispatch(
    payload: object,
    *,
    registry: Registry | None = None,
    limits: RpcLimits | None = None,
    host: FakeHost | None = None,
) -> Reply:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    async def main() -> Reply:
        return await handle_payload(raw, registry or build_registry(), limits or RpcLimits(), host)

    return trio.run(main)


def request(method: str, params: object = None, id: object = 1) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def error(code: int, message: str, id: object = None, data: object = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "error": body, "id": id}


def result(value: object, id: object = 1) -> dict[str, object]:
    return {"jsonrpc": "2.0", "result": value, "id": id}


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn)


# -- parse errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "parse error: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"", "parse error: Expecting value at line 1 column 1"),
        (
            b'{"jsonrpc": "2.0", "method": "x"',
            "parse error: Expecting ',' delimiter at line 1 column 33",
        ),
        (b"\xff\xfe\xfa", "parse error: the payload is not valid UTF-8"),
        (b"[" * 100_000, "parse error: JSON nested too deeply"),
        (b"1" * 5000, "parse error: invalid JSON"),
    ],
)
def test_parse_errors_answer_minus_32700_with_id_null(raw: bytes, message: str) -> None:
    assert call(raw) == error(-32700, message)


# -- invalid requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (1, error(-32600, "invalid request: expected an object, got integer")),
        ("x", error(-32600, "invalid request: expected an object, got string")),
        (
            {"method": "echo_add", "id": 3},
            error(-32600, 'invalid request: "jsonrpc" must be "2.0"', 3),
        ),
        (
            {"jsonrpc": "1.0", "method": "echo_add", "id": "a"},
            error(-32600, 'invalid request: "jsonrpc" must be "2.0"', "a"),
        ),
        (
            {"jsonrpc": "2.0", "id": 4},
            error(-32600, 'invalid request: "method" must be a string, got null', 4),
        ),
        (
            {"jsonrpc": "2.0", "method": 5, "id": 4},
            error(-32600, 'invalid request: "method" must be a string, got integer', 4),
        ),
        (
            {"jsonrpc": "2.0", "method": "echo_add", "params": "bar", "id": 6},
            error(-32600, 'invalid request: "params" must be an array or an object, got string', 6),
        ),
        (
            {"jsonrpc": "2.0", "method": "echo_add", "id": True},
            error(-32600, 'invalid request: "id" must be a string, a number or null, got boolean'),
        ),
        (
            {"jsonrpc": "2.0", "method": "echo_add", "id": {"a": 1}},
            error(-32600, 'invalid request: "id" must be a string, a number or null, got object'),
        ),
        # Invalid and without an id: still answered (it is not a valid notification either).
        (
            {"jsonrpc": "2.0", "method": 1},
            error(-32600, 'invalid request: "method" must be a string, got integer'),
        ),
    ],
)
def test_invalid_requests_answer_minus_32600(payload: object, expected: object) -> None:
    assert call(payload) == expected


def test_method_not_found_names_the_method() -> None:
    assert call(request("chain_nope")) == error(-32601, "method not found: chain_nope", 1)


def test_reserved_rpc_prefix_is_not_a_method() -> None:
    assert call(request("rpc.discover")) == error(-32601, "method not found: rpc.discover", 1)


# -- params ----------------------------------------------------------------------------------


def test_positional_and_named_params_reach_the_handler() -> None:
    assert call(request("echo_add", [2, 3])) == result(5)
    assert call(request("echo_add", {"a": 2, "b": 3})) == result(5)
    assert call(request("echo_add", [2])) == result(2)
    assert call(request("echo_add", {"a": 2})) == result(2)
    # A null optional param is the same as an absent one.
    assert call(request("echo_add", [2, None])) == result(2)


def test_omitted_or_null_params_mean_none() -> None:
    assert call(request("rpc_methods"))["result"]["methods"][0] == "echo_add"
    assert call({"jsonrpc": "2.0", "method": "echo_kinds", "params": None, "id": 1}) == result(
        [None] * 6
    )


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("echo_add", [1, 2, 3], "too many params: echo_add takes params (a, b?), got 3"),
        ("echo_fail", [1], "too many params: echo_fail takes no params, got 1"),
        ("echo_add", {"a": 1, "c": 2}, "unknown param 'c': echo_add takes params (a, b?)"),
        ("echo_add", [], "missing required param 'a' (position 0)"),
        ("echo_add", {"b": 1}, "missing required param 'a' (position 0)"),
        ("echo_add", ["1"], "invalid param 'a': expected integer, got string"),
        ("echo_add", {"a": 1, "b": 1.5}, "invalid param 'b': expected integer, got number"),
        ("echo_add", [True], "invalid param 'a': expected integer, got boolean"),
        ("echo_add", [None], "invalid param 'a': expected integer, got null"),
        ("echo_async", [[1]], "invalid param 'text': expected string, got array"),
        ("echo_kinds", {"b": 1}, "invalid param 'b': expected boolean, got integer"),
        ("echo_kinds", {"l": {}}, "invalid param 'l': expected array, got object"),
        ("echo_kinds", {"o": []}, "invalid param 'o': expected object, got array"),
        ("echo_kinds", {"f": "1.5"}, "invalid param 'f': expected number, got string"),
        ("echo_even", [3], "invalid param 'n': must be an even integer"),
    ],
)
def test_bad_params_answer_minus_32602_saying_which_and_why(
    method: str, params: object, message: str
) -> None:
    assert call(request(method, params)) == error(-32602, message, 1)


def test_json_kinds_are_checked_and_float_accepts_integers() -> None:
    params = {"s": "x", "i": 7, "f": 2, "b": False, "l": [1], "o": {"k": None}}
    assert call(request("echo_kinds", params)) == result(["x", 7, 2.0, False, [1], {"k": None}])


def test_converters_convert() -> None:
    assert call(request("echo_even", {"n": 4})) == result(4)


def test_params_repr_hides_values() -> None:
    params = ParamSpec.parse(["suri"]).bind("author_insertKey", ["//Alice secret seed"])
    assert repr(params) == "Params(author_insertKey, given=['suri'])"


# -- handler outcomes ---------------------------------------------------------------------------


def test_async_handlers_are_awaited() -> None:
    assert call(request("echo_async", ["hi"], id="x")) == result("hi", id="x")


def test_application_errors_pass_through_with_code_message_and_data() -> None:
    assert call(request("echo_fail", id=9)) == error(
        1010, "bad signature: the signature does not match", 9, {"index": 0}
    )


def test_crashes_are_minus_32603_generic_and_logged_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="node.rpc.jsonrpc"):
        body = call(request("echo_crash", ["hunter2"], id=2))
    assert body == error(-32603, "internal error", 2)
    assert [r.getMessage() for r in caplog.records] == ["RPC method echo_crash failed"]
    assert caplog.records[0].exc_info is not None
    assert "hunter2" not in caplog.text


def test_reading_an_undeclared_param_is_a_server_bug_not_a_client_error() -> None:
    assert call(request("echo_undeclared")) == error(-32603, "internal error", 1)


def test_result_that_is_not_json_is_an_internal_error() -> None:
    assert call(request("echo_notjson")) == error(-32603, "internal error", 1)


def test_error_data_that_is_not_json_is_an_internal_error() -> None:
    assert call(request("echo_baddata")) == error(-32603, "internal error", 1)


def test_id_null_is_a_request_not_a_notification() -> None:
    assert call(request("echo_add", [1], id=None)) == result(1, id=None)


def test_numeric_and_string_ids_are_echoed() -> None:
    assert call(request("echo_add", [1], id=1.5)) == result(1, id=1.5)
    assert call(request("echo_add", [1], id="abc")) == result(1, id="abc")


# -- notifications ----------------------------------------------------------------------------


def notification(method: str, params: object = None) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def test_notifications_run_and_get_no_response() -> None:
    effects: list[str] = []
    reply = dispatch(notification("echo_effect"), registry=build_registry(effects))
    assert reply == Reply(None, 1)
    assert effects == ["called"]


def test_failing_notifications_get_no_response_either() -> None:
    for method in ("echo_fail", "echo_crash", "chain_nope"):
        assert dispatch(notification(method)) == Reply(None, 1)
    assert dispatch(notification("echo_add", ["x"])) == Reply(None, 1)


# -- batches ---------------------------------------------------------------------------------


def test_batch_answers_each_call_in_order_skipping_notifications() -> None:
    batch = [
        request("echo_add", [1, 2], id=1),
        notification("echo_add", [1]),
        {"foo": "boo"},
        request("chain_nope", id="5"),
        request("echo_add", ["x"], id=6),
        request("echo_fail", id=7),
        1,
    ]
    reply = dispatch(batch)
    assert reply.calls == 7
    assert json.loads(reply.body or "") == [
        result(3, id=1),
        error(-32600, 'invalid request: "jsonrpc" must be "2.0"'),
        error(-32601, "method not found: chain_nope", "5"),
        error(-32602, "invalid param 'a': expected integer, got string", 6),
        error(1010, "bad signature: the signature does not match", 7, {"index": 0}),
        error(-32600, "invalid request: expected an object, got integer"),
    ]


def test_spec_example_of_a_batch_of_non_objects() -> None:
    assert (
        call([1, 2, 3]) == [error(-32600, "invalid request: expected an object, got integer")] * 3
    )


def test_empty_batch_is_one_invalid_request() -> None:
    assert call([]) == error(-32600, "invalid request: empty batch")


def test_batch_of_only_notifications_has_no_body() -> None:
    effects: list[str] = []
    reply = dispatch(
        [notification("echo_effect"), notification("echo_effect")],
        registry=build_registry(effects),
    )
    assert reply == Reply(None, 2)
    assert effects == ["called", "called"]


def test_batch_over_the_size_limit_is_refused_as_a_whole() -> None:
    effects: list[str] = []
    batch = [request("echo_effect", id=i) for i in range(3)]
    body = call(batch, limits=RpcLimits(max_batch_size=2), registry=build_registry(effects))
    assert body == error(-32600, "batch too large: 3 calls, at most 2 allowed")
    assert effects == []


def test_batch_at_the_size_limit_is_served() -> None:
    batch = [request("echo_add", [i], id=i) for i in range(2)]
    assert call(batch, limits=RpcLimits(max_batch_size=2)) == [result(0, 0), result(1, 1)]


# -- response size ---------------------------------------------------------------------------


def test_oversize_response_becomes_minus_32008() -> None:
    limits = RpcLimits(max_response_bytes=100)
    assert call(request("echo_big", id=1), limits=limits) == error(
        -32008, "response too large: 236 bytes, the limit is 100", 1
    )


def test_oversize_batch_response_becomes_one_error() -> None:
    limits = RpcLimits(max_response_bytes=300)
    batch = [request("echo_big", id=1), request("echo_big", id=2)]
    assert call(batch, limits=limits) == error(
        -32008, "response too large: the batch's responses exceed 300 bytes"
    )


def test_a_batch_stops_once_its_responses_exceed_the_limit() -> None:
    # Its responses are not kept past the limit: a batch of large answers cannot hold
    # max_batch_size times max_response_bytes in memory, nor run calls whose answers are lost.
    effects: list[str] = []
    limits = RpcLimits(max_response_bytes=300)
    batch = [request("echo_big", id=1), request("echo_big", id=2), request("echo_effect", id=3)]
    assert call(batch, limits=limits, registry=build_registry(effects)) == error(
        -32008, "response too large: the batch's responses exceed 300 bytes"
    )
    assert effects == []


# -- subscriptions at the dispatch level ---------------------------------------------------------


def test_subscriptions_over_a_transport_without_notifications_are_refused() -> None:
    message = "test_subscribe is a subscription method: subscriptions need a WebSocket connection"
    assert call(request("test_subscribe", [3])) == error(-32020, message, 1)
    message = "test_unsubscribe is a subscription method: subscriptions need a WebSocket connection"
    assert call(request("test_unsubscribe", ["x"])) == error(-32020, message, 1)


def test_subscribe_opens_on_the_host_and_returns_the_id() -> None:
    host = FakeHost()
    effects: list[str] = []
    body = call(request("test_subscribe", [3]), host=host, registry=build_registry(effects))
    assert body == result("sub0")
    assert effects == ["subscribed 3"]
    assert host.opened["sub0"][0].notification == "test_item"


def test_subscribe_checks_capacity_before_the_handler_acts() -> None:
    host = FakeHost(capacity=0)
    effects: list[str] = []
    body = call(request("test_subscribe", [3]), host=host, registry=build_registry(effects))
    assert body == error(-32006, "too many subscriptions", 1)
    assert effects == []


def test_subscribe_params_are_checked() -> None:
    host = FakeHost()
    body = call(request("test_subscribe", ["3"]), host=host)
    assert body == error(-32602, "invalid param 'count': expected integer, got string", 1)
    assert host.opened == {}


def test_subscribe_as_a_notification_opens_nothing() -> None:
    host = FakeHost()
    assert dispatch(notification("test_subscribe", [3]), host=host) == Reply(None, 1)
    assert host.opened == {}


def test_unsubscribe_answers_whether_it_was_open() -> None:
    host = FakeHost()
    registry = build_registry()
    batch = [
        request("test_subscribe", [1], id=1),
        request("test_unsubscribe", ["sub0"], id=2),
        request("test_unsubscribe", ["sub0"], id=3),
        request("test_unsubscribe", [7], id=4),
        request("test_unsubscribe", [], id=5),
    ]
    assert call(batch, host=host, registry=registry) == [
        result("sub0", 1),
        result(True, 2),
        result(False, 3),
        error(-32602, "invalid param 'subscription': expected string, got integer", 4),
        error(-32602, "missing required param 'subscription' (position 0)", 5),
    ]


def test_handler_returning_something_else_than_an_async_iterator_is_internal() -> None:
    def not_an_iterator(params: Params) -> Any:
        return [1, 2]

    registry = Registry()
    registry.add_subscription(
        "bad_subscribe", not_an_iterator, unsubscribe="bad_unsubscribe", notification="bad_item"
    )
    body = call(request("bad_subscribe"), host=FakeHost(), registry=registry)
    assert body == error(-32603, "internal error", 1)


# -- registry --------------------------------------------------------------------------------


def test_rpc_methods_lists_every_callable_name() -> None:
    registry = Registry()
    registry.add_method("b_call", lambda params: None)
    registry.add_subscription(
        "a_subscribe",
        lambda params: _ticks(0),
        unsubscribe="a_unsubscribe",
        notification="a_item",
    )
    assert call(request("rpc_methods"), registry=registry) == result(
        {"methods": ["a_subscribe", "a_unsubscribe", "b_call", "rpc_methods"]}
    )


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (
            lambda r: r.add_method("rpc_methods", print),
            "method 'rpc_methods' is already registered",
        ),
        (lambda r: r.add_method("rpc.x", print), "'rpc.x' is not a usable method name"),
        (lambda r: r.add_method("", print), "'' is not a usable method name"),
        (
            lambda r: r.add_method("m", print, params=["a?", "b"]),
            "required param 'b' follows an optional one",
        ),
        (lambda r: r.add_method("m", print, params=["a", "a?"]), "param 'a' is declared twice"),
        (
            lambda r: r.add_method("m", print, params=["a-b"]),
            "param name 'a-b' is not an identifier (optionally + '?')",
        ),
        (
            lambda r: r.add_method("m", print, params="ab"),
            "params must be a list of names, not the string 'ab'",
        ),
        (
            lambda r: r.add_subscription("s", print, unsubscribe="s", notification="n"),
            "'s' cannot both subscribe and unsubscribe",
        ),
        (
            lambda r: r.add_subscription("s", print, unsubscribe="rpc_methods", notification="n"),
            "method 'rpc_methods' is already registered",
        ),
    ],
)
def test_registry_refuses_unusable_registrations(
    register: Callable[[Registry], None], message: str
) -> None:
    registry = Registry()
    with pytest.raises(MethodRegistrationError) as caught:
        register(registry)
    assert str(caught.value) == message
    assert registry.names() == ["rpc_methods"]


def test_limits_must_be_positive() -> None:
    with pytest.raises(RpcLimitsError) as caught:
        RpcLimits(max_connections=0)
    assert str(caught.value) == "max_connections must be a positive integer, got 0"


# -- ledger rejections -----------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(TxRejection))
def test_every_transaction_rejection_has_a_substrate_code(reason: TxRejection) -> None:
    expected = {
        TxRejection.TEMPORARILY_BANNED: 1012,
        TxRejection.ALREADY_IMPORTED: 1013,
        TxRejection.PRIORITY_TOO_LOW: 1014,
        TxRejection.POOL_FULL: 1016,
    }.get(reason, 1010)
    rpc_error = invalid_transaction_error(InvalidTransaction(reason, "field x is wrong"))
    assert rpc_error.to_json() == {
        "code": expected,
        "message": f"{reason.value}: field x is wrong",
    }


# -- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"])},
    optional={
        "method": st.sampled_from(["echo_add", "echo_kinds", "echo_crash", "nope"]) | json_values,
        "params": json_values,
        "id": json_values,
    },
)


def _is_response(item: object) -> bool:
    if not isinstance(item, dict) or item.get("jsonrpc") != "2.0" or "id" not in item:
        return False
    if ("result" in item) == ("error" in item):
        return False
    if "error" in item:
        err = item["error"]
        return isinstance(err["code"], int) and isinstance(err["message"], str)
    return True


@settings(max_examples=150, deadline=None)
@given(st.one_of(json_values, request_like, st.lists(request_like | json_values, max_size=5)))
def test_any_json_gets_well_formed_responses(payload: object) -> None:
    body = call(payload)
    if body is None:
        return
    if isinstance(payload, list) and payload:
        assert isinstance(body, list)
        assert all(_is_response(item) for item in body)
    else:
        assert _is_response(body)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(), min_size=1, max_size=2))
def test_positional_and_named_params_are_the_same_call(values: list[int]) -> None:
    named = dict(zip(["a", "b"], values, strict=False))
    assert call(request("echo_add", values)) == call(request("echo_add", named))
