"""`--log-format json`: one JSON object per line, with what the text format says; and the CLI's
checks of the logging and metrics flags."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node.cli import build_parser, main
from node.log_format import LogFormat, configure_logging
from node.metrics_server import DEFAULT_PROMETHEUS_PORT


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, last_resort = list(root.handlers), root.level, logging.lastResort
    yield
    logging.lastResort = last_resort
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def emit_all(log_format: LogFormat) -> str:
    stream = io.StringIO()
    configure_logging("info", log_format, stream)
    log = logging.getLogger("statemesh.test")
    log.debug("not shown")
    log.info("imported #%d (0x%s…)", 7, "ab12")
    log.warning("a message\nwith a forged line")
    aside = logging.getLogger("statemesh.test.aside")  # as libp2p's: propagates nowhere
    aside.propagate = False
    aside.warning("from a logger without handlers")
    aside.info("below the last resort's level")
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception("it failed")
    return stream.getvalue()


def test_json_lines_carry_what_the_text_says(restore_root: None) -> None:
    text = emit_all(LogFormat.TEXT)
    lines = emit_all(LogFormat.JSON).splitlines()
    assert len(lines) == 4  # one per record: newlines inside stay escaped
    records = [json.loads(line) for line in lines]
    assert [set(r) for r in records] == [
        {"time", "level", "logger", "message"},
        {"time", "level", "logger", "message"},
        {"time", "level", "logger", "message"},
        {"time", "level", "logger", "message", "exception"},
    ]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "statemesh.test", "imported #7 (0xab12…)"),
        ("WARNING", "statemesh.test", "a message\nwith a forged line"),
        ("WARNING", "statemesh.test.aside", "from a logger without handlers"),
        ("ERROR", "statemesh.test", "it failed"),
    ]
    assert records[3]["exception"].endswith("ValueError: broken")
    assert records[0]["time"].endswith("+00:00") and "T" in records[0]["time"]
    for record in records:
        assert f"{record['logger']}: {record['message']}" in text
    assert "ValueError: broken" in text


def test_defaults() -> None:
    args = build_parser().parse_args(["node", "--dev"])
    assert (args.log_format, args.prometheus_port) == ("text", DEFAULT_PROMETHEUS_PORT)
    assert DEFAULT_PROMETHEUS_PORT == 9615
    assert not args.prometheus_external and not args.no_prometheus


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prometheus-port", "65536"], "--prometheus-port 65536 is not a port number"),
        (["--prometheus-port", "-1"], "--prometheus-port -1 is not a port number"),
        (["--log-format", "xml"], "invalid choice: 'xml'"),
        (["--prometheus-port", "x"], "invalid int value: 'x'"),
    ],
)
def test_impossible_values_are_refused_before_anything_starts(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], restore_root: None
) -> None:
    try:
        code = main(["node", "--dev", "--no-network", "--rpc-port", "0", *flags])
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
