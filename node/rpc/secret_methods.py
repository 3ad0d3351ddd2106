"""The JSON-RPC methods about an owner's configurations and secrets: `configs_list`,
`configs_get` and `secrets_list`. A secret is shown by its name, version, key names and sizes
and the applications that read it; never its values nor its envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chain.address import encode_address
from chain.primitives import AccountId
from chain.runtime import configs, owned_names, references, secrets
from chain.state import StateReader
from node.rpc.registry import Params, Registry


def _keys(pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"key": k, "size": size} for k, size in pairs]


def _used_by(state: StateReader, kind: references.Kind, owner: bytes, name: str) -> list[str]:
    return references.users_of(state, kind, owner, name)


def config_json(
    state: StateReader, owner: AccountId, name: str, record: configs.ConfigRecord
) -> dict[str, Any]:
    return {
        "owner": encode_address(owner),
        "name": name,
        "version": record.version,
        "updatedAt": record.updated_at,
        "keys": _keys([(k, len(v)) for k, v in record.data.items()]),
        "usedBy": _used_by(state, references.Kind.CONFIG, owner, name),
    }


def secret_json(
    state: StateReader, owner: AccountId, name: str, record: secrets.SecretRecord
) -> dict[str, Any]:
    return {
        "owner": encode_address(owner),
        "name": name,
        "version": record.version,
        "updatedAt": record.updated_at,
        "keys": _keys(list(record.keys)),
        "usedBy": _used_by(state, references.Kind.SECRET, owner, name),
    }


def _text_or_hex(value: bytes) -> str:
    """A configuration value as text when it is UTF-8, else 0x-hex."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "0x" + value.hex()


def owned_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= owned_names.MAX_NAME_BYTES:
        raise ValueError("expected a config or secret name (a DNS label)")
    return value


def register(
    registry: Registry, store: Any, resolve: Any, account: Callable[[Any], AccountId]
) -> None:
    """`resolve(params)`: the block a query reads (the `hash` given, or the best block);
    `account`: the parser of address parameters."""

    def state_at(params: Params) -> StateReader:
        state: StateReader = store.state_at(resolve(params))
        return state

    # Safe: configurations are plain chain data; of a secret only what the chain holds in clear.
    @registry.method("configs_list", params=["owner", "hash?"], unsafe=False)
    def configs_list(params: Params) -> list[dict[str, Any]]:
        owner = params.required("owner", account)
        state = state_at(params)
        found = []
        for name in configs.config_names(state, owner):
            record = configs.get_config(state, owner, name)
            if record is not None:
                found.append(config_json(state, owner, name, record))
        return found

    @registry.method("configs_get", params=["owner", "name", "hash?"], unsafe=False)
    def configs_get(params: Params) -> dict[str, Any] | None:
        owner = params.required("owner", account)
        name = params.required("name", owned_name)
        state = state_at(params)
        record = configs.get_config(state, owner, name)
        if record is None:
            return None
        shown = config_json(state, owner, name, record)
        shown["data"] = {k: _text_or_hex(v) for k, v in record.data.items()}
        return shown

    @registry.method("secrets_list", params=["owner", "hash?"], unsafe=False)
    def secrets_list(params: Params) -> list[dict[str, Any]]:
        owner = params.required("owner", account)
        state = state_at(params)
        found = []
        for name in secrets.secret_names(state, owner):
            record = secrets.secret_record(state, owner, name)
            if record is not None:
                found.append(secret_json(state, owner, name, record))
        return found
