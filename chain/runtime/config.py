"""Parameters of the runtime that come from genesis and are the same on every node."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    base_fee: int
    """Charged for every transaction, burned."""
    byte_fee: int
    """Charged per byte of the encoded transaction, burned."""
    existential_deposit: int
    """The least balance a new account may be created with."""
    max_tx_bytes: int = 64 * 1024
    max_block_bytes: int = 5 * 1024 * 1024
    max_block_extrinsics: int = 10_000
    max_future_nonces: int = 64
    """How far ahead of the account nonce the pool accepts a transaction."""

    def fee(self, encoded_length: int) -> int:
        return self.base_fee + self.byte_fee * encoded_length
