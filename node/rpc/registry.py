"""The table of JSON-RPC methods and subscriptions, and `Params`, the typed view of a call's params.

Register a method (sync or async; it returns JSON) or a subscription (it returns an async
iterator of JSON items) in one line each:

    registry = Registry()

    @registry.method("chain_getBlockHash", params=["number?"], unsafe=False)
    def get_block_hash(params: Params) -> str | None:
        number = params.optional("number", int)          # wrong type -> -32602, automatically
        ...

    @registry.subscription("chain_subscribeNewHeads", unsubscribe="chain_unsubscribeNewHeads",
                           notification="chain_newHead", unsafe=False)
    async def new_heads(params: Params) -> AsyncIterator[dict[str, object]]:
        return chain.watch_heads()                       # validate first, then hand back the items

    registry.add_method("system_name", lambda params: "statemesh", unsafe=False)

Every method says at its registration whether it is unsafe (see `node.rpc.exposure`): a server
that serves only safe methods answers the unsafe ones with Substrate's -32601 "RPC call is
unsafe to be called externally", and `rpc_methods` lists only what the server answers. An
unclassified method is served only where unsafe methods are.

`params` declares the names, in positional order; a trailing "?" marks an optional one (optional
ones come last). Calls may pass params by position (array) or by name (object); a wrong count,
an unknown name or a missing required param is refused with -32602 before the handler runs.
`Params.required` / `Params.optional` take a JSON type (str, int, float, bool, list, dict),
which is checked, or a converter function, whose ValueError/TypeError message is shown to the
client as the reason. Raise `RpcError` for application errors. A subscription handler may return
a `Feed` instead of an iterator (items pushed to every subscriber, encoded once). It may also
be an async generator function, but then its params are only checked once iteration starts.
`rpc_methods` (Substrate's list of method names) is registered by every `Registry`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload

from node.errors import NodeError
from node.rpc.errors import INVALID_PARAMS, RpcError
from node.rpc.feeds import Feed

T = TypeVar("T")
D = TypeVar("D")

MethodHandler = Callable[["Params"], Awaitable[object]] | Callable[["Params"], object]
SubscribeHandler = (
    Callable[["Params"], Awaitable[AsyncIterator[object]]]
    | Callable[["Params"], AsyncIterator[object]]
    | Callable[["Params"], Feed[Any]]
)
MH = TypeVar("MH", bound=MethodHandler)
SH = TypeVar("SH", bound=SubscribeHandler)

_JSON_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}
_RESERVED_PREFIX = "rpc."


class MethodRegistrationError(NodeError, ValueError):
    """A registration that cannot work: a duplicate name or a malformed params declaration."""


class UndeclaredParamError(NodeError, LookupError):
    """A handler asked for a param its registration does not declare (a bug, not a bad call)."""


def json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type, as error messages show it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A method's declared params: names in positional order, the first `required` mandatory."""

    names: tuple[str, ...]
    required: int

    @classmethod
    def parse(cls, declared: Iterable[str]) -> ParamSpec:
        if isinstance(declared, str):
            raise MethodRegistrationError(
                f"params must be a list of names, not the string {declared!r}"
            )
        names: list[str] = []
        required = 0
        for entry in declared:
            optional = entry.endswith("?")
            name = entry[:-1] if optional else entry
            if not name.isidentifier():
                raise MethodRegistrationError(
                    f"param name {entry!r} is not an identifier (optionally + '?')"
                )
            if name in names:
                raise MethodRegistrationError(f"param {name!r} is declared twice")
            if not optional:
                if required != len(names):
                    raise MethodRegistrationError(
                        f"required param {name!r} follows an optional one"
                    )
                required += 1
            names.append(name)
        return cls(tuple(names), required)

    def describe(self) -> str:
        if not self.names:
            return "no params"
        shown = [n if i < self.required else f"{n}?" for i, n in enumerate(self.names)]
        return "params (" + ", ".join(shown) + ")"

    def bind(self, method: str, raw: list[object] | dict[str, object] | None) -> Params:
        """Map positional or named params onto the declared names, refusing bad shapes."""
        values: dict[str, object] = {}
        if isinstance(raw, list):
            if len(raw) > len(self.names):
                raise RpcError(
                    INVALID_PARAMS,
                    f"too many params: {method} takes {self.describe()}, got {len(raw)}",
                )
            values = dict(zip(self.names, raw, strict=False))
        elif isinstance(raw, dict):
            for name in raw:
                if name not in self.names:
                    raise RpcError(
                        INVALID_PARAMS,
                        f"unknown param {name!r}: {method} takes {self.describe()}",
                    )
            values = dict(raw)
        for position, name in enumerate(self.names[: self.required]):
            if name not in values:
                raise RpcError(
                    INVALID_PARAMS, f"missing required param {name!r} (position {position})"
                )
        return Params(method, self, values)


class Params:
    """The params of one call, by declared name. Values are never shown in repr or logs."""

    __slots__ = ("_method", "_spec", "_values")

    def __init__(self, method: str, spec: ParamSpec, values: Mapping[str, object]) -> None:
        self._method = method
        self._spec = spec
        self._values = dict(values)

    def __repr__(self) -> str:
        return f"Params({self._method}, given={sorted(self._values)})"

    @overload
    def required(self, name: str, kind: type[T]) -> T: ...
    @overload
    def required(self, name: str, kind: Callable[[Any], T]) -> T: ...
    def required(self, name: str, kind: type[T] | Callable[[Any], T]) -> T:
        """The param `name`, checked (JSON type) or converted (function); -32602 if absent."""
        self._check_declared(name)
        if name not in self._values:
            position = self._spec.names.index(name)
            raise RpcError(INVALID_PARAMS, f"missing required param {name!r} (position {position})")
        return _coerce(name, self._values[name], kind)

    @overload
    def optional(self, name: str, kind: type[T] | Callable[[Any], T]) -> T | None: ...
    @overload
    def optional(self, name: str, kind: type[T] | Callable[[Any], T], default: D) -> T | D: ...
    def optional(
        self, name: str, kind: type[T] | Callable[[Any], T], default: object = None
    ) -> object:
        """The param `name` checked or converted, or `default` when it is absent or null."""
        self._check_declared(name)
        value = self._values.get(name)
        if value is None:
            return default
        return _coerce(name, value, kind)

    def _check_declared(self, name: str) -> None:
        if name not in self._spec.names:
            raise UndeclaredParamError(
                f"{self._method} reads param {name!r} but declares {self._spec.describe()}"
            )


def _coerce(name: str, value: object, kind: type[T] | Callable[[Any], T]) -> T:
    if kind in _JSON_TYPE_NAMES:
        return _check_json_type(name, value, cast("type[T]", kind))
    convert = cast("Callable[[Any], T]", kind)
    try:
        return convert(value)
    except (ValueError, TypeError) as exc:
        raise RpcError(INVALID_PARAMS, f"invalid param {name!r}: {exc}") from None


def _check_json_type(name: str, value: object, kind: type[T]) -> T:
    is_bool = isinstance(value, bool)
    if kind is float and isinstance(value, int | float) and not is_bool:
        return float(value)  # type: ignore[return-value]
    if kind is bool:
        matches = is_bool
    else:
        matches = isinstance(value, kind) and not is_bool
    if not matches:
        raise RpcError(
            INVALID_PARAMS,
            f"invalid param {name!r}: expected {_JSON_TYPE_NAMES[kind]}, "
            f"got {json_type_name(value)}",
        )
    return value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: MethodHandler
    params: ParamSpec
    unsafe: bool | None = None
    """Whether only a server that serves unsafe methods answers it; None: not classified
    (served as unsafe)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    subscribe: str
    """The method that opens it; its result is the subscription id."""
    unsubscribe: str
    """The method that closes it; takes the id, returns whether it was open."""
    notification: str
    """The `method` of the notifications that carry its items."""
    handler: SubscribeHandler
    params: ParamSpec
    unsafe: bool | None = None
    """As `Method.unsafe`, for the subscribe and the unsubscribe method alike."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    subscription: Subscription

    @property
    def unsafe(self) -> bool | None:
        return self.subscription.unsafe


UNSUBSCRIBE_PARAMS = ParamSpec(("subscription",), 1)

Entry = Method | Subscription | Unsubscribe


class Registry:
    """Every method name the server answers, each bound to one entry."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._withheld: frozenset[str] = frozenset()
        self.call_timer: Callable[[str], AbstractContextManager[None]] | None = None
        """Counts and times each call by its method name (the node's metrics)."""
        self.add_method("rpc_methods", self._rpc_methods, unsafe=False)

    def timed(self, method: str) -> AbstractContextManager[None]:
        return nullcontext() if self.call_timer is None else self.call_timer(method)

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def unclassified(self) -> list[str]:
        """Methods registered without saying whether they are unsafe."""
        return sorted(name for name, entry in self._entries.items() if entry.unsafe is None)

    def is_withheld(self, name: str) -> bool:
        """Whether `name` is an unsafe method this registry's server does not serve."""
        return name in self._withheld

    def exposed(self, *, allow_unsafe: bool) -> Registry:
        """The registry a server serves: without the unsafe (and unclassified) methods unless
        `allow_unsafe`; its `rpc_methods` lists what it serves."""
        view = Registry()
        withheld = set()
        for name, entry in self._entries.items():
            if name == "rpc_methods":
                continue
            if allow_unsafe or entry.unsafe is False:
                view._entries[name] = entry
            else:
                withheld.add(name)
        view._withheld = frozenset(withheld)
        view.call_timer = self.call_timer
        return view

    def add_method(
        self,
        name: str,
        handler: MethodHandler,
        *,
        params: Iterable[str] = (),
        unsafe: bool | None = None,
    ) -> None:
        spec = ParamSpec.parse(params)
        self._claim(name)
        self._entries[name] = Method(name, handler, spec, unsafe)

    def method(
        self, name: str, *, params: Iterable[str] = (), unsafe: bool | None = None
    ) -> Callable[[MH], MH]:
        """Decorator form of `add_method`."""

        def register(handler: MH) -> MH:
            self.add_method(name, handler, params=params, unsafe=unsafe)
            return handler

        return register

    def add_subscription(
        self,
        subscribe: str,
        handler: SubscribeHandler,
        *,
        unsubscribe: str,
        notification: str,
        params: Iterable[str] = (),
        unsafe: bool | None = None,
        aliases: Iterable[str] = (),
        unsubscribe_aliases: Iterable[str] = (),
    ) -> None:
        """`aliases` (and `unsubscribe_aliases`) are other names of the subscribe (and
        unsubscribe) method, as Substrate keeps old ones: the same subscription under each, so
        one opened by any name is closed by any of the other's names."""
        spec = ParamSpec.parse(params)
        subscribes = [subscribe, *aliases]
        unsubscribes = [unsubscribe, *unsubscribe_aliases]
        if set(subscribes) & set(unsubscribes):
            raise MethodRegistrationError(f"{subscribe!r} cannot both subscribe and unsubscribe")
        names = [*subscribes, *unsubscribes]
        if len(set(names)) != len(names):
            raise MethodRegistrationError(f"{subscribe!r} names one method twice")
        for name in names:
            self._claim(name)
        entry = Subscription(subscribe, unsubscribe, notification, handler, spec, unsafe)
        for name in subscribes:
            self._entries[name] = entry
        for name in unsubscribes:
            self._entries[name] = Unsubscribe(entry)

    def subscription(
        self,
        subscribe: str,
        *,
        unsubscribe: str,
        notification: str,
        params: Iterable[str] = (),
        unsafe: bool | None = None,
        aliases: Iterable[str] = (),
        unsubscribe_aliases: Iterable[str] = (),
    ) -> Callable[[SH], SH]:
        """Decorator form of `add_subscription`."""

        def register(handler: SH) -> SH:
            self.add_subscription(
                subscribe,
                handler,
                unsubscribe=unsubscribe,
                notification=notification,
                params=params,
                unsafe=unsafe,
                aliases=aliases,
                unsubscribe_aliases=unsubscribe_aliases,
            )
            return handler

        return register

    def _claim(self, name: str) -> None:
        if not name or name.startswith(_RESERVED_PREFIX):
            raise MethodRegistrationError(f"{name!r} is not a usable method name")
        if name in self._entries:
            raise MethodRegistrationError(f"method {name!r} is already registered")

    def _rpc_methods(self, params: Params) -> dict[str, object]:
        return {"methods": self.names()}
