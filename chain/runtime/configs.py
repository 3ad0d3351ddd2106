"""The `configs` module: an owner's plain configurations, each a map of keys to bytes, versioned
so that the replicas reading one roll when it changes. Names are per owner: alice's `web` and
bob's `web` are two configurations, and an application reads only its owner's."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from chain import codec
from chain.primitives import AccountId
from chain.runtime import owned_names, references
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.state import StateReader, storage_key

NAME = "configs"
MAX_DATA_BYTES = 32 * 1024
"""The most a configuration holds, its keys and values together."""
MAX_ENCODED_BYTES = MAX_DATA_BYTES + 4 * owned_names.MAX_KEYS + 8
"""The `data` argument: the pairs and their RLP headers."""
_CONFIG = storage_key(NAME, "config")
_NAMES = storage_key(NAME, "names")


class ConfigsError(enum.Enum):
    BAD_NAME = "BadName"
    BAD_DATA = "BadData"
    TOO_LARGE = "TooLarge"
    NAME_TAKEN = "NameTaken"
    UNKNOWN_CONFIG = "UnknownConfig"
    IN_USE = "InUse"


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    version: int
    """1 at creation, one more at each update."""
    updated_at: int
    """The block that stored this version."""
    data: Mapping[str, bytes]
    """Keys in ascending order."""

    def encode(self) -> bytes:
        u = codec.encode_uint
        pairs: list[codec.RlpItem] = [[k.encode(), v] for k, v in self.data.items()]
        return codec.encode([u(self.version), u(self.updated_at), pairs])

    @classmethod
    def decode(cls, data: bytes) -> ConfigRecord:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 3:
            raise codec.CodecError("a config record is [version, updated at, data]")
        version, at, pairs = item
        return cls(codec.uint(version, "version"), codec.uint(at, "updated at"), decode_data(pairs))


def encode_data(data: Mapping[str, bytes]) -> bytes:
    """What `configs.create` and `configs.update` take: [[key, value], ...] by ascending key."""
    return codec.encode([[k.encode(), data[k]] for k in sorted(data)])


def decode_data(item: codec.RlpItem) -> dict[str, bytes]:
    """Pairs with valid keys, strictly ascending, at most MAX_KEYS and MAX_DATA_BYTES."""
    if not isinstance(item, list):
        raise codec.CodecError("config data is a list of [key, value] pairs")
    if not 1 <= len(item) <= owned_names.MAX_KEYS:
        raise codec.CodecError(f"config data has 1 to {owned_names.MAX_KEYS} keys")
    data: dict[str, bytes] = {}
    for i, pair in enumerate(item):
        if not isinstance(pair, list) or len(pair) != 2:
            raise codec.CodecError(f"pair {i} is not [key, value]")
        key, value = pair
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise codec.CodecError(f"pair {i} is not [key, value]")
        try:
            name = owned_names.check_key(key)
        except owned_names.BadName as exc:
            raise codec.CodecError(str(exc)) from None
        if data and name <= list(data)[-1]:
            raise codec.CodecError(f"key {name!r} is not after the one before it")
        data[name] = value
    return data


def data_size(data: Mapping[str, bytes]) -> int:
    return sum(len(k) + len(v) for k, v in data.items())


def config_key(owner: bytes, name: str) -> bytes:
    return _CONFIG + owner + name.encode()


def get_config(state: StateReader, owner: bytes, name: str) -> ConfigRecord | None:
    data = state.get(config_key(owner, name))
    return None if data is None else ConfigRecord.decode(data)


def config_names(state: StateReader, owner: bytes) -> list[str]:
    return owned_names.names(state, _NAMES, owner)


def missing(state: StateReader, owner: bytes, wanted: Mapping[str, frozenset[str]]) -> str | None:
    """Why a manifest of `owner` reading `wanted` (config name -> keys it names) cannot be
    accepted, or None."""
    for name in sorted(wanted):
        record = get_config(state, owner, name)
        if record is None:
            return f"the owner has no config {name!r}"
        absent = sorted(wanted[name] - set(record.data))
        if absent:
            return f"config {name!r} has no key {absent[0]!r}"
    return None


class Configs(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        name = Arg("name", ArgKind.BYTES, max_length=owned_names.MAX_NAME_BYTES)
        data = Arg("data", ArgKind.BYTES, max_length=MAX_ENCODED_BYTES)
        return [
            CallDef(NAME, "create", (name, data), self.create, "Store a new configuration."),
            CallDef(NAME, "update", (name, data), self.update, "Store its next version."),
            CallDef(NAME, "delete", (name,), self.delete, "Remove a configuration no app reads."),
        ]

    def _name(self, raw: bytes) -> str:
        try:
            return owned_names.check_name(raw)
        except owned_names.BadName as exc:
            raise self.fail(ConfigsError.BAD_NAME, str(exc)) from None

    def _data(self, raw: bytes) -> dict[str, bytes]:
        try:
            data = decode_data(codec.decode(raw))
        except codec.CodecError as exc:
            raise self.fail(ConfigsError.BAD_DATA, str(exc)) from None
        size = data_size(data)
        if size > MAX_DATA_BYTES:
            raise self.fail(
                ConfigsError.TOO_LARGE, f"{size} bytes of keys and values, at most {MAX_DATA_BYTES}"
            )
        return data

    def create(self, ctx: Context, sender: AccountId, raw_name: bytes, raw_data: bytes) -> None:
        name = self._name(raw_name)
        data = self._data(raw_data)
        if get_config(ctx.state, sender, name) is not None:
            raise self.fail(ConfigsError.NAME_TAKEN, f"you already have a config named {name!r}")
        ctx.state.put(config_key(sender, name), ConfigRecord(1, ctx.env.number, data).encode())
        owned_names.add_name(ctx.state, _NAMES, sender, name)
        ctx.emit(NAME, "ConfigCreated", owner=AccountRef(sender), name=name, version=1)

    def update(self, ctx: Context, sender: AccountId, raw_name: bytes, raw_data: bytes) -> None:
        name = self._name(raw_name)
        data = self._data(raw_data)
        old = get_config(ctx.state, sender, name)
        if old is None:
            raise self.fail(ConfigsError.UNKNOWN_CONFIG, f"you have no config named {name!r}")
        # An application that names a key must keep finding it.
        dropped = references.dropped_key(ctx.state, references.Kind.CONFIG, sender, name, data)
        if dropped is not None:
            app, key = dropped
            raise self.fail(
                ConfigsError.IN_USE, f"application {app!r} reads key {key!r} of config {name!r}"
            )
        version = old.version + 1
        ctx.state.put(
            config_key(sender, name), ConfigRecord(version, ctx.env.number, data).encode()
        )
        ctx.emit(NAME, "ConfigUpdated", owner=AccountRef(sender), name=name, version=version)

    def delete(self, ctx: Context, sender: AccountId, raw_name: bytes) -> None:
        name = self._name(raw_name)
        if get_config(ctx.state, sender, name) is None:
            raise self.fail(ConfigsError.UNKNOWN_CONFIG, f"you have no config named {name!r}")
        users = references.users_of(ctx.state, references.Kind.CONFIG, sender, name)
        if users:
            raise self.fail(
                ConfigsError.IN_USE, f"config {name!r} is read by application {users[0]!r}"
            )
        ctx.state.delete(config_key(sender, name))
        owned_names.remove_name(ctx.state, _NAMES, sender, name)
        ctx.emit(NAME, "ConfigDeleted", owner=AccountRef(sender), name=name)
