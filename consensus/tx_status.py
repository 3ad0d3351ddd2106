"""The statuses of a watched transaction as JSON-RPC shows them, and which of them are final:
the chain service stops watching on one, and a client stops following."""

from __future__ import annotations

from typing import Final

TxStatus = str | dict[str, str]
"""A watched transaction's status as JSON-RPC shows it: "future", "ready", "invalid",
"dropped", or {"inBlock" | "finalized" | "usurped": "0x<hash>"}."""

FINAL_STATUSES: Final = frozenset({"finalized", "usurped", "dropped", "invalid"})
"""After these a watched transaction's stream ends. ("retracted" is not final: a re-org took
its block off the best chain, and it goes back to the pool.)"""


def status_is_final(status: object) -> bool:
    """True for a final status. Whatever else a status is (a client reads it from the network:
    an unknown name, a dict of other than one key, not a status at all) is not final."""
    if isinstance(status, str):
        return status in FINAL_STATUSES
    if isinstance(status, dict) and len(status) == 1:
        return next(iter(status)) in FINAL_STATUSES
    return False
