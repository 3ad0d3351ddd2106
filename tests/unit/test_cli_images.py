"""`statemesh node`'s image options: the size cap as a byte quantity, the image GC marks."""

from __future__ import annotations

import pytest

from chain.runtime.manifest import parse_bytes
from node.cli import build_parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1024", 1024), ("10Gi", 10 * 2**30), ("500M", 500 * 10**6), ("1.5Ki", 1536), ("0.5", 1)],
)
def test_byte_quantities_read_as_manifests_write_them(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "10GB", "ten", "1e9"])
def test_anything_else_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_bytes(text)
    assert str(raised.value) == (
        f"{text!r} is not a byte quantity "
        '(bytes, or a number with a suffix such as "256Mi", "1Gi" or "500M")'
    )


def test_the_node_takes_a_size_cap_and_gc_marks() -> None:
    args = build_parser().parse_args(
        ["node", "--max-image-size", "2Gi", "--image-gc-high", "90", "--image-gc-low", "70"]
    )
    assert (args.max_image_size, args.image_gc_high, args.image_gc_low) == (2 * 2**30, 90, 70)
    defaults = build_parser().parse_args(["node"])
    assert (defaults.max_image_size, defaults.image_gc_high, defaults.image_gc_low) == (
        10 * 2**30,
        85,
        80,
    )


def test_a_bad_size_cap_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(["node", "--max-image-size", "lots"])
    assert raised.value.code == 2
    assert "argument --max-image-size: 'lots' is not a byte quantity" in capsys.readouterr().err
