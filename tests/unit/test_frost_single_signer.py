"""A group of one (t = n = 1, the dev chain's wallet committee): the same DKG, key packages
and signing produce a plain Schnorr key and signature; 1 of n > 1 stays refused."""

from __future__ import annotations

import pytest

from chain.signature import verify
from tests.unit.frost_builders import dkg_params, identities, run_dkg, seeded, sign_with
from wallet.frost.dealer import trusted_dealer_keygen
from wallet.frost.dkg import run_in_process
from wallet.frost.errors import InvalidParameters, NotEnoughSigners
from wallet.frost.group import base_mul
from wallet.frost.keys import KeyPackage, PublicKeyPackage, valid_threshold
from wallet.frost.signing import SigningPackage, aggregate

MESSAGE = b"pay the operators of period 7"


@pytest.mark.parametrize(
    ("t", "n", "valid"),
    [(1, 1, True), (2, 2, True), (2, 3, True), (1, 2, False), (1, 3, False), (0, 1, False),
     (0, 0, False), (2, 1, False), (4, 3, False)],
)  # fmt: skip
def test_thresholds(t: int, n: int, valid: bool) -> None:
    assert valid_threshold(t, n) is valid


def test_a_dkg_of_one_gives_a_key_whose_signature_verifies() -> None:
    keys = identities(1, 11)
    params = dkg_params(keys, 1)
    outputs = run_in_process(params, keys, rng=seeded(11))
    (output,) = outputs.values()
    public = output.public_key_package
    assert (public.min_signers, public.max_signers) == (1, 1)
    # The single share is the group secret itself.
    assert base_mul(output.key_package.secret_share) == public.group_public_key
    assert PublicKeyPackage.decode(public.encode()) == public
    assert KeyPackage.decode(output.key_package.encode()) == output.key_package
    signature = sign_with(
        {output.key_package.identifier: output.key_package},
        public,
        [output.key_package.identifier],
        MESSAGE,
        seeded(12),
    )
    assert verify(public.group_public_key.encoding, MESSAGE, signature)
    assert not verify(public.group_public_key.encoding, MESSAGE + b"!", signature)


def test_a_dealt_group_of_one_signs_too() -> None:
    dealt = trusted_dealer_keygen(1, 1, rng=seeded(13))
    (identifier,) = dealt.key_packages
    signature = sign_with(
        dealt.key_packages, dealt.public_key_package, [identifier], MESSAGE, seeded(14)
    )
    assert verify(dealt.public_key_package.group_public_key.encoding, MESSAGE, signature)


def test_no_participant_is_still_refused() -> None:
    dealt = trusted_dealer_keygen(1, 1, rng=seeded(15))
    with pytest.raises(InvalidParameters):
        SigningPackage.create(MESSAGE, [])
    with pytest.raises((InvalidParameters, NotEnoughSigners)):
        aggregate(SigningPackage.create(MESSAGE, []), [], dealt.public_key_package)


@pytest.mark.parametrize(("t", "n"), [(1, 2), (1, 3), (0, 1)])
def test_one_of_several_is_refused_everywhere(t: int, n: int) -> None:
    with pytest.raises(InvalidParameters) as dealer:
        trusted_dealer_keygen(n, t)
    assert str(dealer.value) == f"threshold must satisfy 2 <= t <= n, got t={t}, n={n}"
    keys = identities(n, 3)
    with pytest.raises(InvalidParameters) as dkg:
        dkg_params(keys, t)
    assert str(dkg.value) == f"threshold must satisfy 2 <= t <= n, got t={t}, n={n}"


def test_a_dkg_of_one_with_a_bad_run_still_names_no_one() -> None:
    # A single member has nobody to send a share to or to complain about: the run ends with
    # its output and no failure.
    keys = identities(1, 21)
    run = run_dkg(dkg_params(keys, 1), keys, seeded(21))
    assert run.failures == {} and len(run.outputs) == 1
