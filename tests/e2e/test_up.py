"""stack/up.py, the foreground runner behind `make up`: prefixed logs, Ctrl-C stops everything."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
UP = Path(__file__).resolve().parents[2] / "stack" / "up.py"


def start(procfile: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(UP), str(procfile)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def read_until_all_printed(proc: subprocess.Popen[str], *texts: str) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if all(any(text in line for line in seen) for text in texts):
            return seen
    raise AssertionError(f"{texts} not all printed; saw {seen}")


def test_ctrl_c_stops_every_service_and_lines_carry_the_service_name(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    marker = tmp_path / "stopped"
    procfile.write_text(
        "# comment\n"
        "first: echo hello from first; sleep 60\n"
        f"second: trap 'touch {marker}; exit 0' TERM; echo hello from second; sleep 60 & wait\n"
    )
    proc = start(procfile)
    seen = read_until_all_printed(proc, "ready", "hello from first", "hello from second")

    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)

    assert proc.returncode == 0
    assert any(line.startswith("first  | hello from first") for line in seen)
    assert any(line.startswith("second | hello from second") for line in seen)
    assert "all services stopped" in out
    assert marker.exists(), "the service got SIGTERM and could clean up"


def test_when_one_service_dies_the_others_are_stopped_and_the_exit_code_says_so(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("steady: sleep 60\nbroken: sleep 0.5; exit 3\n")
    started = time.monotonic()
    proc = start(procfile)
    out, _ = proc.communicate(timeout=30)

    assert proc.returncode == 3
    assert "broken exited with code 3; stopping the rest" in out
    assert time.monotonic() - started < 30
