"""Resource quantities as manifests write them (cores, millicores, bytes with SI or binary
suffixes), their exact integer values, and the bounds and defaults a container's resources
take."""

from __future__ import annotations

import re
from decimal import Decimal

KIB = 1024
MIB = KIB * KIB
GIB = MIB * KIB
DEFAULT_CPU_REQUEST_MILLICORES = 100
"""Requested by a container that gives neither a cpu request nor a limit, so that every replica
takes some room and is billed for some."""
DEFAULT_MEMORY_REQUEST_BYTES = 64 * MIB
MIN_MEMORY_LIMIT_BYTES = 6 * MIB
"""The container engine refuses smaller memory limits."""
MAX_CPU_MILLICORES = 256_000
"""Per container, requests and limits alike."""
MAX_MEMORY_BYTES = 1024 * GIB
MAX_DISK_BYTES = 64 * 1024 * GIB
MAX_PIDS_LIMIT = 32768
"""The most processes and threads a manifest may give one container (`resources.limits.pids`):
Linux's traditional pid_max. Each node caps a replica, its containers together, lower
(`statemesh node --max-pids`)."""

_QUANTITY = re.compile(r"([0-9]+)(?:\.([0-9]+))?([A-Za-z]*)")
MILLICORES_PER = {"": 1000, "m": 1}
BYTES_PER = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
CPU_FORM = 'cores such as 2 or "0.5", or millicores such as "500m"'
BYTES_FORM = 'bytes, or a number with a suffix such as "256Mi", "1Gi" or "500M"'


def exact_amount(value: object, units: dict[str, int]) -> tuple[int, int] | None:
    """`value` times its suffix's unit, as an exact fraction (numerator, denominator)."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    if isinstance(value, int) and not 0 <= value < 10**30:
        return None
    text = value if isinstance(value, str) else str(value)
    match = _QUANTITY.fullmatch(text) if len(text) <= 32 else None
    if match is None or match.group(3) not in units:
        return None
    whole, fraction, suffix = match.group(1), match.group(2) or "", match.group(3)
    return int(whole + fraction) * units[suffix], 10 ** len(fraction)


def format_cpu(millicores: int) -> str:
    return f"{millicores}m"


def parse_bytes(text: str) -> int:
    """A byte quantity as manifests write them ("10Gi", "500M", "1024"), rounded up to a whole
    byte; `ValueError` (saying the accepted form) for anything else."""
    scaled = exact_amount(text, BYTES_PER)
    if scaled is None:
        raise ValueError(f"{text!r} is not a byte quantity ({BYTES_FORM})")
    return -(-scaled[0] // scaled[1])


def format_bytes(amount: int) -> str:
    """The largest binary unit that divides `amount` exactly: 268435456 is "256Mi"."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = BYTES_PER[suffix]
        if amount and amount % unit == 0:
            return f"{amount // unit}{suffix}"
    return f"{amount} bytes"
