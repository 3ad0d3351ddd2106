"""Typed prove / verify over class groups of imaginary quadratic fields (chiavdf, n-Wesolowski
proofs of depth 0), with every input checked before it reaches the C library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import chiavdf

from chain import vdf as chain_vdf
from vdf.errors import VdfError

# The encoding of group elements, the bounds and the verification itself are the chain's
# (`chain.vdf`), so the prover checks its inputs against exactly what the runtime accepts.
FORM_SIZE: Final = chain_vdf.FORM_SIZE
PROOF_SIZE: Final = chain_vdf.PROOF_SIZE
CHALLENGE_SIZE: Final = chain_vdf.CHALLENGE_SIZE
MIN_ITERATIONS: Final = chain_vdf.MIN_ITERATIONS
MAX_ITERATIONS: Final = chain_vdf.MAX_ITERATIONS
"""The prover keeps checkpoints, measured at 40 MB for 10^6 iterations, 90 MB for 3·10^6,
50 MB for 10^8 and 330 MB for 10^9."""
GENERATOR: Final = chain_vdf.GENERATOR
IDENTITY: Final = chain_vdf.IDENTITY

MIN_DISCRIMINANT_BITS: Final = 256
MAX_DISCRIMINANT_BITS: Final = 1024
DISCRIMINANT_BITS_STEP: Final = 128
"""Sizes verified with chiavdf 1.2.0: 256, 384, ..., 1024. Above 1024 chiavdf refuses; below 1024
the class group is too small to be safe, so anything but 1024 is for tests only."""


class VdfParamsError(VdfError):
    """VDF parameters this build cannot use safely (an unsupported discriminant size)."""


class MalformedProof(VdfError):
    """Input that has the wrong shape to be a VDF proof at all: a wrong length, an iteration count
    out of range, a non-canonical encoding. Distinct from a well-formed proof that does not
    verify, for which `verify` returns False."""


@dataclass(frozen=True, slots=True)
class VdfParams:
    """The class group every proof of a chain lives in; set in the chain spec."""

    discriminant_bits: int = 1024
    """Size of the negative prime discriminant derived from each challenge."""

    def __post_init__(self) -> None:
        bits = self.discriminant_bits
        if (
            isinstance(bits, bool)
            or not isinstance(bits, int)
            or not MIN_DISCRIMINANT_BITS <= bits <= MAX_DISCRIMINANT_BITS
            or bits % DISCRIMINANT_BITS_STEP
        ):
            raise VdfParamsError(
                f"discriminant_bits must be a multiple of {DISCRIMINANT_BITS_STEP} from "
                f"{MIN_DISCRIMINANT_BITS} to {MAX_DISCRIMINANT_BITS}; got {bits!r}"
            )


DEFAULT_PARAMS: Final = VdfParams()


@dataclass(frozen=True, slots=True)
class VdfProof:
    """The output of `iterations` sequential squarings of x, and the proof that it is."""

    y: bytes
    """x^(2^iterations), a serialized group element of FORM_SIZE bytes."""
    proof: bytes
    """The Wesolowski proof, one serialized group element of PROOF_SIZE bytes."""
    iterations: int
    """The number of squarings the prover claims."""

    def __post_init__(self) -> None:
        check_form("y", self.y)
        check_form("proof", self.proof)
        check_iterations(self.iterations)

    def __repr__(self) -> str:
        return f"VdfProof(iterations={self.iterations}, y={self.y[:8].hex()}…)"


def check_challenge(challenge: object) -> None:
    """Raise MalformedProof unless `challenge` is CHALLENGE_SIZE bytes."""
    if not isinstance(challenge, bytes):
        raise MalformedProof(f"challenge must be bytes, got {type(challenge).__name__}")
    if len(challenge) != CHALLENGE_SIZE:
        raise MalformedProof(f"challenge is {len(challenge)} bytes; it must be {CHALLENGE_SIZE}")


def check_form(name: str, form: object) -> None:
    """Raise MalformedProof unless `form` could be a canonically encoded group element.

    Whether the bytes are an element of a particular class group is only known once the
    discriminant is derived; chiavdf checks that, and `verify` returns False if they are not."""
    if not isinstance(form, bytes):
        raise MalformedProof(f"{name} must be bytes, got {type(form).__name__}")
    if len(form) != FORM_SIZE:
        raise MalformedProof(f"{name} is {len(form)} bytes; a group element is {FORM_SIZE}")
    if not chain_vdf.is_canonical_form(form):
        raise MalformedProof(
            f"{name} is a non-canonical encoding of the "
            f"{'generator' if form[0] & 0x08 else 'identity'}"
        )


def check_iterations(iterations: object) -> None:
    """Raise MalformedProof unless `iterations` is an int in [MIN_ITERATIONS, MAX_ITERATIONS]."""
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise MalformedProof(f"iterations must be an integer, got {type(iterations).__name__}")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise MalformedProof(
            f"iterations is {iterations}; it must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}"
        )


def _check_input(x: object) -> None:
    check_form("x", x)
    if x == IDENTITY:
        raise MalformedProof("x is the identity element, for which every proof is trivial")


def prove(
    challenge: bytes, x: bytes, iterations: int, params: VdfParams = DEFAULT_PARAMS
) -> VdfProof:
    """Square x `iterations` times in the class group derived from `challenge`, and prove it.

    Blocks for the whole computation (about 6 µs per iteration on one core) and cannot be
    interrupted: run it in a worker process (see `vdf.prover`) when it must be cancellable."""
    check_challenge(challenge)
    _check_input(x)
    check_iterations(iterations)
    output = chiavdf.prove(challenge, x, params.discriminant_bits, iterations, "")
    if len(output) != FORM_SIZE + PROOF_SIZE:
        raise VdfError(f"chiavdf.prove returned {len(output)} bytes, expected y and a proof")
    return VdfProof(y=output[:FORM_SIZE], proof=output[FORM_SIZE:], iterations=iterations)


def verify(
    challenge: bytes,
    x: bytes,
    proof: VdfProof,
    iterations: int,
    params: VdfParams = DEFAULT_PARAMS,
) -> bool:
    """True when `proof` shows that proof.y = x^(2^iterations) in the class group of `challenge`.

    Raises MalformedProof, before any work, when an input has the wrong shape (see `check_*`);
    returns False for every well-shaped input that does not verify, including bytes that are no
    element of this class group and a proof that claims a different iteration count. Nothing
    else is raised: chiavdf only ever sees inputs of the lengths it reads, so garbage from the
    network cannot make it read out of bounds. Costs ~16 ms at 1024 bits, mostly deriving the
    discriminant, and hardly depends on `iterations`."""
    check_challenge(challenge)
    _check_input(x)
    check_iterations(iterations)
    if not isinstance(proof, VdfProof):
        raise MalformedProof(f"proof must be a VdfProof, got {type(proof).__name__}")
    if proof.iterations != iterations:
        return False
    return chain_vdf.verify(
        challenge, x, proof.y, proof.proof, iterations, params.discriminant_bits
    )
