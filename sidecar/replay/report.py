"""Human-readable replay results: a one-line pass, or the first mismatch printed as Elixir terms.

FAIL tests/recordings/variables.rec: frame 57, the reply to request 12, does not match
  request:
    {:call, 12, :get_variable, ["s1", "var_temp_3"]}
  expected:
    {:reply, 12, {:ok, %Snakepit.Bridge.Variables.Variable{...}}}
  actual:
    {:reply, 12, {:ok, %Snakepit.Bridge.Variables.Variable{...}}}
  at {:reply, 12, {:ok, %Snakepit.Bridge.Variables.Variable{... value: <here>}}}: expected 0.7, got 0.8
"""

from __future__ import annotations

from typing import Any

from sidecar.elixir.inspect import inspect
from sidecar.replay.matcher import ABSENT
from sidecar.replay.runner import ReplayResult

_INDENT = "    "
_STDERR_LINES = 15


def _term_block(term: Any) -> str:
    if term is ABSENT:
        return _INDENT + "(nothing)"
    text = inspect(term, pretty=True, width=100, indent=len(_INDENT))
    return _INDENT + text


def format_result(result: ReplayResult) -> str:
    """`ok PATH (N frames)` or the failure report."""
    if result.failure is None:
        return f"ok   {result.path} ({result.frames} frames)"
    failure = result.failure
    where = f"frame {failure.frame_index}, " if failure.frame_index is not None else ""
    lines = [f"FAIL {result.path}: {where}{failure.what}, does not match"]
    if failure.request is not ABSENT:
        lines += ["  request:", _term_block(failure.request)]
    lines += ["  expected:", _term_block(failure.expected), "  actual:", _term_block(failure.actual)]
    if failure.mismatch is not None:
        lines.append(f"  at {failure.mismatch.location()}: {failure.mismatch.reason}")
    if failure.note:
        lines.append(f"  {failure.note}")
    stderr_lines = [line for line in failure.stderr.splitlines() if line.strip()]
    if stderr_lines and (failure.mismatch is None):
        lines.append("  sidecar stderr (last lines):")
        lines += [_INDENT + line for line in stderr_lines[-_STDERR_LINES:]]
    return "\n".join(lines)
