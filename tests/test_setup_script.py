"""scripts/setup, the first thing scripts/demo, scripts/test and CI run: one line per step on the
terminal, the tools' output in the log file, the log's tail when a step fails.

The steps that would install something are driven with a stand-in Python (a shell script), so
nothing is installed; the test skips when `elixir`/`mix` or `redis-server` are not on PATH, since
the script would then install Debian's packages.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup"

pytestmark = pytest.mark.skipif(
    shutil.which("elixir") is None or shutil.which("mix") is None or shutil.which("redis-server") is None,
    reason="without elixir or redis-server on PATH, scripts/setup would install them",
)

# Fails the "is it installed?" checks (`-c ...`), then plays a noisy pip (`-m pip ...`).
NOISY_PIP = """#!/bin/sh
case "$1" in
  -c) exit 1 ;;
  -m) i=0; while [ $i -lt 200 ]; do echo "pip noise $i"; i=$((i+1)); done; exit 0 ;;
esac
exit 2
"""


def run_setup(tmp_path: Path, python: str, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "setup.log"
    env = dict(os.environ, SNAKEPIT_SIDECAR_PYTHON=python, SNAKEPIT_SETUP_LOG=str(log), MIX_ENV="test")
    result = subprocess.run([str(SETUP), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return result, log.read_text()


def test_one_line_per_step_and_nothing_else_on_the_terminal(tmp_path: Path) -> None:
    result, log = run_setup(tmp_path, shutil.which("python3") or "python3", "--harness")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("setup: Elixir") and lines[0].endswith("... found")
    assert lines[1].startswith("setup: redis-server") and lines[1].endswith("... found")
    assert lines[2].startswith("setup: the Python package") and lines[2].endswith("... found")
    assert lines[3] == "setup: compiling the Elixir harness (MIX_ENV=test) ... done"
    assert "== compiling the Elixir harness (MIX_ENV=test)" in log


def test_an_installing_step_sends_its_output_to_the_log(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text(NOISY_PIP)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    result, log = run_setup(tmp_path, str(python))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[2].startswith("setup: installing the Python package") and lines[2].endswith("done")
    assert "pip noise" not in result.stderr + result.stdout
    assert "pip noise 199" in log
    assert f"$ {python} -m pip install" in log


def test_a_failing_step_stops_setup_and_shows_the_log_tail(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-python")
    result, log = run_setup(tmp_path, missing)
    assert result.returncode != 0
    assert "FAILED" in result.stderr
    assert f"the last lines of {tmp_path / 'setup.log'}" in result.stderr
    # the tail is the log's end, marked, under the failed step's line
    assert f"  | $ {missing} -m pip install" in result.stderr
    assert "No such file or directory" in log
