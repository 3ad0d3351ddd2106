"""FROST signing: any t of n sign a signature libsodium accepts, fewer cannot, bad shares are
named, and every malformed or replayed input is refused with a typed error."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import random
from collections.abc import Mapping, Sequence
from hashlib import sha256

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chain.signature import verify
from tests.unit.frost_builders import approve_any, seeded, sign_with, start_round
from wallet.frost.dealer import DealerOutput, split_secret, trusted_dealer_keygen
from wallet.frost.errors import (
    CommitmentMismatch,
    DuplicateIdentifier,
    InvalidGroupSignature,
    InvalidIdentifier,
    InvalidParameters,
    InvalidPoint,
    InvalidScalar,
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
from wallet.frost.group import GROUP_ORDER, SCALAR_ONE, Point, RandomSource, Scalar, base_mul
from wallet.frost.identifier import Identifier, as_identifier
from wallet.frost.keys import KeyPackage, PublicKeyPackage
from wallet.frost.polynomial import derive_interpolating_value
from wallet.frost.signing import (
    SignatureShare,
    SigningCommitments,
    SigningPackage,
    aggregate,
    aggregate_shares,
    commit,
    compute_binding_factors,
    compute_challenge,
    compute_group_commitment,
    nonce_generate,
    sign,
    verify_signature_share,
)

MESSAGE = b"transfer 10 units from wallet 7 to node 3"
ONE, TWO, THREE, FOUR = (as_identifier(i) for i in (1, 2, 3, 4))


@st.composite
def groups(draw: st.DrawFn, min_t: int = 2) -> tuple[int, int, int]:
    """(t, n, seed) with min_t <= t <= n <= 7."""
    n = draw(st.integers(min_value=min_t, max_value=7))
    t = draw(st.integers(min_value=min_t, max_value=n))
    return t, n, draw(st.integers(min_value=0, max_value=2**32))


def _dealt(t: int, n: int, rng: RandomSource) -> DealerOutput:
    return trusted_dealer_keygen(n, t, rng=rng)


def _ids(*numbers: int) -> list[Identifier]:
    return [as_identifier(n) for n in numbers]


# Properties ---------------------------------------------------------------------------------


@given(groups(), st.integers(min_value=0))
@example((7, 7, 1), 1)
@example((2, 7, 2), 2)
@example((2, 2, 3), 3)
@settings(max_examples=20, deadline=None)
def test_any_t_of_n_sign_a_valid_ed25519_signature(
    group: tuple[int, int, int], choice: int
) -> None:
    t, n, seed = group
    rng = seeded(seed)
    dealt = _dealt(t, n, rng)
    members = list(dealt.public_key_package.verifying_shares)
    signers = random.Random(choice).sample(members, t)
    public = dealt.public_key_package
    signature = sign_with(dealt.key_packages, public, signers, MESSAGE, rng)
    assert verify(public.group_public_key.encoding, MESSAGE, signature)
    assert not verify(public.group_public_key.encoding, MESSAGE + b"!", signature)


@given(groups(), st.data())
@settings(max_examples=15, deadline=None)
def test_more_than_t_also_sign(group: tuple[int, int, int], data: st.DataObject) -> None:
    t, n, seed = group
    rng = seeded(seed)
    dealt = _dealt(t, n, rng)
    count = data.draw(st.integers(min_value=t, max_value=n))
    signers = list(dealt.public_key_package.verifying_shares)[:count]
    public = dealt.public_key_package
    assert verify(
        public.group_public_key.encoding,
        MESSAGE,
        sign_with(dealt.key_packages, public, signers, MESSAGE, rng),
    )


def _forced_signature(
    keys: Mapping[Identifier, KeyPackage],
    group_key: Point,
    signers: Sequence[Identifier],
    message: bytes,
    rng: RandomSource,
) -> bytes:
    """The RFC 9591 formulas applied by hand, with no threshold check anywhere."""
    nonces = {}
    commitments = []
    for i in signers:
        hiding = nonce_generate(keys[i].secret_share, rng)
        binding = nonce_generate(keys[i].secret_share, rng)
        nonces[i] = (hiding, binding)
        commitments.append(SigningCommitments(i, base_mul(hiding), base_mul(binding)))
    package = SigningPackage.create(message, commitments)
    rho = compute_binding_factors(group_key, package)
    challenge = compute_challenge(compute_group_commitment(package, rho), group_key, message)
    shares = [
        SignatureShare(
            i,
            nonces[i][0]
            + nonces[i][1] * rho[i]
            + derive_interpolating_value(package.participants, i)
            * keys[i].secret_share
            * challenge,
        )
        for i in signers
    ]
    return aggregate_shares(package, shares, group_key)


@given(groups(), st.integers(min_value=0))
@example((7, 7, 1), 1)
@example((2, 7, 2), 2)
@settings(max_examples=20, deadline=None)
def test_t_minus_1_signers_are_refused_and_cannot_sign(
    group: tuple[int, int, int], choice: int
) -> None:
    t, n, seed = group
    rng = seeded(seed)
    dealt = _dealt(t, n, rng)
    public = dealt.public_key_package
    keys = dealt.key_packages
    members = list(public.verifying_shares)
    few = sorted(random.Random(choice).sample(members, t - 1))

    # The API refuses, in round two and in aggregation.
    round_ = start_round(keys, few, MESSAGE, rng)
    with pytest.raises(NotEnoughSigners) as refused:
        sign(keys[few[0]], round_.nonces[few[0]], round_.package, approve=approve_any)
    assert str(refused.value) == (
        f"the signing package has {t - 1} participants but the threshold is {t}"
    )
    assert (refused.value.have, refused.value.need) == (t - 1, t)
    assert not round_.nonces[few[0]].used
    with pytest.raises(NotEnoughSigners) as not_aggregated:
        aggregate(round_.package, [], public)
    assert str(not_aggregated.value) == (
        f"{t - 1} participants committed but the threshold is {t}: refusing to aggregate"
    )

    # Forcing the math: the same formulas give a valid signature with t signers...
    enough = members[:t]
    control = _forced_signature(keys, public.group_public_key, enough, MESSAGE, rng)
    assert verify(public.group_public_key.encoding, MESSAGE, control)
    # ...and with t-1 a signature that libsodium rejects.
    forced = _forced_signature(keys, public.group_public_key, few, MESSAGE, rng)
    assert not verify(public.group_public_key.encoding, MESSAGE, forced)


@given(groups(), st.data())
@settings(max_examples=15, deadline=None)
def test_a_tampered_share_is_caught_and_its_signer_named(
    group: tuple[int, int, int], data: st.DataObject
) -> None:
    t, n, seed = group
    rng = seeded(seed)
    dealt = _dealt(t, n, rng)
    public = dealt.public_key_package
    signers = list(public.verifying_shares)[:t]
    culprit = data.draw(st.sampled_from(signers))
    delta = data.draw(st.integers(min_value=1, max_value=GROUP_ORDER - 1).map(Scalar.from_int))

    round_ = start_round(dealt.key_packages, signers, MESSAGE, rng)
    shares = [
        SignatureShare(s.identifier, s.share + delta) if s.identifier == culprit else s
        for s in round_.shares(dealt.key_packages)
    ]
    for share in shares:
        assert verify_signature_share(share, round_.package, public) == (
            share.identifier != culprit
        )
    with pytest.raises(InvalidSignatureShare) as info:
        aggregate(round_.package, shares, public)
    assert str(info.value) == f"signature shares from participants [{culprit}] do not verify"
    assert info.value.culprits == (culprit,)


# Fixed cases ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dealt() -> DealerOutput:
    return trusted_dealer_keygen(5, 3, rng=seeded(2024))


def test_every_bad_signer_is_named(dealt: DealerOutput) -> None:
    rng = seeded(1)
    round_ = start_round(dealt.key_packages, _ids(1, 2, 4, 5), MESSAGE, rng)
    shares = [
        SignatureShare(s.identifier, s.share + SCALAR_ONE) if s.identifier in (2, 5) else s
        for s in round_.shares(dealt.key_packages)
    ]
    with pytest.raises(InvalidSignatureShare) as info:
        aggregate(round_.package, shares, dealt.public_key_package)
    assert str(info.value) == "signature shares from participants [2, 5] do not verify"
    assert info.value.culprits == (2, 5)


def test_a_threshold_lie_is_caught_as_an_inconsistent_group(dealt: DealerOutput) -> None:
    # Key packages that claim t=2 for a 3-of-5 polynomial: every share is individually
    # consistent with its verifying share, yet two of them cannot make the signature.
    keys = {i: dataclasses.replace(k, min_signers=2) for i, k in dealt.key_packages.items()}
    public = dataclasses.replace(dealt.public_key_package, min_signers=2)
    round_ = start_round(keys, _ids(1, 3), MESSAGE, seeded(3))
    shares = round_.shares(keys)
    assert all(verify_signature_share(s, round_.package, public) for s in shares)
    assert not verify(
        public.group_public_key.encoding,
        MESSAGE,
        aggregate_shares(round_.package, shares, public.group_public_key),
    )
    with pytest.raises(InvalidGroupSignature) as info:
        aggregate(round_.package, shares, public)
    assert str(info.value) == (
        "every signature share verifies but the aggregate signature does not: the key "
        "packages do not match the group public key"
    )


def test_nonces_are_single_use(dealt: DealerOutput) -> None:
    keys = dealt.key_packages
    round_ = start_round(keys, _ids(1, 2, 3), MESSAGE, seeded(4))
    nonces = round_.nonces[ONE]
    assert repr(nonces) == "SigningNonces(identifier=1, unused)"
    sign(keys[ONE], nonces, round_.package, approve=approve_any)
    assert nonces.used
    assert repr(nonces) == "SigningNonces(identifier=1, used)"
    with pytest.raises(NonceReuse) as info:
        sign(keys[ONE], nonces, round_.package, approve=approve_any)
    assert str(info.value) == (
        "the signing nonces of participant 1 were already used; commit again for a new round"
    )
    # Not even for another message.
    other = SigningPackage.create(b"other", round_.package.commitments)
    with pytest.raises(NonceReuse):
        sign(keys[ONE], nonces, other, approve=approve_any)


def test_nonces_cannot_be_copied_or_persisted(dealt: DealerOutput) -> None:
    nonces, _ = commit(dealt.key_packages[ONE], rng=seeded(5))
    expected = "signing nonces cannot be copied or serialized: they must never leave memory"
    for export in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(NonceExport) as info:
            export(nonces)
        assert str(info.value) == expected
    assert not nonces.used


def test_secret_values_never_appear_in_repr(dealt: DealerOutput) -> None:
    key = dealt.key_packages[ONE]
    nonces, commitments = commit(key, rng=seeded(6))
    for text in (repr(key), repr(nonces), repr(commitments), repr(dealt)):
        assert key.secret_share.encoding.hex() not in text
        assert "secret_share" not in text


def test_a_rejected_request_leaves_the_nonces_usable(dealt: DealerOutput) -> None:
    keys = dealt.key_packages
    round_ = start_round(keys, _ids(1, 2, 3), MESSAGE, seeded(7))
    one = as_identifier(1)
    with pytest.raises(MessageRejected):
        sign(keys[one], round_.nonces[one], round_.package, approve=lambda m: False)
    assert not round_.nonces[one].used
    share = sign(keys[one], round_.nonces[one], round_.package, approve=approve_any)
    assert verify_signature_share(share, round_.package, dealt.public_key_package)


def test_each_signer_checks_the_message_itself(dealt: DealerOutput) -> None:
    keys = dealt.key_packages
    round_ = start_round(keys, _ids(1, 2, 3), MESSAGE, seeded(8))
    seen: list[bytes] = []

    def approve(message: bytes) -> bool:
        seen.append(message)
        return message == b"the payout I saw finalized"

    with pytest.raises(MessageRejected) as info:
        sign(keys[ONE], round_.nonces[ONE], round_.package, approve=approve)
    assert str(info.value) == (
        f"participant 1 does not approve the message (sha256 {sha256(MESSAGE).hexdigest()[:16]})"
    )
    assert seen == [MESSAGE]


def test_a_message_changed_between_rounds_is_refused(dealt: DealerOutput) -> None:
    keys = dealt.key_packages
    rng = seeded(9)
    nonces = {}
    commitments = []
    for i in _ids(1, 2, 3):
        nonces[i], c = commit(keys[i], rng=rng, message=MESSAGE)
        commitments.append(c)
    changed = SigningPackage.create(b"transfer everything to the coordinator", commitments)
    with pytest.raises(MessageChanged) as info:
        sign(keys[TWO], nonces[TWO], changed, approve=approve_any)
    assert str(info.value).startswith(
        "participant 2 committed for another message than the one it is now asked to sign"
    )
    honest = SigningPackage.create(MESSAGE, commitments)
    shares = [sign(keys[i], nonces[i], honest, approve=approve_any) for i in _ids(1, 2, 3)]
    public = dealt.public_key_package
    assert verify(public.group_public_key.encoding, MESSAGE, aggregate(honest, shares, public))


def test_signer_refuses_packages_without_its_own_commitments(dealt: DealerOutput) -> None:
    keys = dealt.key_packages
    rng = seeded(10)
    round_ = start_round(keys, _ids(1, 2, 3), MESSAGE, rng)
    one = as_identifier(1)
    without_me = start_round(keys, _ids(2, 3, 4), MESSAGE, rng).package
    with pytest.raises(CommitmentMismatch) as missing:
        sign(keys[one], round_.nonces[one], without_me, approve=approve_any)
    assert str(missing.value) == "the signing package has no commitments from participant 1"

    fresh, forged_commitments = commit(keys[one], rng=rng)
    swapped = SigningPackage.create(MESSAGE, [forged_commitments, *round_.package.commitments[1:]])
    with pytest.raises(CommitmentMismatch) as swapped_info:
        sign(keys[one], round_.nonces[one], swapped, approve=approve_any)
    assert str(swapped_info.value) == (
        "the signing package carries other commitments for participant 1 than it made in round one"
    )
    with pytest.raises(CommitmentMismatch) as foreign:
        sign(keys[TWO], round_.nonces[one], round_.package, approve=approve_any)
    assert str(foreign.value) == "nonces of participant 1 cannot sign for participant 2"
    assert not round_.nonces[one].used and not fresh.used


def test_commitment_lists_must_be_sorted_and_distinct(dealt: DealerOutput) -> None:
    round_ = start_round(dealt.key_packages, _ids(1, 2, 3), MESSAGE, seeded(11))
    c1, c2, c3 = round_.package.commitments
    with pytest.raises(UnsortedCommitments) as unsorted:
        SigningPackage((c2, c1, c3), MESSAGE)
    assert str(unsorted.value) == "the commitment list is not sorted by identifier (1 after 2)"
    with pytest.raises(DuplicateIdentifier) as duplicate:
        SigningPackage((c1, c2, c2), MESSAGE)
    assert str(duplicate.value) == "participant 2 appears twice in the commitment list"
    assert duplicate.value.culprits == (2,)
    with pytest.raises(DuplicateIdentifier):
        SigningPackage.create(MESSAGE, [c3, c1, c3])
    assert SigningPackage.create(MESSAGE, [c3, c1, c2]) == round_.package
    # The same rules hold for what arrives on the wire.
    unsorted_bytes = b"\x00\x03" + c2.encode() + c1.encode() + c3.encode() + MESSAGE
    with pytest.raises(UnsortedCommitments):
        SigningPackage.decode(unsorted_bytes)
    with pytest.raises(InvalidParameters) as empty:
        SigningPackage((), MESSAGE)
    assert str(empty.value) == "a signing package needs at least one commitment"


def test_aggregation_needs_exactly_the_committed_shares(dealt: DealerOutput) -> None:
    public = dealt.public_key_package
    round_ = start_round(dealt.key_packages, _ids(1, 2, 3), MESSAGE, seeded(12))
    s1, s2, s3 = round_.shares(dealt.key_packages)
    with pytest.raises(MissingSignatureShares) as missing:
        aggregate(round_.package, [s1, s3], public)
    assert str(missing.value) == "no signature share from participants [2]"
    assert missing.value.culprits == (2,)
    stranger = SignatureShare(as_identifier(4), s1.share)
    with pytest.raises(UnexpectedSignatureShares) as unexpected:
        aggregate(round_.package, [s1, s2, s3, stranger], public)
    assert str(unexpected.value) == (
        "signature shares from participants not in the signing package: [4]"
    )
    with pytest.raises(DuplicateIdentifier) as duplicate:
        aggregate(round_.package, [s1, s2, s2, s3], public)
    assert str(duplicate.value) == "two signature shares from participant 2"
    assert verify(
        public.group_public_key.encoding, MESSAGE, aggregate(round_.package, [s3, s1, s2], public)
    )


def test_aggregation_refuses_participants_outside_the_group(dealt: DealerOutput) -> None:
    other = trusted_dealer_keygen(9, 3, rng=seeded(13))
    round_ = start_round(other.key_packages, _ids(1, 6, 9), MESSAGE, seeded(14))
    with pytest.raises(UnknownParticipant) as info:
        aggregate(round_.package, round_.shares(other.key_packages), dealt.public_key_package)
    assert str(info.value) == "participants [6, 9] are not members of this group"
    assert info.value.culprits == (6, 9)


# Wire formats -----------------------------------------------------------------------------

IDENTITY = b"\x01" + bytes(31)
SMALL_ORDER = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
NON_CANONICAL = bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")


@pytest.mark.parametrize(
    ("hiding", "message"),
    [
        (IDENTITY, "SigningCommitments: hiding commitment: the identity element is not allowed"),
        (SMALL_ORDER, "SigningCommitments: hiding commitment: a small-order point"),
        (
            NON_CANONICAL,
            "SigningCommitments: hiding commitment: non-canonical point encoding (y is not "
            "below 2^255 - 19)",
        ),
    ],
    ids=["identity", "small-order", "non-canonical"],
)
def test_malformed_commitments_are_refused(
    dealt: DealerOutput, hiding: bytes, message: str
) -> None:
    _, good = commit(dealt.key_packages[ONE], rng=seeded(15))
    encoded = good.encode()
    with pytest.raises(InvalidPoint) as info:
        SigningCommitments.decode(encoded[:32] + hiding + encoded[64:])
    assert str(info.value) == message


def test_commitment_and_share_encodings_are_strict(dealt: DealerOutput) -> None:
    _, good = commit(dealt.key_packages[ONE], rng=seeded(16))
    encoded = good.encode()
    assert len(encoded) == 96 and SigningCommitments.decode(encoded) == good
    with pytest.raises(MalformedMessage) as short:
        SigningCommitments.decode(encoded[:-1])
    assert str(short.value) == ("SigningCommitments: truncated, 32 bytes needed at offset 64 of 95")
    with pytest.raises(MalformedMessage) as long:
        SigningCommitments.decode(encoded + b"\x00")
    assert str(long.value) == "SigningCommitments: 1 trailing bytes"

    share = SignatureShare(as_identifier(1), Scalar.from_int(5))
    with pytest.raises(InvalidScalar) as too_big:
        SignatureShare.decode(share.encode()[:32] + GROUP_ORDER.to_bytes(32, "little"))
    assert str(too_big.value) == (
        "SignatureShare: signature share: scalar is not below the group order L"
    )
    with pytest.raises(InvalidIdentifier) as zero_id:
        SignatureShare.decode(bytes(32) + share.encode()[32:])
    assert str(zero_id.value) == (
        "SignatureShare: identifier: identifier 0 is not allowed (identifiers are 1..L-1)"
    )


def test_packages_round_trip(dealt: DealerOutput) -> None:
    round_ = start_round(dealt.key_packages, _ids(2, 4, 5), MESSAGE, seeded(17))
    assert SigningPackage.decode(round_.package.encode()) == round_.package
    public = dealt.public_key_package
    assert PublicKeyPackage.decode(public.encode()) == public
    key = dealt.key_packages[FOUR]
    assert KeyPackage.decode(key.encode()) == key
    wrong = key.encode()[:64] + base_mul(Scalar.from_int(9)).encoding + key.encode()[96:]
    with pytest.raises(InvalidParameters) as info:
        KeyPackage.decode(wrong)
    assert str(info.value) == "KeyPackage: the verifying share does not match the secret"


def test_dealer_refuses_bad_thresholds() -> None:
    for t, n in ((1, 3), (4, 3), (0, 0)):
        with pytest.raises(InvalidParameters) as info:
            trusted_dealer_keygen(n, t)
        assert str(info.value) == f"threshold must satisfy 2 <= t <= n, got t={t}, n={n}"
    with pytest.raises(InvalidParameters) as zero:
        split_secret([Scalar.from_int(0), Scalar.from_int(1)], 3)
    assert str(zero.value) == "the group secret must not be zero"


def test_dealer_with_a_given_secret() -> None:
    secret = Scalar.from_int(42)
    dealt = trusted_dealer_keygen(3, 2, secret=secret, rng=seeded(18))
    assert dealt.public_key_package.group_public_key == base_mul(secret)
    signature = sign_with(
        dealt.key_packages, dealt.public_key_package, _ids(2, 3), MESSAGE, seeded(19)
    )
    assert verify(base_mul(secret).encoding, MESSAGE, signature)
