"""The finality vote as validators sign it: the layout the finality gadget gossips and the
`offences` module reads back from an equivocation report, defined once for both."""

from __future__ import annotations

VOTE_DOMAIN = b"statemesh/vote/v1"
"""What every finality vote's signed payload starts with."""
VOTE_LENGTH = 8 + 1 + 32 + 8 + 32 + 64
"""An encoded vote: round, phase, target hash, target number, voter, signature."""
PREVOTE = 1
PRECOMMIT = 2


def vote_payload(
    genesis_hash: bytes, round_: int, phase: int, target_hash: bytes, target_number: int
) -> bytes:
    """What a validator signs to vote: bound to one chain by its genesis hash."""
    return (
        VOTE_DOMAIN
        + genesis_hash
        + round_.to_bytes(8, "big")
        + bytes([phase])
        + target_hash
        + target_number.to_bytes(8, "big")
    )
