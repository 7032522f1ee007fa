"""Measure the codec: fast path vs the erlang-py path on typical SessionStore traffic.

Run from the repository root:  python3 tests/bench_codec.py [--seconds 0.3]

Prints microseconds per operation and the erlang-py/fast ratio for a variable struct reply
and a small request. Not a test: it asserts nothing and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sidecar import codec  # noqa: E402
from sidecar.terms import Atom  # noqa: E402


def variable_reply() -> Any:
    """{:reply, 17, {:ok, %Snakepit.Bridge.Variables.Variable{...}}}"""
    a = Atom
    variable = {
        a("__struct__"): a("Snakepit.Bridge.Variables.Variable"),
        a("id"): "var_temp_123",
        a("name"): a("temp"),
        a("type"): a("float"),
        a("value"): 0.7,
        a("constraints"): {a("min"): 0.0, a("max"): 2.0},
        a("metadata"): {"source": "elixir", "created_by": "session_store"},
        a("version"): 3,
        a("created_at"): -576460750,
        a("last_updated_at"): -576460740,
        a("optimization_status"): {
            a("optimizing"): False,
            a("optimizer_id"): None,
            a("optimizer_pid"): None,
            a("started_at"): None,
        },
        a("access_rules"): [],
    }
    return (a("reply"), 17, (a("ok"), variable))


def small_request() -> Any:
    """{:call, 17, :get_variable, ["session_1", :temp]}"""
    return (Atom("call"), 17, Atom("get_variable"), ["session_1", Atom("temp")])


def per_call_us(func: Callable[[], Any], seconds: float) -> float:
    """Best-of-5 microseconds per call, each run sized to take about `seconds`/5."""
    timer = timeit.Timer(func)
    count, elapsed = timer.autorange()
    runs = max(1, int(count * (seconds / 5) / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=5, number=runs)) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    args = parser.parse_args()

    for label, term in (("variable struct reply", variable_reply()), ("small request", small_request())):
        data = codec.encode(term)
        assert data == codec.encode_via_erlang_py(term)
        fast_dec = per_call_us(lambda: codec.decode(data), args.seconds)
        slow_dec = per_call_us(lambda: codec.decode_via_erlang_py(data), args.seconds)
        fast_enc = per_call_us(lambda: codec.encode(term), args.seconds)
        slow_enc = per_call_us(lambda: codec.encode_via_erlang_py(term), args.seconds)
        print(f"{label} ({len(data)} bytes)")
        print(f"  decode: fast {fast_dec:7.2f} us   erlang-py {slow_dec:7.2f} us   ratio {slow_dec / fast_dec:5.1f}x")
        print(f"  encode: fast {fast_enc:7.2f} us   erlang-py {slow_enc:7.2f} us   ratio {slow_enc / fast_enc:5.1f}x")


if __name__ == "__main__":
    main()
