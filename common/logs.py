"""The one logging setup of every process: readable lines by default, JSON lines with LOG_FORMAT=json.

A line's context goes in `extra` (`log.warning("skipped …", extra={"partition": 2, "offset": 17})`): the readable
line says it in its words, the JSON line also carries it as fields."""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from common.settings import LogFormat

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attributes every LogRecord has: anything else on a record came in `extra`.
_STANDARD = {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "color_message"}


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the context fields, and the
    exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {key: value for key, value in vars(record).items() if key not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def handler(log_format: LogFormat, stream: TextIO) -> logging.Handler:
    """A handler writing to `stream` in `log_format`."""
    written = logging.StreamHandler(stream)
    written.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT))
    return written


def setup(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    """Every log line of the process to stderr, in `log_format`."""
    root = logging.getLogger()
    root.handlers[:] = [handler(log_format, sys.stderr)]
    root.setLevel(level)
    # aiokafka logs every retry of a lost connection at ERROR, ten times a second during an outage; the processes
    # report outages themselves, a line when one starts and one when it ends.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
