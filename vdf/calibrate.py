"""Measures how many VDF iterations per second this machine proves, and sizes a proof to a time."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Final

from chain.clock import Clock, SystemClock
from chain.primitives import blake2_256
from vdf.errors import VdfError
from vdf.proof import DEFAULT_PARAMS, GENERATOR, MAX_ITERATIONS, VdfParams, prove

PROBE_ITERATIONS: Final = 20_000
"""A first short proof, to size the measured ones (about 0.1 s on a 2-vCPU machine)."""
MIN_SAMPLE_ITERATIONS: Final = 1_000
_DOMAIN: Final = b"statemesh/vdf-calibrate"


class CalibrationError(VdfError):
    """A calibration that cannot be run or used as asked."""


@dataclass(frozen=True, slots=True)
class Sample:
    iterations: int
    seconds: float

    @property
    def iterations_per_second(self) -> float:
        return self.iterations / self.seconds


@dataclass(frozen=True, slots=True)
class Calibration:
    discriminant_bits: int
    iterations_per_second: int
    """The median of the samples: whole proofs (squarings, discriminant and proof), which is
    what a tower proof costs. Longer proofs amortise the fixed part, so a proof sized from
    this finishes slightly early rather than late."""
    samples: tuple[Sample, ...]

    def iterations_for(self, seconds: float) -> int:
        """Iterations that take about `seconds` here, within the accepted range."""
        if not seconds > 0:
            raise CalibrationError(f"a proof must take a positive time, got {seconds} s")
        return max(1, min(MAX_ITERATIONS, round(seconds * self.iterations_per_second)))


def calibrate(
    params: VdfParams = DEFAULT_PARAMS,
    *,
    budget_seconds: float = 3.0,
    samples: int = 3,
    clock: Clock | None = None,
) -> Calibration:
    """Prove a short probe, then `samples` proofs sized to share `budget_seconds`, on this
    thread (it blocks for about the budget), timed by `clock`'s monotonic reading (the
    system's by default). Challenges are fixed, so runs are comparable."""
    if not budget_seconds > 0:
        raise CalibrationError(f"the measuring budget must be positive, got {budget_seconds} s")
    if samples < 1:
        raise CalibrationError(f"at least one sample is needed, got {samples}")
    timer = (clock or SystemClock()).monotonic

    def measure(index: int, iterations: int) -> Sample:
        challenge = bytes(blake2_256(_DOMAIN + index.to_bytes(4, "big")))
        started = timer()
        prove(challenge, GENERATOR, iterations, params)
        return Sample(iterations, max(timer() - started, 1e-9))

    probe = measure(0, PROBE_ITERATIONS)
    size = max(
        MIN_SAMPLE_ITERATIONS,
        min(MAX_ITERATIONS, round(probe.iterations_per_second * budget_seconds / samples)),
    )
    measured = tuple(measure(index, size) for index in range(1, samples + 1))
    rate = statistics.median(sample.iterations_per_second for sample in measured)
    return Calibration(params.discriminant_bits, round(rate), measured)
