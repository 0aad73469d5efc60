"""The one logging setup: readable lines by default, JSON lines with LOG_FORMAT=json, context fields included."""

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable

from common import logs
from common.settings import LogFormat


def logged(log_format: LogFormat, write: Callable[[logging.Logger], None]) -> list[str]:
    """What a logger with the setup's handler writes while `write(log)` runs."""
    out = io.StringIO()
    log = logging.getLogger(f"test.{log_format}")
    log.propagate, log.level = False, logging.INFO
    log.handlers[:] = [logs.handler(log_format, out)]
    write(log)
    return out.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_and_the_context() -> None:
    def write(log: logging.Logger) -> None:
        log.warning("skipped the message at partition %d, offset %d: %s", 2, 17, "not JSON",
                    extra={"partition": 2, "offset": 17})  # fmt: skip
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")

    first, second = (json.loads(line) for line in logged("json", write))
    assert first.keys() == {"time", "level", "logger", "message", "partition", "offset"}
    assert first["level"] == "WARNING" and first["logger"] == "test.json"
    assert first["message"] == "skipped the message at partition 2, offset 17: not JSON"
    assert (first["partition"], first["offset"]) == (2, 17)
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert second["message"] == "it failed" and "ValueError: boom" in second["exception"]


def test_text_lines_are_for_people() -> None:
    (line,) = logged("text", lambda log: log.warning("Kafka unavailable, retrying: %s", "KafkaConnectionError"))
    assert line.endswith(" WARNING test.text: Kafka unavailable, retrying: KafkaConnectionError")


def test_the_setup_logs_to_stderr_and_keeps_aiokafka_quiet() -> None:
    script = (
        "import logging; from common import logs; logs.setup('json'); "
        "logging.getLogger('aiokafka.conn').error('Unable connect to node with id 1'); "
        "logging.getLogger('bridge.relay').info('leader: publishing')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == ""
    assert [json.loads(line)["message"] for line in done.stderr.splitlines()] == ["leader: publishing"]
