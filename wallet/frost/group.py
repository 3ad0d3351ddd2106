"""The Ed25519 group for FROST: scalars mod L and points of the prime-order subgroup, their
canonical encodings, arithmetic through libsodium, and the validation of every received one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions

from wallet.frost.errors import InvalidPoint, InvalidScalar

GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
"""L, the order of the prime-order subgroup and of the scalar field."""
FIELD_PRIME = 2**255 - 19
SCALAR_LENGTH = 32
POINT_LENGTH = 32

RandomSource = Callable[[int], bytes]
"""Returns that many uniformly random bytes; `os.urandom` outside tests."""

_Y_MASK = (1 << 255) - 1


@dataclass(frozen=True, slots=True)
class Scalar:
    """An element of the scalar field, held as its canonical 32-byte little-endian encoding.

    Arithmetic goes through libsodium's constant-time scalar routines because scalars are
    often secret; for the same reason `repr` never shows the value."""

    encoding: bytes = field(repr=False)
    """SerializeScalar: 32 bytes, little-endian, below L. Checked on construction."""

    def __post_init__(self) -> None:
        if len(self.encoding) != SCALAR_LENGTH:
            raise InvalidScalar(f"a scalar is {SCALAR_LENGTH} bytes, got {len(self.encoding)}")
        if int.from_bytes(self.encoding, "little") >= GROUP_ORDER:
            raise InvalidScalar("scalar is not below the group order L")

    @classmethod
    def decode(cls, data: bytes) -> Scalar:
        """DeserializeScalar: the canonical encoding of a scalar below L, or `InvalidScalar`."""
        return cls(bytes(data))

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        if not 0 <= value < GROUP_ORDER:
            raise InvalidScalar("scalar is not in 0..L-1")
        return cls(value.to_bytes(SCALAR_LENGTH, "little"))

    @classmethod
    def reduce(cls, wide: bytes) -> Scalar:
        """The 64-byte little-endian integer `wide` reduced mod L (hash outputs, randomness)."""
        if len(wide) != 2 * SCALAR_LENGTH:
            raise InvalidScalar(f"a wide scalar is {2 * SCALAR_LENGTH} bytes, got {len(wide)}")
        return cls(nacl.bindings.crypto_core_ed25519_scalar_reduce(wide))

    @classmethod
    def random(cls, rng: RandomSource) -> Scalar:
        # 64 bytes reduced mod L: the bias is below 2^-250.
        return cls.reduce(rng(2 * SCALAR_LENGTH))

    def to_int(self) -> int:
        return int.from_bytes(self.encoding, "little")

    @property
    def is_zero(self) -> bool:
        return self.encoding == _ZERO_ENCODING

    def __add__(self, other: Scalar) -> Scalar:
        return Scalar(nacl.bindings.crypto_core_ed25519_scalar_add(self.encoding, other.encoding))

    def __sub__(self, other: Scalar) -> Scalar:
        return Scalar(nacl.bindings.crypto_core_ed25519_scalar_sub(self.encoding, other.encoding))

    def __mul__(self, other: Scalar) -> Scalar:
        return Scalar(nacl.bindings.crypto_core_ed25519_scalar_mul(self.encoding, other.encoding))

    def __neg__(self) -> Scalar:
        return Scalar(nacl.bindings.crypto_core_ed25519_scalar_negate(self.encoding))

    def invert(self) -> Scalar:
        if self.is_zero:
            raise InvalidScalar("zero has no inverse")
        return Scalar(nacl.bindings.crypto_core_ed25519_scalar_invert(self.encoding))


_ZERO_ENCODING = bytes(SCALAR_LENGTH)
SCALAR_ZERO = Scalar(_ZERO_ENCODING)
SCALAR_ONE = Scalar.from_int(1)


@dataclass(frozen=True, slots=True)
class Point:
    """A point of the prime-order subgroup (or the identity, as an intermediate result),
    held as its canonical 32-byte encoding, so equal points have equal bytes.

    Build points from untrusted bytes only with `Point.decode`; the constructor trusts its
    input because every internal result comes from libsodium in canonical form."""

    encoding: bytes

    def __post_init__(self) -> None:
        if len(self.encoding) != POINT_LENGTH:
            raise InvalidPoint(f"a point is {POINT_LENGTH} bytes, got {len(self.encoding)}")

    def __repr__(self) -> str:
        return f"Point({self.encoding.hex()})"

    @classmethod
    def decode(cls, data: bytes) -> Point:
        """DeserializeElement for FROST(Ed25519): RFC 8032 decoding, then rejection of the
        identity and of any point outside the prime-order subgroup. libsodium's arithmetic
        accepts small-order and mixed-order points silently, so this is the only gate."""
        data = bytes(data)
        if len(data) != POINT_LENGTH:
            raise InvalidPoint(f"a point is {POINT_LENGTH} bytes, got {len(data)}")
        y = int.from_bytes(data, "little") & _Y_MASK
        if y >= FIELD_PRIME:
            raise InvalidPoint("non-canonical point encoding (y is not below 2^255 - 19)")
        if y == 1:
            # (0, 1) with either sign bit: the identity, or its non-canonical twin.
            raise InvalidPoint("the identity element is not allowed")
        if nacl.bindings.crypto_core_ed25519_is_valid_point(data):
            return cls(data)
        raise InvalidPoint(_why_invalid(data))

    @property
    def is_identity(self) -> bool:
        return self.encoding == _IDENTITY_ENCODING

    def __add__(self, other: Point) -> Point:
        return Point(nacl.bindings.crypto_core_ed25519_add(self.encoding, other.encoding))

    def __sub__(self, other: Point) -> Point:
        return Point(nacl.bindings.crypto_core_ed25519_sub(self.encoding, other.encoding))

    def __mul__(self, scalar: Scalar) -> Point:
        # libsodium refuses to return the identity, so those cases are answered here; for a
        # prime-order point and a nonzero scalar below L the product is never the identity.
        if scalar.is_zero or self.is_identity:
            return IDENTITY
        return Point(
            nacl.bindings.crypto_scalarmult_ed25519_noclamp(scalar.encoding, self.encoding)
        )


def random_nonzero_scalar(rng: RandomSource) -> Scalar:
    """A uniformly random nonzero scalar (for secrets whose zero would be degenerate)."""
    candidate = Scalar.random(rng)
    if candidate.is_zero:
        # Probability 2^-252 with a working source: a zero means the source is broken.
        raise InvalidScalar("the random source produced zero; it is not random")
    return candidate


def base_mul(scalar: Scalar) -> Point:
    """G * scalar, G the Ed25519 base point."""
    if scalar.is_zero:
        return IDENTITY
    return Point(nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(scalar.encoding))


def _why_invalid(data: bytes) -> str:
    """Classify a canonical encoding that libsodium rejected, for a precise error message."""
    try:
        doubled = nacl.bindings.crypto_core_ed25519_add(data, data)
    except nacl.exceptions.RuntimeError:
        return "not a point on the curve"
    eightfold = doubled
    for _ in range(2):
        eightfold = nacl.bindings.crypto_core_ed25519_add(eightfold, eightfold)
    if eightfold == _IDENTITY_ENCODING:
        return "a small-order point"
    return "not in the prime-order subgroup (it has a small-order component)"


_IDENTITY_ENCODING = b"\x01" + bytes(POINT_LENGTH - 1)
IDENTITY = Point(_IDENTITY_ENCODING)
BASE_POINT = base_mul(SCALAR_ONE)
