"""The messages of the Pedersen DKG, each signed by its sender's Ed25519 identity key over a
domain-separated encoding that binds the session, so any member can check any message and a
complaint can carry a share as evidence that only its sender could have signed."""

from __future__ import annotations

from dataclasses import dataclass, field

from chain.keys import Keypair
from chain.signature import verify as verify_ed25519
from wallet.frost.errors import MalformedMessage
from wallet.frost.group import Point, Scalar
from wallet.frost.identifier import Identifier, as_identifier, encode_identifier
from wallet.frost.polynomial import VssCommitment
from wallet.frost.wire import Reader, encode_count

DKG_DOMAIN = b"statemesh/frost-dkg/v1/"
SESSION_ID_LENGTH = 32
IDENTITY_SIGNATURE_LENGTH = 64
CONFIRMATION_DIGEST_LENGTH = 64

_ROUND1 = b"round1"
_SHARE = b"share"
_COMPLAINTS = b"complaints"
_CONFIRMATION = b"confirmation"


def _payload(kind: bytes, body: bytes) -> bytes:
    return DKG_DOMAIN + kind + b"\x00" + body


def _check_envelope(what: str, session_id: bytes, signature: bytes) -> None:
    if len(session_id) != SESSION_ID_LENGTH:
        raise MalformedMessage(f"{what}: a session id is {SESSION_ID_LENGTH} bytes")
    if len(signature) != IDENTITY_SIGNATURE_LENGTH:
        raise MalformedMessage(f"{what}: a signature is {IDENTITY_SIGNATURE_LENGTH} bytes")


@dataclass(frozen=True, slots=True)
class ProofOfKnowledge:
    """Schnorr proof that the sender knows the constant term behind its first commitment,
    which stops a member from choosing its commitment after seeing the others' (a rogue-key
    attack on the group key)."""

    commitment: Point
    """R = G * k."""
    response: Scalar
    """mu = k + a_0 * c."""


@dataclass(frozen=True, slots=True)
class Round1Package:
    """Round one, broadcast: the sender's coefficient commitments and proof of knowledge."""

    session_id: bytes
    sender: Identifier
    commitment: VssCommitment
    proof: ProofOfKnowledge
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        as_identifier(self.sender)
        _check_envelope("Round1Package", self.session_id, self.signature)

    def body(self) -> bytes:
        return (
            self.session_id
            + encode_identifier(self.sender)
            + self.commitment.encode()
            + self.proof.commitment.encoding
            + self.proof.response.encoding
        )

    @classmethod
    def signed(
        cls,
        session_id: bytes,
        sender: Identifier,
        commitment: VssCommitment,
        proof: ProofOfKnowledge,
        identity: Keypair,
    ) -> Round1Package:
        unsigned = cls(session_id, sender, commitment, proof, bytes(IDENTITY_SIGNATURE_LENGTH))
        return cls(
            session_id, sender, commitment, proof, identity.sign(_payload(_ROUND1, unsigned.body()))
        )

    def signature_valid(self, identity_key: bytes) -> bool:
        return verify_ed25519(identity_key, _payload(_ROUND1, self.body()), self.signature)

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Round1Package:
        reader = Reader(data, "Round1Package")
        session_id = reader.take(SESSION_ID_LENGTH)
        sender = reader.identifier("sender")
        commitment = VssCommitment.read(reader)
        proof = ProofOfKnowledge(reader.point("proof commitment"), reader.scalar("proof response"))
        signature = reader.take(IDENTITY_SIGNATURE_LENGTH)
        reader.finish()
        return cls(session_id, sender, commitment, proof, signature)


@dataclass(frozen=True, slots=True)
class Round2Share:
    """Round two, to one recipient only: the sender's polynomial evaluated at the recipient.
    Secret: it must travel sealed (`wallet.frost.share_box`). The signature makes it evidence
    against its sender if it fails the sender's commitments."""

    session_id: bytes
    sender: Identifier
    recipient: Identifier
    share: Scalar = field(repr=False)
    signature: bytes = field(repr=False)

    ENCODED_LENGTH = SESSION_ID_LENGTH + 3 * 32 + IDENTITY_SIGNATURE_LENGTH

    def __post_init__(self) -> None:
        as_identifier(self.sender)
        as_identifier(self.recipient)
        _check_envelope("Round2Share", self.session_id, self.signature)

    def body(self) -> bytes:
        return (
            self.session_id
            + encode_identifier(self.sender)
            + encode_identifier(self.recipient)
            + self.share.encoding
        )

    @classmethod
    def signed(
        cls,
        session_id: bytes,
        sender: Identifier,
        recipient: Identifier,
        share: Scalar,
        identity: Keypair,
    ) -> Round2Share:
        unsigned = cls(session_id, sender, recipient, share, bytes(IDENTITY_SIGNATURE_LENGTH))
        return cls(
            session_id, sender, recipient, share, identity.sign(_payload(_SHARE, unsigned.body()))
        )

    def signature_valid(self, identity_key: bytes) -> bool:
        return verify_ed25519(identity_key, _payload(_SHARE, self.body()), self.signature)

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def read(cls, reader: Reader) -> Round2Share:
        session_id = reader.take(SESSION_ID_LENGTH)
        sender = reader.identifier("sender")
        recipient = reader.identifier("recipient")
        share = reader.scalar("share")
        return cls(session_id, sender, recipient, share, reader.take(IDENTITY_SIGNATURE_LENGTH))

    @classmethod
    def decode(cls, data: bytes) -> Round2Share:
        reader = Reader(data, "Round2Share")
        share = cls.read(reader)
        reader.finish()
        return share


@dataclass(frozen=True, slots=True)
class Complaint:
    """An accusation that `evidence.sender` sent `evidence.recipient` a share that fails the
    sender's commitments. The evidence is the signed share itself, so every member can judge:
    if it is signed by the accused and fails the check, the accused is disqualified; otherwise
    the complaint is false and the complainer is."""

    evidence: Round2Share

    @property
    def accused(self) -> Identifier:
        return self.evidence.sender

    @property
    def complainer(self) -> Identifier:
        return self.evidence.recipient


@dataclass(frozen=True, slots=True)
class ComplaintsMessage:
    """Round three, broadcast by every member still qualified: its complaints, possibly none.
    Sending an empty list is what lets every member know the phase is over."""

    session_id: bytes
    sender: Identifier
    complaints: tuple[Complaint, ...]
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        as_identifier(self.sender)
        _check_envelope("ComplaintsMessage", self.session_id, self.signature)

    def body(self) -> bytes:
        return (
            self.session_id
            + encode_identifier(self.sender)
            + encode_count(len(self.complaints))
            + b"".join(complaint.evidence.encode() for complaint in self.complaints)
        )

    @classmethod
    def signed(
        cls,
        session_id: bytes,
        sender: Identifier,
        complaints: tuple[Complaint, ...],
        identity: Keypair,
    ) -> ComplaintsMessage:
        unsigned = cls(session_id, sender, complaints, bytes(IDENTITY_SIGNATURE_LENGTH))
        return cls(
            session_id, sender, complaints, identity.sign(_payload(_COMPLAINTS, unsigned.body()))
        )

    def signature_valid(self, identity_key: bytes) -> bool:
        return verify_ed25519(identity_key, _payload(_COMPLAINTS, self.body()), self.signature)

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> ComplaintsMessage:
        reader = Reader(data, "ComplaintsMessage")
        session_id = reader.take(SESSION_ID_LENGTH)
        sender = reader.identifier("sender")
        complaints = tuple(Complaint(Round2Share.read(reader)) for _ in range(reader.count()))
        signature = reader.take(IDENTITY_SIGNATURE_LENGTH)
        reader.finish()
        return cls(session_id, sender, complaints, signature)


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Round four, broadcast by every qualified member: a digest of the session, the qualified
    set, every qualified member's commitments and the group public key. The DKG completes only
    when all qualified members confirm the same digest."""

    session_id: bytes
    sender: Identifier
    digest: bytes
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        as_identifier(self.sender)
        _check_envelope("Confirmation", self.session_id, self.signature)
        if len(self.digest) != CONFIRMATION_DIGEST_LENGTH:
            raise MalformedMessage(f"Confirmation: a digest is {CONFIRMATION_DIGEST_LENGTH} bytes")

    def body(self) -> bytes:
        return self.session_id + encode_identifier(self.sender) + self.digest

    @classmethod
    def signed(
        cls, session_id: bytes, sender: Identifier, digest: bytes, identity: Keypair
    ) -> Confirmation:
        unsigned = cls(session_id, sender, digest, bytes(IDENTITY_SIGNATURE_LENGTH))
        return cls(
            session_id, sender, digest, identity.sign(_payload(_CONFIRMATION, unsigned.body()))
        )

    def signature_valid(self, identity_key: bytes) -> bool:
        return verify_ed25519(identity_key, _payload(_CONFIRMATION, self.body()), self.signature)

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Confirmation:
        reader = Reader(data, "Confirmation")
        session_id = reader.take(SESSION_ID_LENGTH)
        sender = reader.identifier("sender")
        digest = reader.take(CONFIRMATION_DIGEST_LENGTH)
        signature = reader.take(IDENTITY_SIGNATURE_LENGTH)
        reader.finish()
        return cls(session_id, sender, digest, signature)
