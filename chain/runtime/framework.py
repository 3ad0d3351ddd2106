"""The module framework: call definitions with typed arguments, the execution context, events
and module errors. Modules are plain classes registered in `chain.runtime.executive`."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, NamedTuple, final

import rlp
from rlp.sedes import Binary, List, big_endian_int, binary

from chain import codec
from chain.address import AddressError, decode_address, encode_address
from chain.blocks import Call
from chain.errors import (
    DispatchError,
    InvalidTransaction,
    OutdatedCall,
    TxRejection,
    UnaffordableCall,
)
from chain.primitives import AccountId, BlockNumber, Hash32, TimestampMs
from chain.runtime.config import RuntimeConfig
from chain.state import Overlay, StateReader

MAX_U128 = 2**128 - 1


@final
class AccountRef(bytes):
    """An account id inside event data: shown as an address rather than as hex."""

    __slots__ = ()


EventValue = int | str | bytes


class ArgKind(enum.Enum):
    """How a call argument is encoded, validated and shown to people."""

    ACCOUNT = "account"
    BALANCE = "balance"
    U64 = "u64"
    BYTES = "bytes"

    @property
    def sedes(self) -> Any:
        return _SEDES[self]


_SEDES: dict[ArgKind, Any] = {
    ArgKind.ACCOUNT: Binary.fixed_length(32),
    ArgKind.BALANCE: big_endian_int,
    ArgKind.U64: big_endian_int,
    ArgKind.BYTES: binary,
}
_INT_LIMITS = {ArgKind.BALANCE: MAX_U128, ArgKind.U64: 2**64 - 1}


@dataclass(frozen=True, slots=True)
class Arg:
    name: str
    kind: ArgKind
    max_length: int = 0
    """For BYTES: the longest value accepted (0 = the transaction size limit is the only bound)."""


@dataclass(frozen=True, slots=True)
class CallDef:
    module: str
    name: str
    args: tuple[Arg, ...]
    handler: Callable[..., None]
    """handler(ctx, sender, *decoded_args); raises DispatchError to fail the call."""
    doc: str = ""
    check_shape: Callable[..., None] | None = None
    """check_shape(*decoded_args): the arguments' own consistency, needing no state and no
    signature check; raises ValueError for arguments no state could make valid, which are refused
    as BAD_ARGUMENTS (so a peer that relays them is at fault)."""
    heavy: bool = False
    """Its dispatch takes milliseconds of a core whatever the transaction's size (a VDF check):
    a node dry-runs it on its worker thread, never on the event loop."""

    def decode_args(self, encoded: bytes) -> list[Any]:
        try:
            items = codec.decode(encoded)
            if not isinstance(items, list) or len(items) != len(self.args):
                raise codec.CodecError(f"expected a list of {len(self.args)} arguments")
            values = [_decode_arg(arg, item) for arg, item in zip(self.args, items, strict=True)]
        except codec.CodecError as exc:
            raise InvalidTransaction(
                TxRejection.BAD_ARGUMENTS,
                f"{self.module}.{self.name} takes ({self.signature()}): {exc}",
            ) from None
        for arg, value in zip(self.args, values, strict=True):
            limit = _INT_LIMITS.get(arg.kind)
            if limit is not None and value > limit:
                raise InvalidTransaction(
                    TxRejection.BAD_ARGUMENTS, f"{arg.name} exceeds its maximum {limit}"
                )
            if arg.kind is ArgKind.BYTES and arg.max_length and len(value) > arg.max_length:
                raise InvalidTransaction(
                    TxRejection.BAD_ARGUMENTS,
                    f"{arg.name} is {len(value)} bytes, at most {arg.max_length} allowed",
                )
        if self.check_shape is not None:
            try:
                self.check_shape(*values)
            except ValueError as exc:
                raise InvalidTransaction(
                    TxRejection.BAD_ARGUMENTS, f"{self.module}.{self.name}: {exc}"
                ) from None
        return values

    def encode_args(self, values: Mapping[str, Any]) -> bytes:
        """Encode arguments given by name, from JSON-like values (addresses as text, bytes as
        0x-hex, amounts as integers or decimal strings). Raises ValueError naming the argument."""
        missing = [a.name for a in self.args if a.name not in values]
        unknown = sorted(set(values) - {a.name for a in self.args})
        if missing or unknown:
            raise ValueError(
                f"{self.module}.{self.name} takes ({self.signature()})"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        encoded = [_arg_from_json(a, values[a.name]) for a in self.args]
        args: bytes = rlp.encode(encoded, sedes=List([a.kind.sedes for a in self.args]))
        return args

    def call(self, **values: Any) -> Call:
        return Call(self.module.encode(), self.name.encode(), self.encode_args(values))

    def args_to_json(self, values: list[Any]) -> dict[str, Any]:
        return {a.name: _arg_to_json(a.kind, v) for a, v in zip(self.args, values, strict=True)}

    def signature(self) -> str:
        return ", ".join(f"{a.name}: {a.kind.value}" for a in self.args)


def _decode_arg(arg: Arg, item: codec.RlpItem) -> Any:
    if arg.kind is ArgKind.ACCOUNT:
        return AccountId(codec.fixed(item, 32, arg.name))
    if arg.kind is ArgKind.BYTES:
        if not isinstance(item, bytes):
            raise codec.CodecError(f"{arg.name} must be bytes, got a list")
        return item
    return codec.uint(item, arg.name)


def _arg_from_json(arg: Arg, value: Any) -> Any:
    if arg.kind is ArgKind.ACCOUNT:
        if isinstance(value, bytes) and len(value) == 32:
            return value
        if not isinstance(value, str):
            raise ValueError(f"{arg.name}: expected an address")
        try:
            return decode_address(value)
        except AddressError as exc:
            raise ValueError(f"{arg.name}: {exc}") from None
    if arg.kind in (ArgKind.BALANCE, ArgKind.U64):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{arg.name}: expected a non-negative integer")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{arg.name}: {value!r} is not an integer") from None
        if number < 0 or number > _INT_LIMITS[arg.kind]:
            raise ValueError(f"{arg.name}: {number} is out of range")
        return number
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError(f"{arg.name}: {value!r} is not valid hex") from None
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"{arg.name}: expected 0x-hex or text")


def _arg_to_json(kind: ArgKind, value: Any) -> Any:
    if kind is ArgKind.ACCOUNT:
        return encode_address(value)
    if kind is ArgKind.BYTES:
        return "0x" + bytes(value).hex()
    return value


class Event(NamedTuple):
    """What a module reports of a block's execution, stored with the block (`encoded`).

    A named tuple rather than a frozen dataclass: a transfer emits three, and building one costs
    a quarter of what a frozen dataclass's `__init__` does (0.14 against 0.59 µs)."""

    module: str
    name: str
    data: tuple[tuple[str, EventValue], ...]
    phase: int | None
    """The index of the extrinsic that emitted it; None for block hooks."""

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "module": self.module,
            "name": self.name,
            "data": {k: _event_value_to_json(v) for k, v in self.data},
        }

    def encode(self) -> codec.RlpItem:
        """RLP-ready form for storage, keeping each value's kind."""
        return [
            b"" if self.phase is None else (self.phase + 1).to_bytes(4, "big"),
            self.module.encode(),
            self.name.encode(),
            [[k.encode(), *_tag(v)] for k, v in self.data],
        ]

    def encoded(self) -> bytes:
        """`codec.encode(self.encode())`, the stored bytes, built directly: a block of 10,000
        transfers carries some 40,000 events, and the generic encoder's recursion over their
        nested lists cost more than executing the transfers."""
        # The phase is empty (0x80) or four bytes (0x84 and the bytes).
        phase = b"\x80" if self.phase is None else b"\x84" + (self.phase + 1).to_bytes(4, "big")
        fields = b"".join(
            [
                # An account's field (a third of all fields) is a cached prefix and the id.
                _account_field(key) + value
                if type(value) is AccountRef and len(value) == 32
                else codec.encode_list_payload(_encoded_name(key) + _encoded_value(value))
                for key, value in self.data
            ]
        )
        return codec.encode_list_payload(
            phase + _encoded_names(self.module, self.name) + codec.encode_list_payload(fields)
        )

    @classmethod
    def decode(cls, item: list[Any]) -> Event:
        phase_raw, module, name, data = item
        phase = int.from_bytes(phase_raw, "big") - 1 if phase_raw else None
        return cls(
            module.decode(),
            name.decode(),
            tuple((k.decode(), _untag(tag, v)) for k, tag, v in data),
            phase,
        )


def _event_value_to_json(value: EventValue) -> Any:
    if isinstance(value, AccountRef):
        return encode_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _tag(value: EventValue) -> tuple[bytes, bytes]:
    if isinstance(value, bool):
        raise TypeError("event values are int, str, bytes or AccountRef")
    if isinstance(value, AccountRef):
        return b"a", bytes(value)
    if isinstance(value, int):
        return b"i", codec.encode_uint(value)
    if isinstance(value, str):
        return b"s", value.encode()
    return b"b", value


@functools.lru_cache(maxsize=1024)
def _encoded_name(name: str) -> bytes:
    """RLP of a module's, an event's or a field's name: few distinct ones, encoded once each."""
    return codec.encode_string(name.encode())


@functools.lru_cache(maxsize=1024)
def _account_field(name: str) -> bytes:
    """The encoding of the field [name, "a", <32-byte account id>] without the id."""
    payload_length = len(_encoded_name(name)) + 1 + 33  # the tag, then 0xa0 and the id
    return codec.list_prefix(payload_length) + _encoded_name(name) + b"a\xa0"


@functools.lru_cache(maxsize=1024)
def _encoded_names(module: str, name: str) -> bytes:
    """`_encoded_name` of an event's module, then of its name: one lookup per event."""
    return _encoded_name(module) + _encoded_name(name)


def _encoded_value(value: EventValue) -> bytes:
    """RLP of `_tag(value)`'s two strings, one after the other (each tag is one byte below 0x80,
    its own encoding)."""
    # The common kinds first, by exact type (a bool is never one of them; AccountRef is final);
    # accounts, a third of all values, need no copy: `encode_string` takes the AccountRef itself.
    if type(value) is AccountRef:
        return b"a" + codec.encode_string(value)
    if type(value) is int:
        return b"i" + codec.encode_string(codec.encode_uint(value))
    if isinstance(value, bool):
        raise TypeError("event values are int, str, bytes or AccountRef")
    if isinstance(value, int):
        return b"i" + codec.encode_string(codec.encode_uint(value))
    if isinstance(value, str):
        return b"s" + codec.encode_string(value.encode())
    return b"b" + codec.encode_string(value)


def _untag(tag: bytes, raw: bytes) -> EventValue:
    if tag == b"a":
        return AccountRef(raw)
    if tag == b"i":
        return int.from_bytes(raw, "big")
    if tag == b"s":
        return raw.decode()
    return raw


@dataclass(frozen=True, slots=True)
class BlockEnv:
    """What the runtime knows of the block it executes; the author wrote these fields."""

    number: BlockNumber
    parent_hash: Hash32
    timestamp: TimestampMs
    author: AccountId


_new_event: Final = tuple.__new__


@dataclass(slots=True)
class Context:
    state: Overlay
    env: BlockEnv
    config: RuntimeConfig
    genesis_hash: Hash32
    """The chain's identity, which signed consensus messages (finality votes) bind."""
    events: list[Event] = field(default_factory=list)
    phase: int | None = None
    fee: int = 0
    """The fee the extrinsic being dispatched paid (0 in block hooks): a call that refunds it
    knows how much."""

    def emit(self, module: str, name: str, /, **data: EventValue) -> None:
        # Event's own __new__ does just this, behind one more Python call.
        self.events.append(_new_event(Event, (module, name, tuple(data.items()), self.phase)))


class Module:
    """Base of runtime modules. Subclasses set `name`, define `calls()`, and may override hooks."""

    name: ClassVar[str]

    def calls(self) -> list[CallDef]:
        return []

    def on_initialize(self, ctx: Context) -> None:
        """Runs before the block's extrinsics."""

    def on_finalize(self, ctx: Context) -> None:
        """Runs after the block's extrinsics."""

    def fail(self, error: enum.Enum, message: str) -> DispatchError:
        return DispatchError(self.name, error.value, message)

    def outdated(self, error: enum.Enum, message: str) -> OutdatedCall:
        """A failure that only what other transactions did since this one was signed explains,
        found before any costly work: the pool refuses it without holding it against the
        sender (see `OutdatedCall`)."""
        return OutdatedCall(self.name, error.value, message)

    def unaffordable(self, error: enum.Enum, message: str) -> UnaffordableCall:
        """The sender holds less than the call moves (see `UnaffordableCall`)."""
        return UnaffordableCall(self.name, error.value, message)


def get_uints(state: StateReader, key: bytes, what: str) -> list[int]:
    """A list of integers stored under `key` (`put_uints`); empty when nothing is stored."""
    data = state.get(key)
    if not data:
        return []
    item = codec.decode(data)
    if not isinstance(item, list):
        raise codec.CodecError(f"{what} is a list")
    return [codec.uint(x, what) for x in item]


def put_uints(state: Overlay, key: bytes, values: Sequence[int]) -> None:
    """Stores a list of integers under `key`, or deletes the key for an empty list."""
    if values:
        state.put(key, codec.encode([codec.encode_uint(v) for v in values]))
    else:
        state.delete(key)
