"""A committee member's FROST shares of platform wallets, sealed at rest under the node's base
path: one AES-256-GCM file per wallet, with the wallet's group key as associated data (a file
moved to another wallet's name fails).

The sealing key derives (HKDF-SHA256, its own domain tag) from the secret of the node's
operator key, which an operator keeps in the password-encrypted keystore and unlocks when the
node starts: it never sits in clear beside the shares, so reading the base path (a backup, a
stolen disk, another user of the machine) reveals no share. The operator key is also what
registers the node and is paid for its work: an operator protects it already, and needs no
second password. Files sealed the old way, under a key derived from the node key that the base
path holds in clear, are re-sealed under the operator's key when the node first starts with
one (`open_share_store`); the node key is never used to seal again."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from chain.keys import DEV_ACCOUNTS, Keypair, dev_keypair
from wallet.errors import WalletError
from wallet.frost import KeyPackage, PublicKeyPackage
from wallet.frost.errors import FrostError
from wallet.frost.wire import Reader, encode_count
from wallet.keystore import fsync_directory

log = logging.getLogger("statemesh.wallet.shares")

SHARES_DIR = Path("wallets")
SHARE_SUFFIX = ".share"
TEMPORARY_SUFFIX = ".tmp"
_MAGIC = b"SMWS2"
_LEGACY_MAGIC = b"SMWS1"
_KDF_SALT = b"statemesh/wallet-shares/v2"
_LEGACY_KDF_SALT = b"statemesh/wallet-shares/v1"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_TAG_BYTES = 16


class ShareStoreError(WalletError):
    """A share file that cannot be read back or written; the message never contains key
    material."""


class CorruptShareFile(ShareStoreError):
    """A file that is not a share file, fails authentication under the right key, or holds a
    malformed share or another wallet's."""


class ShareKeyMismatch(ShareStoreError):
    """A file sealed under another key: the node runs with another operator key than the one
    its shares were sealed under."""


class SharesLocked(ShareStoreError):
    """The node has no operator key, so no key to seal or open shares with."""


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


@dataclass(frozen=True, slots=True)
class SealKey:
    """The AES key share files are sealed under, and its public id (written in each file, so
    that a wrong key is told apart from a damaged file)."""

    key: bytes = field(repr=False)
    key_id: bytes

    @classmethod
    def derive(cls, secret: bytes) -> SealKey:
        """From the operator key's seed: the id is another HKDF output, and tells nothing of
        the key."""
        return cls(
            _hkdf(secret, _KDF_SALT, b"share-file-key", 32),
            _hkdf(secret, _KDF_SALT, b"share-file-key-id", _KEY_ID_BYTES),
        )


def legacy_file_key(node_seed: bytes) -> bytes:
    """The key of files sealed the old way, from the node key: read to re-seal them, never
    used to seal."""
    return _hkdf(node_seed, _LEGACY_KDF_SALT, b"share-file-key", 32)


@dataclass(frozen=True, slots=True)
class Migration:
    """What re-sealing the share files found and did."""

    resealed: tuple[Path, ...] = ()
    """Files that were sealed the old way and are now sealed under the operator key."""
    unreadable: tuple[tuple[Path, str], ...] = ()
    """Files left as they are, each with why they cannot be read."""
    foreign: tuple[Path, ...] = ()
    """Files sealed under another key than this store's."""
    waiting: tuple[Path, ...] = ()
    """Files this store can neither open nor re-seal: it has no key (the node no operator)."""
    removed_temporaries: tuple[Path, ...] = ()
    """Leftovers of writes a crash interrupted before they replaced their file."""


class ShareStore:
    """One file per wallet: `<base path>/wallets/<group key hex>.share`, sealed under a key
    derived from `seal_secret` (the operator key's seed); without one the store is locked."""

    __slots__ = ("_directory", "_key", "_rng")

    def __init__(
        self,
        base_path: Path,
        seal_secret: bytes | None,
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._directory = base_path / SHARES_DIR
        self._key = SealKey.derive(seal_secret) if seal_secret is not None else None
        self._rng = rng

    def __repr__(self) -> str:
        return f"ShareStore({self._directory})"

    @property
    def directory(self) -> Path:
        return self._directory

    def path(self, group_key: bytes) -> Path:
        return self._directory / f"{group_key.hex()}{SHARE_SUFFIX}"

    def save(self, group_key: bytes, share: StoredShare) -> None:
        """Written to a temporary file, synced, then renamed: a crash leaves the old file or
        the new one, never half of one."""
        self._write(self.path(group_key), self._seal(self._unlocked(), group_key, share.encode()))

    def load(self, group_key: bytes) -> StoredShare | None:
        """None when this node holds no share of the wallet."""
        path = self.path(group_key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return self._open(path, group_key, data)

    def migrate(self, node_seed: bytes) -> Migration:
        """Re-seals under this store's key every file sealed the old way (under `node_seed`'s
        key), one atomic rename each, and removes the leftovers of interrupted writes. Files it
        cannot read are left as they are and reported; nothing is ever deleted but leftovers.
        Safe to run again after a crash at any point."""
        if not self._directory.is_dir():
            return Migration()
        resealed: list[Path] = []
        unreadable: list[tuple[Path, str]] = []
        foreign: list[Path] = []
        waiting: list[Path] = []
        removed: list[Path] = []
        for path in sorted(self._directory.iterdir()):
            if path.suffix == TEMPORARY_SUFFIX and path.is_file():
                # Never renamed into place, so never the only copy of a share that was saved;
                # it may hold a share sealed the old way, which must not stay on disk.
                path.unlink()
                removed.append(path)
                continue
            group_key = _group_key_of(path)
            if group_key is None:
                continue
            try:
                data = path.read_bytes()
            except OSError as error:
                unreadable.append((path, f"cannot be read ({error.strerror})"))
                continue
            if not data.startswith((_MAGIC, _LEGACY_MAGIC)):
                unreadable.append((path, "not a wallet share file"))
                continue
            if self._key is None:
                waiting.append(path)
                continue
            if data.startswith(_MAGIC):
                if _key_id_of(data) not in (None, self._key.key_id):
                    foreign.append(path)
                continue
            try:
                plain = _open_legacy(path, group_key, data, legacy_file_key(node_seed))
            except ShareStoreError as error:
                unreadable.append((path, _reason(error, path)))
                continue
            self._write(path, self._seal(self._key, group_key, plain))
            resealed.append(path)
        if removed:
            fsync_directory(self._directory)
        return Migration(
            tuple(resealed), tuple(unreadable), tuple(foreign), tuple(waiting), tuple(removed)
        )

    def _unlocked(self) -> SealKey:
        if self._key is None:
            raise SharesLocked(
                f"wallet shares in {self._directory} cannot be sealed or opened: this node has "
                "no operator key (start it with --operator)"
            )
        return self._key

    def _seal(self, key: SealKey, group_key: bytes, plain: bytes) -> bytes:
        nonce = self._rng(_NONCE_BYTES)
        cipher = AES.new(key.key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
        cipher.update(_MAGIC + key.key_id + group_key)
        ciphertext, tag = cipher.encrypt_and_digest(plain)
        return _MAGIC + key.key_id + nonce + tag + ciphertext

    def _open(self, path: Path, group_key: bytes, data: bytes) -> StoredShare:
        if data.startswith(_LEGACY_MAGIC):
            raise CorruptShareFile(
                f"{path} is still sealed under the node key: it is re-sealed when the node "
                "starts with its operator key (see the node's log if it was not)"
            )
        key = self._unlocked()
        header = len(_MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES
        if len(data) < header or not data.startswith(_MAGIC):
            raise CorruptShareFile(f"{path} is not a wallet share file")
        if _key_id_of(data) != key.key_id:
            raise ShareKeyMismatch(
                f"{path} is sealed under another operator key than this node's: start the node "
                "with the --operator key its shares were sealed under"
            )
        start = len(_MAGIC) + _KEY_ID_BYTES
        nonce = data[start : start + _NONCE_BYTES]
        tag = data[start + _NONCE_BYTES : header]
        cipher = AES.new(key.key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_BYTES)
        cipher.update(_MAGIC + key.key_id + group_key)
        try:
            plain = cipher.decrypt_and_verify(data[header:], tag)
        except ValueError:
            raise CorruptShareFile(
                f"{path} was altered or damaged (authentication failed), or does not belong "
                "under this name"
            ) from None
        return _decode(path, group_key, plain)

    def _write(self, target: Path, content: bytes) -> None:
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = target.with_suffix(TEMPORARY_SUFFIX)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, target)
        fsync_directory(self._directory)


def open_share_store(
    base_path: Path, operator: Keypair | None, node_seed: bytes, *, live_chain: bool = False
) -> ShareStore:
    """The node's share store at start: sealed under `operator`'s key, with the files sealed
    the old way (under `node_seed`'s) re-sealed. Raises `ShareKeyMismatch`, changing nothing,
    when files are sealed under another operator key (the node must not run on without them).
    On a `live_chain`, an operator that is a development account is warned about."""
    store = ShareStore(base_path, operator.seed if operator is not None else None)
    found = store.migrate(node_seed)
    if found.foreign:
        raise ShareKeyMismatch(
            f"{len(found.foreign)} wallet share file(s) in {store.directory} are sealed under "
            "another operator key than this node's: start the node with the --operator key "
            "they were sealed under (or move them away to give up these shares)"
        )
    if found.resealed:
        log.info(
            "re-sealed %d wallet share file(s) in %s under the operator key; "
            "the node key no longer protects any",
            len(found.resealed),
            store.directory,
        )
    for path, reason in found.unreadable:
        log.warning("wallet share file %s is left as it is and cannot be used: %s", path, reason)
    if found.waiting:
        log.warning(
            "this node has no operator key: its %d wallet share file(s) in %s can neither be "
            "used nor re-sealed until it starts with --operator",
            len(found.waiting),
            store.directory,
        )
    if operator is not None and live_chain and _is_dev_account(operator):
        log.warning(
            "the operator is a development account, whose seed is public: "
            "wallet shares sealed under its key are not protected at rest"
        )
    return store


def _hkdf(secret: bytes, salt: bytes, context: bytes, size: int) -> bytes:
    key = HKDF(secret, size, salt, SHA256, context=context)
    if not isinstance(key, bytes):
        raise TypeError("HKDF returned several keys where one was asked for")
    return key


def _group_key_of(path: Path) -> bytes | None:
    if path.suffix != SHARE_SUFFIX or not path.is_file():
        return None
    try:
        return bytes.fromhex(path.stem)
    except ValueError:
        return None


def _key_id_of(data: bytes) -> bytes | None:
    found = data[len(_MAGIC) : len(_MAGIC) + _KEY_ID_BYTES]
    return found if len(found) == _KEY_ID_BYTES else None


def _open_legacy(path: Path, group_key: bytes, data: bytes, key: bytes) -> bytes:
    """The share bytes of a file sealed the old way, checked as `load` checks them."""
    header = len(_LEGACY_MAGIC) + _NONCE_BYTES + _TAG_BYTES
    if len(data) < header:
        raise CorruptShareFile(f"{path} is not a wallet share file")
    nonce = data[len(_LEGACY_MAGIC) : len(_LEGACY_MAGIC) + _NONCE_BYTES]
    tag = data[len(_LEGACY_MAGIC) + _NONCE_BYTES : header]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(group_key)
    try:
        plain = cipher.decrypt_and_verify(data[header:], tag)
    except ValueError:
        raise CorruptShareFile(
            f"{path} does not decrypt with this node's key (damaged, or another node's)"
        ) from None
    _decode(path, group_key, plain)
    return plain


def _decode(path: Path, group_key: bytes, plain: bytes) -> StoredShare:
    try:
        share = StoredShare.decode(plain)
    except FrostError as error:
        raise CorruptShareFile(f"{path} holds a malformed share: {error}") from None
    if share.key_package.group_public_key.encoding != group_key:
        raise CorruptShareFile(f"{path} holds a share of another wallet")
    return share


def _reason(error: ShareStoreError, path: Path) -> str:
    return str(error).removeprefix(f"{path} ")


def _is_dev_account(keypair: Keypair) -> bool:
    return any(dev_keypair(name).public == keypair.public for name in DEV_ACCOUNTS)
