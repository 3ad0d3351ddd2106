"""`vdf.calibrate` and `statemesh vdf calibrate`: the measurement's arithmetic (with a fake
clock), a real short run, and the command's output."""

from __future__ import annotations

import argparse
import itertools
import json

import pytest

from node.commands import vdf as vdf_command
from node.errors import UsageError
from vdf.calibrate import (
    MIN_SAMPLE_ITERATIONS,
    PROBE_ITERATIONS,
    Calibration,
    CalibrationError,
    Sample,
    calibrate,
)
from vdf.proof import MAX_ITERATIONS, VdfParams


class HalfSecondClock:
    """Every monotonic reading is half a second after the last: each timed proof takes 0.5 s."""

    def __init__(self) -> None:
        self._readings = itertools.count(0.0, 0.5)

    def now_ms(self) -> int:
        return 0

    def monotonic(self) -> float:
        return next(self._readings)


def test_samples_are_sized_from_the_probe_and_the_median_is_reported() -> None:
    result = calibrate(VdfParams(256), budget_seconds=0.1, samples=2, clock=HalfSecondClock())
    probe_rate = PROBE_ITERATIONS / 0.5
    size = round(probe_rate * 0.1 / 2)
    assert result.samples == (Sample(size, 0.5), Sample(size, 0.5))
    assert result.iterations_per_second == round(size / 0.5)
    assert result.discriminant_bits == 256


def test_a_tiny_budget_still_proves_a_minimum() -> None:
    result = calibrate(budget_seconds=1e-6, samples=1, clock=HalfSecondClock())
    assert result.samples == (Sample(MIN_SAMPLE_ITERATIONS, 0.5),)


def test_a_real_short_run_measures_a_plausible_rate() -> None:
    result = calibrate(budget_seconds=0.05, samples=2)
    assert len(result.samples) == 2
    # From a slow shared core to a VDF ASIC.
    assert 5_000 < result.iterations_per_second < 2_000_000


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(1.0, 150_000), (60.0, 9_000_000), (0.5, 75_000), (1e-9, 1), (1e9, MAX_ITERATIONS)],
)
def test_iterations_for_a_time(seconds: float, expected: int) -> None:
    assert Calibration(1024, 150_000, ()).iterations_for(seconds) == expected


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_iterations_for_needs_a_positive_time(seconds: float) -> None:
    with pytest.raises(CalibrationError) as caught:
        Calibration(1024, 150_000, ()).iterations_for(seconds)
    assert str(caught.value) == f"a proof must take a positive time, got {seconds} s"


def test_calibration_arguments_are_checked() -> None:
    with pytest.raises(CalibrationError) as caught:
        calibrate(budget_seconds=0)
    assert str(caught.value) == "the measuring budget must be positive, got 0 s"
    with pytest.raises(CalibrationError) as caught:
        calibrate(samples=0)
    assert str(caught.value) == "at least one sample is needed, got 0"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="statemesh")
    vdf_command.register(root.add_subparsers(dest="command", required=True))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    args = parser().parse_args(argv)
    code: int = args.handler(args)
    return code, capsys.readouterr().out


def test_calibrate_prints_the_rate_and_the_iterations_for_the_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run(capsys, "vdf", "calibrate", "--seconds", "30", "--measure-seconds", "0.05")
    assert code == 0
    rate_line, size_line = out.splitlines()
    rate = int(rate_line.split()[0].replace(",", ""))
    assert rate_line == f"{rate:,} iterations/s (1024-bit discriminant, median of 3)"
    assert size_line == f"{30 * rate:,} iterations take about 30 s on this machine"


def test_calibrate_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        capsys, "vdf", "calibrate", "--seconds", "2", "--measure-seconds", "0.05",
        "--discriminant-bits", "512", "--json",
    )  # fmt: skip
    assert code == 0
    value = json.loads(out)
    assert set(value) == {
        "discriminantBits", "iterationsPerSecond", "targetSeconds", "iterations", "samples",
    }  # fmt: skip
    assert value["discriminantBits"] == 512
    assert value["targetSeconds"] == 2.0
    assert value["iterations"] == 2 * value["iterationsPerSecond"]
    assert len(value["samples"]) == 3


def test_an_unsupported_discriminant_size_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(UsageError) as caught:
        run(capsys, "vdf", "calibrate", "--discriminant-bits", "2048")
    assert str(caught.value) == (
        "discriminant_bits must be a multiple of 128 from 256 to 1024; got 2048"
    )


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf"])
def test_seconds_must_be_a_positive_number(capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["vdf", "calibrate", "--seconds", value])
    assert caught.value.code == 2
    assert "--seconds" in capsys.readouterr().err
