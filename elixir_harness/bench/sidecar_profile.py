"""Where a call's time goes inside the sidecar: the Python work per call, without any I/O.

    python3 elixir_harness/bench/sidecar_profile.py [--calls N] [--cprofile OP]

Builds the sidecar's `Sidecar` object (what `sidecar.server` runs, minus the I/O loop and the
pipes), says `:hello` with compact variables on and telemetry off (as the benchmark's harness does: it
always asks for compact variables, and turns telemetry off when `:telemetry` is not
loaded), fills sessions of 1/10/100/1000 float variables like `bench/lib/workload.exs`, then for each
operation times N calls fed one frame per `handle_input` chunk (as sequential callers arrive), and
separately the three phases of a call: decoding the request frame, `calls.dispatch` in its unit
of work (the store's work, the result term and its rendering), encoding the reply frame. Prints
one JSON object (microseconds per call) on stdout (`--lines`: one "cell phase microseconds" line each, for the Elixir benchmark); with
`--cprofile OP` also prints the top functions of OP to stderr.

Run from the repository root, or with the root on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from sidecar import codec  # noqa: E402
from sidecar.options import SidecarOptions  # noqa: E402
from sidecar.server import Sidecar  # noqa: E402
from sidecar.store import calls  # noqa: E402
from sidecar.store.session_store import is_error  # noqa: E402
from sidecar.terms import Atom  # noqa: E402

A = Atom
BATCH = 10


def request(call_id: int, function: str, args: list) -> bytes:
    return codec.encode_frame((A("call"), call_id, A(function), args))


def operation_args(op: str, size: int, i: int) -> list:
    """The arguments of call `i` of `op` in the session of `size` variables (as workload.exs)."""
    session_id = f"bench_{size}"
    if op == "get_variable":
        return [session_id, A(f"v{i % size}")]
    if op == "update_variable":
        return [session_id, A(f"v{i % size}"), (i % 1000) + 0.5]
    names = [A(f"v{(i * BATCH + k) % size}") for k in range(BATCH)]
    if op == "get_variables":
        return [session_id, names]
    return [session_id, {name: (i % 1000) + 0.25 for name in names}]


def build_sidecar(sizes: list[int]) -> Sidecar:
    sidecar = Sidecar(SidecarOptions())
    sidecar.handle_input(codec.encode_frame((A("hello"), 1, {A("telemetry"): False, A("compact_variables"): True})))
    for size in sizes:
        sidecar.handle_input(request(0, "create_session", [f"bench_{size}"]))
        frames = b"".join(request(0, "register_variable", [f"bench_{size}", A(f"v{k}"), A("float"), 0.0]) for k in range(size))
        sidecar.handle_input(frames)
    return sidecar


def time_whole(sidecar: Sidecar, op: str, size: int, calls_n: int) -> float:
    frames = [request(i, op, operation_args(op, size, i)) for i in range(calls_n)]
    started = time.perf_counter()
    for frame in frames:
        sidecar.handle_input(frame)
    return (time.perf_counter() - started) * 1e6 / calls_n


def time_phases(sidecar: Sidecar, op: str, size: int, calls_n: int) -> dict:
    bodies = [request(i, op, operation_args(op, size, i))[4:] for i in range(calls_n)]
    started = time.perf_counter()
    decoded = [codec.decode_call(body) for body in bodies]  # what the sidecar runs for a call
    decode_us = (time.perf_counter() - started) * 1e6 / calls_n
    store, dispatch, renderers = sidecar.store, calls.dispatch, sidecar.replies.renderers

    def run(function, args):  # what Sidecar.serve_call does around the reply's encoding
        result = dispatch(store, function, args)[0]
        renderer = renderers.get(function)
        return result if renderer is None else renderer(result)

    started = time.perf_counter()
    results = [store.transact(lambda f=function, a=args: run(f, a), is_error) for _, function, args in decoded]
    dispatch_us = (time.perf_counter() - started) * 1e6 / calls_n
    failed = [result for result in results if is_error(result)]
    if failed:  # timing an error path would print figures of the wrong thing
        raise SystemExit(f"{op}/{size}: {len(failed)} of {calls_n} calls failed, e.g. {failed[0]!r}")
    started = time.perf_counter()
    for i, result in enumerate(results):
        sidecar.protocol.reply(i, result)
    encode_us = (time.perf_counter() - started) * 1e6 / calls_n
    return {"decode_request": decode_us, "dispatch": dispatch_us, "encode_reply": encode_us}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--cprofile", metavar="OP", default=None)
    parser.add_argument("--lines", action="store_true")
    args = parser.parse_args(argv)
    sizes = [1, 10, 100, 1000]
    sidecar = build_sidecar(sizes)
    figures = {"ping": {"whole": time_whole_ping(sidecar, args.calls)}}
    for op in ("get_variable", "update_variable", "get_variables", "update_variables"):
        size = 10 if op.endswith("s") else 1
        for cell_size in (size, 1000):
            key = f"{op}/{cell_size}"
            figures[key] = {"whole": time_whole(sidecar, op, cell_size, args.calls)}
            figures[key].update(time_phases(sidecar, op, cell_size, args.calls))
    if args.lines:
        for cell, phases in figures.items():
            for phase, micros in phases.items():
                print(f"{cell} {phase} {micros:.3f}")
    else:
        print(json.dumps(figures, indent=1))
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        time_whole(sidecar, args.cprofile, 10 if args.cprofile.endswith("s") else 1, args.calls)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    return 0


def time_whole_ping(sidecar: Sidecar, calls_n: int) -> float:
    frames = [request(i, "ping", []) for i in range(calls_n)]
    started = time.perf_counter()
    for frame in frames:
        sidecar.handle_input(frame)
    return (time.perf_counter() - started) * 1e6 / calls_n


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
