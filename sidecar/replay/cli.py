"""`snakepit-sidecar replay [--timeout S] [--sidecar CMD] [--storage KIND] FILE...`: replay recordings.

Each file is replayed against its own fresh sidecar (and fresh storage: `--storage`; on Redis, a
key prefix of its own, whose keys are deleted afterwards). Prints `ok FILE (N frames)` per matching
file, and for a mismatching one the first mismatching frame (request, expected and actual term
as Elixir prints them, and the path to the difference). Exit status: 0 when every file matches,
1 when one does not, 2 for a usage error or a file that is not a readable recording.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
from typing import Iterator, Optional, Sequence

from sidecar.replay.recording import RecordingError
from sidecar.replay.report import format_result
from sidecar.replay.runner import DEFAULT_TIMEOUT, default_sidecar_command, replay_file

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
PROG = "snakepit-sidecar replay"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Replay recorded Elixir traffic against a fresh sidecar and compare every reply and "
        "telemetry frame term by term (docs/replay.md).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="recordings (snakepit-sidecar-recording 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for one frame from the sidecar (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--sidecar",
        metavar="COMMAND",
        help="the command that starts the sidecar (default: this Python with -m sidecar)",
    )
    parser.add_argument(
        "--storage",
        metavar="KIND",
        default="memory",
        help=(
            "the replayed sidecar's storage: memory (default), copying, sqlite (a fresh temporary file "
            "for each recording) or a redis://HOST:PORT/DB URL (a fresh key prefix for each recording); "
            "the answers must not depend on it"
        ),
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    return parser


@contextlib.contextmanager
def storage_arguments(kind: str) -> Iterator[list[str]]:
    """The sidecar arguments for a fresh store of `kind` (a temporary SQLite file while the
    block runs)."""
    if kind in ("memory", "copying"):
        yield ["--storage", kind]
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="replay-sqlite-") as directory:
            yield ["--storage", f"sqlite:{os.path.join(directory, 'store.db')}"]
    elif is_redis(kind):
        prefix = f"replay-{os.urandom(6).hex()}:"
        try:
            yield ["--storage", kind, "--redis-prefix", prefix]
        finally:
            _delete_redis_store(kind, prefix)
    else:
        raise ValueError(f"unknown storage {kind!r}: memory, copying, sqlite or a redis:// URL")


def is_redis(kind: str) -> bool:
    return kind.startswith(("redis://", "rediss://", "unix://"))


def _delete_redis_store(url: str, prefix: str) -> None:
    """Delete the keys a replay left under `prefix` (best effort: Redis may be gone)."""
    from sidecar.storage.base import StorageError
    from sidecar.storage.redis import RedisStorage

    try:
        storage = RedisStorage(url, prefix, follow_changes=False)
    except StorageError:
        return
    try:
        storage.reset()
    except StorageError:
        pass
    finally:
        storage.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the replay command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return int(exit_request.code or 0)
    if args.timeout <= 0:
        print(f"{PROG}: error: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    command = shlex.split(args.sidecar) if args.sidecar else default_sidecar_command()
    if args.storage not in ("memory", "copying", "sqlite") and not is_redis(args.storage):
        print(f"{PROG}: error: --storage must be memory, copying, sqlite or a redis:// URL", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    for path in args.files:
        try:
            with storage_arguments(args.storage) as storage:
                result = replay_file(path, command=command + storage, timeout=args.timeout)
        except (RecordingError, OSError) as error:
            print(f"{PROG}: error: {path}: {error}", file=sys.stderr)
            status = max(status, EXIT_USAGE)
            continue
        if not result.ok:
            status = max(status, EXIT_MISMATCH)
        if not result.ok or not args.quiet:
            # the report is this command's output (the replay tool is not the sidecar: its
            # stdout carries no frames)
            sys.stdout.write(format_result(result) + "\n")
            sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
