"""Sealing a DKG share for its one recipient (`node_box`: an ephemeral X25519 agreement with
the recipient's identity key, then XChaCha20-Poly1305) with the session and both identifiers
as the authenticated header, so a share can cross any transport."""

from __future__ import annotations

import os

from chain.keys import Keypair
from wallet.frost.dkg_messages import SESSION_ID_LENGTH, Round2Share
from wallet.frost.errors import InvalidEncoding, InvalidIdentifier, SealingError
from wallet.frost.group import RandomSource
from wallet.frost.identifier import Identifier, encode_identifier
from wallet.frost.node_box import X25519_LENGTH, open_for, seal_for
from wallet.frost.wire import Reader

SEAL_DOMAIN = b"statemesh/frost-dkg/share-box/v1"


def _header(session_id: bytes, sender: Identifier, recipient: Identifier) -> bytes:
    return session_id + encode_identifier(sender) + encode_identifier(recipient)


def seal_share(
    share: Round2Share, recipient_identity_key: bytes, *, rng: RandomSource = os.urandom
) -> bytes:
    """The sealed share for the member whose Ed25519 identity key is given. The header
    (session, sender, recipient, ephemeral key) travels in clear and is authenticated."""
    header = _header(share.session_id, share.sender, share.recipient)
    try:
        box = seal_for(
            recipient_identity_key, share.encode(), domain=SEAL_DOMAIN, header=header, rng=rng
        )
    except SealingError as error:
        raise SealingError(
            f"not a usable Ed25519 identity key for member {share.recipient}"
        ) from error
    return header + box


def open_share(sealed: bytes, identity: Keypair) -> Round2Share:
    """The share inside `sealed`, if it was sealed for `identity`; `SealingError` otherwise."""
    reader = Reader(sealed, "sealed share")
    try:
        session_id = reader.take(SESSION_ID_LENGTH)
        sender = reader.identifier("sender")
        recipient = reader.identifier("recipient")
        reader.take(X25519_LENGTH)
    except (InvalidEncoding, InvalidIdentifier) as error:
        raise SealingError(f"malformed sealed share: {error}") from error
    header = _header(session_id, sender, recipient)
    try:
        plaintext = open_for(identity, sealed[len(header) :], domain=SEAL_DOMAIN, header=header)
    except SealingError as error:
        raise SealingError(
            f"sealed share from member {sender} to member {recipient} {error}"
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
