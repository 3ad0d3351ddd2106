"""Sealing bytes for one node: an ephemeral X25519 agreement with the recipient's identity key
(its Ed25519 node key, converted), then XChaCha20-Poly1305 keyed by SHA-512 over a domain tag,
the shared secret and both public halves. A header the caller chooses travels in clear and is
authenticated with the ephemeral key, so a box opens only for its recipient and its context.

    box = ephemeral X25519 key (32) || ciphertext || tag
    AD  = domain || header || ephemeral key

DKG shares (`share_box`) and partial decryptions of secrets are sealed this way."""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions

from chain.keys import Keypair
from wallet.frost.errors import SealingError
from wallet.frost.group import RandomSource

X25519_LENGTH = 32


def _key_and_nonce(
    domain: bytes, shared: bytes, ephemeral: bytes, recipient_x25519: bytes
) -> tuple[bytes, bytes]:
    # A fresh ephemeral key per box makes each derived key single-use, so deriving the nonce
    # from the same hash is safe.
    okm = hashlib.sha512(domain + shared + ephemeral + recipient_x25519).digest()
    key_length = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
    nonce_length = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
    return okm[:key_length], okm[key_length : key_length + nonce_length]


def seal_for(
    recipient_identity_key: bytes,
    plaintext: bytes,
    *,
    domain: bytes,
    header: bytes,
    rng: RandomSource,
) -> bytes:
    """The box of `plaintext` for the node whose Ed25519 identity key is given; `SealingError`
    if that is not a usable key."""
    try:
        recipient_x25519 = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(
            recipient_identity_key
        )
    except (
        nacl.exceptions.RuntimeError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
    ) as error:
        raise SealingError("not a usable Ed25519 identity key") from error
    ephemeral_secret = rng(X25519_LENGTH)
    ephemeral = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
    shared = nacl.bindings.crypto_scalarmult(ephemeral_secret, recipient_x25519)
    key, nonce = _key_and_nonce(domain, shared, ephemeral, recipient_x25519)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, domain + header + ephemeral, nonce, key
    )
    return ephemeral + ciphertext


def open_for(identity: Keypair, box: bytes, *, domain: bytes, header: bytes) -> bytes:
    """The plaintext of a box sealed for `identity` with this domain and header;
    `SealingError` otherwise (wrong recipient, other context, tampered, malformed), its message
    a predicate to put after what the box held."""
    if len(box) < X25519_LENGTH:
        raise SealingError("is shorter than its ephemeral key")
    ephemeral, ciphertext = box[:X25519_LENGTH], box[X25519_LENGTH:]
    _, ed25519_secret = nacl.bindings.crypto_sign_seed_keypair(identity.seed)
    x25519_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(ed25519_secret)
    recipient_x25519 = nacl.bindings.crypto_scalarmult_base(x25519_secret)
    try:
        shared = nacl.bindings.crypto_scalarmult(x25519_secret, ephemeral)
    except nacl.exceptions.RuntimeError as error:
        raise SealingError("has a degenerate ephemeral key") from error
    key, nonce = _key_and_nonce(domain, shared, ephemeral, recipient_x25519)
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(  # type: ignore[no-any-return]
            ciphertext, domain + header + ephemeral, nonce, key
        )
    except nacl.exceptions.CryptoError as error:
        raise SealingError(
            "does not open with this identity key (wrong recipient or tampered)"
        ) from error
