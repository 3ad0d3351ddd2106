"""Key material produced by the dealer or the DKG: one participant's `KeyPackage` (its secret
share) and the group's `PublicKeyPackage` (group key, every verifying share, the threshold)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from wallet.frost.errors import DuplicateIdentifier, InvalidParameters, UnknownParticipant
from wallet.frost.group import Point, Scalar, base_mul
from wallet.frost.identifier import Identifier, as_identifier, encode_identifier
from wallet.frost.wire import Reader, encode_count

MIN_THRESHOLD = 2
"""RFC 9591's MIN_PARTICIPANTS: a group of several signers needs at least two to sign."""


def valid_threshold(min_signers: int, max_signers: int) -> bool:
    """2 <= t <= n, or the single signer t = n = 1. RFC 9591 asks t >= 2 of a group; a group of
    one is a plain Schnorr key held by one signer (its polynomial is the constant secret, its
    Lagrange coefficient 1), which the same key generation and signing produce unchanged."""
    return MIN_THRESHOLD <= min_signers <= max_signers or min_signers == max_signers == 1


def check_threshold(min_signers: int, max_signers: int) -> None:
    if not valid_threshold(min_signers, max_signers):
        raise InvalidParameters(
            f"threshold must satisfy {MIN_THRESHOLD} <= t <= n, got t={min_signers}, "
            f"n={max_signers}"
        )


@dataclass(frozen=True, slots=True)
class KeyPackage:
    """What one signer keeps between signings. `encode()` contains the secret share: store it
    only encrypted (the keystore's job)."""

    identifier: Identifier
    secret_share: Scalar = field(repr=False)
    """This participant's Shamir share of the group secret."""
    verifying_share: Point
    """G * secret_share, published so others can check this signer's signature shares."""
    group_public_key: Point
    min_signers: int
    """The threshold t: signing refuses fewer participants."""

    def __post_init__(self) -> None:
        as_identifier(self.identifier)
        if self.min_signers < 1:
            raise InvalidParameters("threshold must be at least 1")

    @classmethod
    def from_share(
        cls,
        identifier: Identifier,
        secret_share: Scalar,
        group_public_key: Point,
        min_signers: int,
    ) -> KeyPackage:
        return cls(identifier, secret_share, base_mul(secret_share), group_public_key, min_signers)

    def encode(self) -> bytes:
        return (
            encode_identifier(self.identifier)
            + self.secret_share.encoding
            + self.verifying_share.encoding
            + self.group_public_key.encoding
            + encode_count(self.min_signers)
        )

    @classmethod
    def decode(cls, data: bytes) -> KeyPackage:
        reader = Reader(data, "KeyPackage")
        identifier = reader.identifier("identifier")
        secret_share = reader.scalar("secret share")
        verifying_share = reader.point("verifying share")
        group_public_key = reader.point("group public key")
        min_signers = reader.count()
        reader.finish()
        if base_mul(secret_share) != verifying_share:
            raise InvalidParameters("KeyPackage: the verifying share does not match the secret")
        return cls(identifier, secret_share, verifying_share, group_public_key, min_signers)


@dataclass(frozen=True, slots=True)
class PublicKeyPackage:
    """The public side of a group: what a coordinator needs to check shares and signatures."""

    group_public_key: Point
    verifying_shares: Mapping[Identifier, Point] = field(hash=False)
    """G * share for every member, in ascending identifier order (read-only)."""
    min_signers: int

    def __post_init__(self) -> None:
        for identifier in self.verifying_shares:
            as_identifier(identifier)
        check_threshold(self.min_signers, len(self.verifying_shares))
        ordered = dict(sorted(self.verifying_shares.items()))
        object.__setattr__(self, "verifying_shares", MappingProxyType(ordered))

    @property
    def max_signers(self) -> int:
        return len(self.verifying_shares)

    def verifying_share(self, identifier: Identifier) -> Point:
        share = self.verifying_shares.get(identifier)
        if share is None:
            raise UnknownParticipant(
                f"identifier {identifier} is not a member of this group", culprits=(identifier,)
            )
        return share

    def encode(self) -> bytes:
        return (
            self.group_public_key.encoding
            + encode_count(self.min_signers)
            + encode_count(len(self.verifying_shares))
            + b"".join(
                encode_identifier(identifier) + share.encoding
                for identifier, share in self.verifying_shares.items()
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> PublicKeyPackage:
        reader = Reader(data, "PublicKeyPackage")
        group_public_key = reader.point("group public key")
        min_signers = reader.count()
        shares: dict[Identifier, Point] = {}
        for _ in range(reader.count()):
            identifier = reader.identifier("identifier")
            if identifier in shares:
                raise DuplicateIdentifier(
                    f"PublicKeyPackage: identifier {identifier} appears more than once",
                    culprits=(identifier,),
                )
            shares[identifier] = reader.point(f"verifying share of {identifier}")
        reader.finish()
        return cls(group_public_key, shares, min_signers)
