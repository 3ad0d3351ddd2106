"""The `secrets` module: an owner's secrets, each sealed by the client to the owner's vault key
(an ElGamal key of a committee of nodes, `wallets.vault_of`) so that the chain holds only
ciphertext. The runtime checks the envelope's shape and that it is sealed to the owner's vault,
never its content; it keeps in clear only the key names and their sizes, as the sealer states
them (bound to the ciphertext's length), which is what `secret list` shows."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chain import codec
from chain.primitives import AccountId
from chain.runtime import owned_names, references, wallets
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.runtime.manifest import Manifest
from chain.runtime.manifest import references as manifest_references
from chain.state import StateReader, storage_key

NAME = "secrets"
ENVELOPE_VERSION = b"\x01"
MAX_SECRET_BYTES = 32 * 1024
"""The most a secret holds: its values, as sizes state them."""
MAX_KEYS_BYTES = owned_names.MAX_KEYS * (owned_names.MAX_KEY_BYTES + 8) + 8
MAX_ENVELOPE_BYTES = MAX_SECRET_BYTES + owned_names.MAX_KEYS * (owned_names.MAX_KEY_BYTES + 9) + 128
TAG_BYTES = 16
"""AES-GCM's tag, after the ciphertext."""
PAIR_OVERHEAD = 9
"""The most RLP headers add to one [key, value] pair of the sealed plaintext (a list header, a
key header, a value header: at most 3 bytes each for what fits a transaction)."""
_SECRET = storage_key(NAME, "secret")
_NAMES = storage_key(NAME, "names")


class SecretsError(enum.Enum):
    BAD_NAME = "BadName"
    BAD_KEYS = "BadKeys"
    BAD_ENVELOPE = "BadEnvelope"
    TOO_LARGE = "TooLarge"
    NO_VAULT = "NoVault"
    WRONG_VAULT_KEY = "WrongVaultKey"
    NAME_TAKEN = "NameTaken"
    UNKNOWN_SECRET = "UnknownSecret"
    IN_USE = "InUse"


@dataclass(frozen=True, slots=True)
class SecretRecord:
    version: int
    """1 at creation, one more at each update; sealed into the envelope's associated data."""
    updated_at: int
    keys: tuple[tuple[str, int], ...]
    """(key, size in bytes) by ascending key: shown in clear, never the values."""
    envelope: bytes
    """RLP [version 0x01, vault key (32), c1 (32), nonce (12), AES-256-GCM ciphertext || tag]."""

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [u(self.version), u(self.updated_at), encode_key_sizes(self.keys), self.envelope]
        )

    @classmethod
    def decode(cls, data: bytes) -> SecretRecord:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 4:
            raise codec.CodecError("a secret record is [version, updated at, keys, envelope]")
        version, at, keys, envelope = item
        if not isinstance(keys, bytes) or not isinstance(envelope, bytes):
            raise codec.CodecError("a secret record is [version, updated at, keys, envelope]")
        return cls(
            codec.uint(version, "version"), codec.uint(at, "updated at"), decode_key_sizes(keys),
            envelope,
        )  # fmt: skip


def encode_key_sizes(keys: tuple[tuple[str, int], ...]) -> bytes:
    """What `secrets.create` and `secrets.update` take beside the envelope."""
    return codec.encode([[k.encode(), codec.encode_uint(size)] for k, size in sorted(keys)])


def decode_key_sizes(data: bytes) -> tuple[tuple[str, int], ...]:
    item = codec.decode(data)
    if not isinstance(item, list) or not 1 <= len(item) <= owned_names.MAX_KEYS:
        raise codec.CodecError(f"a secret's keys are a list of 1 to {owned_names.MAX_KEYS}")
    keys: list[tuple[str, int]] = []
    for i, pair in enumerate(item):
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], bytes):
            raise codec.CodecError(f"key {i} is not [key, size]")
        try:
            key = owned_names.check_key(pair[0])
        except owned_names.BadName as exc:
            raise codec.CodecError(str(exc)) from None
        if keys and key <= keys[-1][0]:
            raise codec.CodecError(f"key {key!r} is not after the one before it")
        size = codec.uint(pair[1], f"the size of {key!r}")
        if size > MAX_SECRET_BYTES:
            raise codec.CodecError(f"{key!r} is over {MAX_SECRET_BYTES} bytes")
        keys.append((key, size))
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class EnvelopeShape:
    vault_key: bytes
    c1: bytes
    nonce: bytes
    ciphertext: bytes


def envelope_shape(data: bytes) -> EnvelopeShape:
    """The envelope's fields by their lengths; the points are checked by those who open it."""
    item = codec.decode(data)
    if not isinstance(item, list) or len(item) != 5 or not all(isinstance(x, bytes) for x in item):
        raise codec.CodecError("an envelope is [version, vault key, c1, nonce, ciphertext]")
    version, vault_key, c1, nonce, ciphertext = (x for x in item if isinstance(x, bytes))
    if version != ENVELOPE_VERSION:
        raise codec.CodecError(f"envelope version 0x{version.hex()} is not 0x01")
    for what, value, size in (("vault key", vault_key, 32), ("c1", c1, 32), ("nonce", nonce, 12)):
        if len(value) != size:
            raise codec.CodecError(f"the {what} is {len(value)} bytes, not {size}")
    if len(ciphertext) < TAG_BYTES:
        raise codec.CodecError("the ciphertext is shorter than its tag")
    return EnvelopeShape(vault_key, c1, nonce, ciphertext)


def sizes_fit(keys: tuple[tuple[str, int], ...], ciphertext: bytes) -> bool:
    """Whether the stated sizes can be those of the sealed plaintext (RLP of [key, value] pairs),
    whose length is known to within the RLP headers."""
    least = sum(len(k) + size for k, size in keys) + 1
    most = least + PAIR_OVERHEAD * len(keys) + 8
    return least <= len(ciphertext) - TAG_BYTES <= most


def secret_key(owner: bytes, name: str) -> bytes:
    return _SECRET + owner + name.encode()


def secret_record(state: StateReader, owner: bytes, name: str) -> SecretRecord | None:
    """The owner's secret `name`: its version and envelope (what vault members decrypt)."""
    data = state.get(secret_key(owner, name))
    return None if data is None else SecretRecord.decode(data)


def secret_names(state: StateReader, owner: bytes) -> list[str]:
    return owned_names.names(state, _NAMES, owner)


def app_uses_secret(manifest: Manifest, name: str) -> bool:
    """Whether the application reads its owner's secret `name` (env, envFrom, a volume or
    imagePullSecrets)."""
    return name in manifest_references(manifest.spec).secrets


def missing(state: StateReader, owner: bytes, wanted: dict[str, frozenset[str]]) -> str | None:
    """Why a manifest of `owner` reading `wanted` (secret name -> keys it names) cannot be
    accepted, or None."""
    for name in sorted(wanted):
        record = secret_record(state, owner, name)
        if record is None:
            return f"the owner has no secret {name!r}"
        absent = sorted(wanted[name] - {k for k, _ in record.keys})
        if absent:
            return f"secret {name!r} has no key {absent[0]!r}"
    return None


class Secrets(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        name = Arg("name", ArgKind.BYTES, max_length=owned_names.MAX_NAME_BYTES)
        keys = Arg("keys", ArgKind.BYTES, max_length=MAX_KEYS_BYTES)
        envelope = Arg("envelope", ArgKind.BYTES, max_length=MAX_ENVELOPE_BYTES)
        return [
            CallDef(NAME, "create", (name, keys, envelope), self.create, "Store a sealed secret."),
            CallDef(NAME, "update", (name, keys, envelope), self.update, "Store its next version."),
            CallDef(NAME, "delete", (name,), self.delete, "Remove a secret no app reads."),
        ]

    def _name(self, raw: bytes) -> str:
        try:
            return owned_names.check_name(raw)
        except owned_names.BadName as exc:
            raise self.fail(SecretsError.BAD_NAME, str(exc)) from None

    def _checked(
        self, ctx: Context, owner: AccountId, raw_keys: bytes, envelope: bytes
    ) -> tuple[tuple[str, int], ...]:
        try:
            keys = decode_key_sizes(raw_keys)
        except codec.CodecError as exc:
            raise self.fail(SecretsError.BAD_KEYS, str(exc)) from None
        total = sum(size for _, size in keys)
        if total > MAX_SECRET_BYTES:
            raise self.fail(
                SecretsError.TOO_LARGE, f"{total} bytes of values, at most {MAX_SECRET_BYTES}"
            )
        try:
            shape = envelope_shape(envelope)
        except codec.CodecError as exc:
            raise self.fail(SecretsError.BAD_ENVELOPE, str(exc)) from None
        if not sizes_fit(keys, shape.ciphertext):
            raise self.fail(
                SecretsError.BAD_KEYS, "the sizes stated do not fit the ciphertext's length"
            )
        vault = wallets.vault_of(ctx.state, owner)
        if vault is None:
            raise self.fail(
                SecretsError.NO_VAULT,
                "you have no vault key yet: ask for one (wallets.request_vault) first",
            )
        if shape.vault_key != vault.group_key:
            raise self.fail(
                SecretsError.WRONG_VAULT_KEY, "the envelope is not sealed to your vault key"
            )
        return keys

    def create(
        self, ctx: Context, sender: AccountId, raw_name: bytes, raw_keys: bytes, envelope: bytes
    ) -> None:
        name = self._name(raw_name)
        keys = self._checked(ctx, sender, raw_keys, envelope)
        if secret_record(ctx.state, sender, name) is not None:
            raise self.fail(SecretsError.NAME_TAKEN, f"you already have a secret named {name!r}")
        record = SecretRecord(1, ctx.env.number, keys, envelope)
        ctx.state.put(secret_key(sender, name), record.encode())
        owned_names.add_name(ctx.state, _NAMES, sender, name)
        ctx.emit(NAME, "SecretCreated", owner=AccountRef(sender), name=name, version=1)

    def update(
        self, ctx: Context, sender: AccountId, raw_name: bytes, raw_keys: bytes, envelope: bytes
    ) -> None:
        name = self._name(raw_name)
        keys = self._checked(ctx, sender, raw_keys, envelope)
        old = secret_record(ctx.state, sender, name)
        if old is None:
            raise self.fail(SecretsError.UNKNOWN_SECRET, f"you have no secret named {name!r}")
        held = (k for k, _ in keys)
        dropped = references.dropped_key(ctx.state, references.Kind.SECRET, sender, name, held)
        if dropped is not None:
            app, key = dropped
            raise self.fail(
                SecretsError.IN_USE, f"application {app!r} reads key {key!r} of secret {name!r}"
            )
        record = SecretRecord(old.version + 1, ctx.env.number, keys, envelope)
        ctx.state.put(secret_key(sender, name), record.encode())
        ctx.emit(NAME, "SecretUpdated", owner=AccountRef(sender), name=name, version=record.version)

    def delete(self, ctx: Context, sender: AccountId, raw_name: bytes) -> None:
        name = self._name(raw_name)
        if secret_record(ctx.state, sender, name) is None:
            raise self.fail(SecretsError.UNKNOWN_SECRET, f"you have no secret named {name!r}")
        users = references.users_of(ctx.state, references.Kind.SECRET, sender, name)
        if users:
            raise self.fail(
                SecretsError.IN_USE, f"secret {name!r} is used by application {users[0]!r}"
            )
        ctx.state.delete(secret_key(sender, name))
        owned_names.remove_name(ctx.state, _NAMES, sender, name)
        ctx.emit(NAME, "SecretDeleted", owner=AccountRef(sender), name=name)
