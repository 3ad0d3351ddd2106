"""The ledger's error tree, rooted at `ChainError`. Every rejection carries a reason and a message
that says what was wrong (`Rejection`, the shape other layers' rejections share too).

Each reason maps in one place (`node.rpc.errors`) to a JSON-RPC code and a peer penalty."""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

R = TypeVar("R", bound=enum.Enum)


class ChainError(Exception):
    """Base of every error raised by the ledger."""


class Rejection(Generic[R]):
    """What every rejection carries: a `reason` from its layer's enum, for code to act on (a
    JSON-RPC code, a peer penalty), and a `message` for the person who sent the input. Its text
    is "<reason value>: <message>" unless a subclass's `text` says otherwise.

    Not an exception by itself: each layer's rejection also derives from that layer's root
    (`InvalidTransaction(Rejection[TxRejection], ChainError)`), so the tree of each layer and
    every `except` over it stay as they are."""

    reason: R
    message: str

    def __init__(self, reason: R, message: str) -> None:
        # The next class in a subclass's order is its layer's exception root.
        super().__init__(self.text(reason, message))  # type: ignore[call-arg]
        self.reason = reason
        self.message = message

    @staticmethod
    def text(reason: R, message: str) -> str:
        return f"{reason.value}: {message}"


class TxRejection(enum.Enum):
    """Why a transaction is not valid (it never enters a block)."""

    MALFORMED = "malformed"
    OVERSIZE = "oversize"
    BAD_SIGNATURE = "bad signature"
    WRONG_GENESIS = "wrong genesis hash"
    STALE_NONCE = "stale nonce"
    FUTURE_NONCE = "future nonce"
    CANNOT_PAY_FEES = "cannot pay fees"
    UNKNOWN_CALL = "unknown call"
    BAD_ARGUMENTS = "bad arguments"
    CALL_FAILED = "call would fail"
    OUTDATED = "outdated"
    """Its call would fail only because of what other transactions did since it was signed (a
    second report of an offence, an invoice another member paid, a balance spent meanwhile, an
    anchor block aged out): never held against its sender, since honest senders race into these
    (a wallet's committee members, a node's prover and the blocks it waits for)."""
    UNAFFORDABLE = "cannot afford the call"
    """Its call would move more than the sender holds (a transfer above the free balance, a
    payout above the wallet's): as in a Substrate pool, not held against its sender, since
    finding it is cheap and a balance may be spent by the sender's own racing transactions (the
    members of a platform wallet's committee sign independently)."""
    TEMPORARILY_BANNED = "temporarily banned"
    ALREADY_IMPORTED = "already imported"
    PRIORITY_TOO_LOW = "priority too low"
    POOL_FULL = "pool full"


class InvalidTransaction(Rejection[TxRejection], ChainError):
    """A transaction that fails validation. `message` is meant for the person who sent it."""


class DispatchError(ChainError):
    """A call that failed while executing. Its effects are reverted; its fee is still paid."""

    def __init__(self, module: str, error: str, message: str) -> None:
        super().__init__(f"{module}.{error}: {message}")
        self.module = module
        self.error = error
        self.message = message


class UnaffordableCall(DispatchError):
    """A call that fails because the sender holds less than it moves, found before any costly
    work. In a block it fails like any call; before one, it is refused as UNAFFORDABLE."""


class OutdatedCall(DispatchError):
    """A call that fails only because of what other transactions did since it was signed, found
    before any costly work (so that refusing it without a strike costs the pool little). In a
    block it fails like any call; before one, it is refused as OUTDATED rather than CALL_FAILED."""


class BlockRejection(enum.Enum):
    """Why a block is not imported."""

    MALFORMED = "malformed"
    UNKNOWN_PARENT = "unknown parent"
    BAD_NUMBER = "bad number"
    BAD_TIMESTAMP = "bad timestamp"
    BAD_SLOT = "bad slot"
    FUTURE_SLOT = "future slot"
    """The block's timestamp is ahead of our clock by more than the allowed drift: our clock
    or the author's is off, which no one can prove; the block may be good once its slot comes."""
    WRONG_AUTHOR = "wrong author"
    BAD_SEAL = "bad seal"
    BAD_EXTRINSICS_ROOT = "bad extrinsics root"
    BAD_STATE_ROOT = "bad state root"
    INVALID_EXTRINSIC = "invalid extrinsic"
    OVERSIZE = "oversize"
    ALREADY_KNOWN = "already known"
    BELOW_FINALIZED = "does not extend the finalized block"


class InvalidBlock(Rejection[BlockRejection], ChainError):
    """A block that is not imported; nothing of it is written."""


class GenesisError(ChainError):
    """A chain spec that cannot be used; the message names the field."""


class DatabaseError(ChainError):
    """The database cannot be used: wrong schema version, another chain, corruption."""


class UnknownBlock(ChainError):
    """A block hash or number that this node does not have."""


class FinalityConflict(ChainError):
    """A block proven final that conflicts with the block this node already finalized: more
    than a third of the validators signed both. No rule can choose between them, so the node
    stops instead of writing either; an operator decides (and the evidence is in both proofs)."""

    def __init__(self, finalized: tuple[int, bytes], conflicting: tuple[int, bytes]) -> None:
        super().__init__(
            f"block #{conflicting[0]} 0x{conflicting[1].hex()} is proven final but conflicts "
            f"with our finalized block #{finalized[0]} 0x{finalized[1].hex()}: more than a third "
            "of the validators signed both chains"
        )
        self.finalized = finalized
        self.conflicting = conflicting
