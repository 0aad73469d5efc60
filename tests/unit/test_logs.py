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


def test_a_key_is_cut_to_its_stored_prefix_in_messages_arguments_and_tracebacks() -> None:
    key = "wt_" + "AbCdEfG" + "hIjKlMnOpQrStUvWxYz0123456789-_abcdefghij"

    def write(log: logging.Logger) -> None:
        log.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws/status-changes?access_token={key}")
        log.info("GET /status-changes/stream?access_token=%s&product_id=1", "not-a-key")
        try:
            raise ValueError(f"bad key {key}")
        except ValueError:
            log.exception("failed")

    lines = logged("text", write)
    text = "\n".join(lines)
    assert key[10:18] not in text and "not-a-key" not in text
    assert '"WebSocket /ws/status-changes?access_token=wt_AbCdEfG…" [accepted]' in lines[0]
    assert lines[1].endswith("GET /status-changes/stream?access_token=…&product_id=1")
    assert "ValueError: bad key wt_AbCdEfG…" in text
