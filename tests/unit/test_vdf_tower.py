"""`vdf.tower`: the challenge the prover proves over is the runtime's, and the proofs it makes
verify where the runtime verifies them."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from chain.runtime.towers import tower_challenge as runtime_challenge
from chain.runtime.towers import verify_vdf
from vdf.proof import GENERATOR, MalformedProof, VdfParams, prove
from vdf.tower import GENESIS_PREVIOUS_Y, TOWER_INPUT, TowerProof, tower_challenge

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


def test_the_prover_challenge_is_the_runtime_challenge() -> None:
    for height, previous in ((1, GENESIS_PREVIOUS_Y), (7, Y)):
        assert tower_challenge(NODE_A, previous, ANCHOR, height) == runtime_challenge(
            NODE_A, previous, ANCHOR, height
        )


def test_a_tower_of_two_proofs_verifies_in_the_runtime(
    tower: tuple[TowerProof, TowerProof],
) -> None:
    first, second = tower
    assert verify_vdf(first.challenge(GENESIS_PREVIOUS_Y), first.y, first.proof, ITERATIONS, 1024)
    assert verify_vdf(second.challenge(first.y), second.y, second.proof, ITERATIONS, 1024)
    # Chained: over another previous output, or for another node, it does not verify.
    assert not verify_vdf(second.challenge(Y), second.y, second.proof, ITERATIONS, 1024)
    copied = tower_challenge(NODE_B, first.y, ANCHOR, 2)
    assert not verify_vdf(copied, second.y, second.proof, ITERATIONS, 1024)


def test_malformed_fields_are_refused_at_construction() -> None:
    with pytest.raises(MalformedProof, match="node_id is 31 bytes; it must be 32"):
        TowerProof(b"\x01" * 31, 1, 0, ANCHOR, ITERATIONS, Y, Y)
    with pytest.raises(MalformedProof, match="height is 0; it must be from 1"):
        TowerProof(NODE_A, 0, 0, ANCHOR, ITERATIONS, Y, Y)
