"""Secret envelopes and threshold ElGamal: any t members open a secret, t-1 cannot; a tampered
partial decryption or proof fails and names its member; a wrong binding does not open; every
malformed envelope field meets its typed error."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import codec
from tests.unit.frost_builders import seeded
from wallet.frost.dealer import trusted_dealer_keygen
from wallet.frost.elgamal import (
    BadPartialDecryption,
    DleqProof,
    PartialDecryption,
    partial_decrypt,
    verify_partial,
)
from wallet.frost.errors import InvalidEncoding
from wallet.frost.group import BASE_POINT, IDENTITY, Scalar, base_mul
from wallet.vault import (
    BadEnvelope,
    EnvelopeDoesNotOpen,
    decode_envelope,
    open_envelope,
    seal,
)

OWNER = bytes(range(32))
DATA = {"password": b"hunter2-not-really", "id_ed25519": b"\x00\x01binary\xff"}


@st.composite
def groups(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(min_value=2, max_value=6))
    t = draw(st.integers(min_value=2, max_value=n))
    return t, n, draw(st.integers(min_value=0, max_value=2**32))


def _sealed(t: int, n: int, seed: int, data: dict[str, bytes] = DATA):  # type: ignore[no-untyped-def]
    rng = seeded(seed)
    dealt = trusted_dealer_keygen(n, t, rng=rng)
    raw = seal(dealt.public_key_package.group_public_key.encoding, OWNER, "db", 3, data, rng)
    return dealt, decode_envelope(raw), rng


@settings(max_examples=25, deadline=None)
@given(groups(), st.data())
def test_any_t_members_open_and_t_minus_1_do_not(
    group: tuple[int, int, int], data: st.DataObject
) -> None:
    t, n, seed = group
    dealt, envelope, rng = _sealed(t, n, seed)
    chosen = data.draw(st.lists(st.integers(1, n), min_size=t, max_size=t, unique=True))
    partials = []
    for i in chosen:
        partial = partial_decrypt(dealt.key_packages[i], envelope.c1, rng)  # type: ignore[index]
        verify_partial(dealt.public_key_package.verifying_share(i), envelope.c1, partial)  # type: ignore[arg-type]
        partials.append(partial)
    assert open_envelope(envelope, partials, OWNER, "db", 3) == DATA
    with pytest.raises(EnvelopeDoesNotOpen):
        open_envelope(envelope, partials[:-1], OWNER, "db", 3)


@settings(max_examples=20, deadline=None)
@given(groups(), st.integers(min_value=0, max_value=2))
def test_a_tampered_partial_fails_its_proof_and_names_its_member(
    group: tuple[int, int, int], what: int
) -> None:
    t, n, seed = group
    dealt, envelope, rng = _sealed(t, n, seed)
    member = dealt.key_packages[1]  # type: ignore[index]
    honest = partial_decrypt(member, envelope.c1, rng)
    if what == 0:  # another point, with the honest proof
        tampered = PartialDecryption(honest.identifier, honest.share + BASE_POINT, honest.proof)
    elif what == 1:  # the honest point, an altered response
        proof = DleqProof(honest.proof.challenge, honest.proof.response + Scalar.from_int(1))
        tampered = PartialDecryption(honest.identifier, honest.share, proof)
    else:  # a consistent proof made with another secret
        other = dealt.key_packages[2]  # type: ignore[index]
        forged = partial_decrypt(other, envelope.c1, rng)
        tampered = PartialDecryption(honest.identifier, forged.share, forged.proof)
    with pytest.raises(BadPartialDecryption) as caught:
        verify_partial(member.verifying_share, envelope.c1, tampered)
    assert caught.value.culprits == (1,)


def test_a_proof_for_another_ciphertext_does_not_hold() -> None:
    dealt, envelope, rng = _sealed(2, 3, 5)
    member = dealt.key_packages[2]  # type: ignore[index]
    other_c1 = base_mul(Scalar.from_int(12345))
    partial = partial_decrypt(member, other_c1, rng)
    with pytest.raises(BadPartialDecryption):
        verify_partial(member.verifying_share, envelope.c1, partial)


@pytest.mark.parametrize(
    ("owner", "name", "version"),
    [(bytes(32), "db", 3), (OWNER, "db2", 3), (OWNER, "db", 4)],
)
def test_another_binding_does_not_open(owner: bytes, name: str, version: int) -> None:
    dealt, envelope, rng = _sealed(2, 3, 9)
    partials = [partial_decrypt(dealt.key_packages[i], envelope.c1, rng) for i in (1, 3)]  # type: ignore[index]
    with pytest.raises(EnvelopeDoesNotOpen) as caught:
        open_envelope(envelope, partials, owner, name, version)
    assert "hunter2" not in str(caught.value)


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=200), max_size=6),
    st.integers(0, 2**32),
)
def test_any_map_round_trips(data: dict[str, bytes], seed: int) -> None:
    dealt, envelope, rng = _sealed(2, 2, seed, data)
    partials = [partial_decrypt(dealt.key_packages[i], envelope.c1, rng) for i in (1, 2)]  # type: ignore[index]
    assert open_envelope(envelope, partials, OWNER, "db", 3) == data


def test_the_envelope_format_is_the_documented_one() -> None:
    dealt, envelope, _ = _sealed(2, 3, 1)
    raw = envelope.encode()
    item = codec.decode(raw)
    assert isinstance(item, list)
    assert item[0] == b"\x01"
    assert item[1] == dealt.public_key_package.group_public_key.encoding
    assert [len(x) for x in item[1:4]] == [32, 32, 12]  # type: ignore[arg-type]
    assert decode_envelope(raw) == envelope


def _replace(raw: bytes, index: int, value: bytes) -> bytes:
    item = codec.decode(raw)
    assert isinstance(item, list)
    item[index] = value
    return codec.encode(item)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: b"\x00" + raw, "RLP"),
        (lambda raw: codec.encode([b"\x01", b"x"]), "an envelope is [version"),
        (lambda raw: _replace(raw, 0, b"\x02"), "unknown envelope version 0x02"),
        (lambda raw: _replace(raw, 1, b"\x00" * 31), "the vault key is 32 bytes, got 31"),
        (lambda raw: _replace(raw, 2, IDENTITY.encoding), "the c1: the identity"),
        (lambda raw: _replace(raw, 2, b"\xff" * 32), "the c1: non-canonical"),
        (lambda raw: _replace(raw, 3, b"\x00" * 11), "the nonce is 12 bytes, got 11"),
        (lambda raw: _replace(raw, 4, b"\x00" * 15), "shorter than its tag"),
        (lambda raw: _replace(raw, 4, [b"x"]), "byte strings"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_envelope_is_refused_by_field(mutate, message) -> None:  # type: ignore[no-untyped-def]
    _, envelope, _ = _sealed(2, 3, 2)
    with pytest.raises(BadEnvelope) as caught:
        decode_envelope(mutate(envelope.encode()))
    assert message in str(caught.value)


def test_seal_refuses_a_vault_key_that_is_not_a_group_point() -> None:
    with pytest.raises(BadEnvelope, match="the vault key"):
        seal(IDENTITY.encoding, OWNER, "db", 1, DATA, random.Random(1).randbytes)


def test_a_partial_decryption_round_trips_and_bad_bytes_are_refused() -> None:
    dealt, envelope, rng = _sealed(2, 3, 4)
    partial = partial_decrypt(dealt.key_packages[3], envelope.c1, rng)  # type: ignore[index]
    assert PartialDecryption.decode(partial.encode()) == partial
    with pytest.raises(InvalidEncoding):
        PartialDecryption.decode(partial.encode()[:-1])
    corrupted = bytearray(partial.encode())
    corrupted[32:64] = IDENTITY.encoding
    with pytest.raises(InvalidEncoding):
        PartialDecryption.decode(bytes(corrupted))


def test_a_one_node_vault_opens_with_its_one_partial_decryption() -> None:
    """The dev chain's committee is one node (threshold 1 of 1)."""
    dealt, envelope, rng = _sealed(1, 1, 11)
    member = dealt.key_packages[1]  # type: ignore[index]
    partial = partial_decrypt(member, envelope.c1, rng)
    verify_partial(member.verifying_share, envelope.c1, partial)
    assert open_envelope(envelope, [partial], OWNER, "db", 3) == DATA
    with pytest.raises(EnvelopeDoesNotOpen):
        open_envelope(envelope, [partial], OWNER, "db", 4)
