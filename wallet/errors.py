"""The error root of the `wallet` package: the keystore, the FROST library, the share store and
the committee each raise a small tree under `WalletError`, so one `except WalletError` holds
whatever a wallet operation can fail with."""

from __future__ import annotations


class WalletError(Exception):
    """Base of every error the `wallet` package raises. Messages never contain key material (a
    seed, a share, a nonce, a password)."""
