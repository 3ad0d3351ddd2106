"""What the prover produces for a Time Tower: the challenge of each proof (the runtime's
derivation, `chain.runtime.towers.tower_challenge`, checked here for the prover's inputs) and
the proof it hands to the node. The acceptance rules live in the runtime alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chain.runtime import towers as rules
from vdf.proof import FORM_SIZE, GENERATOR, MalformedProof, VdfProof

NODE_ID_SIZE: Final = 32
HASH_SIZE: Final = 32
U64_MAX: Final = 2**64 - 1

GENESIS_PREVIOUS_Y: Final = b""
"""The "previous output" of height 1 (a tower's empty record). Its length is part of the
challenge, so it can never be mistaken for a real 100-byte output."""

TOWER_INPUT: Final = GENERATOR
"""Every tower proof squares the generator: chaining goes through the challenge, not through x,
so x never comes from the prover (a prover-chosen x could be an element of small order)."""


def tower_challenge(
    node_id: bytes, previous_y: bytes, anchor_block_hash: bytes, height: int
) -> bytes:
    """The 32-byte challenge of proof `height` of node `node_id`, exactly as the runtime derives
    it (see `chain.runtime.towers.tower_challenge` for the layout). Raises MalformedProof for a
    field of the wrong size, so a prover never spends minutes on a proof the chain refuses."""
    _check_bytes("node_id", node_id, NODE_ID_SIZE)
    if not isinstance(previous_y, bytes) or len(previous_y) not in (0, FORM_SIZE):
        raise MalformedProof(
            f"previous_y must be {FORM_SIZE} bytes, or empty before the first proof"
        )
    _check_bytes("anchor_block_hash", anchor_block_hash, HASH_SIZE)
    _check_u64("height", height, minimum=1)
    return rules.tower_challenge(node_id, previous_y, anchor_block_hash, height)


@dataclass(frozen=True, slots=True)
class TowerProof:
    """Proof `height` of a node's Time Tower, the fields of a `towers.submit_proof` call (plus
    the anchor's hash, which the runtime looks up by number)."""

    node_id: bytes
    """The node whose tower this extends (32 bytes); bound into the challenge."""
    height: int
    """Position in the tower, from 1."""
    anchor_number: int
    """Number of the recent block the challenge is anchored to."""
    anchor_hash: bytes
    """Hash of that block (32 bytes); bound into the challenge."""
    iterations: int
    """Sequential squarings performed."""
    y: bytes
    """The VDF output; the next proof's challenge is derived from it."""
    proof: bytes
    """The Wesolowski proof of y."""

    def __post_init__(self) -> None:
        _check_bytes("node_id", self.node_id, NODE_ID_SIZE)
        _check_u64("height", self.height, minimum=1)
        _check_u64("anchor_number", self.anchor_number, minimum=0)
        _check_bytes("anchor_hash", self.anchor_hash, HASH_SIZE)
        self.vdf_proof()

    def __repr__(self) -> str:
        return (
            f"TowerProof(node_id={self.node_id.hex()[:16]}…, height={self.height}, "
            f"anchor_number={self.anchor_number}, iterations={self.iterations})"
        )

    def vdf_proof(self) -> VdfProof:
        return VdfProof(y=self.y, proof=self.proof, iterations=self.iterations)

    def challenge(self, previous_y: bytes) -> bytes:
        return tower_challenge(self.node_id, previous_y, self.anchor_hash, self.height)


def _check_bytes(name: str, value: object, size: int) -> None:
    if not isinstance(value, bytes):
        raise MalformedProof(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != size:
        raise MalformedProof(f"{name} is {len(value)} bytes; it must be {size}")


def _check_u64(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedProof(f"{name} must be an integer, got {type(value).__name__}")
    if not minimum <= value <= U64_MAX:
        raise MalformedProof(f"{name} is {value}; it must be from {minimum} to {U64_MAX}")
