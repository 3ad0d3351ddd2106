"""FROST signing, RFC 9591 sections 4 and 5: one-shot nonces and their commitments (round
one), binding factors, the group commitment and challenge, signature shares (round two),
share verification, and aggregation into a plain Ed25519 signature."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from chain.signature import verify as verify_ed25519
from wallet.frost.errors import (
    CommitmentMismatch,
    DuplicateIdentifier,
    IdentityGroupCommitment,
    InvalidGroupSignature,
    InvalidParameters,
    InvalidPoint,
    InvalidSignatureShare,
    MalformedMessage,
    MessageChanged,
    MessageRejected,
    MissingSignatureShares,
    NonceExport,
    NonceReuse,
    NotEnoughSigners,
    UnexpectedSignatureShares,
    UnknownParticipant,
    UnsortedCommitments,
)
from wallet.frost.group import (
    IDENTITY,
    SCALAR_ZERO,
    Point,
    RandomSource,
    Scalar,
    base_mul,
)
from wallet.frost.identifier import Identifier, as_identifier, encode_identifier
from wallet.frost.keys import KeyPackage, PublicKeyPackage
from wallet.frost.polynomial import derive_interpolating_value
from wallet.frost.suite import h1, h2, h3, h4, h5
from wallet.frost.wire import Reader, encode_count

MessageApproval = Callable[[bytes], bool]
"""The signer's own check of the message the coordinator asks it to sign: True to sign.
The coordinator chooses the message, so each signer must confirm it independently (e.g. that
it is the payload of a request the signer itself saw finalized)."""

SIGNATURE_LENGTH = 64
NONCE_RANDOMNESS_LENGTH = 32


# Round one --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningCommitments:
    """A signer's public round-one output: G * hiding nonce and G * binding nonce."""

    identifier: Identifier
    hiding: Point
    binding: Point

    def __post_init__(self) -> None:
        as_identifier(self.identifier)
        if self.hiding.is_identity or self.binding.is_identity:
            raise InvalidPoint(
                f"commitments of participant {self.identifier}: the identity element is not "
                "allowed",
                culprits=(self.identifier,),
            )

    def encode(self) -> bytes:
        return encode_identifier(self.identifier) + self.hiding.encoding + self.binding.encoding

    @classmethod
    def read(cls, reader: Reader) -> SigningCommitments:
        identifier = reader.identifier("identifier")
        return cls(
            identifier, reader.point("hiding commitment"), reader.point("binding commitment")
        )

    @classmethod
    def decode(cls, data: bytes) -> SigningCommitments:
        reader = Reader(data, "SigningCommitments")
        commitments = cls.read(reader)
        reader.finish()
        return commitments


class SigningNonces:
    """A signer's secret round-one nonces, good for exactly one signature share.

    `sign` consumes them; any second use raises `NonceReuse`, because two shares made with one
    nonce pair over different challenges reveal the secret share. They cannot be copied,
    pickled or encoded, and the library never writes them anywhere: they live in memory only.
    A signer restored from storage (after a crash, from a snapshot) must drop every round that
    was in flight and commit afresh; it must never replay nonces from before the restore."""

    __slots__ = ("_commitments", "_message", "_pair")

    def __init__(
        self,
        hiding: Scalar,
        binding: Scalar,
        commitments: SigningCommitments,
        message: bytes | None,
    ) -> None:
        # A one-element list: `list.pop` takes the pair out in one step, so even two threads
        # racing on the same object cannot both get it.
        self._pair: list[tuple[Scalar, Scalar]] = [(hiding, binding)]
        self._commitments = commitments
        self._message = message

    @property
    def commitments(self) -> SigningCommitments:
        """The public commitments to these nonces, sent to the coordinator."""
        return self._commitments

    @property
    def message(self) -> bytes | None:
        """The message these nonces were committed for, if the signer knew it in round one."""
        return self._message

    @property
    def identifier(self) -> Identifier:
        return self._commitments.identifier

    @property
    def used(self) -> bool:
        return not self._pair

    def _reuse_error(self) -> NonceReuse:
        return NonceReuse(
            f"the signing nonces of participant {self.identifier} were already used; "
            "commit again for a new round"
        )

    def _ensure_unused(self) -> None:
        if self.used:
            raise self._reuse_error()

    def _take(self) -> tuple[Scalar, Scalar]:
        try:
            return self._pair.pop()
        except IndexError:
            raise self._reuse_error() from None

    def __repr__(self) -> str:
        state = "used" if self.used else "unused"
        return f"SigningNonces(identifier={self.identifier}, {state})"

    def _refuse_export(self) -> NoReturn:
        raise NonceExport(
            "signing nonces cannot be copied or serialized: they must never leave memory"
        )

    def __copy__(self) -> NoReturn:
        self._refuse_export()

    def __deepcopy__(self, memo: object) -> NoReturn:
        self._refuse_export()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self._refuse_export()


def nonce_generate(secret: Scalar, rng: RandomSource) -> Scalar:
    """RFC 9591 nonce_generate: H3(32 random bytes || secret). Mixing in the secret keeps the
    nonce unpredictable even if the random source is weak."""
    randomness = rng(NONCE_RANDOMNESS_LENGTH)
    if len(randomness) != NONCE_RANDOMNESS_LENGTH:
        raise InvalidParameters(
            f"the random source returned {len(randomness)} bytes, not {NONCE_RANDOMNESS_LENGTH}"
        )
    return h3(randomness + secret.encoding)


def commit(
    key: KeyPackage, *, rng: RandomSource = os.urandom, message: bytes | None = None
) -> tuple[SigningNonces, SigningCommitments]:
    """Round one: fresh nonces (kept by the signer) and their commitments (sent out).

    Pass `message` when it is known already: `sign` then refuses any other message."""
    hiding = nonce_generate(key.secret_share, rng)
    binding = nonce_generate(key.secret_share, rng)
    commitments = SigningCommitments(key.identifier, base_mul(hiding), base_mul(binding))
    return SigningNonces(hiding, binding, commitments, message), commitments


# The coordinator's request ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningPackage:
    """What the coordinator sends every chosen signer in round two: the message and the
    commitment list, strictly ascending by identifier (RFC 9591 requires that order, and the
    binding factors depend on it)."""

    commitments: tuple[SigningCommitments, ...]
    message: bytes

    def __post_init__(self) -> None:
        if not self.commitments:
            raise InvalidParameters("a signing package needs at least one commitment")
        previous = 0
        for commitments in self.commitments:
            if commitments.identifier == previous:
                raise DuplicateIdentifier(
                    f"participant {previous} appears twice in the commitment list",
                    culprits=(previous,),
                )
            if commitments.identifier < previous:
                raise UnsortedCommitments(
                    "the commitment list is not sorted by identifier "
                    f"({commitments.identifier} after {previous})"
                )
            previous = commitments.identifier

    @classmethod
    def create(cls, message: bytes, commitments: Iterable[SigningCommitments]) -> SigningPackage:
        """The coordinator's constructor: sorts the commitments."""
        return cls(tuple(sorted(commitments, key=lambda c: c.identifier)), message)

    @property
    def participants(self) -> tuple[Identifier, ...]:
        return tuple(commitments.identifier for commitments in self.commitments)

    def commitments_of(self, identifier: Identifier) -> SigningCommitments:
        for commitments in self.commitments:
            if commitments.identifier == identifier:
                return commitments
        raise UnknownParticipant(
            f"participant {identifier} is not in the signing package", culprits=(identifier,)
        )

    def encode(self) -> bytes:
        return (
            encode_count(len(self.commitments))
            + b"".join(commitments.encode() for commitments in self.commitments)
            + self.message
        )

    @classmethod
    def decode(cls, data: bytes) -> SigningPackage:
        reader = Reader(data, "SigningPackage")
        count = reader.count()
        if count == 0:
            raise MalformedMessage("SigningPackage: empty commitment list")
        commitments = tuple(SigningCommitments.read(reader) for _ in range(count))
        return cls(commitments, reader.rest())


def encode_group_commitment_list(commitments: Iterable[SigningCommitments]) -> bytes:
    return b"".join(commitment.encode() for commitment in commitments)


def binding_factor_inputs(
    group_public_key: Point, package: SigningPackage
) -> dict[Identifier, bytes]:
    """rho_input per participant: group key || H4(msg) || H5(commitment list) || identifier."""
    prefix = (
        group_public_key.encoding
        + h4(package.message)
        + h5(encode_group_commitment_list(package.commitments))
    )
    return {
        identifier: prefix + encode_identifier(identifier) for identifier in package.participants
    }


def compute_binding_factors(
    group_public_key: Point, package: SigningPackage
) -> dict[Identifier, Scalar]:
    return {
        identifier: h1(rho_input)
        for identifier, rho_input in binding_factor_inputs(group_public_key, package).items()
    }


def compute_group_commitment(
    package: SigningPackage, binding_factors: Mapping[Identifier, Scalar]
) -> Point:
    """R = sum of (hiding_i + binding_i * rho_i)."""
    total = IDENTITY
    for commitments in package.commitments:
        rho = binding_factors[commitments.identifier]
        total = total + commitments.hiding + commitments.binding * rho
    return total


def compute_challenge(group_commitment: Point, group_public_key: Point, message: bytes) -> Scalar:
    return h2(group_commitment.encoding + group_public_key.encoding + message)


@dataclass(frozen=True, slots=True)
class _RoundValues:
    """Everything round two derives from the signing package alone."""

    binding_factors: Mapping[Identifier, Scalar]
    group_commitment: Point
    challenge: Scalar


def _round_values(package: SigningPackage, group_public_key: Point) -> _RoundValues:
    binding_factors = compute_binding_factors(group_public_key, package)
    group_commitment = compute_group_commitment(package, binding_factors)
    if group_commitment.is_identity:
        raise IdentityGroupCommitment(
            "the group commitment is the identity element; start a new signing round"
        )
    challenge = compute_challenge(group_commitment, group_public_key, package.message)
    return _RoundValues(binding_factors, group_commitment, challenge)


# Round two --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignatureShare:
    """A signer's round-two output, sent to the coordinator."""

    identifier: Identifier
    share: Scalar

    def __post_init__(self) -> None:
        as_identifier(self.identifier)

    def encode(self) -> bytes:
        return encode_identifier(self.identifier) + self.share.encoding

    @classmethod
    def decode(cls, data: bytes) -> SignatureShare:
        reader = Reader(data, "SignatureShare")
        identifier = reader.identifier("identifier")
        share = reader.scalar("signature share")
        reader.finish()
        return cls(identifier, share)


def sign(
    key: KeyPackage,
    nonces: SigningNonces,
    package: SigningPackage,
    *,
    approve: MessageApproval,
) -> SignatureShare:
    """Round two: this signer's share of the signature over `package.message`.

    Checks first, in order: the nonces are unused and this signer's; the package carries this
    signer's own round-one commitments; it has at least `key.min_signers` participants; the
    message is the one the nonces were committed for (if any); `approve(message)` is True.
    Any failure raises and leaves the nonces unused, since nothing about them was revealed."""
    nonces._ensure_unused()
    if nonces.identifier != key.identifier:
        raise CommitmentMismatch(
            f"nonces of participant {nonces.identifier} cannot sign for participant "
            f"{key.identifier}"
        )
    if key.identifier not in package.participants:
        raise CommitmentMismatch(
            f"the signing package has no commitments from participant {key.identifier}"
        )
    if package.commitments_of(key.identifier) != nonces.commitments:
        raise CommitmentMismatch(
            f"the signing package carries other commitments for participant {key.identifier} "
            "than it made in round one"
        )
    if len(package.commitments) < key.min_signers:
        raise NotEnoughSigners(
            f"the signing package has {len(package.commitments)} participants but the "
            f"threshold is {key.min_signers}",
            have=len(package.commitments),
            need=key.min_signers,
        )
    if nonces.message is not None and nonces.message != package.message:
        raise MessageChanged(
            f"participant {key.identifier} committed for another message than the one it is "
            f"now asked to sign (sha256 {_digest(package.message)})"
        )
    if not approve(package.message):
        raise MessageRejected(
            f"participant {key.identifier} does not approve the message "
            f"(sha256 {_digest(package.message)})"
        )
    values = _round_values(package, key.group_public_key)
    lagrange = derive_interpolating_value(package.participants, key.identifier)
    hiding, binding = nonces._take()
    share = (
        hiding
        + binding * values.binding_factors[key.identifier]
        + lagrange * key.secret_share * values.challenge
    )
    return SignatureShare(key.identifier, share)


def _digest(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()[:16]


# Coordinator ------------------------------------------------------------------------------


def verify_signature_share(
    share: SignatureShare, package: SigningPackage, public: PublicKeyPackage
) -> bool:
    """RFC 9591 verify_signature_share: G * z_i == D_i + E_i * rho_i + PK_i * (c * lambda_i)."""
    return _share_valid(share, package, public, _round_values(package, public.group_public_key))


def _share_valid(
    share: SignatureShare,
    package: SigningPackage,
    public: PublicKeyPackage,
    values: _RoundValues,
) -> bool:
    commitments = package.commitments_of(share.identifier)
    verifying_share = public.verifying_share(share.identifier)
    lagrange = derive_interpolating_value(package.participants, share.identifier)
    expected = (
        commitments.hiding
        + commitments.binding * values.binding_factors[share.identifier]
        + verifying_share * (values.challenge * lagrange)
    )
    return base_mul(share.share) == expected


def _match_shares(
    package: SigningPackage, shares: Iterable[SignatureShare]
) -> dict[Identifier, SignatureShare]:
    by_identifier: dict[Identifier, SignatureShare] = {}
    for share in shares:
        if share.identifier in by_identifier:
            raise DuplicateIdentifier(
                f"two signature shares from participant {share.identifier}",
                culprits=(share.identifier,),
            )
        by_identifier[share.identifier] = share
    expected = set(package.participants)
    unexpected = sorted(set(by_identifier) - expected)
    if unexpected:
        raise UnexpectedSignatureShares(
            f"signature shares from participants not in the signing package: {unexpected}",
            culprits=unexpected,
        )
    missing = sorted(expected - set(by_identifier))
    if missing:
        raise MissingSignatureShares(
            f"no signature share from participants {missing}", culprits=missing
        )
    return by_identifier


def aggregate_shares(
    package: SigningPackage, shares: Iterable[SignatureShare], group_public_key: Point
) -> bytes:
    """RFC 9591 aggregate, unchecked: R || sum of z_i. It checks only that there is one share
    per committed participant; use `aggregate` unless you mean to skip the threshold and
    validity checks (tests do, to show that t-1 shares cannot make a valid signature)."""
    by_identifier = _match_shares(package, shares)
    values = _round_values(package, group_public_key)
    total = SCALAR_ZERO
    for share in by_identifier.values():
        total = total + share.share
    return values.group_commitment.encoding + total.encoding


def aggregate(
    package: SigningPackage, shares: Iterable[SignatureShare], public: PublicKeyPackage
) -> bytes:
    """The checked aggregation: the 64-byte Ed25519 signature of `package.message` under
    `public.group_public_key`, verified before it is returned.

    Refuses fewer than `public.min_signers` participants (`NotEnoughSigners`) and participants
    outside the group (`UnknownParticipant`). Shares are verified one by one only when the
    aggregate fails, which is cheap when everyone is honest; then `InvalidSignatureShare`
    names every signer whose share is wrong."""
    participants = package.participants
    if len(participants) < public.min_signers:
        raise NotEnoughSigners(
            f"{len(participants)} participants committed but the threshold is "
            f"{public.min_signers}: refusing to aggregate",
            have=len(participants),
            need=public.min_signers,
        )
    unknown = [i for i in participants if i not in public.verifying_shares]
    if unknown:
        raise UnknownParticipant(
            f"participants {unknown} are not members of this group", culprits=unknown
        )
    by_identifier = _match_shares(package, shares)
    signature = aggregate_shares(package, by_identifier.values(), public.group_public_key)
    if verify_ed25519(public.group_public_key.encoding, package.message, signature):
        return signature
    values = _round_values(package, public.group_public_key)
    culprits = [
        identifier
        for identifier, share in by_identifier.items()
        if not _share_valid(share, package, public, values)
    ]
    if culprits:
        raise InvalidSignatureShare(
            f"signature shares from participants {culprits} do not verify", culprits=culprits
        )
    raise InvalidGroupSignature(
        "every signature share verifies but the aggregate signature does not: the key "
        "packages do not match the group public key"
    )
