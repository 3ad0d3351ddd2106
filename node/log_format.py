"""How a node writes its log: the human format, or one JSON object per line (`--log-format
json`) with the same content, for log shippers."""

from __future__ import annotations

import enum
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, RFC 3339 with milliseconds), `level`, `logger`,
    `message`, and `exception` (the traceback as text) when there is one. Newlines inside a
    message stay escaped, so a message can never forge a second record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat, stream: TextIO = sys.stderr) -> None:
    """The root logger writes `level` and above to `stream` in `log_format`."""
    formatter = JsonFormatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Records of loggers that reach no handler (libp2p's: they do not propagate) would be written
    # bare by logging's last resort (warnings and above); they take the same format.
    last_resort = logging.StreamHandler(stream)
    last_resort.setFormatter(formatter)
    last_resort.setLevel(logging.WARNING)
    logging.lastResort = last_resort
    # Python's warnings go through the root handler (logger `py.warnings`).
    logging.captureWarnings(True)
