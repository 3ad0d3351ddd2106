"""`chain.vdf`: the one VDF verification. The runtime's tower rule and the prover's typed API
reach the same answer through it, and input of the wrong shape is refused before chiavdf."""

from __future__ import annotations

import pytest

from chain import vdf
from chain.runtime import towers
from vdf import proof as typed

ITERATIONS = 1_000
CHALLENGE = bytes(range(32))
BITS = 1024


@pytest.fixture(scope="module")
def made() -> typed.VdfProof:
    return typed.prove(CHALLENGE, vdf.GENERATOR, ITERATIONS)


def test_the_prover_api_and_the_runtime_share_the_constants() -> None:
    assert typed.FORM_SIZE == vdf.FORM_SIZE and typed.PROOF_SIZE == vdf.PROOF_SIZE
    assert typed.MAX_ITERATIONS == vdf.MAX_ITERATIONS
    assert typed.GENERATOR is vdf.GENERATOR and typed.IDENTITY is vdf.IDENTITY


def test_a_proof_verifies_the_same_through_every_caller(made: typed.VdfProof) -> None:
    assert vdf.verify(CHALLENGE, vdf.GENERATOR, made.y, made.proof, ITERATIONS, BITS)
    assert towers.verify_vdf(CHALLENGE, made.y, made.proof, ITERATIONS, BITS)
    assert typed.verify(CHALLENGE, vdf.GENERATOR, made, ITERATIONS)
    assert not vdf.verify(CHALLENGE, vdf.GENERATOR, made.y, made.proof, ITERATIONS + 1, BITS)
    assert not towers.verify_vdf(CHALLENGE, made.y, made.proof, ITERATIONS + 1, BITS)


def _shapes(made: typed.VdfProof) -> list[tuple[bytes, bytes, bytes, bytes, int]]:
    y, p = made.y, made.proof
    generator_again = b"\x08" + b"\x01" + bytes(vdf.FORM_SIZE - 2)
    return [
        (CHALLENGE[:31], vdf.GENERATOR, y, p, ITERATIONS),
        (CHALLENGE + b"\x00", vdf.GENERATOR, y, p, ITERATIONS),
        (CHALLENGE, vdf.IDENTITY, vdf.IDENTITY, vdf.IDENTITY, ITERATIONS),
        (CHALLENGE, vdf.GENERATOR[:99], y, p, ITERATIONS),
        (CHALLENGE, generator_again, y, p, ITERATIONS),
        (CHALLENGE, vdf.GENERATOR, y[:99], p, ITERATIONS),
        (CHALLENGE, vdf.GENERATOR, y + b"\x00", p, ITERATIONS),
        (CHALLENGE, vdf.GENERATOR, generator_again, p, ITERATIONS),
        (CHALLENGE, vdf.GENERATOR, y, p[:99], ITERATIONS),
        (CHALLENGE, vdf.GENERATOR, y, b"", ITERATIONS),
        (CHALLENGE, vdf.GENERATOR, y, p, 0),
        (CHALLENGE, vdf.GENERATOR, y, p, vdf.MAX_ITERATIONS + 1),
        (CHALLENGE, vdf.GENERATOR, y, p, 2**64),
    ]


def test_input_of_the_wrong_shape_is_refused_not_raised(made: typed.VdfProof) -> None:
    for challenge, x, y, p, iterations in _shapes(made):
        assert vdf.verify(challenge, x, y, p, iterations, BITS) is False


def test_the_identity_as_input_never_verifies_even_a_trivial_proof() -> None:
    # y = proof = identity is a valid proof from the identity for any count: refused by shape.
    identity = vdf.IDENTITY
    assert not vdf.verify(CHALLENGE, identity, identity, identity, ITERATIONS, BITS)


@pytest.mark.parametrize("form", [bytes(100), b"\x00\x00" + b"\xff" * 98, b"\x03" * 100])
def test_bytes_that_are_no_group_element_do_not_verify(form: bytes) -> None:
    assert not vdf.verify(CHALLENGE, vdf.GENERATOR, form, form, ITERATIONS, BITS)


def test_a_verdict_is_reused_only_for_exactly_the_same_inputs(
    made: typed.VdfProof, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    native = vdf.chiavdf.create_discriminant_and_verify_n_wesolowski

    def counted(*args: object) -> bool:
        calls.append(1)
        return bool(native(*args))

    monkeypatch.setattr(vdf.chiavdf, "create_discriminant_and_verify_n_wesolowski", counted)
    vdf._verify_group.cache_clear()
    for _ in range(3):
        assert vdf.verify(CHALLENGE, vdf.GENERATOR, made.y, made.proof, ITERATIONS, BITS)
    assert len(calls) == 1
    other_challenge = bytes(reversed(CHALLENGE))
    tampered = bytes([made.proof[0], made.proof[1] ^ 1]) + made.proof[2:]
    assert not vdf.verify(other_challenge, vdf.GENERATOR, made.y, made.proof, ITERATIONS, BITS)
    assert not vdf.verify(CHALLENGE, vdf.GENERATOR, made.y, tampered, ITERATIONS, BITS)
    assert not vdf.verify(CHALLENGE, vdf.GENERATOR, made.y, made.proof, ITERATIONS - 1, BITS)
    assert len(calls) == 4
    assert not vdf.verify(CHALLENGE, vdf.GENERATOR, made.y, tampered, ITERATIONS, BITS)
    assert len(calls) == 4
    assert vdf._verify_group.cache_info().maxsize == vdf.VERIFIED_CACHE_SIZE
