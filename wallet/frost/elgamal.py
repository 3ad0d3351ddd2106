"""Threshold ElGamal decryption on the FROST group: a member's partial decryption d_i = s_i * c1
of an ephemeral point c1, the Chaum-Pedersen proof that it used the same share as its public
verifying share Y_i = s_i * G, and the Lagrange combination of t of them into r * Y = s * c1.

The proof is the non-interactive Chaum-Pedersen DLEQ proof (Chaum and Pedersen, "Wallet
databases with observers", CRYPTO '92; made non-interactive by Fiat-Shamir) with SHA-512 over
a domain tag and every point involved, so a proof for one (member, c1) pair proves nothing for
another."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from wallet.frost.errors import FrostError, InvalidEncoding, UnknownParticipant
from wallet.frost.group import (
    BASE_POINT,
    POINT_LENGTH,
    SCALAR_LENGTH,
    Point,
    RandomSource,
    Scalar,
    base_mul,
    random_nonzero_scalar,
)
from wallet.frost.identifier import Identifier, decode_identifier, encode_identifier
from wallet.frost.keys import KeyPackage
from wallet.frost.polynomial import check_distinct, derive_interpolating_value

DLEQ_DOMAIN = b"statemesh/threshold-elgamal/dleq/v1"
PROOF_LENGTH = 2 * SCALAR_LENGTH
PARTIAL_LENGTH = SCALAR_LENGTH + POINT_LENGTH + PROOF_LENGTH


class BadPartialDecryption(FrostError):
    """A partial decryption whose proof does not hold for its member's verifying share: the
    member (in `culprits`) computed it with another secret than its share, or it was altered."""


@dataclass(frozen=True, slots=True)
class DleqProof:
    """Proof that log_G(public) == log_base(result) without revealing the logarithm."""

    challenge: Scalar
    response: Scalar

    def encode(self) -> bytes:
        return self.challenge.encoding + self.response.encoding

    @classmethod
    def decode(cls, data: bytes) -> DleqProof:
        if len(data) != PROOF_LENGTH:
            raise InvalidEncoding(f"a DLEQ proof is {PROOF_LENGTH} bytes, got {len(data)}")
        return cls(Scalar.decode(data[:SCALAR_LENGTH]), Scalar.decode(data[SCALAR_LENGTH:]))


def _challenge(
    public: Point, base: Point, result: Point, commit_g: Point, commit_base: Point
) -> Scalar:
    digest = hashlib.sha512(
        DLEQ_DOMAIN
        + BASE_POINT.encoding
        + public.encoding
        + base.encoding
        + result.encoding
        + commit_g.encoding
        + commit_base.encoding
    ).digest()
    return Scalar.reduce(digest)


def prove_dleq(secret: Scalar, base: Point, result: Point, rng: RandomSource) -> DleqProof:
    """A proof that `result` = secret * base and the prover's public key is secret * G."""
    nonce = random_nonzero_scalar(rng)
    challenge = _challenge(base_mul(secret), base, result, base_mul(nonce), base * nonce)
    return DleqProof(challenge, nonce + challenge * secret)


def dleq_holds(public: Point, base: Point, result: Point, proof: DleqProof) -> bool:
    """z*G - e*public and z*base - e*result rebuild the commitments the challenge hashed."""
    commit_g = base_mul(proof.response) - public * proof.challenge
    commit_base = base * proof.response - result * proof.challenge
    return _challenge(public, base, result, commit_g, commit_base) == proof.challenge


@dataclass(frozen=True, slots=True)
class PartialDecryption:
    """Member `identifier`'s share of the decryption of c1, with its proof."""

    identifier: Identifier
    share: Point
    """d_i = s_i * c1."""
    proof: DleqProof

    def encode(self) -> bytes:
        return encode_identifier(self.identifier) + self.share.encoding + self.proof.encode()

    @classmethod
    def decode(cls, data: bytes) -> PartialDecryption:
        """Raises `InvalidEncoding` for a wrong length, a bad identifier, a point outside the
        prime-order subgroup or a non-canonical scalar."""
        if len(data) != PARTIAL_LENGTH:
            raise InvalidEncoding(
                f"a partial decryption is {PARTIAL_LENGTH} bytes, got {len(data)}"
            )
        try:
            identifier = decode_identifier(data[:SCALAR_LENGTH])
        except FrostError as error:
            raise InvalidEncoding(f"partial decryption identifier: {error}") from None
        share = Point.decode(data[SCALAR_LENGTH : SCALAR_LENGTH + POINT_LENGTH])
        proof = DleqProof.decode(data[SCALAR_LENGTH + POINT_LENGTH :])
        return cls(identifier, share, proof)


def partial_decrypt(key_package: KeyPackage, c1: Point, rng: RandomSource) -> PartialDecryption:
    """This member's partial decryption of c1 (a point already validated by `Point.decode`)."""
    secret = key_package.secret_share
    share = c1 * secret
    return PartialDecryption(key_package.identifier, share, prove_dleq(secret, c1, share, rng))


def verify_partial(verifying_share: Point, c1: Point, partial: PartialDecryption) -> None:
    """Raises `BadPartialDecryption` naming the member unless the proof holds against the
    member's recorded verifying share."""
    if not dleq_holds(verifying_share, c1, partial.share, partial.proof):
        raise BadPartialDecryption(
            f"the partial decryption of member {partial.identifier} does not match its "
            "verifying share",
            culprits=(partial.identifier,),
        )


def combine(partials: Sequence[PartialDecryption]) -> Point:
    """s * c1 from t verified partial decryptions of distinct members: the sum of
    lambda_i * d_i, lambda_i the Lagrange coefficient at 0 over their identifiers. With fewer
    than t the result is a wrong point (and the envelope does not open): the caller counts."""
    if not partials:
        raise UnknownParticipant("no partial decryption to combine")
    identifiers = [p.identifier for p in partials]
    check_distinct(identifiers)
    terms = [p.share * derive_interpolating_value(identifiers, p.identifier) for p in partials]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
