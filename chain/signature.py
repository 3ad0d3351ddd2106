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
