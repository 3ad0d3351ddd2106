"""Secret envelopes: a secret's key/value map encrypted to an owner's vault key (a threshold
ElGamal key held by a committee of nodes), as the chain stores it.

    envelope  = RLP [b"\\x01", vault key (32), c1 = r*G (32), nonce (12), ciphertext || tag]
    K         = r * vault key  (= s * c1, which t members rebuild from partial decryptions)
    aead key  = SHA-512(KEY_DOMAIN || K || c1)[:32], AES-256-GCM
    assoc.    = AD_DOMAIN || owner (32) || name (utf-8) || version (8, big-endian)
    plaintext = RLP [[key (utf-8), value], ...] in strictly ascending key order

The associated data binds a ciphertext to the secret's owner, name and version: an envelope
copied under another name or version does not open."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from Crypto.Cipher import AES

from chain import codec
from wallet.errors import WalletError
from wallet.frost.elgamal import PartialDecryption, combine
from wallet.frost.errors import FrostError
from wallet.frost.group import POINT_LENGTH, Point, RandomSource, base_mul, random_nonzero_scalar

ENVELOPE_VERSION = b"\x01"
KEY_DOMAIN = b"statemesh/secret-key/v1"
AD_DOMAIN = b"statemesh/secret/v1"
NONCE_LENGTH = 12
TAG_LENGTH = 16
OWNER_LENGTH = 32


class VaultError(WalletError):
    """Base of the envelope errors. Messages never contain a secret's values."""


class BadEnvelope(VaultError):
    """Bytes that are not a well-formed envelope: wrong layout, version, length or point."""


class EnvelopeDoesNotOpen(VaultError):
    """The AEAD tag fails: the combined key is wrong (fewer than t or wrong partial
    decryptions) or the envelope is read under another owner, name or version."""


@dataclass(frozen=True, slots=True)
class Envelope:
    vault_key: Point
    """The owner's vault key the secret was sealed to."""
    c1: Point
    """r * G: what members partially decrypt."""
    nonce: bytes
    ciphertext: bytes
    """AES-256-GCM ciphertext followed by its 16-byte tag."""

    def encode(self) -> bytes:
        return codec.encode(
            [ENVELOPE_VERSION, self.vault_key.encoding, self.c1.encoding, self.nonce,
             self.ciphertext]
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SecretData:
    """A secret's opened key/value map; never shown by `repr`."""

    values: Mapping[str, bytes] = field(repr=False)


def associated_data(owner: bytes, name: str, version: int) -> bytes:
    if len(owner) != OWNER_LENGTH:
        raise VaultError(f"an owner is {OWNER_LENGTH} bytes, got {len(owner)}")
    if not 0 <= version < 2**64:
        raise VaultError("a secret version is a 64-bit unsigned integer")
    return AD_DOMAIN + owner + name.encode() + version.to_bytes(8, "big")


def encode_plaintext(data: Mapping[str, bytes]) -> bytes:
    return codec.encode([[key.encode(), bytes(data[key])] for key in sorted(data)])


def decode_plaintext(raw: bytes) -> dict[str, bytes]:
    """The map back; raises `BadEnvelope` if the authenticated plaintext is not one (only a
    buggy sealer produces that)."""
    try:
        item = codec.decode(raw)
    except codec.CodecError as exc:
        raise BadEnvelope(f"the plaintext is not RLP: {exc}") from None
    if not isinstance(item, list):
        raise BadEnvelope("the plaintext is a list of [key, value] pairs")
    out: dict[str, bytes] = {}
    for entry in item:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], bytes)
            and isinstance(entry[1], bytes)
        ):
            raise BadEnvelope("a plaintext entry is [key, value]")
        try:
            key = entry[0].decode()
        except UnicodeDecodeError:
            raise BadEnvelope("a plaintext key is not UTF-8") from None
        out[key] = entry[1]
    if any(a >= b for a, b in itertools.pairwise(out)) or len(out) != len(item):
        raise BadEnvelope("plaintext keys must be distinct and in ascending order")
    return out


def _aead_key(shared: Point, c1: Point) -> bytes:
    return hashlib.sha512(KEY_DOMAIN + shared.encoding + c1.encoding).digest()[:32]


def seal(
    vault_key: bytes,
    owner: bytes,
    name: str,
    version: int,
    data: Mapping[str, bytes],
    rng: RandomSource,
) -> bytes:
    """The envelope of `data` for the vault key (32 bytes, checked as a point of the group)."""
    try:
        key_point = Point.decode(vault_key)
    except FrostError as error:
        raise BadEnvelope(f"the vault key: {error}") from None
    ad = associated_data(owner, name, version)
    r = random_nonzero_scalar(rng)
    c1 = base_mul(r)
    nonce = rng(NONCE_LENGTH)
    cipher = AES.new(_aead_key(key_point * r, c1), AES.MODE_GCM, nonce=nonce, mac_len=TAG_LENGTH)
    cipher.update(ad)
    ciphertext, tag = cipher.encrypt_and_digest(encode_plaintext(data))
    return Envelope(key_point, c1, nonce, ciphertext + tag).encode()


def decode_envelope(raw: bytes) -> Envelope:
    """The envelope's fields, each checked; `BadEnvelope` says which one is wrong."""
    try:
        item = codec.decode(raw)
    except codec.CodecError as exc:
        raise BadEnvelope(f"an envelope is RLP: {exc}") from None
    if not isinstance(item, list) or len(item) != 5:
        raise BadEnvelope("an envelope is [version, vault key, c1, nonce, ciphertext]")
    if not all(isinstance(x, bytes) for x in item):
        raise BadEnvelope("an envelope's fields are byte strings")
    version, vault_key, c1, nonce, ciphertext = (bytes(x) for x in item)  # type: ignore[arg-type]
    if version != ENVELOPE_VERSION:
        raise BadEnvelope(f"unknown envelope version 0x{version.hex()}")
    points: list[Point] = []
    for what, value in (("vault key", vault_key), ("c1", c1)):
        if len(value) != POINT_LENGTH:
            raise BadEnvelope(f"the {what} is {POINT_LENGTH} bytes, got {len(value)}")
        try:
            points.append(Point.decode(value))
        except FrostError as error:
            raise BadEnvelope(f"the {what}: {error}") from None
    if len(nonce) != NONCE_LENGTH:
        raise BadEnvelope(f"the nonce is {NONCE_LENGTH} bytes, got {len(nonce)}")
    if len(ciphertext) < TAG_LENGTH:
        raise BadEnvelope("the ciphertext is shorter than its tag")
    return Envelope(points[0], points[1], nonce, ciphertext)


def open_with_key(
    envelope: Envelope, shared: Point, owner: bytes, name: str, version: int
) -> dict[str, bytes]:
    """The map inside, given K = s * c1; `EnvelopeDoesNotOpen` if K or the binding is wrong."""
    cipher = AES.new(
        _aead_key(shared, envelope.c1), AES.MODE_GCM, nonce=envelope.nonce, mac_len=TAG_LENGTH
    )
    cipher.update(associated_data(owner, name, version))
    body, tag = envelope.ciphertext[:-TAG_LENGTH], envelope.ciphertext[-TAG_LENGTH:]
    try:
        plaintext = cipher.decrypt_and_verify(body, tag)
    except ValueError:
        raise EnvelopeDoesNotOpen(
            f"secret {name!r} version {version} does not open: wrong key or wrong binding"
        ) from None
    return decode_plaintext(plaintext)


def open_envelope(
    envelope: Envelope,
    partials: Sequence[PartialDecryption],
    owner: bytes,
    name: str,
    version: int,
) -> dict[str, bytes]:
    """The map inside from t partial decryptions already checked with `verify_partial`."""
    return open_with_key(envelope, combine(partials), owner, name, version)
