"""A vault member's side of secret delivery: a node asks for this member's partial decryption
of one secret version for one replica it runs, and gets it, sealed to its node key, only if the
member's OWN finalized state says so: the node is assigned that replica of that application,
the application belongs to the secret's owner and its manifest (the assigned revision's) reads
the secret, the version is the secret's current one, and the owner's vault, whose share this
member holds, is the key the secret is sealed to. Any other request is refused with its reason.

    request (`RequestKind.SECRET_PARTIAL`) = [session, owner, name, version, app, replica,
                                              requester's finalized block]
    answer  = a `node_box` for the requesting node, header = session || member || query, of
              PartialDecryption(identifier, d_i, DLEQ proof)"""

from __future__ import annotations

from dataclasses import dataclass

from chain import codec
from chain.keys import Keypair
from chain.primitives import AccountId
from chain.runtime import apps, secrets, wallets
from chain.runtime.manifest import ManifestError, read_stored_manifest
from chain.state import StateReader
from wallet.frost.elgamal import PartialDecryption, partial_decrypt
from wallet.frost.errors import FrostError
from wallet.frost.group import RandomSource
from wallet.frost.node_box import open_for, seal_for
from wallet.messages import RefusalReason, Refused
from wallet.shares import ShareStore, ShareStoreError
from wallet.vault import BadEnvelope, Envelope, decode_envelope

BOX_DOMAIN = b"statemesh/secret-partial/v1"
BEHIND_REASONS = frozenset(
    {RefusalReason.NOT_ASSIGNED, RefusalReason.FOREIGN_SECRET, RefusalReason.UNKNOWN_SECRET,
     RefusalReason.NO_VAULT}
)  # fmt: skip
"""Refusals a member may give an honest requester whose finalized chain is not at the member's
block: costless then (NOT_FINAL_YET, STALE_VIEW), penalized only between equal views."""
MAX_NAME_BYTES = 253
"""Secret and application names are DNS-like labels; anything longer is malformed."""


@dataclass(frozen=True, slots=True)
class SecretQuery:
    """One replica's need for one secret version."""

    owner: AccountId
    name: str
    version: int
    app: str
    replica: int

    def items(self) -> tuple[codec.RlpItem, ...]:
        u = codec.encode_uint
        return (
            self.owner, self.name.encode(), u(self.version), self.app.encode(), u(self.replica),
        )  # fmt: skip

    def encode(self) -> bytes:
        return codec.encode(list(self.items()))

    def request_items(self, seen_at: int) -> tuple[codec.RlpItem, ...]:
        """The request's items: the query, then the finalized block at which the requester
        read its assignment (see `answer_query`)."""
        return (*self.items(), codec.encode_uint(seen_at))

    @classmethod
    def from_request(cls, items: tuple[codec.RlpItem, ...]) -> tuple[SecretQuery, int]:
        """The query and the requester's finalized block; `Refused` if malformed."""
        if len(items) != 6:
            raise Refused(
                RefusalReason.MALFORMED,
                "secret-partial takes an owner, a name, a version, an app, a replica and a "
                "finalized block",
            )
        owner, name, version, app, replica, seen_at = items
        try:
            query = cls(
                AccountId(codec.fixed(owner, 32, "owner")),
                _text(name, "secret name"),
                codec.uint(version, "version"),
                _text(app, "app"),
                codec.uint(replica, "replica"),
            )
            seen = codec.uint(seen_at, "finalized block")
        except codec.CodecError as exc:
            raise Refused(RefusalReason.MALFORMED, str(exc)) from None
        if query.version >= 2**64 or query.replica >= 2**32 or seen >= 2**64:
            raise Refused(RefusalReason.MALFORMED, "a version, replica or block out of range")
        return query, seen

    def describe(self) -> str:
        return (
            f"secret {self.name!r} version {self.version} of 0x{self.owner.hex()} for replica "
            f"{self.replica} of {self.app!r}"
        )


def _text(item: codec.RlpItem, what: str) -> str:
    if not isinstance(item, bytes) or not 0 < len(item) <= MAX_NAME_BYTES:
        raise codec.CodecError(f"{what} must be 1 to {MAX_NAME_BYTES} bytes")
    try:
        return item.decode()
    except UnicodeDecodeError:
        raise codec.CodecError(f"{what} is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class Granted:
    vault: wallets.VaultRecord
    envelope: Envelope


def check_query(state: StateReader, requester: AccountId, query: SecretQuery) -> Granted:
    """Everything a member checks on its own finalized state before it answers; `Refused`
    with the first reason the requester may not have this partial decryption."""
    record = apps.get_app(state, query.app)
    if record is None:
        raise Refused(RefusalReason.NOT_ASSIGNED, f"no application {query.app!r} is finalized")
    if record.owner != query.owner:
        raise Refused(
            RefusalReason.FOREIGN_SECRET,
            f"application {query.app!r} is not owned by 0x{query.owner.hex()}",
        )
    entries = [
        entry
        for entry in apps.placement(state, query.app)
        if entry.index == query.replica and entry.node == requester
    ]
    if not entries:
        raise Refused(
            RefusalReason.NOT_ASSIGNED,
            f"replica {query.replica} of {query.app!r} is not assigned to the requesting node",
        )
    if not any(_reads(state, query.app, entry.revision, query.name) for entry in entries):
        raise Refused(
            RefusalReason.FOREIGN_SECRET,
            f"the manifest of {query.app!r} does not read secret {query.name!r}",
        )
    secret = secrets.secret_record(state, query.owner, query.name)
    if secret is None:
        raise Refused(RefusalReason.UNKNOWN_SECRET, f"no secret {query.name!r} is finalized")
    if secret.version != query.version:
        raise Refused(
            RefusalReason.UNKNOWN_SECRET,
            f"secret {query.name!r} is at version {secret.version}, not {query.version}",
        )
    vault = wallets.vault_of(state, query.owner)
    if vault is None:
        raise Refused(RefusalReason.NO_VAULT, "the owner has no vault key")
    try:
        envelope = decode_envelope(secret.envelope)
    except BadEnvelope as error:
        raise Refused(RefusalReason.UNKNOWN_SECRET, f"the stored envelope: {error}") from None
    if envelope.vault_key.encoding != vault.group_key:
        raise Refused(
            RefusalReason.WRONG_PURPOSE, "the secret is sealed to another key than its vault's"
        )
    return Granted(vault, envelope)


def _reads(state: StateReader, app: str, revision: int, name: str) -> bool:
    data = apps.manifest_bytes(state, app, revision)
    if data is None:
        return False
    try:
        manifest = read_stored_manifest(data)
    except ManifestError:
        return False
    return secrets.app_uses_secret(manifest, name)


def box_header(session: bytes, member: bytes, query: SecretQuery) -> bytes:
    return session + member + query.encode()


def answer_query(
    *,
    state: StateReader,
    finalized_number: int,
    identity: Keypair,
    shares: ShareStore,
    requester: AccountId,
    session: bytes,
    query: SecretQuery,
    seen_at: int,
    rng: RandomSource,
) -> bytes:
    """This member's partial decryption for the query, sealed to the requester's node key.

    A requester whose finalized chain is ahead of this member's (`seen_at` above
    `finalized_number`) may be right where this member cannot tell yet (NOT_FINAL_YET); one
    behind may still see an assignment the chain has since moved (STALE_VIEW). Neither costs it
    score: only a refusal between equal views (not assigned, another owner's) marks the
    requester as asking for what it knows it may not have. Claiming another block spares a
    dishonest node its penalty, never gets it a partial decryption."""
    try:
        granted = check_query(state, requester, query)
    except Refused as refusal:
        if refusal.reason in BEHIND_REASONS and finalized_number != seen_at:
            raise Refused(
                RefusalReason.NOT_FINAL_YET
                if finalized_number < seen_at
                else RefusalReason.STALE_VIEW,
                f"this member has finalized block {finalized_number}, the requester "
                f"{seen_at}: {refusal.message}",
            ) from None
        raise
    if identity.public not in granted.vault.committee:
        raise Refused(RefusalReason.NOT_A_MEMBER, "this node is not in the vault's committee")
    try:
        stored = shares.load(granted.vault.group_key)
    except ShareStoreError as error:
        raise Refused(RefusalReason.NO_SHARE, str(error)) from None
    if stored is None:
        raise Refused(RefusalReason.NO_SHARE, "this node holds no share of the vault")
    partial = partial_decrypt(stored.key_package, granted.envelope.c1, rng)
    try:
        return seal_for(
            requester,
            partial.encode(),
            domain=BOX_DOMAIN,
            header=box_header(session, identity.public, query),
            rng=rng,
        )
    except FrostError as error:
        raise Refused(RefusalReason.MALFORMED, f"the requesting node's key: {error}") from None


def open_answer(
    identity: Keypair, member: bytes, session: bytes, query: SecretQuery, box: bytes
) -> PartialDecryption:
    """The partial decryption inside a member's answer; raises `FrostError` (a `SealingError`
    or an `InvalidEncoding`) if the box or its content is not one."""
    header = box_header(session, member, query)
    plaintext = open_for(identity, box, domain=BOX_DOMAIN, header=header)
    return PartialDecryption.decode(plaintext)
