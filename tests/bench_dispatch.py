"""Measure the in-process request path of the two hottest calls: update_variable and
get_variable, from a frame's body to its reply frame.

Run from the repository root:  python3 tests/bench_dispatch.py [--seconds 0.5]

Prints microseconds per operation (best of 5 runs) for each stage: `codec.decode_call` of the
body, `calls.dispatch` of the decoded call, the reply's encoding, and the whole of
`Sidecar.handle_input` for one frame. Also a deep-ish write (update_variable with a metadata map,
and store_program with a nested program) whose arguments the depth guard has to walk. Not a
test: it asserts nothing and its figures depend on the machine (compare runs of one checkout
against another on the same machine, interleaved).
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sidecar import codec  # noqa: E402
from sidecar.cli import SidecarOptions  # noqa: E402
from sidecar.server import Sidecar  # noqa: E402
from sidecar.store import calls
from sidecar.terms import Atom  # noqa: E402

A = Atom


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

    sidecar = Sidecar(SidecarOptions(spin_us=0))
    sidecar.handle_input(codec.encode_frame((A("hello"), 1, {A("telemetry"): False, A("compact_variables"): True})))
    store = sidecar.store
    store.create_session("s1")
    store.register_variable("s1", A("temp"), A("float"), 0.5)
    store.store_program("s1", "p0", {"a": [1, 2, {"b": (3, 4)}]})
    nested: Any = {"leaf": 1}
    for _ in range(20):
        nested = {"k": [nested, 1.5, "x"]}

    cases = [
        ("update_variable(s1, :temp, 0.7)", A("update_variable"), ["s1", A("temp"), 0.7]),
        ("get_variable(s1, :temp)", A("get_variable"), ["s1", A("temp")]),
        ("update_variable(s1, :temp, 0.7, %{...})", A("update_variable"), ["s1", A("temp"), 0.7, {"note": "x", "n": [1, 2]}]),
        ("store_program(s1, p1, <20 levels>)", A("store_program"), ["s1", "p1", nested]),
    ]
    print(f"{'call':44} {'decode_call':>12} {'dispatch':>10} {'reply':>8} {'handle_input':>13}  (us)")
    for label, name, call_args in cases:
        body = codec.encode((A("call"), 7, name, call_args))
        frame = len(body).to_bytes(4, "big") + body
        decoded = codec.decode_call(body)
        assert decoded is not None, label
        _, function, decoded_args = decoded
        result, _ = calls.dispatch(store, function, list(decoded_args))
        t_decode = per_call_us(lambda: codec.decode_call(body), args.seconds)
        t_dispatch = per_call_us(lambda: calls.dispatch(store, function, list(decoded_args)), args.seconds)
        t_reply = per_call_us(lambda: sidecar.protocol.reply(7, result), args.seconds)
        t_whole = per_call_us(lambda: sidecar.handle_input(frame), args.seconds)
        print(f"{label:44} {t_decode:12.2f} {t_dispatch:10.2f} {t_reply:8.2f} {t_whole:13.2f}")


if __name__ == "__main__":
    main()
