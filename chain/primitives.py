"""Quantities of the ledger, each a type of its own, and the hash functions of the chain."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NewType

Hash32 = NewType("Hash32", bytes)
"""A 32-byte digest: block hashes, transaction hashes, state and extrinsics roots."""

AccountId = NewType("AccountId", bytes)
"""An account: its 32-byte Ed25519 public key."""

BlockNumber = NewType("BlockNumber", int)
Slot = NewType("Slot", int)
Balance = NewType("Balance", int)
"""Money in the smallest unit. Integers only, never floats."""
Nonce = NewType("Nonce", int)
TimestampMs = NewType("TimestampMs", int)
"""Milliseconds since the Unix epoch, as written by the block author."""

ZERO_HASH = Hash32(b"\x00" * 32)
ACCOUNT_ID_LENGTH = 32
SIGNATURE_LENGTH = 64


def blake2_256(data: bytes) -> Hash32:
    """The chain's hash for blocks, transactions and storage keys."""
    return Hash32(hashlib.blake2b(data, digest_size=32).digest())


def merkle_root(leaves: Sequence[bytes]) -> Hash32:
    """Binary Merkle root over leaf hashes; an odd node is promoted unchanged.

    The empty list has the root blake2_256(b""), so an empty block still commits to something."""
    if not leaves:
        return blake2_256(b"")
    level = [blake2_256(b"\x00" + leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [blake2_256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
