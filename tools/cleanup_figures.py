"""Figures of the periodic cleanup (not a test: it prints, it never asserts).

    python3 tools/cleanup_figures.py [--sessions 100000] [--storage memory|sqlite]

1. Memory: a sidecar (in this process, fed frames in chunks as stdin would) creates N sessions
   with ttl 1, the clock moves on, the cleanup removes them; three rounds. Prints the resident
   size at the start, full, and after each cleanup, as ratios to the start.
2. Waiting behind it: a real sidecar subprocess fills the same N sessions (the longest round
   trip of a chunk of creates is printed: the garbage collector's pauses show there), then, with
   a 50 ms cleanup interval, a client pings it back to back while the periodic cleanup removes
   them, and the longest wait of a ping, its 99th percentile and the cleanup's duration are
   printed.

docs/reliability.md quotes these figures.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sidecar import codec  # noqa: E402
from sidecar.cli import SidecarOptions  # noqa: E402
from sidecar.server import Sidecar  # noqa: E402
from sidecar.store.session_store import process_rss_bytes  # noqa: E402
from sidecar.terms import Atom as A  # noqa: E402

CHUNK = 64


def create_frames(first: int, count: int, tag: str) -> bytes:
    return b"".join(
        codec.encode_frame((A("call"), i, A("create_session"), [f"{tag}_{i}", [(A("ttl"), 1)]]))
        for i in range(first, first + count)
    )


def memory_rounds(sessions: int, storage: str) -> None:
    options = SidecarOptions(enable_test_calls=True, storage=storage)
    sidecar = Sidecar(options)
    sidecar.handle_input(codec.encode_frame((A("hello"), 1, {A("telemetry"): False})))
    gc.collect()
    start = process_rss_bytes()
    print(f"memory ({storage}): start {start / 1e6:.1f} MB")
    for round_ in range(3):
        for first in range(0, sessions, CHUNK):
            sidecar.handle_input(create_frames(first, min(CHUNK, sessions - first), f"r{round_}"))
        full = process_rss_bytes()
        sidecar.handle_input(codec.encode_frame((A("call"), 0, A("__advance_clock__"), [10])))
        began = time.perf_counter()
        now, first_step, steps, longest = sidecar.clock.now(), True, 0, 0.0
        while True:
            step_began = time.perf_counter()
            _, more = sidecar.cleanup_step(now, first_step)
            longest = max(longest, time.perf_counter() - step_began)
            first_step, steps = False, steps + 1
            if not more:
                break
        took = time.perf_counter() - began
        gc.collect()
        after = process_rss_bytes()
        print(
            f"  round {round_}: {sessions} sessions {full / 1e6:.1f} MB ({full / start:.2f}x), "
            f"after cleanup {after / 1e6:.1f} MB ({after / start:.2f}x); cleanup {took * 1e3:.0f} ms "
            f"in {steps} steps, longest step {longest * 1e3:.2f} ms"
        )
    sidecar.store.storage.close()


def waiting(sessions: int, storage: str) -> None:
    from client import SubprocessClient

    client = SubprocessClient(
        "--storage", storage, "--cleanup-interval", "50", "--log-level", "error", hello_options={A("telemetry"): False}
    )
    try:
        fill_waits = []
        for first in range(0, sessions, CHUNK):
            sent = time.perf_counter()
            ids = [
                client.send_call("create_session", f"w_{i}", [(A("ttl"), 3600)])
                for i in range(first, min(sessions, first + CHUNK))
            ]
            for call_id in ids:
                client.wait_reply(call_id)
            fill_waits.append(time.perf_counter() - sent)
        fill_waits.sort()
        print(
            f"filling ({storage}): {len(fill_waits)} round trips of {CHUNK} creates: longest {fill_waits[-1] * 1e3:.2f} ms, "
            f"p99 {fill_waits[int(len(fill_waits) * 0.99)] * 1e3:.2f} ms, median {fill_waits[len(fill_waits) // 2] * 1e3:.2f} ms"
        )
        client.call("__advance_clock__", 7200)  # every session expired: the next periodic cleanup takes them
        waits = []
        began = time.perf_counter()
        while client.call("session_exists?", f"w_{sessions - 1}") and time.perf_counter() - began < 60:
            for _ in range(50):
                sent = time.perf_counter()
                client.call("ping")
                waits.append(time.perf_counter() - sent)
        took = time.perf_counter() - began
        waits.sort()
        print(
            f"waiting ({storage}): {len(waits)} pings during a cleanup of {sessions} sessions ({took * 1e3:.0f} ms): "
            f"longest {waits[-1] * 1e3:.2f} ms, p99 {waits[int(len(waits) * 0.99)] * 1e3:.2f} ms, "
            f"median {waits[len(waits) // 2] * 1e3:.3f} ms"
        )
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--storage", choices=["memory", "sqlite"], default="memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        option = "memory" if args.storage == "memory" else f"sqlite:{os.path.join(directory, 'figures.db')}"
        memory_rounds(args.sessions, option)
        if args.storage == "sqlite":
            os.remove(os.path.join(directory, "figures.db"))
        waiting(args.sessions, option)


if __name__ == "__main__":
    main()
