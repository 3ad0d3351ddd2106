"""Time Tower rules: the challenge of each proof, the proof a transaction carries and its byte
layout, and the pure check the runtime applies to it. No I/O; deterministic on every node."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from chain.primitives import blake2_256
from vdf.proof import (
    FORM_SIZE,
    GENERATOR,
    PROOF_SIZE,
    MalformedProof,
    VdfParams,
    VdfProof,
    verify,
)

TOWER_DOMAIN: Final = b"statemesh/tower-challenge/v1"
"""Domain separator of tower challenges, so no other hash of the chain can be one."""

NODE_ID_SIZE: Final = 32
HASH_SIZE: Final = 32
U64_MAX: Final = 2**64 - 1

GENESIS_PREVIOUS_Y: Final = b""
"""The "previous output" of height 1 (a tower's empty record). Its length is part of the
challenge, so it can never be mistaken for a real 100-byte output."""

TOWER_INPUT: Final = GENERATOR
"""Every tower proof squares the generator: chaining goes through the challenge, not through x,
so x never comes from the prover (a prover-chosen x could be an element of small order)."""

TOWER_PROOF_VERSION: Final = 1
TOWER_PROOF_SIZE: Final = 1 + NODE_ID_SIZE + 8 + 8 + HASH_SIZE + 8 + FORM_SIZE + PROOF_SIZE
"""289 bytes; see `TowerProof.encode` for the layout."""


class TowerRejectionReason(enum.Enum):
    """Why a tower proof is refused. Each maps in one place to a dispatch error and a penalty."""

    MALFORMED = "malformed"
    """Bytes of the wrong layout, or fields out of range or non-canonical."""
    WRONG_NODE = "wrong node"
    """The proof names a node other than the one submitting it."""
    WRONG_HEIGHT = "wrong height"
    """Not the next height of the node's tower: out of order, or a replay."""
    STALE_ANCHOR = "stale anchor"
    """The anchor block is not a recent block of this chain."""
    TOO_FEW_ITERATIONS = "too few iterations"
    """Less sequential work than the chain requires."""
    INVALID_PROOF = "invalid proof"
    """Well formed, but the VDF does not verify against the challenge. A proof copied from
    another node (with the node id changed) lands here, since the challenge binds the node."""


class TowerRejection(Exception):
    """A tower proof that is refused; `message` says what was wrong, for its sender."""

    def __init__(self, reason: TowerRejectionReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


def tower_challenge(
    node_id: bytes, previous_y: bytes, anchor_block_hash: bytes, height: int
) -> bytes:
    """The 32-byte challenge of proof `height` of node `node_id`:

        blake2b-256( TOWER_DOMAIN (28) ‖ node_id (32) ‖ len(previous_y) (1) ‖ previous_y (0 or 100)
                     ‖ anchor_block_hash (32) ‖ height (u64, big-endian) )

    previous_y is the output of proof height-1 (GENESIS_PREVIOUS_Y, empty, for height 1), which
    makes proofs sequential; the anchor, a recent block, makes them impossible to compute ahead;
    the node id makes them personal. The runtime (`chain.runtime.towers`) uses the same layout.
    Raises MalformedProof for a field of the wrong size."""
    _check_bytes("node_id", node_id, NODE_ID_SIZE)
    if not isinstance(previous_y, bytes) or len(previous_y) not in (0, FORM_SIZE):
        raise MalformedProof(
            f"previous_y must be {FORM_SIZE} bytes, or empty before the first proof"
        )
    _check_bytes("anchor_block_hash", anchor_block_hash, HASH_SIZE)
    _check_u64("height", height, minimum=1)
    return bytes(
        blake2_256(
            TOWER_DOMAIN
            + node_id
            + bytes((len(previous_y),))
            + previous_y
            + anchor_block_hash
            + height.to_bytes(8, "big")
        )
    )


@dataclass(frozen=True, slots=True)
class TowerProof:
    """Proof `height` of a node's Time Tower, as a `towers.submit_proof` call carries it."""

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
        try:
            _check_bytes("node_id", self.node_id, NODE_ID_SIZE)
            _check_u64("height", self.height, minimum=1)
            _check_u64("anchor_number", self.anchor_number, minimum=0)
            _check_bytes("anchor_hash", self.anchor_hash, HASH_SIZE)
            self.vdf_proof()
        except MalformedProof as exc:
            raise TowerRejection(TowerRejectionReason.MALFORMED, str(exc)) from None

    def __repr__(self) -> str:
        return (
            f"TowerProof(node_id={self.node_id.hex()[:16]}…, height={self.height}, "
            f"anchor_number={self.anchor_number}, iterations={self.iterations})"
        )

    def vdf_proof(self) -> VdfProof:
        return VdfProof(y=self.y, proof=self.proof, iterations=self.iterations)

    def challenge(self, previous_y: bytes) -> bytes:
        return tower_challenge(self.node_id, previous_y, self.anchor_hash, self.height)

    def encode(self) -> bytes:
        """TOWER_PROOF_SIZE bytes: version (1, = 1) ‖ node_id (32) ‖ height (u64)
        ‖ anchor_number (u64) ‖ anchor_hash (32) ‖ iterations (u64) ‖ y (100) ‖ proof (100);
        integers big-endian. Fixed widths make the encoding the only one of each proof."""
        return b"".join(
            (
                bytes((TOWER_PROOF_VERSION,)),
                self.node_id,
                self.height.to_bytes(8, "big"),
                self.anchor_number.to_bytes(8, "big"),
                self.anchor_hash,
                self.iterations.to_bytes(8, "big"),
                self.y,
                self.proof,
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> TowerProof:
        """Inverse of `encode`; raises TowerRejection(MALFORMED) for any other bytes."""
        if not isinstance(data, bytes):
            raise TowerRejection(
                TowerRejectionReason.MALFORMED, f"expected bytes, got {type(data).__name__}"
            )
        if len(data) != TOWER_PROOF_SIZE:
            raise TowerRejection(
                TowerRejectionReason.MALFORMED,
                f"a tower proof is {TOWER_PROOF_SIZE} bytes, got {len(data)}",
            )
        if data[0] != TOWER_PROOF_VERSION:
            raise TowerRejection(
                TowerRejectionReason.MALFORMED,
                f"unknown tower proof version {data[0]}; this node reads {TOWER_PROOF_VERSION}",
            )
        reader = _Reader(data, 1)
        return cls(
            node_id=reader.take(NODE_ID_SIZE),
            height=reader.u64(),
            anchor_number=reader.u64(),
            anchor_hash=reader.take(HASH_SIZE),
            iterations=reader.u64(),
            y=reader.take(FORM_SIZE),
            proof=reader.take(PROOF_SIZE),
        )


def check_tower_proof(
    proof: TowerProof,
    *,
    expected_node_id: bytes,
    expected_height: int,
    previous_y: bytes,
    anchor_is_recent: bool,
    min_iterations: int,
    params: VdfParams,
) -> None:
    """Accept `proof` as the next block of a tower, or raise one TowerRejection.

    The caller (the runtime) supplies what only the chain knows: the submitting node's id, the
    tower's next height and last output, whether the anchor is a recent block of this chain,
    and the required work. Cheap checks come first; the ~16 ms verification runs last, so a
    replay or a stale proof costs the verifier almost nothing."""
    if proof.node_id != expected_node_id:
        raise TowerRejection(
            TowerRejectionReason.WRONG_NODE,
            f"the proof is for node {proof.node_id.hex()}, submitted as node "
            f"{expected_node_id.hex()}",
        )
    if proof.height != expected_height:
        raise TowerRejection(
            TowerRejectionReason.WRONG_HEIGHT,
            f"the tower's next height is {expected_height}, the proof is for {proof.height}",
        )
    if not anchor_is_recent:
        raise TowerRejection(
            TowerRejectionReason.STALE_ANCHOR,
            f"block {proof.anchor_number} ({proof.anchor_hash.hex()}) is not a recent block "
            "of this chain",
        )
    if proof.iterations < min_iterations:
        raise TowerRejection(
            TowerRejectionReason.TOO_FEW_ITERATIONS,
            f"{proof.iterations} iterations, at least {min_iterations} required",
        )
    # A previous_y of the wrong length is the caller's fault, not the proof's: it raises
    # MalformedProof here rather than a rejection of the proof.
    challenge = proof.challenge(previous_y)
    try:
        valid = verify(challenge, TOWER_INPUT, proof.vdf_proof(), proof.iterations, params)
    except MalformedProof as exc:
        raise TowerRejection(TowerRejectionReason.MALFORMED, str(exc)) from None
    if not valid:
        raise TowerRejection(
            TowerRejectionReason.INVALID_PROOF,
            f"the VDF output of height {proof.height} does not verify against its challenge",
        )


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


class _Reader:
    """Reads fixed-width fields from bytes already checked to be long enough."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self._data = data
        self._pos = pos

    def take(self, size: int) -> bytes:
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")
