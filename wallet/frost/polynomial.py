"""Shamir polynomials over the scalar field: evaluation (shares), Feldman commitments to the
coefficients (VSS) that let anyone check a share in public, and Lagrange coefficients."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wallet.frost.errors import (
    DuplicateIdentifier,
    InvalidParameters,
    MalformedMessage,
    UnknownParticipant,
)
from wallet.frost.group import IDENTITY, SCALAR_ONE, SCALAR_ZERO, Point, Scalar, base_mul
from wallet.frost.identifier import Identifier, identifier_scalar
from wallet.frost.wire import Reader, encode_count


def polynomial_evaluate(x: Scalar, coefficients: Sequence[Scalar]) -> Scalar:
    """f(x) for f = coefficients[0] + coefficients[1] x + ... (Horner's rule)."""
    value = SCALAR_ZERO
    for coefficient in reversed(coefficients):
        value = value * x + coefficient
    return value


def secret_share(identifier: Identifier, coefficients: Sequence[Scalar]) -> Scalar:
    """The Shamir share f(identifier) of the secret f(0) = coefficients[0]."""
    return polynomial_evaluate(identifier_scalar(identifier), coefficients)


@dataclass(frozen=True, slots=True)
class VssCommitment:
    """Feldman commitment to a polynomial: G * a_k for each coefficient a_k. Its first entry
    is the public key of the shared secret."""

    coefficients: tuple[Point, ...]

    def __post_init__(self) -> None:
        if not self.coefficients:
            raise InvalidParameters("a VSS commitment has at least one coefficient")

    @classmethod
    def commit(cls, coefficients: Sequence[Scalar]) -> VssCommitment:
        return cls(tuple(base_mul(coefficient) for coefficient in coefficients))

    @property
    def public_key(self) -> Point:
        return self.coefficients[0]

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1

    def evaluate(self, identifier: Identifier) -> Point:
        """G * f(identifier), computed from the commitments alone: the public counterpart of
        the share, i.e. a participant's verifying share."""
        x = identifier_scalar(identifier)
        value = IDENTITY
        for commitment in reversed(self.coefficients):
            value = value * x + commitment
        return value

    def verify_share(self, identifier: Identifier, share: Scalar) -> bool:
        """vss_verify: whether `share` is f(identifier) for the committed polynomial."""
        return base_mul(share) == self.evaluate(identifier)

    def __add__(self, other: VssCommitment) -> VssCommitment:
        """The commitment to the sum of the two polynomials (same degree)."""
        if len(other.coefficients) != len(self.coefficients):
            raise InvalidParameters("commitments of different degrees cannot be added")
        return VssCommitment(
            tuple(a + b for a, b in zip(self.coefficients, other.coefficients, strict=True))
        )

    def encode(self) -> bytes:
        return encode_count(len(self.coefficients)) + b"".join(
            point.encoding for point in self.coefficients
        )

    @classmethod
    def read(cls, reader: Reader) -> VssCommitment:
        count = reader.count()
        if count == 0:
            raise MalformedMessage("VssCommitment: no coefficient commitments")
        return cls(tuple(reader.point(f"coefficient commitment {k}") for k in range(count)))

    @classmethod
    def decode(cls, data: bytes) -> VssCommitment:
        reader = Reader(data, "VssCommitment")
        commitment = cls.read(reader)
        reader.finish()
        return commitment


def check_distinct(identifiers: Iterable[Identifier]) -> None:
    seen: set[Identifier] = set()
    for identifier in identifiers:
        if identifier in seen:
            raise DuplicateIdentifier(
                f"identifier {identifier} appears more than once", culprits=(identifier,)
            )
        seen.add(identifier)


def derive_interpolating_value(
    participants: Sequence[Identifier], identifier: Identifier
) -> Scalar:
    """The Lagrange coefficient of `identifier` for interpolating at 0 over `participants`:
    prod(x_j) / prod(x_j - x_i) over the others."""
    if identifier not in participants:
        raise UnknownParticipant(
            f"identifier {identifier} is not among the participants", culprits=(identifier,)
        )
    check_distinct(participants)
    x_i = identifier_scalar(identifier)
    numerator = SCALAR_ONE
    denominator = SCALAR_ONE
    for other in participants:
        if other == identifier:
            continue
        x_j = identifier_scalar(other)
        numerator = numerator * x_j
        denominator = denominator * (x_j - x_i)
    return numerator * denominator.invert()
