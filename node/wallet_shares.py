"""A committee member's FROST shares of platform wallets, encrypted at rest under the node's
base path. The file key derives from the node key (HKDF-SHA256); each file is AES-256-GCM with
the wallet's group key as associated data, so a file moved to another wallet's name fails."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from wallet.frost import KeyPackage, PublicKeyPackage
from wallet.frost.errors import FrostError
from wallet.frost.wire import Reader, encode_count

SHARES_DIR = Path("wallets")
_MAGIC = b"SMWS1"
_KDF_SALT = b"statemesh/wallet-shares/v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class ShareStoreError(Exception):
    """A share file that cannot be read back; the message never contains key material."""


@dataclass(frozen=True, slots=True)
class StoredShare:
    key_package: KeyPackage = field(repr=False)
    public_package: PublicKeyPackage

    def encode(self) -> bytes:
        secret = self.key_package.encode()
        return encode_count(len(secret)) + secret + self.public_package.encode()

    @classmethod
    def decode(cls, data: bytes) -> StoredShare:
        reader = Reader(data, "StoredShare")
        secret = reader.take(reader.count())
        return cls(KeyPackage.decode(secret), PublicKeyPackage.decode(reader.rest()))


def file_key(node_seed: bytes) -> bytes:
    key = HKDF(node_seed, 32, _KDF_SALT, SHA256, context=b"share-file-key")
    if not isinstance(key, bytes):
        raise TypeError("HKDF returned several keys where one was asked for")
    return key


class ShareStore:
    """One file per wallet: `<base path>/wallets/<group key hex>.share`."""

    __slots__ = ("_directory", "_key", "_rng")

    def __init__(
        self, base_path: Path, node_seed: bytes, *, rng: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._directory = base_path / SHARES_DIR
        self._key = file_key(node_seed)
        self._rng = rng

    def __repr__(self) -> str:
        return f"ShareStore({self._directory})"

    def path(self, group_key: bytes) -> Path:
        return self._directory / f"{group_key.hex()}.share"

    def save(self, group_key: bytes, share: StoredShare) -> None:
        """Written to a temporary file, synced, then renamed: a crash leaves the old file or
        the new one, never half of one."""
        nonce = self._rng(_NONCE_BYTES)
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce)
        cipher.update(group_key)
        ciphertext, tag = cipher.encrypt_and_digest(share.encode())
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.path(group_key)
        temporary = target.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, _MAGIC + nonce + tag + ciphertext)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, target)

    def load(self, group_key: bytes) -> StoredShare | None:
        """None when this node holds no share of the wallet."""
        try:
            data = self.path(group_key).read_bytes()
        except FileNotFoundError:
            return None
        header = len(_MAGIC) + _NONCE_BYTES + _TAG_BYTES
        if len(data) < header or not data.startswith(_MAGIC):
            raise ShareStoreError(f"{self.path(group_key)} is not a wallet share file")
        nonce = data[len(_MAGIC) : len(_MAGIC) + _NONCE_BYTES]
        tag = data[len(_MAGIC) + _NONCE_BYTES : header]
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce)
        cipher.update(group_key)
        try:
            plain = cipher.decrypt_and_verify(data[header:], tag)
        except ValueError:
            raise ShareStoreError(
                f"{self.path(group_key)} does not decrypt with this node's key"
            ) from None
        try:
            share = StoredShare.decode(plain)
        except FrostError as error:
            raise ShareStoreError(
                f"{self.path(group_key)} holds a malformed share: {error}"
            ) from None
        if share.key_package.group_public_key.encoding != group_key:
            raise ShareStoreError(f"{self.path(group_key)} holds a share of another wallet")
        return share
