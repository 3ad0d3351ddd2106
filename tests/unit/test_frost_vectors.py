"""RFC 9591 appendix E.1, FROST(Ed25519, SHA-512): every intermediate value reproduced byte
for byte from the published inputs, and the final signature accepted by libsodium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.signature import verify
from wallet.frost.dealer import DealerOutput, split_secret
from wallet.frost.group import Point, Scalar, base_mul
from wallet.frost.identifier import Identifier, as_identifier
from wallet.frost.signing import (
    SignatureShare,
    SigningCommitments,
    SigningNonces,
    SigningPackage,
    aggregate,
    binding_factor_inputs,
    commit,
    compute_binding_factors,
    nonce_generate,
    sign,
    verify_signature_share,
)
from wallet.frost.suite import CONTEXT_STRING

# From cfrg/draft-irtf-cfrg-frost, poc/, commit 4e1c5db8 ("Finalize vectors"): the values
# of RFC 9591 appendix E.1.
VECTORS = Path(__file__).parent / "vectors" / "frost-ed25519-sha512.json"

V: dict[str, Any] = json.loads(VECTORS.read_text())
INPUTS = V["inputs"]
ROUND_ONE = {o["identifier"]: o for o in V["round_one_outputs"]["outputs"]}
ROUND_TWO = {o["identifier"]: o for o in V["round_two_outputs"]["outputs"]}
MESSAGE = bytes.fromhex(INPUTS["message"])
SIGNERS = [as_identifier(i) for i in INPUTS["participant_list"]]


def _scalar(hex_: str) -> Scalar:
    return Scalar.decode(bytes.fromhex(hex_))


def _fixed(*chunks: str) -> Any:
    queue: Iterator[bytes] = iter(bytes.fromhex(c) for c in chunks)
    return lambda length: next(queue)


@pytest.fixture(scope="module")
def dealt() -> DealerOutput:
    coefficients = [_scalar(INPUTS["group_secret_key"])] + [
        _scalar(c) for c in INPUTS["share_polynomial_coefficients"]
    ]
    return split_secret(coefficients, int(V["config"]["MAX_PARTICIPANTS"]))


@pytest.fixture(scope="module")
def round_one(
    dealt: DealerOutput,
) -> tuple[dict[Identifier, SigningNonces], dict[Identifier, SigningCommitments]]:
    nonces = {}
    commitments = {}
    for identifier in SIGNERS:
        o = ROUND_ONE[identifier]
        rng = _fixed(o["hiding_nonce_randomness"], o["binding_nonce_randomness"])
        nonces[identifier], commitments[identifier] = commit(
            dealt.key_packages[identifier], rng=rng
        )
    return nonces, commitments


def test_the_configuration_is_the_ed25519_suite() -> None:
    assert V["config"]["name"] == "FROST(Ed25519, SHA-512)"
    assert CONTEXT_STRING == b"FROST-ED25519-SHA512-v1"
    assert int(V["config"]["MIN_PARTICIPANTS"]) == 2


def test_group_public_key(dealt: DealerOutput) -> None:
    assert (
        base_mul(_scalar(INPUTS["group_secret_key"])).encoding.hex() == (INPUTS["group_public_key"])
    )
    assert dealt.public_key_package.group_public_key.encoding.hex() == INPUTS["group_public_key"]
    assert dealt.vss_commitment.public_key == dealt.public_key_package.group_public_key


@pytest.mark.parametrize("entry", INPUTS["participant_shares"], ids=lambda e: str(e["identifier"]))
def test_participant_shares_from_the_polynomial(dealt: DealerOutput, entry: dict[str, Any]) -> None:
    key = dealt.key_packages[entry["identifier"]]
    assert key.secret_share.encoding.hex() == entry["participant_share"]
    assert dealt.vss_commitment.verify_share(key.identifier, key.secret_share)
    assert dealt.public_key_package.verifying_share(key.identifier) == base_mul(key.secret_share)


@pytest.mark.parametrize("identifier", SIGNERS)
def test_nonces_from_the_randomness(dealt: DealerOutput, identifier: Identifier) -> None:
    o = ROUND_ONE[identifier]
    secret = dealt.key_packages[identifier].secret_share
    hiding = nonce_generate(secret, _fixed(o["hiding_nonce_randomness"]))
    binding = nonce_generate(secret, _fixed(o["binding_nonce_randomness"]))
    assert hiding.encoding.hex() == o["hiding_nonce"]
    assert binding.encoding.hex() == o["binding_nonce"]


@pytest.mark.parametrize("identifier", SIGNERS)
def test_commitments(
    round_one: tuple[dict[Identifier, SigningNonces], dict[Identifier, SigningCommitments]],
    identifier: Identifier,
) -> None:
    o = ROUND_ONE[identifier]
    commitments = round_one[1][identifier]
    assert commitments.hiding.encoding.hex() == o["hiding_nonce_commitment"]
    assert commitments.binding.encoding.hex() == o["binding_nonce_commitment"]
    assert SigningCommitments.decode(commitments.encode()) == commitments


def test_binding_factor_inputs_and_factors(
    dealt: DealerOutput,
    round_one: tuple[dict[Identifier, SigningNonces], dict[Identifier, SigningCommitments]],
) -> None:
    package = SigningPackage.create(MESSAGE, round_one[1].values())
    group_key = dealt.public_key_package.group_public_key
    inputs = binding_factor_inputs(group_key, package)
    factors = compute_binding_factors(group_key, package)
    assert {i: v.hex() for i, v in inputs.items()} == {
        i: ROUND_ONE[i]["binding_factor_input"] for i in SIGNERS
    }
    assert {i: v.encoding.hex() for i, v in factors.items()} == {
        i: ROUND_ONE[i]["binding_factor"] for i in SIGNERS
    }


def test_signature_shares_and_final_signature(
    dealt: DealerOutput,
    round_one: tuple[dict[Identifier, SigningNonces], dict[Identifier, SigningCommitments]],
) -> None:
    nonces, commitments = round_one
    package = SigningPackage.create(MESSAGE, commitments.values())
    shares = [
        sign(dealt.key_packages[i], nonces[i], package, approve=lambda m: m == MESSAGE)
        for i in SIGNERS
    ]
    assert {s.identifier: s.share.encoding.hex() for s in shares} == {
        i: ROUND_TWO[i]["sig_share"] for i in SIGNERS
    }
    for share in shares:
        assert verify_signature_share(share, package, dealt.public_key_package)
        assert SignatureShare.decode(share.encode()) == share

    signature = aggregate(package, shares, dealt.public_key_package)
    assert signature.hex() == V["final_output"]["sig"]
    assert verify(dealt.public_key_package.group_public_key.encoding, MESSAGE, signature)
    assert not verify(dealt.public_key_package.group_public_key.encoding, b"tesT", signature)


def test_the_signature_is_a_plain_ed25519_signature() -> None:
    # The published signature, the published group key and the published message, with no
    # FROST code involved: libsodium's ordinary Ed25519 verification accepts it.
    group_key = Point.decode(bytes.fromhex(INPUTS["group_public_key"]))
    assert verify(group_key.encoding, MESSAGE, bytes.fromhex(V["final_output"]["sig"]))
