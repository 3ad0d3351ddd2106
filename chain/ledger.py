"""What a service sees of the node's chain, so that services depend on this small view rather
than on the node's chain service (which implements it).

A `Ledger` is read through its store (headers, states, finality) and runtime (the chain's
rules), followed through its two feeds of heads, and written to only through the pool: a
service submits signed transactions like any client and never touches state itself.
"""

from __future__ import annotations

from typing import Protocol

from chain.blocks import Call, Header
from chain.broadcast import Broadcast
from chain.clock import Clock
from chain.keys import Signer
from chain.pool import TransactionPool
from chain.primitives import AccountId
from chain.runtime.executive import Runtime
from chain.store import ChainStore
from chain.validity import ValidTransaction


class Ledger(Protocol):
    @property
    def store(self) -> ChainStore: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def slot_duration_ms(self) -> int:
        """The chain's slot length, to tell which slot the clock's reading falls in."""

    @property
    def pool(self) -> TransactionPool:
        """The transaction pool, to look at (is a transaction still waiting?): a service adds to
        it only through `submit` and `submit_signed`."""

    @property
    def new_heads(self) -> Broadcast[Header]:
        """Each block that becomes best, in order; a reorganisation publishes the new head."""

    @property
    def finalized_heads(self) -> Broadcast[Header]:
        """Each newly finalized block, in order."""

    def next_nonce(self, account: AccountId) -> int:
        """The nonce `account`'s next transaction should carry, past its pooled ones."""

    def submit_signed(self, keypair: Signer, call: Call) -> ValidTransaction:
        """Sign `call` with `keypair` at its next nonce and pool it; raises
        `InvalidTransaction` with the reason."""

    def submit(self, encoded: bytes, *, local: bool = True) -> ValidTransaction:
        """Pool an encoded signed transaction; raises `InvalidTransaction` with the reason."""
