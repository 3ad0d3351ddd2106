"""`vdf.tower`: the challenge layout, the byte layout, and each rejection of the pure check."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdf.proof import FORM_SIZE, GENERATOR, MAX_ITERATIONS, MalformedProof, VdfParams, prove
from vdf.tower import (
    GENESIS_PREVIOUS_Y,
    TOWER_INPUT,
    TOWER_PROOF_SIZE,
    TowerProof,
    TowerRejection,
    TowerRejectionReason,
    check_tower_proof,
    tower_challenge,
)

ITERATIONS = 1_000
PARAMS = VdfParams()
NODE_A = bytes([0xA1]) * 32
NODE_B = bytes([0xB2]) * 32
ANCHOR = bytes([0x0C]) * 32
Y = bytes(range(100))


def make_proof(
    node_id: bytes, height: int, previous_y: bytes, anchor: bytes = ANCHOR
) -> TowerProof:
    result = prove(tower_challenge(node_id, previous_y, anchor, height), TOWER_INPUT, ITERATIONS)
    return TowerProof(node_id, height, 40 + height, anchor, ITERATIONS, result.y, result.proof)


@pytest.fixture(scope="module")
def tower() -> tuple[TowerProof, TowerProof]:
    """Heights 1 and 2 of node A's tower."""
    first = make_proof(NODE_A, 1, GENESIS_PREVIOUS_Y)
    return first, make_proof(NODE_A, 2, first.y)


def accept(proof: TowerProof, previous_y: bytes, **overrides: object) -> None:
    arguments: dict[str, object] = {
        "expected_node_id": proof.node_id,
        "expected_height": proof.height,
        "previous_y": previous_y,
        "anchor_is_recent": True,
        "min_iterations": ITERATIONS,
        "params": PARAMS,
    }
    arguments.update(overrides)
    check_tower_proof(proof, **arguments)  # type: ignore[arg-type]


def rejection(proof: TowerProof, previous_y: bytes, **overrides: object) -> TowerRejection:
    with pytest.raises(TowerRejection) as caught:
        accept(proof, previous_y, **overrides)
    return caught.value


# -- the challenge ------------------------------------------------------------------------------


def test_challenge_vectors() -> None:
    # Pinned: the runtime (chain.runtime.towers) derives the same bytes from the same inputs.
    assert tower_challenge(bytes(range(32)), b"", bytes(32), 1).hex() == (
        "66b39933194ca50cd7011dd82304635fa801ea39e8431b3a8245e3a356bd9732"
    )
    assert tower_challenge(bytes(range(32)), Y, b"\xff" * 32, 2).hex() == (
        "5026295e4e49fb085b4d378e56c956246a9b433d929f6afeb3dfaa0f6d50ef19"
    )


def test_challenge_is_deterministic_and_changes_with_each_input() -> None:
    base = tower_challenge(NODE_A, Y, ANCHOR, 5)
    assert tower_challenge(NODE_A, Y, ANCHOR, 5) == base
    assert len(base) == 32
    variants = {
        tower_challenge(NODE_B, Y, ANCHOR, 5),
        tower_challenge(NODE_A, Y[:-1] + b"\xff", ANCHOR, 5),
        tower_challenge(NODE_A, GENESIS_PREVIOUS_Y, ANCHOR, 5),
        tower_challenge(NODE_A, Y, bytes(32), 5),
        tower_challenge(NODE_A, Y, ANCHOR, 6),
    }
    assert len(variants) == 5
    assert base not in variants


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((NODE_A[:31], Y, ANCHOR, 1), "node_id is 31 bytes; it must be 32"),
        (
            (NODE_A, Y[:99], ANCHOR, 1),
            "previous_y must be 100 bytes, or empty before the first proof",
        ),
        ((NODE_A, Y, ANCHOR + b"\x00", 1), "anchor_block_hash is 33 bytes; it must be 32"),
        ((NODE_A, Y, ANCHOR, 0), f"height is 0; it must be from 1 to {2**64 - 1}"),
        ((NODE_A, Y, ANCHOR, 2**64), f"height is {2**64}; it must be from 1 to {2**64 - 1}"),
    ],
)
def test_challenge_inputs_of_the_wrong_size_are_refused(
    arguments: tuple[bytes, bytes, bytes, int], message: str
) -> None:
    with pytest.raises(MalformedProof) as caught:
        tower_challenge(*arguments)
    assert str(caught.value) == message


# -- the byte layout ----------------------------------------------------------------------------

u64s = st.integers(min_value=0, max_value=2**64 - 1)
forms = st.sampled_from([GENERATOR, Y, bytes([3]) + bytes(range(99))])


@given(
    node_id=st.binary(min_size=32, max_size=32),
    height=st.integers(min_value=1, max_value=2**64 - 1),
    anchor_number=u64s,
    anchor_hash=st.binary(min_size=32, max_size=32),
    iterations=st.integers(min_value=1, max_value=MAX_ITERATIONS),
    y=forms,
    proof=forms,
)
def test_encoding_round_trips(
    node_id: bytes,
    height: int,
    anchor_number: int,
    anchor_hash: bytes,
    iterations: int,
    y: bytes,
    proof: bytes,
) -> None:
    original = TowerProof(node_id, height, anchor_number, anchor_hash, iterations, y, proof)
    encoded = original.encode()
    assert len(encoded) == TOWER_PROOF_SIZE
    assert TowerProof.decode(encoded) == original


@given(st.binary(min_size=TOWER_PROOF_SIZE, max_size=TOWER_PROOF_SIZE))
def test_any_bytes_of_the_right_size_decode_to_one_encoding_or_are_malformed(data: bytes) -> None:
    try:
        decoded = TowerProof.decode(data)
    except TowerRejection as exc:
        assert exc.reason is TowerRejectionReason.MALFORMED
    else:
        assert decoded.encode() == data


def test_layout() -> None:
    proof = TowerProof(NODE_A, 7, 300, ANCHOR, 1_000_000, Y, GENERATOR)
    assert proof.encode() == (
        b"\x01" + NODE_A + (7).to_bytes(8, "big") + (300).to_bytes(8, "big") + ANCHOR
        + (1_000_000).to_bytes(8, "big") + Y + GENERATOR
    )  # fmt: skip


@pytest.mark.parametrize("length", [0, 1, 100, TOWER_PROOF_SIZE - 1, TOWER_PROOF_SIZE + 1, 1000])
def test_bytes_of_another_length_are_malformed(length: int) -> None:
    with pytest.raises(TowerRejection) as caught:
        TowerProof.decode(b"\x01" * length)
    assert caught.value.reason is TowerRejectionReason.MALFORMED
    assert str(caught.value) == f"malformed: a tower proof is 289 bytes, got {length}"


def _encoded() -> bytearray:
    return bytearray(TowerProof(NODE_A, 7, 300, ANCHOR, 1_000, Y, GENERATOR).encode())


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"\x02", "unknown tower proof version 2; this node reads 1"),
        (33, bytes(8), f"height is 0; it must be from 1 to {2**64 - 1}"),
        (81, bytes(8), f"iterations is 0; it must be from 1 to {MAX_ITERATIONS}"),
        (81, b"\xff" * 8, f"iterations is {2**64 - 1}; it must be from 1 to {MAX_ITERATIONS}"),
        (89, b"\x08\x01", "y is a non-canonical encoding of the generator"),
        (189, b"\x0c", "proof is a non-canonical encoding of the generator"),
    ],
)
def test_bad_fields_are_malformed(offset: int, value: bytes, message: str) -> None:
    data = _encoded()
    data[offset : offset + len(value)] = value
    with pytest.raises(TowerRejection) as caught:
        TowerProof.decode(bytes(data))
    assert caught.value.reason is TowerRejectionReason.MALFORMED
    assert caught.value.message == message


def test_decode_takes_bytes_only() -> None:
    with pytest.raises(TowerRejection) as caught:
        TowerProof.decode(bytearray(TOWER_PROOF_SIZE))  # type: ignore[arg-type]
    assert str(caught.value) == "malformed: expected bytes, got bytearray"


# -- the check ----------------------------------------------------------------------------------


def test_a_tower_of_two_proofs_is_accepted(tower: tuple[TowerProof, TowerProof]) -> None:
    first, second = tower
    accept(first, GENESIS_PREVIOUS_Y)
    accept(second, first.y)
    accept(TowerProof.decode(second.encode()), first.y)


def test_a_proof_from_another_node_is_wrong_node(tower: tuple[TowerProof, TowerProof]) -> None:
    first, _ = tower
    error = rejection(first, GENESIS_PREVIOUS_Y, expected_node_id=NODE_B)
    assert error.reason is TowerRejectionReason.WRONG_NODE
    assert error.message == (
        f"the proof is for node {NODE_A.hex()}, submitted as node {NODE_B.hex()}"
    )


def test_a_proof_copied_by_another_node_does_not_verify(
    tower: tuple[TowerProof, TowerProof],
) -> None:
    # Relabelled as B's own: the challenge binds the node id, so the VDF no longer verifies.
    copied = replace(tower[0], node_id=NODE_B)
    error = rejection(copied, GENESIS_PREVIOUS_Y)
    assert error.reason is TowerRejectionReason.INVALID_PROOF
    assert error.message == "the VDF output of height 1 does not verify against its challenge"


@pytest.mark.parametrize("expected_height", [1, 3, 100])
def test_a_replayed_or_early_proof_is_wrong_height(
    tower: tuple[TowerProof, TowerProof], expected_height: int
) -> None:
    first, second = tower
    error = rejection(second, first.y, expected_height=expected_height)
    assert error.reason is TowerRejectionReason.WRONG_HEIGHT
    assert error.message == f"the tower's next height is {expected_height}, the proof is for 2"


def test_an_old_anchor_is_stale(tower: tuple[TowerProof, TowerProof]) -> None:
    first, _ = tower
    error = rejection(first, GENESIS_PREVIOUS_Y, anchor_is_recent=False)
    assert error.reason is TowerRejectionReason.STALE_ANCHOR
    assert error.message == f"block 41 ({ANCHOR.hex()}) is not a recent block of this chain"


def test_too_little_work_is_refused(tower: tuple[TowerProof, TowerProof]) -> None:
    first, _ = tower
    error = rejection(first, GENESIS_PREVIOUS_Y, min_iterations=ITERATIONS + 1)
    assert error.reason is TowerRejectionReason.TOO_FEW_ITERATIONS
    assert error.message == "1000 iterations, at least 1001 required"


def test_a_proof_over_another_previous_output_does_not_verify(
    tower: tuple[TowerProof, TowerProof],
) -> None:
    first, second = tower
    assert rejection(second, GENESIS_PREVIOUS_Y).reason is TowerRejectionReason.INVALID_PROOF
    assert rejection(second, second.y).reason is TowerRejectionReason.INVALID_PROOF
    assert rejection(first, first.y).reason is TowerRejectionReason.INVALID_PROOF


def test_a_proof_with_another_anchor_does_not_verify(tower: tuple[TowerProof, TowerProof]) -> None:
    moved = replace(tower[0], anchor_hash=bytes(32))
    assert rejection(moved, GENESIS_PREVIOUS_Y).reason is TowerRejectionReason.INVALID_PROOF


def test_a_tampered_output_does_not_verify(tower: tuple[TowerProof, TowerProof]) -> None:
    first, _ = tower
    y = bytearray(first.y)
    y[50] ^= 0x01
    error = rejection(replace(first, y=bytes(y)), GENESIS_PREVIOUS_Y)
    assert error.reason is TowerRejectionReason.INVALID_PROOF
    longer = replace(first, iterations=ITERATIONS + 1)
    assert rejection(longer, GENESIS_PREVIOUS_Y).reason is TowerRejectionReason.INVALID_PROOF


def test_cheap_checks_come_before_verification(tower: tuple[TowerProof, TowerProof]) -> None:
    # A garbage output with a stale anchor is reported as stale: no verification was needed.
    garbage = replace(tower[0], y=bytes([3]) * FORM_SIZE)
    error = rejection(garbage, GENESIS_PREVIOUS_Y, anchor_is_recent=False)
    assert error.reason is TowerRejectionReason.STALE_ANCHOR


def test_constructing_a_malformed_proof_is_a_rejection() -> None:
    with pytest.raises(TowerRejection) as caught:
        TowerProof(NODE_A, 1, 0, ANCHOR, ITERATIONS, Y[:50], GENERATOR)
    assert str(caught.value) == "malformed: y is 50 bytes; a group element is 100"
    with pytest.raises(TowerRejection) as caught:
        TowerProof(NODE_A[:8], 1, 0, ANCHOR, ITERATIONS, Y, GENERATOR)
    assert str(caught.value) == "malformed: node_id is 8 bytes; it must be 32"
