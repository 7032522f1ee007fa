"""A redis-server of the tests' own: started on a free loopback port, stopped by its pid.

`shared()` is the one server of the test run (started when first asked for; conftest.py stops it
at the end); `RedisServer()` starts one more (tests that stop and restart Redis, or that are about
persistence). No test uses a Redis it did not start.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

REDIS_SERVER = shutil.which("redis-server")


def redis_available() -> bool:
    """Whether the Redis tests can run here: a redis-server binary and the Python client."""
    if REDIS_SERVER is None:
        return False
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process on 127.0.0.1 (no persistence unless `persistence` args say so)."""

    def __init__(self, port: Optional[int] = None, *extra: str, directory: Optional[Path] = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.port = port or free_port()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sidecar-redis-"))
        self.extra = extra or ("--save", "", "--appendonly", "no")
        self.process: Optional[subprocess.Popen] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port and directory)."""
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory), *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """Stop it by its pid (SIGKILL when `kill`: nothing written at shutdown)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


_shared: Optional[RedisServer] = None
_prefixes = itertools.count(1)


def shared() -> RedisServer:
    """The test run's Redis, started when first asked for."""
    global _shared
    if _shared is None or _shared.process is None or _shared.process.poll() is not None:
        _shared = RedisServer()
    return _shared


def stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


def fresh_prefix() -> str:
    """A key prefix no other store of this test run uses."""
    return f"t{os.getpid()}-{next(_prefixes)}:"
