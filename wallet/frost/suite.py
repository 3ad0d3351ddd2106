"""The FROST(Ed25519, SHA-512) ciphersuite of RFC 9591 section 6.1: the hash functions H1..H5
and the hash-to-scalar they share, plus the DKG's proof-of-knowledge hash."""

from __future__ import annotations

import hashlib

from wallet.frost.group import Scalar

CONTEXT_STRING = b"FROST-ED25519-SHA512-v1"


def hash_to_scalar(*parts: bytes) -> Scalar:
    """SHA-512 of the concatenated parts, read as a little-endian integer, reduced mod L."""
    return Scalar.reduce(hashlib.sha512(b"".join(parts)).digest())


def h1(message: bytes) -> Scalar:
    """H1: the binding factor (rho)."""
    return hash_to_scalar(CONTEXT_STRING, b"rho", message)


def h2(message: bytes) -> Scalar:
    """H2: the challenge. No context string, so that the result is the RFC 8032 challenge
    and the group signature verifies as a plain Ed25519 signature."""
    return hash_to_scalar(message)


def h3(message: bytes) -> Scalar:
    """H3: nonce generation."""
    return hash_to_scalar(CONTEXT_STRING, b"nonce", message)


def h4(message: bytes) -> bytes:
    """H4: the 64-byte digest of the message, an input of the binding factors."""
    return hashlib.sha512(CONTEXT_STRING + b"msg" + message).digest()


def h5(message: bytes) -> bytes:
    """H5: the 64-byte digest of the encoded commitment list."""
    return hashlib.sha512(CONTEXT_STRING + b"com" + message).digest()


def h_dkg(message: bytes) -> Scalar:
    """The challenge of the DKG's proof of knowledge. Not part of RFC 9591 (which leaves key
    generation out); a tag of its own keeps it apart from H1..H5."""
    return hash_to_scalar(CONTEXT_STRING, b"dkg", message)
