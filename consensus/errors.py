"""The consensus error root. Every error that consensus code defines derives from
`ConsensusError`; the ledger's own errors (`chain.errors.ChainError`: an invalid block or
transaction) pass through consensus unchanged, so `except ChainError` never catches a refused
vote and `except ConsensusError` never an invalid block."""

from __future__ import annotations


class ConsensusError(Exception):
    """Base of every error that consensus code defines: refused votes and finality proofs."""
