"""The error root of the `vdf` package: proofs, the prover and its workers, calibration and the
presence service raise errors under `VdfError`."""

from __future__ import annotations


class VdfError(Exception):
    """Base of every error raised by the `vdf` package."""
