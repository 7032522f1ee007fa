"""The `snakepit-sidecar` command line: options validated with pydantic, then the server runs.

    snakepit-sidecar [options]          serve the protocol on stdin/stdout (what Port.open runs)
    snakepit-sidecar replay FILE...     replay recorded Elixir traffic (sidecar.replay.cli)

Bad option values print a clear message on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Sequence

from pydantic import ValidationError

from sidecar import __version__
from sidecar.options import LogLevelName, SidecarOptions

__all__ = ["SidecarOptions", "LogLevelName", "build_parser", "parse_options", "main"]

if TYPE_CHECKING:
    from sidecar.logframes import LogFrameHandler

PROG = "snakepit-sidecar"
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser. Values stay strings here: `SidecarOptions` validates them."""
    defaults = SidecarOptions()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Serve the Snakepit SessionStore contract over an Erlang port: {:packet, 4} frames of "
            "external term format on stdin/stdout. Logs go to stderr (and, from --log-frame-level "
            "up, to the BEAM as {:log, ...} frames). Exits with status 0 when stdin closes."
        ),
        epilog=f"subcommand:\n  {PROG} replay FILE...   replay recorded Elixir traffic against the store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--default-ttl", metavar="SECONDS", help=f"session TTL (default {defaults.default_ttl}; hello :default_ttl overrides)"
    )
    parser.add_argument(
        "--global-program-ttl",
        metavar="SECONDS",
        help=f"global program TTL (default {defaults.global_program_ttl}; hello :global_program_ttl overrides)",
    )
    parser.add_argument(
        "--cleanup-interval",
        metavar="MS",
        help=f"milliseconds between periodic cleanups (default {defaults.cleanup_interval}; hello :cleanup_interval overrides)",
    )
    parser.add_argument(
        "--max-frame-bytes",
        metavar="BYTES",
        help=f"largest frame accepted; larger ones are skipped and answered with an error (default {defaults.max_frame_bytes})",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help=f"stderr log level: debug, info, warning, error (default {defaults.log_level})"
    )
    parser.add_argument(
        "--log-frame-level",
        metavar="LEVEL",
        help=f"level from which records are also sent as {{:log, ...}} frames (default {defaults.log_frame_level})",
    )
    parser.add_argument(
        "--spin-us",
        metavar="MICROSECONDS",
        help=(
            f"after answering a lone call, poll stdin this long before blocking in read (default {defaults.spin_us}; 0: block at once). "
            "Saves the wake-up of a sleeping CPU on each sequential request, at the price of CPU time while requests keep "
            "coming; never spins with only one CPU to run on"
        ),
    )
    parser.add_argument(
        "--storage",
        metavar="SPEC",
        help=(
            "where the store keeps its data (default memory): memory; sqlite:PATH (durable: no acknowledged write is lost "
            "when the sidecar is killed; one sidecar per file); redis://[:PASSWORD@]HOST:PORT/DB (shared by every sidecar "
            "on that Redis). docs/storage.md"
        ),
    )
    parser.add_argument(
        "--sqlite-synchronous",
        metavar="LEVEL",
        help=(
            "normal (default: a commit survives the sidecar's death; a power loss can lose the last ones) or full "
            "(fsync on every commit: survives a power loss too, slower)"
        ),
    )
    parser.add_argument(
        "--redis-prefix",
        metavar="PREFIX",
        help=f"prefix of every Redis key of this store, so independent stores can share one Redis (default {defaults.redis_prefix}; no braces)",
    )
    parser.add_argument(
        "--redis-timeout-ms",
        metavar="MS",
        help=(
            f"Redis connect and read timeout (default {defaults.redis_timeout_ms}): with Redis unreachable a call answers "
            "{:error, {:storage_error, message}} within about twice this"
        ),
    )
    parser.add_argument(
        "--redis-cache-mb",
        metavar="MB",
        help=f"memory for this sidecar's copies of the Redis sessions it works on (default {defaults.redis_cache_mb})",
    )
    parser.add_argument(
        "--enable-test-calls", action="store_true", default=None, help="serve the test-only calls (fake clock and the like)"
    )
    return parser


def parse_options(argv: Sequence[str]) -> SidecarOptions:
    """Parse and validate; exits with status 2 and a message on stderr when they are bad."""
    parser = build_parser()
    namespace = parser.parse_args(list(argv))
    given = {key: value for key, value in vars(namespace).items() if value is not None}
    try:
        return SidecarOptions.model_validate(given)
    except ValidationError as error:
        parser.exit(EXIT_USAGE, f"{PROG}: error: {describe_validation_error(error)}\n")
        raise AssertionError("unreachable") from None  # pragma: no cover


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad option, naming it as it is spelled on the command line."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "options"
        lines.append(f"--{field.replace('_', '-')} {problem.get('input')!r}: {problem['msg']}")
    return "; ".join(lines)


def configure_logging(options: SidecarOptions) -> "LogFrameHandler":
    """stderr logging at --log-level, plus the `:log` frame handler; returns the latter."""
    from sidecar.logframes import LogFrameHandler, python_level

    stderr_level = python_level(options.log_level)
    frame_level = python_level(options.log_frame_level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(stderr_level)
    stderr_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    frame_handler = LogFrameHandler(frame_level)
    root.addHandler(stderr_handler)
    root.addHandler(frame_handler)
    root.setLevel(min(stderr_level, frame_level))
    return frame_handler


def run_replay(argv: Sequence[str]) -> int:
    """`snakepit-sidecar replay FILE...`, implemented by `sidecar.replay.cli:main`."""
    try:
        from sidecar.replay.cli import main as replay_main
    except ImportError as error:
        if error.name not in ("sidecar.replay", "sidecar.replay.cli"):
            raise
        print(f"{PROG}: error: the replay subcommand is not available in this installation ({error})", file=sys.stderr)
        return EXIT_USAGE
    result = replay_main(list(argv))
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `snakepit-sidecar` and `python -m sidecar`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "replay":
        return run_replay(args[1:])
    options = parse_options(args)
    from sidecar import server  # imported late: --help and bad options stay fast

    return server.run(options, configure_logging(options))
