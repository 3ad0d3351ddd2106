"""Trusted-dealer key generation (RFC 9591 appendix C): one party picks the secret, splits it
into Shamir shares with a VSS commitment, and hands them out. For tests and development; the
platform wallet uses the DKG, where no one ever holds the whole secret."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from wallet.frost.errors import InvalidParameters
from wallet.frost.group import RandomSource, Scalar, random_nonzero_scalar
from wallet.frost.identifier import Identifier, as_identifier
from wallet.frost.keys import KeyPackage, PublicKeyPackage, check_threshold
from wallet.frost.polynomial import VssCommitment, secret_share


@dataclass(frozen=True, slots=True)
class DealerOutput:
    key_packages: Mapping[Identifier, KeyPackage] = field(hash=False)
    """One per participant, identifiers 1..n; each goes to its participant only."""
    public_key_package: PublicKeyPackage
    vss_commitment: VssCommitment
    """Lets each participant check its share with `VssCommitment.verify_share`."""


def split_secret(coefficients: Sequence[Scalar], max_signers: int) -> DealerOutput:
    """Shares of coefficients[0] for identifiers 1..max_signers under the polynomial with
    these coefficients (RFC 9591 secret_share_shard); the threshold is len(coefficients)."""
    min_signers = len(coefficients)
    check_threshold(min_signers, max_signers)
    if coefficients[0].is_zero:
        raise InvalidParameters("the group secret must not be zero")
    commitment = VssCommitment.commit(coefficients)
    group_public_key = commitment.public_key
    key_packages: dict[Identifier, KeyPackage] = {}
    for number in range(1, max_signers + 1):
        identifier = as_identifier(number)
        key_packages[identifier] = KeyPackage.from_share(
            identifier, secret_share(identifier, coefficients), group_public_key, min_signers
        )
    public = PublicKeyPackage(
        group_public_key,
        {identifier: key.verifying_share for identifier, key in key_packages.items()},
        min_signers,
    )
    return DealerOutput(MappingProxyType(key_packages), public, commitment)


def trusted_dealer_keygen(
    max_signers: int,
    min_signers: int,
    *,
    secret: Scalar | None = None,
    rng: RandomSource = os.urandom,
) -> DealerOutput:
    """t-of-n key packages for a new random secret, or for `secret` when given."""
    check_threshold(min_signers, max_signers)
    group_secret = secret if secret is not None else random_nonzero_scalar(rng)
    coefficients = [group_secret] + [Scalar.random(rng) for _ in range(min_signers - 1)]
    return split_secret(coefficients, max_signers)
