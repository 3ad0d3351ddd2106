"""VDF verification through chiavdf (class groups of imaginary quadratic fields, n-Wesolowski
proofs of depth 0): the encoding of group elements, the bounds, and the one `verify` that both
the runtime (`chain.runtime.towers`) and the prover's typed API (`vdf.proof`) call."""

from __future__ import annotations

import functools
from typing import Final

import chiavdf

FORM_SIZE: Final = 100
"""Bytes of one serialized class group element. chiavdf pads every compressed form to the size
of a 1024-bit discriminant's, so it is 100 bytes for every supported discriminant size."""

PROOF_SIZE: Final = FORM_SIZE
"""A depth-0 n-Wesolowski proof is one group element."""

CHALLENGE_SIZE: Final = 32
"""chiavdf derives the discriminant by searching for a prime over hashes of the challenge; with a
1-byte seed that search never ends (measured), so challenges have exactly one length."""

MIN_ITERATIONS: Final = 1
MAX_ITERATIONS: Final = 10**10
"""17 hours at 165k iterations/s, 4 hours on a VDF ASIC: far beyond any proof interval and well
inside chiavdf's uint64."""

GENERATOR: Final = b"\x08" + bytes(FORM_SIZE - 1)
"""The form (2, 1), the serialized generator: the starting element of every Time Tower proof."""

VERIFIED_CACHE_SIZE: Final = 4096
"""Verdicts kept (about 2 MB): a node meets each proof several times (the pool's dry run at
submission or gossip, again after every block while the proof waits, then in the block it
authors or imports), and each verification costs ~16 ms of a core."""

IDENTITY: Final = b"\x04" + bytes(FORM_SIZE - 1)
"""The form (1, 1). As an input it makes a proof trivial (y = proof = identity verifies for any
iteration count)."""

SPECIAL_FLAGS: Final = 0x04 | 0x08
"""chiavdf decodes any form whose first byte has the identity or generator flag set as that
special form, whatever the other 99 bytes hold; other forms it re-serializes and compares."""


def is_canonical_form(form: bytes) -> bool:
    """True when `form` has the length of a group element and, if it is flagged as the generator
    or the identity, is that form's one canonical encoding: every element has exactly one
    encoding. Whether the bytes are an element of a particular class group is only known once
    the discriminant is derived, which `verify` does."""
    return len(form) == FORM_SIZE and not (
        form[0] & SPECIAL_FLAGS and form not in (GENERATOR, IDENTITY)
    )


def verify(
    challenge: bytes, x: bytes, y: bytes, proof: bytes, iterations: int, discriminant_bits: int
) -> bool:
    """True when `proof` shows that y = x^(2^iterations) in the class group of the discriminant
    derived from `challenge`. Returns False, before any work, for inputs of the wrong shape (so
    the native code only ever reads inputs of the lengths it expects), and for bytes that are no
    element of this class group. Costs ~16 ms at 1024 bits, mostly deriving the discriminant."""
    if (
        len(challenge) != CHALLENGE_SIZE
        or not is_canonical_form(x)
        or x == IDENTITY
        or not is_canonical_form(y)
        or len(proof) != PROOF_SIZE
        or isinstance(iterations, bool)
        or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS
    ):
        return False
    return _verify_group(challenge, discriminant_bits, x, y + proof, iterations)


def forget_verdicts() -> None:
    """Empties the remembered verdicts: what measures verification itself starts from none."""
    _verify_group.cache_clear()


@functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)
def _verify_group(
    challenge: bytes, discriminant_bits: int, x: bytes, y_proof: bytes, iterations: int
) -> bool:
    """chiavdf's verdict, remembered for the exact inputs: verification is a pure function of
    them, so a repeated question gets the same answer without the work."""
    try:
        return bool(
            chiavdf.create_discriminant_and_verify_n_wesolowski(
                challenge, discriminant_bits, x, y_proof, iterations, 0
            )
        )
    except (RuntimeError, ValueError):
        # chiavdf raises when y or the proof does not decode to an element of this challenge's
        # class group; that is a proof that does not verify, not a fault of the verifier.
        return False
