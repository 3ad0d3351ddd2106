"""`statemesh node --max-pids`, `--disk-high-water` and `--disk-low-water`: their defaults, and
values that cannot work refused before the node starts (exit 2, as argparse does)."""

from __future__ import annotations

import pytest

from node.cli import build_parser, main
from orchestrator.replica_specs import DEFAULT_MAX_PIDS


def test_defaults() -> None:
    args = build_parser().parse_args(["node", "--dev"])
    assert (args.max_pids, args.disk_high_water, args.disk_low_water) == (DEFAULT_MAX_PIDS, 85, 80)
    assert DEFAULT_MAX_PIDS == 4096


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-pids", "0"], "--max-pids 0 is below 1"),
        (["--max-pids", "-1"], "--max-pids -1 is below 1"),
        (
            ["--disk-high-water", "70"],
            "--disk-high-water, --disk-low-water: disk water marks must satisfy "
            "1 <= low <= high <= 100 (percent), not low 80 and high 70",
        ),
        (
            ["--disk-high-water", "101", "--disk-low-water", "90"],
            "not low 90 and high 101",
        ),
        (["--disk-low-water", "0"], "not low 0 and high 85"),
    ],
)
def test_impossible_values_are_refused_before_anything_starts(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "--dev", "--no-network", "--rpc-port", "0", *flags]) == 2
    assert message in capsys.readouterr().err
