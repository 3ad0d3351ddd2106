"""Ed25519 verification through libsodium. A FROST(Ed25519, SHA-512) group signature is a
standard Ed25519 signature, so the platform wallet is verified by this same function."""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


class VerifiedSignatures:
    """The hashes of signed transactions whose signature verified, so that a transaction the
    pool checked is not checked again when a block brings it (Substrate's pool likewise checks a
    signature once). The hash is blake2-256 of the whole encoded transaction, sender, payload
    and signature included: a hit means these very bytes verified. Sync adds the hashes of
    headers whose seal verified (blake2-256 of the header, seal included) the same way. Bounded:
    the oldest are forgotten first, and a forgotten one is simply verified again.

    Read from the importer's worker thread while the event loop adds: each operation is one
    dictionary operation, atomic under the GIL, and a miss only costs a verification."""

    __slots__ = ("_hashes", "capacity")

    def __init__(self, capacity: int = 65_536) -> None:
        if capacity < 1:
            raise ValueError("the cache must hold at least one hash")
        self.capacity = capacity
        self._hashes: dict[bytes, None] = {}

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, tx_hash: bytes) -> None:
        """Remember that the transaction with this hash carries a valid signature; only call it
        once the signature has been verified (or the transaction was in a block that executed)."""
        hashes = self._hashes
        if tx_hash in hashes:
            return
        hashes[tx_hash] = None
        while len(hashes) > self.capacity:
            del hashes[next(iter(hashes))]
