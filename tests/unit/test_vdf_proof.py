"""`vdf.proof`: prove / verify round trips, forgeries that must not verify, and malformed input
that must be refused before it reaches chiavdf."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vdf.proof import (
    CHALLENGE_SIZE,
    FORM_SIZE,
    GENERATOR,
    IDENTITY,
    MAX_ITERATIONS,
    MalformedProof,
    VdfParams,
    VdfParamsError,
    VdfProof,
    prove,
    verify,
)

ITERATIONS = 1_000
CHALLENGE = bytes(range(32))
OTHER_CHALLENGE = bytes(range(1, 33))


@pytest.fixture(scope="module")
def proof() -> VdfProof:
    return prove(CHALLENGE, GENERATOR, ITERATIONS)


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[index] ^= mask
    return bytes(changed)


def test_a_proof_verifies_against_its_challenge_input_and_iterations(proof: VdfProof) -> None:
    assert proof.iterations == ITERATIONS
    assert len(proof.y) == FORM_SIZE and len(proof.proof) == FORM_SIZE
    assert verify(CHALLENGE, GENERATOR, proof, ITERATIONS)


def test_proving_is_deterministic(proof: VdfProof) -> None:
    assert prove(CHALLENGE, GENERATOR, ITERATIONS) == proof


def test_the_output_of_one_proof_can_be_the_input_of_the_next(proof: VdfProof) -> None:
    chained = prove(CHALLENGE, proof.y, ITERATIONS)
    assert verify(CHALLENGE, proof.y, chained, ITERATIONS)
    assert not verify(CHALLENGE, GENERATOR, chained, ITERATIONS)


@pytest.mark.parametrize("index", [1, 2, 30, 60, 99])
def test_a_flipped_byte_in_y_does_not_verify(proof: VdfProof, index: int) -> None:
    forged = VdfProof(_flip(proof.y, index), proof.proof, ITERATIONS)
    assert verify(CHALLENGE, GENERATOR, forged, ITERATIONS) is False


@pytest.mark.parametrize("index", [1, 2, 30, 60, 99])
def test_a_flipped_byte_in_the_proof_does_not_verify(proof: VdfProof, index: int) -> None:
    forged = VdfProof(proof.y, _flip(proof.proof, index), ITERATIONS)
    assert verify(CHALLENGE, GENERATOR, forged, ITERATIONS) is False


def test_a_flipped_sign_bit_does_not_verify(proof: VdfProof) -> None:
    forged = VdfProof(_flip(proof.y, 0, 0x01), proof.proof, ITERATIONS)
    assert verify(CHALLENGE, GENERATOR, forged, ITERATIONS) is False


def test_other_iteration_counts_do_not_verify(proof: VdfProof) -> None:
    assert verify(CHALLENGE, GENERATOR, proof, ITERATIONS + 1) is False
    assert verify(CHALLENGE, GENERATOR, proof, ITERATIONS - 1) is False
    claims_more = VdfProof(proof.y, proof.proof, ITERATIONS + 1)
    assert verify(CHALLENGE, GENERATOR, claims_more, ITERATIONS + 1) is False


def test_another_challenge_does_not_verify(proof: VdfProof) -> None:
    assert verify(OTHER_CHALLENGE, GENERATOR, proof, ITERATIONS) is False


def test_the_trivial_forgery_from_the_identity_is_refused() -> None:
    trivial = VdfProof(IDENTITY, IDENTITY, ITERATIONS)
    with pytest.raises(MalformedProof) as caught:
        verify(CHALLENGE, IDENTITY, trivial, ITERATIONS)
    assert str(caught.value) == "x is the identity element, for which every proof is trivial"
    assert verify(CHALLENGE, GENERATOR, trivial, ITERATIONS) is False
    with pytest.raises(MalformedProof):
        prove(CHALLENGE, IDENTITY, ITERATIONS)


def test_bytes_that_are_no_element_of_the_class_group_do_not_verify(proof: VdfProof) -> None:
    # chiavdf raises for these; the wrapper reports a proof that does not verify.
    for y in (bytes(FORM_SIZE), b"\x00\x00" + b"\xff" * 98, b"\x03" + bytes(range(99))):
        assert (
            verify(CHALLENGE, GENERATOR, VdfProof(y, proof.proof, ITERATIONS), ITERATIONS) is False
        )


@pytest.mark.parametrize("length", [n for n in range(0, 2 * FORM_SIZE + 2) if n != FORM_SIZE])
def test_group_elements_of_every_other_length_are_malformed(length: int) -> None:
    data = b"\x03" * length
    with pytest.raises(MalformedProof) as caught:
        VdfProof(data, GENERATOR, ITERATIONS)
    assert str(caught.value) == f"y is {length} bytes; a group element is {FORM_SIZE}"
    with pytest.raises(MalformedProof) as caught:
        VdfProof(GENERATOR, data, ITERATIONS)
    assert str(caught.value) == f"proof is {length} bytes; a group element is {FORM_SIZE}"
    with pytest.raises(MalformedProof) as caught:
        verify(CHALLENGE, data, VdfProof(GENERATOR, GENERATOR, ITERATIONS), ITERATIONS)
    assert str(caught.value) == f"x is {length} bytes; a group element is {FORM_SIZE}"


@pytest.mark.parametrize("length", [n for n in range(0, 65) if n != CHALLENGE_SIZE])
def test_challenges_of_every_other_length_are_malformed(proof: VdfProof, length: int) -> None:
    # A 1-byte challenge would never return from chiavdf: it must not get that far.
    with pytest.raises(MalformedProof) as caught:
        verify(b"\x01" * length, GENERATOR, proof, ITERATIONS)
    assert str(caught.value) == f"challenge is {length} bytes; it must be {CHALLENGE_SIZE}"
    with pytest.raises(MalformedProof):
        prove(b"\x01" * length, GENERATOR, ITERATIONS)


@pytest.mark.parametrize("iterations", [0, -1, MAX_ITERATIONS + 1, 2**64])
def test_iteration_counts_out_of_range_are_malformed(proof: VdfProof, iterations: int) -> None:
    expected = f"iterations is {iterations}; it must be from 1 to {MAX_ITERATIONS}"
    with pytest.raises(MalformedProof) as caught:
        verify(CHALLENGE, GENERATOR, proof, iterations)
    assert str(caught.value) == expected
    with pytest.raises(MalformedProof) as caught:
        VdfProof(proof.y, proof.proof, iterations)
    assert str(caught.value) == expected


@pytest.mark.parametrize("iterations", [True, 1.0, "1000", None])
def test_iteration_counts_must_be_integers(proof: VdfProof, iterations: object) -> None:
    with pytest.raises(MalformedProof) as caught:
        verify(CHALLENGE, GENERATOR, proof, iterations)  # type: ignore[arg-type]
    assert str(caught.value) == (f"iterations must be an integer, got {type(iterations).__name__}")


def test_inputs_must_be_bytes(proof: VdfProof) -> None:
    with pytest.raises(MalformedProof) as caught:
        verify(bytearray(CHALLENGE), GENERATOR, proof, ITERATIONS)  # type: ignore[arg-type]
    assert str(caught.value) == "challenge must be bytes, got bytearray"
    with pytest.raises(MalformedProof) as caught:
        VdfProof(memoryview(proof.y), proof.proof, ITERATIONS)  # type: ignore[arg-type]
    assert str(caught.value) == "y must be bytes, got memoryview"
    with pytest.raises(MalformedProof) as caught:
        verify(CHALLENGE, GENERATOR, (proof.y, proof.proof), ITERATIONS)  # type: ignore[arg-type]
    assert str(caught.value) == "proof must be a VdfProof, got tuple"


@pytest.mark.parametrize(
    ("encoding", "name"),
    [
        (b"\x08" + b"\x01" + bytes(98), "generator"),
        (b"\x0c" + bytes(99), "generator"),
        (b"\x09" + bytes(99), "generator"),
        (b"\x04" + bytes(98) + b"\x01", "identity"),
        (b"\x05" + bytes(99), "identity"),
    ],
)
def test_special_forms_have_one_encoding(proof: VdfProof, encoding: bytes, name: str) -> None:
    # chiavdf reads any of these as the special form; accepting them would give one proof
    # many encodings.
    with pytest.raises(MalformedProof) as caught:
        VdfProof(encoding, proof.proof, ITERATIONS)
    assert str(caught.value) == f"y is a non-canonical encoding of the {name}"
    with pytest.raises(MalformedProof) as caught:
        verify(CHALLENGE, encoding, proof, ITERATIONS)
    assert str(caught.value) == f"x is a non-canonical encoding of the {name}"


@pytest.mark.parametrize("bits", [256, 384, 512, 640, 768, 896, 1024])
def test_every_supported_discriminant_size_round_trips(bits: int) -> None:
    params = VdfParams(bits)
    result = prove(CHALLENGE, GENERATOR, ITERATIONS, params)
    assert len(result.y) == FORM_SIZE
    assert verify(CHALLENGE, GENERATOR, result, ITERATIONS, params)
    assert not verify(
        CHALLENGE, GENERATOR, result, ITERATIONS, VdfParams(1024 if bits < 1024 else 512)
    )


@pytest.mark.parametrize("bits", [0, 128, 255, 1000, 1025, 2048, True, "1024"])
def test_unsupported_discriminant_sizes_are_refused(bits: object) -> None:
    with pytest.raises(VdfParamsError) as caught:
        VdfParams(bits)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"discriminant_bits must be a multiple of 128 from 256 to 1024; got {bits!r}"
    )


_FUZZ = textwrap.dedent(
    """
    import random
    from vdf.proof import GENERATOR, MalformedProof, VdfProof, prove, verify

    rng = random.Random(20240601)
    challenge = bytes(range(32))
    good = prove(challenge, GENERATOR, 1000)
    outcomes = {"verified": 0, "false": 0, "malformed": 0}

    def attempt(x, y, proof):
        try:
            ok = verify(challenge, x, VdfProof(y, proof, 1000), 1000)
        except MalformedProof:
            outcomes["malformed"] += 1
        else:
            outcomes["verified" if ok else "false"] += 1

    for _ in range(60):
        attempt(GENERATOR, rng.randbytes(100), rng.randbytes(100))
        attempt(rng.randbytes(100), good.y, good.proof)
        attempt(GENERATOR, bytes([rng.randrange(4)]) + rng.randbytes(99), good.proof)
        attempt(GENERATOR, good.y, bytes([rng.randrange(4), 0]) + rng.randbytes(98))
        attempt(GENERATOR, bytes([rng.choice([0, 255])]) * 100, bytes(100))
    print(outcomes["verified"], outcomes["false"], outcomes["malformed"])
    """
)


def test_garbage_never_crashes_the_verifier() -> None:
    # In a child process, so a crash in the native code fails this test instead of the run.
    done = subprocess.run(
        [sys.executable, "-c", _FUZZ], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    verified, false, malformed = map(int, done.stdout.split())
    assert verified == 0
    assert false + malformed == 300
    assert false > 0 and malformed > 0
