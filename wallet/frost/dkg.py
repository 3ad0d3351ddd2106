"""Pedersen distributed key generation with the FROST paper's proofs of knowledge, as a
state machine per member: commitments (round 1), private shares (round 2), complaints
(round 3) and confirmations (round 4). No member ever holds the group secret.

Inputs and outputs are the signed messages of `dkg_messages`; the transport delivers them.
It must broadcast round-1, complaint and confirmation messages to every member (the same
message to all: the confirmation round detects any member that saw something else), seal
round-2 shares (`share_box`), and decide what to do about silent members: a phase that lacks
a member's message raises `MissingMessages` naming it, and the usual answer is a new session
without that member. The state lives in memory only; a restarted member starts a new session.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from chain.keys import Keypair
from wallet.frost.dkg_messages import (
    SESSION_ID_LENGTH,
    Complaint,
    ComplaintsMessage,
    Confirmation,
    ProofOfKnowledge,
    Round1Package,
    Round2Share,
)
from wallet.frost.errors import (
    ConfirmationMismatch,
    ConflictingMessage,
    DuplicateIdentifier,
    ExcludedFromGroup,
    InvalidMessageSignature,
    InvalidParameters,
    InvalidPoint,
    MissingMessages,
    NotEnoughQualified,
    PhaseError,
    UnexpectedMessage,
    UnknownParticipant,
    WrongSession,
)
from wallet.frost.group import (
    Point,
    RandomSource,
    Scalar,
    base_mul,
    random_nonzero_scalar,
)
from wallet.frost.identifier import Identifier, as_identifier, encode_identifier
from wallet.frost.keys import KeyPackage, PublicKeyPackage, check_threshold
from wallet.frost.polynomial import VssCommitment, secret_share
from wallet.frost.share_box import open_share, seal_share
from wallet.frost.suite import CONTEXT_STRING, h_dkg
from wallet.frost.wire import encode_count

# Parameters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkgMember:
    identifier: Identifier
    identity_key: bytes
    """The member's Ed25519 public key: it signs the member's DKG messages, and shares are
    sealed to it."""


@dataclass(frozen=True, slots=True)
class DkgParams:
    """What every member agrees on before the DKG starts (e.g. read from chain state)."""

    session_id: bytes
    """32 bytes, unique per DKG run (e.g. a hash of the wallet id and the block that asked
    for it). Every message and proof is bound to it, so nothing replays across sessions."""
    min_signers: int
    members: tuple[DkgMember, ...]
    """Strictly ascending by identifier."""
    context: bytes = field(init=False, repr=False)
    """Digest of all of the above, bound into every proof of knowledge and confirmation."""

    def __post_init__(self) -> None:
        if len(self.session_id) != SESSION_ID_LENGTH:
            raise InvalidParameters(
                f"a session id is {SESSION_ID_LENGTH} bytes, got {len(self.session_id)}"
            )
        check_threshold(self.min_signers, len(self.members))
        previous = 0
        keys: set[bytes] = set()
        for member in self.members:
            as_identifier(member.identifier)
            if member.identifier == previous:
                raise DuplicateIdentifier(f"member {previous} appears twice", culprits=(previous,))
            if member.identifier < previous:
                raise InvalidParameters("members must be in ascending identifier order")
            previous = member.identifier
            try:
                Point.decode(member.identity_key)
            except InvalidPoint as error:
                raise InvalidParameters(
                    f"member {member.identifier}: identity key is unusable: {error}"
                ) from error
            if member.identity_key in keys:
                raise InvalidParameters(
                    f"member {member.identifier} shares its identity key with another member"
                )
            keys.add(member.identity_key)
        object.__setattr__(self, "context", self._digest())

    @classmethod
    def create(cls, session_id: bytes, min_signers: int, members: Iterable[DkgMember]) -> DkgParams:
        """Sorts the members; duplicates are still refused."""
        return cls(session_id, min_signers, tuple(sorted(members, key=lambda m: m.identifier)))

    def _digest(self) -> bytes:
        parts = [
            CONTEXT_STRING,
            b"dkg-session",
            self.session_id,
            encode_count(self.min_signers),
            encode_count(len(self.members)),
        ]
        for member in self.members:
            parts.append(encode_identifier(member.identifier) + member.identity_key)
        return hashlib.sha512(b"".join(parts)).digest()

    @property
    def identifiers(self) -> tuple[Identifier, ...]:
        return tuple(member.identifier for member in self.members)

    def identity_key(self, identifier: Identifier) -> bytes:
        for member in self.members:
            if member.identifier == identifier:
                return member.identity_key
        raise UnknownParticipant(
            f"{identifier} is not a member of this DKG session", culprits=(identifier,)
        )

    def identifier_of(self, identity_key: bytes) -> Identifier:
        for member in self.members:
            if member.identity_key == identity_key:
                return member.identifier
        raise UnknownParticipant("this identity key is not a member of this DKG session")


# Proof of knowledge -----------------------------------------------------------------------


def _proof_challenge(
    params: DkgParams, identifier: Identifier, public: Point, nonce_commitment: Point
) -> Scalar:
    return h_dkg(
        params.context + encode_identifier(identifier) + public.encoding + nonce_commitment.encoding
    )


def prove_knowledge(
    params: DkgParams, identifier: Identifier, secret: Scalar, rng: RandomSource
) -> ProofOfKnowledge:
    """Schnorr proof of knowledge of `secret` behind G * secret, bound to the session and
    to the prover's identifier so it cannot be replayed by another member or session."""
    nonce = random_nonzero_scalar(rng)
    nonce_commitment = base_mul(nonce)
    challenge = _proof_challenge(params, identifier, base_mul(secret), nonce_commitment)
    return ProofOfKnowledge(nonce_commitment, nonce + secret * challenge)


def verify_knowledge(
    params: DkgParams, identifier: Identifier, public: Point, proof: ProofOfKnowledge
) -> bool:
    challenge = _proof_challenge(params, identifier, public, proof.commitment)
    return base_mul(proof.response) - public * challenge == proof.commitment


# Outcomes ---------------------------------------------------------------------------------


class DisqualificationReason(enum.Enum):
    INVALID_ROUND1 = "invalid round-1 package"
    BAD_SHARE = "sent a share that fails its commitments"
    FALSE_COMPLAINT = "made a false complaint"


@dataclass(frozen=True, slots=True)
class Disqualification:
    identifier: Identifier
    reason: DisqualificationReason
    detail: str

    def __str__(self) -> str:
        return f"member {self.identifier}: {self.reason.value} ({self.detail})"


def judge_complaint(
    params: DkgParams,
    complainer: Identifier,
    complaint: Complaint,
    accused_commitment: VssCommitment | None,
) -> Disqualification:
    """The verdict on one complaint, the same for every member that judges it: the accused
    if the evidence is a share it signed that fails its commitments, else the complainer.
    `accused_commitment` is None when the accused is not a qualified member."""
    evidence = complaint.evidence
    accused = complaint.accused
    if evidence.session_id != params.session_id:
        return _false_complaint(complainer, "its evidence is from another session")
    if complaint.complainer != complainer:
        return _false_complaint(complainer, "its evidence is a share sent to someone else")
    if accused == complainer or accused_commitment is None:
        return _false_complaint(complainer, f"member {accused} cannot be accused")
    if not evidence.signature_valid(params.identity_key(accused)):
        return _false_complaint(
            complainer, f"its evidence is not signed by the accused member {accused}"
        )
    if accused_commitment.verify_share(complainer, evidence.share):
        return _false_complaint(complainer, f"the share from member {accused} is valid")
    return Disqualification(
        accused,
        DisqualificationReason.BAD_SHARE,
        f"its share to member {complainer} fails its commitments",
    )


def _false_complaint(complainer: Identifier, why: str) -> Disqualification:
    return Disqualification(
        complainer, DisqualificationReason.FALSE_COMPLAINT, f"a complaint where {why}"
    )


@dataclass(frozen=True, slots=True)
class DkgOutput:
    key_package: KeyPackage
    """This member's secret share; store it encrypted."""
    public_key_package: PublicKeyPackage
    """The group key and the verifying share of every qualified member."""
    disqualified: tuple[Disqualification, ...]


class DkgPhase(enum.Enum):
    NEW = "new"
    ROUND1 = "collecting round-1 packages"
    ROUND2 = "collecting round-2 shares"
    COMPLAINTS = "collecting complaints"
    CONFIRMATION = "collecting confirmations"
    DONE = "done"


# The state machine ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Inbox:
    """How one kind of incoming message is admitted."""

    what: str
    step: str
    phases: tuple[DkgPhase, ...]
    """The phase that expects it, preceded by the one before (see `DkgParticipant`)."""


_ROUND1_INBOX = _Inbox("round-1 package", "receive_round1", (DkgPhase.NEW, DkgPhase.ROUND1))
_SHARE_INBOX = _Inbox("share", "receive_share", (DkgPhase.ROUND1, DkgPhase.ROUND2))
_COMPLAINTS_INBOX = _Inbox(
    "complaints message", "receive_complaints", (DkgPhase.ROUND2, DkgPhase.COMPLAINTS)
)
_CONFIRMATION_INBOX = _Inbox(
    "confirmation", "receive_confirmation", (DkgPhase.COMPLAINTS, DkgPhase.CONFIRMATION)
)


class DkgParticipant:
    """One member's run of the DKG. Call, in order:

        start() -> Round1Package                      broadcast
        receive_round1(p) for every member's package   (own one is accepted and ignored)
        finish_round1() -> tuple[Round2Share, ...]    seal each to its recipient
        receive_share(s) for every share addressed here
        finish_round2() -> ComplaintsMessage           broadcast
        receive_complaints(m) for every qualified member's message
        finish_complaints() -> Confirmation            broadcast
        receive_confirmation(c) for every qualified member's confirmation
        finish() -> DkgOutput

    Each `receive_*` is also accepted one phase early, because a faster member's next
    message can arrive before this member has finished the current phase; no message can
    come earlier than that, since each phase waits for this member's own contribution.
    A late copy of a message already held is ignored. A step that raises changes nothing, so
    it can be retried. A different signed message from the same sender for the same phase
    raises `ConflictingMessage` naming it, and the first one stands."""

    __slots__ = (
        "_coefficients",
        "_complaints",
        "_confirmations",
        "_disqualified",
        "_identity",
        "_output",
        "_own_share",
        "_params",
        "_phase",
        "_qualified",
        "_received_shares",
        "_rng",
        "_round1",
        "_self",
    )

    def __init__(
        self, params: DkgParams, identity: Keypair, *, rng: RandomSource = os.urandom
    ) -> None:
        self._params = params
        self._identity = identity
        self._self = params.identifier_of(identity.public)
        self._rng = rng
        self._phase = DkgPhase.NEW
        self._coefficients: tuple[Scalar, ...] = ()
        self._round1: dict[Identifier, Round1Package] = {}
        self._disqualified: dict[Identifier, Disqualification] = {}
        self._qualified: tuple[Identifier, ...] = ()
        self._own_share: Scalar | None = None
        self._received_shares: dict[Identifier, Round2Share] = {}
        self._complaints: dict[Identifier, ComplaintsMessage] = {}
        self._confirmations: dict[Identifier, Confirmation] = {}
        self._output: DkgOutput | None = None

    def __repr__(self) -> str:
        return f"DkgParticipant(identifier={self._self}, phase={self._phase.name})"

    @property
    def identifier(self) -> Identifier:
        return self._self

    @property
    def phase(self) -> DkgPhase:
        return self._phase

    @property
    def qualified(self) -> tuple[Identifier, ...]:
        """Members still qualified, as far as this member has decided so far."""
        return self._qualified

    @property
    def disqualified(self) -> tuple[Disqualification, ...]:
        return tuple(self._disqualified[i] for i in sorted(self._disqualified))

    # Round 1 ------------------------------------------------------------------------------

    def start(self) -> Round1Package:
        self._require((DkgPhase.NEW,), "start")
        coefficients = tuple(
            random_nonzero_scalar(self._rng) for _ in range(self._params.min_signers)
        )
        package = Round1Package.signed(
            self._params.session_id,
            self._self,
            VssCommitment.commit(coefficients),
            prove_knowledge(self._params, self._self, coefficients[0], self._rng),
            self._identity,
        )
        self._coefficients = coefficients
        self._round1 = {**self._round1, self._self: package}
        self._phase = DkgPhase.ROUND1
        return package

    def receive_round1(self, package: Round1Package) -> Disqualification | None:
        """Accepts a member's round-1 package. A package that is properly signed but invalid
        (wrong number of commitments, bad proof of knowledge) disqualifies its sender, and the
        disqualification is returned; nothing else about it raises."""
        if not self._admit(package, self._round1, _ROUND1_INBOX, self._params.identifiers):
            return None
        verdict = self._check_round1(package)
        self._round1[package.sender] = package
        if verdict is not None:
            self._disqualified[package.sender] = verdict
        return verdict

    def _check_round1(self, package: Round1Package) -> Disqualification | None:
        expected = self._params.min_signers
        if len(package.commitment.coefficients) != expected:
            return Disqualification(
                package.sender,
                DisqualificationReason.INVALID_ROUND1,
                f"{len(package.commitment.coefficients)} coefficient commitments instead of "
                f"{expected}",
            )
        if not verify_knowledge(
            self._params, package.sender, package.commitment.public_key, package.proof
        ):
            return Disqualification(
                package.sender,
                DisqualificationReason.INVALID_ROUND1,
                "the proof of knowledge of its secret does not verify",
            )
        return None

    def finish_round1(self) -> tuple[Round2Share, ...]:
        """The shares to send, one per other qualified member, each to be sealed for it."""
        self._require((DkgPhase.ROUND1,), "finish_round1")
        self._require_all(self._params.identifiers, self._round1, "round-1 packages")
        qualified = tuple(i for i in self._params.identifiers if i not in self._disqualified)
        self._require_enough(qualified, self._disqualified)
        outgoing = tuple(
            Round2Share.signed(
                self._params.session_id,
                self._self,
                recipient,
                secret_share(recipient, self._coefficients),
                self._identity,
            )
            for recipient in qualified
            if recipient != self._self
        )
        self._own_share = secret_share(self._self, self._coefficients)
        # The polynomial is not needed any more: every share of it has been computed.
        self._coefficients = ()
        self._received_shares = {
            sender: share for sender, share in self._received_shares.items() if sender in qualified
        }
        self._qualified = qualified
        self._phase = DkgPhase.ROUND2
        return outgoing

    # Round 2 ------------------------------------------------------------------------------

    def receive_share(self, share: Round2Share) -> None:
        """Accepts a share addressed to this member (already opened from its sealed box). It
        is checked against its sender's commitments when round 2 finishes."""
        sender = share.sender
        if share.recipient != self._self:
            raise UnexpectedMessage(
                f"a share from member {sender} for member {share.recipient} reached member "
                f"{self._self}",
                culprits=(sender,),
            )
        if sender == self._self:
            raise UnexpectedMessage(f"member {self._self} does not receive shares from itself")
        eligible = (
            self._qualified
            if self._phase is DkgPhase.ROUND2
            else [i for i in self._params.identifiers if i not in self._disqualified]
        )
        if self._admit(share, self._received_shares, _SHARE_INBOX, eligible):
            self._received_shares[sender] = share

    def finish_round2(self) -> ComplaintsMessage:
        """Checks every received share against its sender's commitments; the message lists a
        complaint, with the signed share as evidence, for each one that fails."""
        self._require((DkgPhase.ROUND2,), "finish_round2")
        others = [i for i in self._qualified if i != self._self]
        self._require_all(others, self._received_shares, "round-2 shares")
        complaints = tuple(
            Complaint(share)
            for sender, share in sorted(self._received_shares.items())
            if not self._round1[sender].commitment.verify_share(self._self, share.share)
        )
        message = ComplaintsMessage.signed(
            self._params.session_id, self._self, complaints, self._identity
        )
        self._complaints = {**self._complaints, self._self: message}
        self._phase = DkgPhase.COMPLAINTS
        return message

    # Round 3 ------------------------------------------------------------------------------

    def receive_complaints(self, message: ComplaintsMessage) -> None:
        if self._admit(message, self._complaints, _COMPLAINTS_INBOX, self._qualified):
            self._complaints[message.sender] = message

    def finish_complaints(self) -> Confirmation:
        """Judges every complaint, fixes the qualified set, derives this member's share of the
        group key and returns its confirmation. Raises `ExcludedFromGroup` if this member was
        disqualified and `NotEnoughQualified` if fewer than the threshold remain."""
        self._require((DkgPhase.COMPLAINTS,), "finish_complaints")
        self._require_all(self._qualified, self._complaints, "complaints messages")
        disqualified = dict(self._disqualified)
        for complainer in self._qualified:
            for complaint in self._complaints[complainer].complaints:
                accused_package = (
                    self._round1[complaint.accused]
                    if complaint.accused in self._qualified
                    else None
                )
                verdict = judge_complaint(
                    self._params,
                    complainer,
                    complaint,
                    accused_package.commitment if accused_package is not None else None,
                )
                disqualified.setdefault(verdict.identifier, verdict)
        qualified = tuple(i for i in self._qualified if i not in disqualified)
        if self._self not in qualified:
            raise ExcludedFromGroup(
                f"member {self._self} was disqualified: {disqualified[self._self]}"
            )
        self._require_enough(qualified, disqualified)
        output = self._derive_keys(qualified, tuple(disqualified[i] for i in sorted(disqualified)))
        confirmation = Confirmation.signed(
            self._params.session_id,
            self._self,
            self._confirmation_digest(qualified, output.public_key_package.group_public_key),
            self._identity,
        )
        self._disqualified = disqualified
        self._qualified = qualified
        self._output = output
        early = {i: c for i, c in self._confirmations.items() if i in qualified}
        self._confirmations = {**early, self._self: confirmation}
        self._own_share = None
        self._received_shares = {}
        self._phase = DkgPhase.CONFIRMATION
        return confirmation

    def _derive_keys(
        self, qualified: Sequence[Identifier], disqualified: tuple[Disqualification, ...]
    ) -> DkgOutput:
        own_share = self._own_share
        if own_share is None:
            raise PhaseError("round 2 has not been finished")
        secret = own_share
        for sender in qualified:
            if sender != self._self:
                secret = secret + self._received_shares[sender].share
        # The sum of the qualified members' commitments commits to the sum polynomial, whose
        # constant term is the group secret and whose value at j is member j's share.
        group_commitment = self._round1[qualified[0]].commitment
        for sender in qualified[1:]:
            group_commitment = group_commitment + self._round1[sender].commitment
        verifying_shares = {j: group_commitment.evaluate(j) for j in qualified}
        group_public_key = group_commitment.public_key
        if group_public_key.is_identity:
            raise NotEnoughQualified("the qualified members' secrets sum to zero; start again")
        key_package = KeyPackage(
            self._self,
            secret,
            verifying_shares[self._self],
            group_public_key,
            self._params.min_signers,
        )
        if base_mul(secret) != key_package.verifying_share:
            # Every share was checked against its commitments, so this means a bug, not a
            # cheating member; refuse rather than hand out a share that cannot sign.
            raise ConfirmationMismatch("this member's share does not match the commitments")
        public = PublicKeyPackage(group_public_key, verifying_shares, self._params.min_signers)
        return DkgOutput(key_package, public, disqualified)

    def _confirmation_digest(self, qualified: Sequence[Identifier], group_key: Point) -> bytes:
        parts = [CONTEXT_STRING, b"dkg-confirm", self._params.context, encode_count(len(qualified))]
        for identifier in qualified:
            parts.append(
                encode_identifier(identifier) + self._round1[identifier].commitment.encode()
            )
        parts.append(group_key.encoding)
        return hashlib.sha512(b"".join(parts)).digest()

    # Round 4 ------------------------------------------------------------------------------

    def receive_confirmation(self, confirmation: Confirmation) -> None:
        """Accepts a member's confirmation. One that arrives before this member has judged
        the complaints is held, and dropped if its sender ends up disqualified."""
        if self._admit(confirmation, self._confirmations, _CONFIRMATION_INBOX, self._qualified):
            self._confirmations[confirmation.sender] = confirmation

    def finish(self) -> DkgOutput:
        """The key material, once every qualified member confirmed the same group key and
        qualified set; `ConfirmationMismatch` names those that confirmed something else."""
        self._require((DkgPhase.CONFIRMATION,), "finish")
        self._require_all(self._qualified, self._confirmations, "confirmations")
        mine = self._confirmations[self._self].digest
        differing = [i for i in self._qualified if self._confirmations[i].digest != mine]
        if differing:
            raise ConfirmationMismatch(
                f"members {differing} confirmed another group key or qualified set than member "
                f"{self._self}",
                culprits=differing,
            )
        output = self._output
        if output is None:
            raise PhaseError("the complaints phase has not been finished")
        self._phase = DkgPhase.DONE
        return output

    # Shared checks ------------------------------------------------------------------------

    def _require(self, phases: tuple[DkgPhase, ...], step: str) -> None:
        if self._phase not in phases:
            expected = " or ".join(f"'{phase.value}'" for phase in phases)
            raise PhaseError(
                f"{step} belongs to phase {expected} but member {self._self} is in phase "
                f"'{self._phase.value}'"
            )

    def _admit(
        self,
        message: Round1Package | Round2Share | ComplaintsMessage | Confirmation,
        received: Mapping[Identifier, object],
        inbox: _Inbox,
        eligible: Iterable[Identifier],
    ) -> bool:
        """Whether `message` is new and should be stored; raises if it must be refused."""
        sender = message.sender
        what = inbox.what
        previous = received.get(sender)
        if previous == message:
            return False  # a copy of a message already held, early or late
        self._require(inbox.phases, inbox.step)
        if message.session_id != self._params.session_id:
            raise WrongSession(f"a {what} from member {sender} belongs to another DKG session")
        if sender not in self._params.identifiers:
            raise UnknownParticipant(f"a {what} from {sender}, who is not a member of this session")
        if sender not in eligible:
            raise UnexpectedMessage(
                f"a {what} from member {sender}, who is not qualified", culprits=(sender,)
            )
        if not message.signature_valid(self._params.identity_key(sender)):
            raise InvalidMessageSignature(
                f"a {what} claiming to be from member {sender} is not signed by its identity key",
                claimed_sender=sender,
            )
        if previous is not None:
            raise ConflictingMessage(
                f"member {sender} sent two different {what}s", culprits=(sender,)
            )
        return True

    def _require_all(
        self, expected: Iterable[Identifier], received: Mapping[Identifier, object], what: str
    ) -> None:
        missing = [i for i in expected if i not in received]
        if missing:
            raise MissingMessages(
                f"member {self._self} still lacks {what} from members {missing}",
                culprits=missing,
            )

    def _require_enough(
        self,
        qualified: Sequence[Identifier],
        disqualified: Mapping[Identifier, Disqualification],
    ) -> None:
        if len(qualified) < self._params.min_signers:
            raise NotEnoughQualified(
                f"only {len(qualified)} members remain qualified, fewer than the threshold "
                f"{self._params.min_signers}",
                culprits=disqualified,
            )


# In-process driver --------------------------------------------------------------------------


def run_in_process(
    params: DkgParams, identities: Sequence[Keypair], *, rng: RandomSource = os.urandom
) -> dict[Identifier, DkgOutput]:
    """Every member's DKG run in one process, shares sealed and opened as on a network. For
    tests, benchmarks and development chains; a node runs one `DkgParticipant` instead."""
    participants = {
        p.identifier: p for p in (DkgParticipant(params, i, rng=rng) for i in identities)
    }
    if set(participants) != set(params.identifiers):
        raise InvalidParameters("one identity per member is needed")
    packages = [p.start() for p in participants.values()]
    for participant in participants.values():
        for package in packages:
            participant.receive_round1(package)
    sealed: list[tuple[Identifier, bytes]] = []
    for participant in participants.values():
        for share in participant.finish_round1():
            recipient_key = params.identity_key(share.recipient)
            sealed.append((share.recipient, seal_share(share, recipient_key, rng=rng)))
    keypairs = {params.identifier_of(i.public): i for i in identities}
    for recipient, box in sealed:
        participants[recipient].receive_share(open_share(box, keypairs[recipient]))
    complaints = [p.finish_round2() for p in participants.values()]
    for participant in participants.values():
        for message in complaints:
            participant.receive_complaints(message)
    confirmations = [p.finish_complaints() for p in participants.values()]
    for participant in participants.values():
        for confirmation in confirmations:
            participant.receive_confirmation(confirmation)
    return {identifier: p.finish() for identifier, p in participants.items()}
