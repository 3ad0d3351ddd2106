"""The FROST group layer: which points and scalars are accepted from other parties, identifiers,
the ciphersuite hashes, polynomials and their commitments, and the strict message reader."""

from __future__ import annotations

import hashlib

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet.frost.errors import (
    DuplicateIdentifier,
    InvalidIdentifier,
    InvalidPoint,
    InvalidScalar,
    MalformedMessage,
    UnknownParticipant,
)
from wallet.frost.group import (
    BASE_POINT,
    GROUP_ORDER,
    IDENTITY,
    SCALAR_ONE,
    SCALAR_ZERO,
    Point,
    Scalar,
    base_mul,
)
from wallet.frost.identifier import as_identifier, decode_identifier, encode_identifier
from wallet.frost.polynomial import (
    VssCommitment,
    derive_interpolating_value,
    polynomial_evaluate,
    secret_share,
)
from wallet.frost.suite import CONTEXT_STRING, h1, h2, h3, h4, h5, hash_to_scalar
from wallet.frost.wire import Reader

ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
ORDER_2 = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
ORDER_4 = bytes(32)
IDENTITY_BYTES = b"\x01" + bytes(31)
# y = p + 1, the non-canonical twin of the identity's y coordinate.
NON_CANONICAL = bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
OFF_CURVE = b"\x02" + bytes(31)

scalars = st.integers(min_value=0, max_value=GROUP_ORDER - 1).map(Scalar.from_int)
nonzero = st.integers(min_value=1, max_value=GROUP_ORDER - 1).map(Scalar.from_int)


# Points -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        (b"", "a point is 32 bytes, got 0"),
        (bytes(31), "a point is 32 bytes, got 31"),
        (bytes(33), "a point is 32 bytes, got 33"),
        (NON_CANONICAL, "non-canonical point encoding (y is not below 2^255 - 19)"),
        (IDENTITY_BYTES, "the identity element is not allowed"),
        (IDENTITY_BYTES[:31] + b"\x80", "the identity element is not allowed"),
        (OFF_CURVE, "not a point on the curve"),
        (ORDER_2, "a small-order point"),
        (ORDER_4, "a small-order point"),
        (ORDER_8, "a small-order point"),
        (
            nacl.bindings.crypto_core_ed25519_add(BASE_POINT.encoding, ORDER_8),
            "not in the prime-order subgroup (it has a small-order component)",
        ),
    ],
    ids=[
        "empty",
        "short",
        "long",
        "non-canonical",
        "identity",
        "identity-sign-bit",
        "off-curve",
        "order-2",
        "order-4",
        "order-8",
        "mixed-order",
    ],
)
def test_received_points_are_validated(encoding: bytes, message: str) -> None:
    with pytest.raises(InvalidPoint) as info:
        Point.decode(encoding)
    assert str(info.value) == message
    assert info.value.culprits == ()


@given(nonzero)
@settings(max_examples=25)
def test_points_of_the_subgroup_round_trip(scalar: Scalar) -> None:
    point = base_mul(scalar)
    assert Point.decode(point.encoding) == point
    assert Point.decode(point.encoding).encoding == point.encoding


@given(scalars, scalars)
@settings(max_examples=25)
def test_point_arithmetic_agrees_with_scalar_arithmetic(a: Scalar, b: Scalar) -> None:
    assert base_mul(a) + base_mul(b) == base_mul(a + b)
    assert base_mul(a) - base_mul(b) == base_mul(a - b)
    assert BASE_POINT * a * b == base_mul(a * b)


def test_identity_is_handled_internally() -> None:
    assert base_mul(SCALAR_ZERO) == IDENTITY
    assert BASE_POINT * SCALAR_ZERO == IDENTITY
    assert IDENTITY * SCALAR_ONE == IDENTITY
    assert BASE_POINT - BASE_POINT == IDENTITY
    assert IDENTITY + BASE_POINT == BASE_POINT
    assert IDENTITY.is_identity and not BASE_POINT.is_identity


def test_base_point_is_the_ed25519_base_point() -> None:
    assert BASE_POINT.encoding.hex() == "58" + "66" * 31
    assert repr(BASE_POINT) == "Point(" + "58" + "66" * 31 + ")"


# Scalars ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        (bytes(31), "a scalar is 32 bytes, got 31"),
        (bytes(33), "a scalar is 32 bytes, got 33"),
        (GROUP_ORDER.to_bytes(32, "little"), "scalar is not below the group order L"),
        ((GROUP_ORDER + 1).to_bytes(32, "little"), "scalar is not below the group order L"),
        (b"\xff" * 32, "scalar is not below the group order L"),
    ],
    ids=["short", "long", "L", "L+1", "all-ones"],
)
def test_received_scalars_are_validated(encoding: bytes, message: str) -> None:
    with pytest.raises(InvalidScalar) as info:
        Scalar.decode(encoding)
    assert str(info.value) == message


def test_largest_scalar_is_accepted() -> None:
    top = Scalar.decode((GROUP_ORDER - 1).to_bytes(32, "little"))
    assert top + SCALAR_ONE == SCALAR_ZERO
    assert -SCALAR_ONE == top


@given(nonzero)
@settings(max_examples=25)
def test_inverse(scalar: Scalar) -> None:
    assert scalar * scalar.invert() == SCALAR_ONE


def test_zero_has_no_inverse() -> None:
    with pytest.raises(InvalidScalar) as info:
        SCALAR_ZERO.invert()
    assert str(info.value) == "zero has no inverse"


def test_scalar_repr_hides_the_value() -> None:
    secret = Scalar.from_int(123456789)
    assert repr(secret) == "Scalar()"
    assert "123456789" not in repr(secret) and secret.encoding.hex() not in repr(secret)


# Identifiers ------------------------------------------------------------------------------


def test_identifier_zero_is_refused() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        as_identifier(0)
    assert str(info.value) == "identifier 0 is not allowed (identifiers are 1..L-1)"
    with pytest.raises(InvalidIdentifier) as info:
        decode_identifier(bytes(32))
    assert str(info.value) == "identifier 0 is not allowed (identifiers are 1..L-1)"


@pytest.mark.parametrize("value", [-1, GROUP_ORDER, GROUP_ORDER + 5])
def test_identifiers_outside_the_field_are_refused(value: int) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        as_identifier(value)
    assert str(info.value) == "identifier is outside 1..L-1"


def test_identifier_must_be_an_integer() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        as_identifier(True)
    assert str(info.value) == "an identifier is an integer, got bool"


def test_identifier_encoding_is_a_little_endian_scalar() -> None:
    assert encode_identifier(as_identifier(1)) == b"\x01" + bytes(31)
    assert decode_identifier(encode_identifier(as_identifier(258))) == 258


# Ciphersuite ------------------------------------------------------------------------------


def test_hashes_follow_rfc_9591_section_6_1() -> None:
    m = b"abc"

    def reduced(data: bytes) -> Scalar:
        return Scalar.from_int(
            int.from_bytes(hashlib.sha512(data).digest(), "little") % GROUP_ORDER
        )

    assert h1(m) == reduced(CONTEXT_STRING + b"rho" + m)
    assert h2(m) == reduced(m)
    assert h3(m) == reduced(CONTEXT_STRING + b"nonce" + m)
    assert h4(m) == hashlib.sha512(CONTEXT_STRING + b"msg" + m).digest()
    assert h5(m) == hashlib.sha512(CONTEXT_STRING + b"com" + m).digest()
    assert hash_to_scalar(b"a", b"bc") == reduced(b"abc")


# Polynomials ------------------------------------------------------------------------------


@given(st.lists(scalars, min_size=1, max_size=6), scalars)
@settings(max_examples=25)
def test_polynomial_evaluation(coefficients: list[Scalar], x: Scalar) -> None:
    expected = sum(c.to_int() * pow(x.to_int(), k, GROUP_ORDER) for k, c in enumerate(coefficients))
    assert polynomial_evaluate(x, coefficients).to_int() == expected % GROUP_ORDER


@given(st.lists(nonzero, min_size=2, max_size=5), st.data())
@settings(max_examples=15, deadline=None)
def test_any_t_shares_interpolate_the_secret(
    coefficients: list[Scalar], data: st.DataObject
) -> None:
    t = len(coefficients)
    ids = data.draw(
        st.lists(st.integers(1, 12), min_size=t, max_size=t, unique=True).map(
            lambda xs: [as_identifier(x) for x in xs]
        )
    )
    total = SCALAR_ZERO
    for i in ids:
        total = total + derive_interpolating_value(ids, i) * secret_share(i, coefficients)
    assert total == coefficients[0]
    commitment = VssCommitment.commit(coefficients)
    assert commitment.verify_share(ids[0], secret_share(ids[0], coefficients))
    assert not commitment.verify_share(ids[0], secret_share(ids[0], coefficients) + SCALAR_ONE)
    assert VssCommitment.decode(commitment.encode()) == commitment


def test_interpolation_refuses_duplicates_and_strangers() -> None:
    one, two, three = as_identifier(1), as_identifier(2), as_identifier(3)
    with pytest.raises(DuplicateIdentifier) as duplicate:
        derive_interpolating_value([one, two, two], one)
    assert str(duplicate.value) == "identifier 2 appears more than once"
    assert duplicate.value.culprits == (2,)
    with pytest.raises(UnknownParticipant) as unknown:
        derive_interpolating_value([one, two], three)
    assert str(unknown.value) == "identifier 3 is not among the participants"


def test_vss_commitment_decoding_is_strict() -> None:
    commitment = VssCommitment.commit([Scalar.from_int(5), Scalar.from_int(7)])
    encoded = commitment.encode()
    with pytest.raises(MalformedMessage) as trailing:
        VssCommitment.decode(encoded + b"\x00")
    assert str(trailing.value) == "VssCommitment: 1 trailing bytes"
    with pytest.raises(MalformedMessage) as truncated:
        VssCommitment.decode(encoded[:-1])
    assert str(truncated.value) == "VssCommitment: truncated, 32 bytes needed at offset 34 of 65"
    with pytest.raises(MalformedMessage) as empty:
        VssCommitment.decode(b"\x00\x00")
    assert str(empty.value) == "VssCommitment: no coefficient commitments"
    with pytest.raises(InvalidPoint) as identity:
        VssCommitment.decode(b"\x00\x01" + IDENTITY_BYTES)
    assert str(identity.value) == (
        "VssCommitment: coefficient commitment 0: the identity element is not allowed"
    )


def test_reader_names_the_field_of_a_bad_scalar() -> None:
    with pytest.raises(InvalidScalar) as info:
        Reader(b"\xff" * 32, "Thing").scalar("share")
    assert str(info.value) == "Thing: share: scalar is not below the group order L"
    with pytest.raises(InvalidIdentifier) as zero:
        Reader(bytes(32), "Thing").identifier("sender")
    assert str(zero.value) == "Thing: sender: identifier 0 is not allowed (identifiers are 1..L-1)"
