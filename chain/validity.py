"""What the runtime says of a transaction that passed validation: the facts the pool orders by."""

from __future__ import annotations

from dataclasses import dataclass

from chain.blocks import Transaction
from chain.primitives import AccountId, Hash32


@dataclass(frozen=True, slots=True)
class ValidTransaction:
    hash: Hash32
    encoded: bytes
    """The exact bytes submitted; their length is what the byte fee is charged on."""
    tx: Transaction
    sender: AccountId
    nonce: int
    tip: int
    account_nonce: int
    """The sender's nonce in the state it was validated against: nonce > account_nonce means the
    transaction is `future` (it waits for its predecessors), nonce == account_nonce `ready`."""
    fee: int
    """Base fee plus byte fee (the tip not included)."""
    balance: int
    """The sender's free balance in the state it was validated against: what all its pending
    transactions together may spend."""
    cost: int
    """What it takes from that balance once included: fee and tip, and for a transaction that
    was dry-run (the one next in line) whatever else its call moved out of the free balance.
    A transaction that waits for a predecessor counts fee and tip until it is next in line."""
