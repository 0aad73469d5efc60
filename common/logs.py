"""The one logging setup of every process: readable lines by default, JSON lines with LOG_FORMAT=json.

A line's context goes in `extra` (`log.warning("skipped …", extra={"partition": 2, "offset": 17})`): the readable
line says it in its words, the JSON line also carries it as fields.

No API key reaches a log line, whoever writes it (uvicorn writes a WebSocket's path with its query string, and
the access log every request's): a key is cut to the prefix the database keeps of it (`wt_` and 7 more
characters, enough to tell keys apart), and an `access_token=` that is not a key is cut whole."""

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from common.keys import KEY_PREFIX, KEY_PREFIX_LENGTH
from common.settings import LogFormat

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_KEY = re.compile(rf"\b{KEY_PREFIX}[A-Za-z0-9_-]+")
_ACCESS_TOKEN = re.compile(r"(access_token=)([^&\s\"']*)")
# The attributes every LogRecord has: anything else on a record came in `extra`.
_STANDARD = {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "color_message"}


def redacted(text: str) -> str:
    """`text` with every API key cut to its stored prefix, and every other `access_token=` value cut whole."""
    text = _ACCESS_TOKEN.sub(lambda m: m[1] + (m[2] if m[2].startswith(KEY_PREFIX) else "…"), text)
    return _KEY.sub(lambda m: m[0][:KEY_PREFIX_LENGTH] + "…", text)


class Redacting(logging.Filter):
    """Redacts each record's message (its arguments included) and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if KEY_PREFIX in message or "access_token" in message:
            message = redacted(message)
        record.msg, record.args = message, None  # formatted once: the formatter's getMessage() has nothing left to do
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redacted(record.exc_text)
        return True


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
        if record.exc_text:  # Redacting made it from exc_info
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def handler(log_format: LogFormat, stream: TextIO) -> logging.Handler:
    """A handler writing to `stream` in `log_format`."""
    written = logging.StreamHandler(stream)
    written.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT))
    written.addFilter(Redacting())
    return written


def setup(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    """Every log line of the process to stderr, in `log_format`."""
    root = logging.getLogger()
    root.handlers[:] = [handler(log_format, sys.stderr)]
    root.setLevel(level)
    # aiokafka logs every retry of a lost connection at ERROR, ten times a second during an outage; the processes
    # report outages themselves, a line when one starts and one when it ends.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
