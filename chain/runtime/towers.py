"""The `towers` module: each node's Time Tower, a chain of VDF proofs of elapsed time.

Proof k of node n is computed over challenge = H(domain ‖ n ‖ y_{k-1} ‖ anchor hash ‖ k), where
the anchor is a recent block of this chain: the proof cannot be made before that block
existed, nor in parallel with proof k-1. The runtime accepts proof k only if k = height + 1,
the anchor is within the recent-block window, the iterations meet the genesis minimum, and
the proof verifies (chiavdf, class groups, n-Wesolowski)."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from chain import codec, vdf
from chain.primitives import AccountId
from chain.runtime import nodes, system
from chain.runtime.framework import AccountRef, Arg, ArgKind, CallDef, Context, Module
from chain.state import Overlay, StateReader, storage_key

NAME = "towers"
CHALLENGE_DOMAIN = b"statemesh/tower-challenge/v1"
_TOWER = storage_key(NAME, "tower")


class TowersError(enum.Enum):
    UNKNOWN_NODE = "UnknownNode"
    WRONG_NODE = "WrongNode"
    WRONG_HEIGHT = "WrongHeight"
    TOO_SOON = "TooSoon"
    STALE_ANCHOR = "StaleAnchor"
    TOO_FEW_ITERATIONS = "TooFewIterations"
    MALFORMED_PROOF = "MalformedProof"
    INVALID_PROOF = "InvalidProof"


def tower_challenge(node_id: bytes, previous_y: bytes, anchor_hash: bytes, height: int) -> bytes:
    """The 32-byte challenge of proof `height`: binds the node, its previous output and a
    recent block. Layout: domain ‖ node id (32) ‖ len(y) (1) ‖ y ‖ anchor hash (32) ‖ height (8)."""
    return hashlib.blake2b(
        CHALLENGE_DOMAIN
        + node_id
        + bytes([len(previous_y)])
        + previous_y
        + anchor_hash
        + height.to_bytes(8, "big"),
        digest_size=32,
    ).digest()


def verify_vdf(challenge: bytes, y: bytes, proof: bytes, iterations: int, bits: int) -> bool:
    """True when `y` is the result of `iterations` squarings from the generator in the class
    group of the discriminant derived from `challenge`, as `proof` shows (`chain.vdf.verify`):
    every tower proof starts from the generator, chaining goes through the challenge."""
    return vdf.verify(challenge, vdf.GENERATOR, y, proof, iterations, bits)


@dataclass(frozen=True, slots=True)
class Tower:
    height: int = 0
    last_y: bytes = b""
    proofs_in_epoch: int = 0
    last_proof_block: int = 0

    def encode(self) -> bytes:
        u = codec.encode_uint
        return codec.encode(
            [u(self.height), self.last_y, u(self.proofs_in_epoch), u(self.last_proof_block)]
        )

    @classmethod
    def decode(cls, data: bytes) -> Tower:
        item = codec.decode(data)
        if not isinstance(item, list) or len(item) != 4 or not isinstance(item[1], bytes):
            raise codec.CodecError("a tower record has 4 fields")
        return cls(
            codec.uint(item[0], "height"),
            item[1],
            codec.uint(item[2], "proofs in epoch"),
            codec.uint(item[3], "last proof block"),
        )


def get_tower(state: StateReader, node_id: bytes) -> Tower:
    data = state.get(_TOWER + node_id)
    return Tower() if data is None else Tower.decode(data)


def put_tower(state: Overlay, node_id: bytes, tower: Tower) -> None:
    state.put(_TOWER + node_id, tower.encode())


def delete_tower(state: Overlay, node_id: bytes) -> None:
    state.delete(_TOWER + node_id)


class Towers(Module):
    name = NAME

    def calls(self) -> list[CallDef]:
        return [
            CallDef(
                NAME,
                "submit_proof",
                (
                    Arg("node_id", ArgKind.ACCOUNT),
                    Arg("height", ArgKind.U64),
                    Arg("anchor_number", ArgKind.U64),
                    Arg("iterations", ArgKind.U64),
                    Arg("y", ArgKind.BYTES, max_length=vdf.FORM_SIZE),
                    Arg("proof", ArgKind.BYTES, max_length=vdf.FORM_SIZE),
                ),
                self.submit_proof,
                "Extend a node's Time Tower with its next VDF proof.",
                heavy=True,  # its VDF check: 15-50 ms of a core
            )
        ]

    def submit_proof(
        self,
        ctx: Context,
        sender: AccountId,
        node_id: AccountId,
        height: int,
        anchor_number: int,
        iterations: int,
        y: bytes,
        proof: bytes,
    ) -> None:
        state = ctx.state
        config = ctx.config.towers
        record = nodes.get_node(state, node_id)
        if record is None:
            raise self.fail(TowersError.UNKNOWN_NODE, f"node 0x{node_id.hex()} is not registered")
        if record.operator != sender:
            raise self.fail(TowersError.WRONG_NODE, "proofs of a node come from its operator")
        tower = get_tower(state, node_id)
        if height != tower.height + 1:
            # At or below the tower's height: an earlier proof of this height got in first.
            raise (self.outdated if height <= tower.height else self.fail)(
                TowersError.WRONG_HEIGHT,
                f"the tower is at height {tower.height}: the next proof is {tower.height + 1}, "
                f"got {height}",
            )
        current = ctx.env.number
        if tower.height > 0 and current - tower.last_proof_block < config.proof_interval:
            # Checked before the proof's costly verification. Outdated, not a fault: after a
            # re-org the previous proof may sit in a later block than the prover saw.
            raise self.outdated(
                TowersError.TOO_SOON,
                f"the last proof is in block #{tower.last_proof_block}: the next may be in "
                f"#{tower.last_proof_block + config.proof_interval} or later, not #{current}",
            )
        anchor_hash = system.recent_block_hash(state, anchor_number)
        if (
            anchor_number >= current
            or current - anchor_number > config.anchor_window
            or anchor_hash is None
        ):
            raise self.outdated(
                TowersError.STALE_ANCHOR,
                f"anchor #{anchor_number} is not one of the last {config.anchor_window} blocks "
                f"before #{current}",
            )
        if iterations < config.min_iterations:
            raise self.fail(
                TowersError.TOO_FEW_ITERATIONS,
                f"{iterations} iterations, at least {config.min_iterations} required",
            )
        if (
            len(y) != vdf.FORM_SIZE
            or len(proof) != vdf.PROOF_SIZE
            or iterations > vdf.MAX_ITERATIONS
        ):
            raise self.fail(
                TowersError.MALFORMED_PROOF,
                f"y and proof are {vdf.FORM_SIZE} bytes each, got {len(y)} and {len(proof)}",
            )
        challenge = tower_challenge(node_id, tower.last_y, anchor_hash, height)
        if not verify_vdf(challenge, y, proof, iterations, config.discriminant_bits):
            raise self.fail(
                TowersError.INVALID_PROOF,
                "the proof does not verify for this node, height and anchor",
            )
        put_tower(state, node_id, Tower(height, y, tower.proofs_in_epoch + 1, current))
        ctx.emit(NAME, "ProofAccepted", node=AccountRef(node_id), height=height)
