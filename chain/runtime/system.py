"""The `system` module: accounts (nonce and free balance in one record), block metadata
(number, timestamp, a window of recent block hashes) and the `remark` call."""

from __future__ import annotations

from dataclasses import dataclass

import rlp

from chain.primitives import AccountId, BlockNumber, Hash32
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.state import Overlay, StateReader, storage_key

NAME = "system"
BLOCK_HASH_WINDOW = 256
"""How many recent block hashes the state keeps (anchors for proofs that must be recent)."""

_ACCOUNT = storage_key(NAME, "account")
NUMBER_KEY = storage_key(NAME, "number")
TIMESTAMP_KEY = storage_key(NAME, "timestamp")
_BLOCK_HASH = storage_key(NAME, "block_hash")
CHAIN_ID_KEY = storage_key(NAME, "chain_id")
AUTHORITIES_KEY = storage_key(NAME, "authorities")
RUNTIME_CONFIG_KEY = storage_key(NAME, "runtime_config")


@dataclass(frozen=True, slots=True)
class AccountInfo:
    nonce: int = 0
    free: int = 0

    def encode(self) -> bytes:
        """8-byte nonce then 16-byte free balance, big-endian: fixed width, cheap both ways."""
        return self.nonce.to_bytes(8, "big") + self.free.to_bytes(16, "big")

    @classmethod
    def decode(cls, data: bytes) -> AccountInfo:
        return cls(int.from_bytes(data[:8], "big"), int.from_bytes(data[8:24], "big"))


EMPTY_ACCOUNT = AccountInfo()


def account_key(who: bytes) -> bytes:
    return _ACCOUNT + who


def block_hash_key(number: int) -> bytes:
    return _BLOCK_HASH + number.to_bytes(8, "big")


def read_account(state: StateReader, who: bytes) -> AccountInfo | None:
    data = state.get(account_key(who))
    return None if data is None else AccountInfo.decode(data)


def account(state: StateReader, who: bytes) -> AccountInfo:
    return read_account(state, who) or EMPTY_ACCOUNT


def put_account(state: Overlay, who: bytes, info: AccountInfo) -> None:
    state.put(account_key(who), info.encode())


def _read_int(state: StateReader, key: bytes) -> int:
    data = state.get(key)
    return 0 if data is None else int.from_bytes(data, "big")


def authorities(state: StateReader) -> tuple[AccountId, ...]:
    data = state.get(AUTHORITIES_KEY)
    return () if data is None else tuple(AccountId(a) for a in rlp.decode(data))


def block_number(state: StateReader) -> BlockNumber:
    return BlockNumber(_read_int(state, NUMBER_KEY))


def recent_block_hash(state: StateReader, number: int) -> Hash32 | None:
    data = state.get(block_hash_key(number))
    return None if data is None else Hash32(data)


class System(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        return [
            CallDef(
                NAME,
                "remark",
                (Arg("data", ArgKind.BYTES, max_length=1024),),
                self.remark,
                "Record bytes on chain; does nothing else.",
            )
        ]

    def remark(self, ctx: Context, sender: AccountId, data: bytes) -> None:
        ctx.emit(NAME, "Remarked", sender=AccountRef(sender), length=len(data))

    def on_initialize(self, ctx: Context) -> None:
        env = ctx.env
        ctx.state.put(NUMBER_KEY, env.number.to_bytes(8, "big"))
        ctx.state.put(TIMESTAMP_KEY, env.timestamp.to_bytes(8, "big"))
        if env.number > 0:
            ctx.state.put(block_hash_key(env.number - 1), env.parent_hash)
        if env.number > BLOCK_HASH_WINDOW:
            ctx.state.delete(block_hash_key(env.number - 1 - BLOCK_HASH_WINDOW))
