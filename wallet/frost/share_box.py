"""Sealing a DKG share for its one recipient: an ephemeral X25519 agreement with the
recipient's identity key (its Ed25519 key, converted), then XChaCha20-Poly1305 with the
session and both identifiers as associated data, so a share can cross any transport."""

from __future__ import annotations

import hashlib
import os

import nacl.bindings
import nacl.exceptions

from chain.keys import Keypair
from wallet.frost.dkg_messages import SESSION_ID_LENGTH, Round2Share
from wallet.frost.errors import InvalidEncoding, InvalidIdentifier, SealingError
from wallet.frost.group import RandomSource
from wallet.frost.identifier import Identifier, encode_identifier
from wallet.frost.wire import Reader

SEAL_DOMAIN = b"statemesh/frost-dkg/share-box/v1"
X25519_LENGTH = 32
_HEADER_LENGTH = SESSION_ID_LENGTH + 2 * 32 + X25519_LENGTH


def _header(
    session_id: bytes, sender: Identifier, recipient: Identifier, ephemeral: bytes
) -> bytes:
    return session_id + encode_identifier(sender) + encode_identifier(recipient) + ephemeral


def _key_and_nonce(shared: bytes, ephemeral: bytes, recipient_x25519: bytes) -> tuple[bytes, bytes]:
    # A fresh ephemeral key per box makes each derived key single-use, so deriving the nonce
    # from the same hash is safe.
    okm = hashlib.sha512(SEAL_DOMAIN + shared + ephemeral + recipient_x25519).digest()
    key_length = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
    nonce_length = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
    return okm[:key_length], okm[key_length : key_length + nonce_length]


def seal_share(
    share: Round2Share, recipient_identity_key: bytes, *, rng: RandomSource = os.urandom
) -> bytes:
    """The sealed share for the member whose Ed25519 identity key is given. The header
    (session, sender, recipient, ephemeral key) travels in clear and is authenticated."""
    try:
        recipient_x25519 = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(
            recipient_identity_key
        )
    except (
        nacl.exceptions.RuntimeError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
    ) as error:
        raise SealingError(
            f"not a usable Ed25519 identity key for member {share.recipient}"
        ) from error
    ephemeral_secret = rng(X25519_LENGTH)
    ephemeral = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
    shared = nacl.bindings.crypto_scalarmult(ephemeral_secret, recipient_x25519)
    key, nonce = _key_and_nonce(shared, ephemeral, recipient_x25519)
    header = _header(share.session_id, share.sender, share.recipient, ephemeral)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        share.encode(), SEAL_DOMAIN + header, nonce, key
    )
    return header + ciphertext


def open_share(sealed: bytes, identity: Keypair) -> Round2Share:
    """The share inside `sealed`, if it was sealed for `identity`; `SealingError` otherwise."""
    reader = Reader(sealed, "sealed share")
    try:
        session_id = reader.take(SESSION_ID_LENGTH)
        sender = reader.identifier("sender")
        recipient = reader.identifier("recipient")
        ephemeral = reader.take(X25519_LENGTH)
    except (InvalidEncoding, InvalidIdentifier) as error:
        raise SealingError(f"malformed sealed share: {error}") from error
    ciphertext = reader.rest()
    _, ed25519_secret = nacl.bindings.crypto_sign_seed_keypair(identity.seed)
    x25519_secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(ed25519_secret)
    recipient_x25519 = nacl.bindings.crypto_scalarmult_base(x25519_secret)
    try:
        shared = nacl.bindings.crypto_scalarmult(x25519_secret, ephemeral)
    except nacl.exceptions.RuntimeError as error:
        raise SealingError(
            f"sealed share from member {sender}: degenerate ephemeral key"
        ) from error
    key, nonce = _key_and_nonce(shared, ephemeral, recipient_x25519)
    header = _header(session_id, sender, recipient, ephemeral)
    try:
        plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, SEAL_DOMAIN + header, nonce, key
        )
    except nacl.exceptions.CryptoError as error:
        raise SealingError(
            f"sealed share from member {sender} to member {recipient} does not open with this "
            "identity key (wrong recipient or tampered)"
        ) from error
    try:
        share = Round2Share.decode(plaintext)
    except (InvalidEncoding, InvalidIdentifier) as error:
        raise SealingError(f"sealed share from member {sender}: {error}") from error
    if (share.session_id, share.sender, share.recipient) != (session_id, sender, recipient):
        raise SealingError(
            f"sealed share from member {sender}: the header does not match the sealed share"
        )
    return share
