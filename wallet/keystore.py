"""The encrypted keystore: one JSON file per named key, its Ed25519 seed sealed with
scrypt and AES-256-GCM, and the resolution of signer names (`dev-alice`, keystore names)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt

from chain.address import encode_address
from chain.keys import DEV_ACCOUNTS, Keypair, dev_keypair
from chain.primitives import ACCOUNT_ID_LENGTH, AccountId
from wallet.errors import WalletError

KEYSTORE_VERSION = 1
KDF_NAME = "scrypt"
CIPHER_NAME = "aes-256-gcm"
DEV_PREFIX = "dev-"
"""Signer names with this prefix are the well-known development accounts, never files."""

SEED_LENGTH = 32
SALT_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
CHECK_LENGTH = 16
MAX_KEY_FILE_BYTES = 64 * 1024

_NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
# Names that would be read as something else by `resolve_signer` and `key inspect`.
_RESERVED_PREFIXES = (DEV_PREFIX, "0x")
_AAD_DOMAIN = b"statemesh/keystore/v1\x00"
_CHECK_DOMAIN = b"statemesh/keystore/password-check\x00"
# A key file is read before its password is known, so its cost parameters are attacker
# controlled: bound them so opening a crafted file cannot exhaust memory or time.
_MAX_SCRYPT_MEMORY = 1 << 30


class KeystoreError(WalletError):
    """Base of the keystore's errors. Messages name the key or file, never a password or seed."""


class InvalidKeyName(KeystoreError):
    """A key name outside [a-z0-9_-]{1,64}, or one that is reserved."""


class KeyNotFound(KeystoreError):
    """No key file (or development account) of that name."""


class KeyExists(KeystoreError):
    """A key of that name is already in the keystore; it is never overwritten."""


class WrongPassword(KeystoreError):
    """The password does not open the key file."""


class CorruptKeyFile(KeystoreError):
    """A key file that cannot be read or fails its integrity checks; the message says why."""


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """Cost of deriving the file key from a password; stored in each file."""

    n: int = 2**15
    """CPU/memory cost, a power of two. Tests lower it to keep runs fast."""
    r: int = 8
    """Block size."""
    p: int = 1
    """Parallelism."""

    def __post_init__(self) -> None:
        problem = _scrypt_params_problem(self.n, self.r, self.p)
        if problem:
            raise ValueError(problem)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What anyone may know about a stored key, without its password."""

    name: str
    address: str
    """The account's address (`chain.address.encode_address` of `public`)."""
    public: AccountId
    path: Path
    """The key file."""


class KeySource(Protocol):
    """What `resolve_signer` needs of a keystore; tests may pass a fake."""

    def info(self, name: str) -> KeyInfo: ...

    def unlock(self, name: str, password: str) -> Keypair: ...


PasswordSource = Callable[[str], str]
"""Returns the password of the named key; called only when a key file must be opened."""


def validate_key_name(name: str) -> str:
    if not _NAME_PATTERN.fullmatch(name):
        raise InvalidKeyName(
            f"invalid key name {name!r}: use 1 to 64 characters from a-z, 0-9, '_' and '-'"
        )
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise InvalidKeyName(
                f"invalid key name {name!r}: names starting with {prefix!r} are reserved"
            )
    return name


def dev_signer(name: str) -> Keypair:
    """The development account `dev-<name>`. Its seed is public: never hold value with it."""
    account = name.removeprefix(DEV_PREFIX)
    if not name.startswith(DEV_PREFIX) or account not in DEV_ACCOUNTS:
        known = ", ".join(DEV_PREFIX + a for a in DEV_ACCOUNTS)
        raise KeyNotFound(f"no development account {name!r} (known: {known})")
    return dev_keypair(account)


def resolve_signer(name: str, keystore: KeySource, password_source: PasswordSource) -> Keypair:
    """The key pair a command signs with: `dev-<name>` needs no file and no password;
    any other name is a keystore key, whose password is asked only once it is known to exist."""
    if name.startswith(DEV_PREFIX):
        return dev_signer(name)
    keystore.info(name)
    return keystore.unlock(name, password_source(name))


class Keystore:
    """A directory of key files named `<name>.json`. Reading never creates the directory."""

    def __init__(
        self,
        path: Path | str,
        *,
        scrypt_params: ScryptParams | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.path = Path(path)
        self._scrypt = scrypt_params or ScryptParams()
        self._random = random_bytes

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r})"

    def file_of(self, name: str) -> Path:
        return self.path / f"{validate_key_name(name)}.json"

    def has(self, name: str) -> bool:
        return self.file_of(name).is_file()

    def check_available(self, name: str) -> Path:
        """The file a new key `name` would have; raises if the name is invalid or taken."""
        path = self.file_of(name)
        if path.exists():
            raise KeyExists(f"key {name!r} already exists ({path})")
        return path

    def create(self, name: str, password: str, *, keypair: Keypair | None = None) -> KeyInfo:
        """Seal a new key (or the given one) under `name`; an existing name is refused."""
        path = self.check_available(name)
        if keypair is None:
            keypair = Keypair.from_seed(self._random(SEED_LENGTH))
        document = _seal(name, keypair, password, self._scrypt, self._random)
        self._ensure_directory()
        _write_new_file(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"), name)
        return KeyInfo(name=name, address=keypair.address, public=keypair.public, path=path)

    def info(self, name: str) -> KeyInfo:
        return _read(self.file_of(name), name, self.path).info

    def list(self) -> list[KeyInfo]:
        """Every key, sorted by name. A corrupt file is reported, not skipped, so that a
        damaged key is noticed before its password is needed."""
        if not self.path.is_dir():
            return []
        infos = []
        for path in sorted(self.path.glob("*.json")):
            # Temporary files start with '.', so like any other name outside the pattern they
            # cannot be keys.
            if not _NAME_PATTERN.fullmatch(path.stem) or not path.is_file():
                continue
            infos.append(_read(path, path.stem, self.path).info)
        return infos

    def unlock(self, name: str, password: str) -> Keypair:
        return _open(_read(self.file_of(name), name, self.path), password)

    def _ensure_directory(self) -> None:
        if self.path.is_dir():
            return
        try:
            self.path.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            return
        # mkdir's mode is filtered by the umask; a keystore is for its owner alone.
        os.chmod(self.path, 0o700)


@dataclass(frozen=True, slots=True)
class _KeyFile:
    """A parsed key file whose fields have the right types and lengths."""

    info: KeyInfo
    scrypt: ScryptParams
    salt: bytes
    check: bytes
    nonce: bytes
    ciphertext: bytes
    tag: bytes


def _normalize(password: str) -> bytes:
    # The same password typed through different input methods must open the same file.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _derive(password: str, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes]:
    """(AES key, password check). The check is a hash of a separate half of the derived key,
    so a wrong password is told apart from a tampered file without weakening either."""
    # One key is requested, so the result is bytes, never a tuple. The stubs type the
    # password as str, which scrypt would encode as Latin-1: bytes keep it UTF-8.
    derived = cast(
        bytes,
        scrypt(_normalize(password), salt, 64, N=params.n, r=params.r, p=params.p),  # type: ignore[arg-type]
    )
    check = hashlib.blake2b(_CHECK_DOMAIN + derived[32:], digest_size=CHECK_LENGTH).digest()
    return derived[:32], check


def _associated_data(name: str, address: str, public: bytes) -> bytes:
    # Binds the header to the ciphertext: a file whose name, address or public key was
    # swapped for another's fails authentication.
    header = json.dumps([KEYSTORE_VERSION, name, address, public.hex()], separators=(",", ":"))
    return _AAD_DOMAIN + header.encode("utf-8")


def _seal(
    name: str,
    keypair: Keypair,
    password: str,
    params: ScryptParams,
    random_bytes: Callable[[int], bytes],
) -> dict[str, Any]:
    salt = random_bytes(SALT_LENGTH)
    nonce = random_bytes(NONCE_LENGTH)
    key, check = _derive(password, salt, params)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_LENGTH)
    cipher.update(_associated_data(name, keypair.address, keypair.public))
    ciphertext, tag = cipher.encrypt_and_digest(keypair.seed)
    return {
        "version": KEYSTORE_VERSION,
        "name": name,
        "address": keypair.address,
        "public": keypair.public.hex(),
        "kdf": {
            "name": KDF_NAME,
            "n": params.n,
            "r": params.r,
            "p": params.p,
            "salt": salt.hex(),
            "check": check.hex(),
        },
        "cipher": {
            "name": CIPHER_NAME,
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
            "tag": tag.hex(),
        },
    }


def _open(key_file: _KeyFile, password: str) -> Keypair:
    info = key_file.info
    key, check = _derive(password, key_file.salt, key_file.scrypt)
    if not hmac.compare_digest(check, key_file.check):
        raise WrongPassword(f"wrong password for key {info.name!r} ({info.path})")
    cipher = AES.new(key, AES.MODE_GCM, nonce=key_file.nonce, mac_len=TAG_LENGTH)
    cipher.update(_associated_data(info.name, info.address, info.public))
    try:
        seed = cipher.decrypt_and_verify(key_file.ciphertext, key_file.tag)
    except ValueError:
        raise _corrupt(
            info.path, "the encrypted seed or its header was altered (authentication failed)"
        ) from None
    keypair = Keypair.from_seed(seed)
    if keypair.public != info.public:
        raise _corrupt(info.path, "the public key does not match the decrypted seed")
    return keypair


def _corrupt(path: Path, reason: str) -> CorruptKeyFile:
    return CorruptKeyFile(f"corrupt key file {path}: {reason}")


def _read(path: Path, name: str, directory: Path) -> _KeyFile:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyNotFound(f"no key named {name!r} in keystore {directory}") from None
    except OSError as exc:
        raise _corrupt(path, f"cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise _corrupt(path, f"larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"not valid JSON ({exc})") from None
    return _parse(document, path, name)


def _parse(document: object, path: Path, name: str) -> _KeyFile:
    top = _Fields(document, path, "")
    version = top.integer("version")
    if version != KEYSTORE_VERSION:
        raise _corrupt(path, f"unsupported version {version} (this build reads {KEYSTORE_VERSION})")
    stored_name = top.text("name")
    if stored_name != name:
        raise _corrupt(path, f"it holds key {stored_name!r}, not {name!r}")
    address = top.text("address")
    public = AccountId(top.hex_bytes("public", ACCOUNT_ID_LENGTH))
    if encode_address(public) != address:
        raise _corrupt(path, "the address does not match the public key")

    kdf = top.section("kdf")
    if kdf.text("name") != KDF_NAME:
        raise _corrupt(path, f"unsupported kdf {kdf.text('name')!r} (expected {KDF_NAME!r})")
    n, r, p = kdf.integer("n"), kdf.integer("r"), kdf.integer("p")
    problem = _scrypt_params_problem(n, r, p)
    if problem:
        raise _corrupt(path, problem)

    cipher = top.section("cipher")
    if cipher.text("name") != CIPHER_NAME:
        raise _corrupt(
            path, f"unsupported cipher {cipher.text('name')!r} (expected {CIPHER_NAME!r})"
        )
    return _KeyFile(
        info=KeyInfo(name=name, address=address, public=public, path=path),
        scrypt=ScryptParams(n=n, r=r, p=p),
        salt=kdf.hex_bytes("salt", SALT_LENGTH),
        check=kdf.hex_bytes("check", CHECK_LENGTH),
        nonce=cipher.hex_bytes("nonce", NONCE_LENGTH),
        ciphertext=cipher.hex_bytes("ciphertext", SEED_LENGTH),
        tag=cipher.hex_bytes("tag", TAG_LENGTH),
    )


class _Fields:
    """Typed access to one JSON object of a key file; every miss is a CorruptKeyFile."""

    def __init__(self, value: object, path: Path, where: str) -> None:
        if not isinstance(value, dict):
            what = f"field {where.removesuffix('.')!r}" if where else "the file"
            raise _corrupt(path, f"{what} is not a JSON object")
        self._values: dict[str, object] = value
        self._path = path
        self._where = where

    def _get(self, key: str) -> object:
        label = self._where + key
        if key not in self._values:
            raise _corrupt(self._path, f"missing field {label!r}")
        return self._values[key]

    def section(self, key: str) -> _Fields:
        return _Fields(self._get(key), self._path, f"{self._where}{key}.")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise _corrupt(self._path, f"field {self._where + key!r} is not a string")
        return value

    def integer(self, key: str) -> int:
        value = self._get(key)
        if type(value) is not int:  # bool is an int subclass and must not pass
            raise _corrupt(self._path, f"field {self._where + key!r} is not an integer")
        return value

    def hex_bytes(self, key: str, length: int) -> bytes:
        label = self._where + key
        try:
            value = bytes.fromhex(self.text(key))
        except ValueError:
            raise _corrupt(self._path, f"field {label!r} is not hex") from None
        if len(value) != length:
            raise _corrupt(self._path, f"field {label!r} is {len(value)} bytes, expected {length}")
        return value


def _scrypt_params_problem(n: int, r: int, p: int) -> str | None:
    if n < 2 or n & (n - 1):
        return f"scrypt n must be a power of two of at least 2, got {n}"
    if not 1 <= r <= 32 or not 1 <= p <= 16:
        return f"scrypt r must be in 1..32 and p in 1..16, got r={r}, p={p}"
    if 128 * n * r > _MAX_SCRYPT_MEMORY:
        return f"scrypt n={n}, r={r} would need more than {_MAX_SCRYPT_MEMORY >> 20} MiB"
    return None


def _write_new_file(path: Path, content: bytes, name: str) -> None:
    """Write `content` to `path` atomically with mode 0600, refusing to replace a file.

    The content is fsynced in a temporary file of the same directory, then linked to its
    final name: a crash leaves either no key or the whole key, and a key created meanwhile
    by another process is never overwritten."""
    directory = path.parent
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise KeyExists(f"key {name!r} already exists ({path})") from None
        except OSError:
            # Some file systems have no hard links: fall back to a rename after a last check.
            if path.exists():
                raise KeyExists(f"key {name!r} already exists ({path})") from None
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Makes new, renamed and removed entries of `directory` durable."""
    try:  # not every platform can open a directory
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
