"""Shared fixtures: `client` runs every contract test in-process (answering with structs, and
with compact variables expanded as the harness does) and against a real sidecar process, each
on every storage backend (tests/backends.py: memory, copying, SQLite, and Redis when a
redis-server is installed: the run's own, tests/redis_server.py, stopped at the end).

A subprocess sidecar is started once per backend per test run and emptied between tests with
the test-only `__reset__` call (starting a Python process per test would cost ~0.25 s each);
it is restarted if a test left it unusable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import settings

# The machine is shared and noisy: Hypothesis properties check behaviour, never timing, so no
# per-example deadline (its default of 200 ms would turn a slow moment into a failure).
settings.register_profile("project", deadline=None)
settings.load_profile("project")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests' helper modules

from backends import BACKENDS, remove_sqlite_files, storage_args  # noqa: E402
from inprocess_client import Client  # noqa: E402

from sidecar.terms import Atom  # noqa: E402

try:
    from client import SubprocessClient  # type: ignore  # noqa: E402
except Exception:  # not written yet, or broken: in-process only
    SubprocessClient = None  # type: ignore

CLIENT_KINDS = ["inprocess", "compact"] + (["subprocess"] if SubprocessClient is not None else [])


class _SharedSidecar:
    """One subprocess sidecar per backend for the whole run, reset before each test."""

    def __init__(self, backend: str = "memory") -> None:
        self.client: Any = None
        self.backend = backend
        self.args = storage_args(backend)
        self.storage = self.args[1]

    def fresh(self) -> Any:
        if self.client is not None:
            try:
                if self.client.call("__reset__") is Atom("ok"):
                    self.client.take_events()
                    return self.client
            except Exception:
                pass
            self.close()
        remove_sqlite_files(self.storage)
        self.client = SubprocessClient(*self.args)
        return self.client

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None
        remove_sqlite_files(self.storage)


class _SharedSidecars:
    """The shared subprocess sidecars, one per backend, started when first asked for."""

    def __init__(self) -> None:
        self.by_backend: dict[str, _SharedSidecar] = {}

    def fresh(self, backend: str) -> Any:
        if backend not in self.by_backend:
            self.by_backend[backend] = _SharedSidecar(backend)
        return self.by_backend[backend].fresh()

    def close(self) -> None:
        for shared in self.by_backend.values():
            shared.close()


@pytest.fixture(scope="session", autouse=True)
def _stop_test_redis() -> Iterator[None]:
    """The run's redis-server (started by the first test that needs it) is stopped at the end."""
    yield
    from redis_server import stop_shared

    stop_shared()


@pytest.fixture(scope="session")
def shared_sidecars() -> Iterator[_SharedSidecars]:
    shared = _SharedSidecars()
    yield shared
    shared.close()


@pytest.fixture(scope="session")
def shared_sidecar(shared_sidecars: _SharedSidecars) -> Iterator[_SharedSidecar]:
    """The memory-backed shared sidecar (tests that are about the process, not the storage)."""
    shared_sidecars.fresh("memory")
    yield shared_sidecars.by_backend["memory"]


CLIENT_PARAMS = [pytest.param((kind, backend), id=f"{kind}-{backend}") for backend in BACKENDS for kind in CLIENT_KINDS]


@pytest.fixture(params=CLIENT_PARAMS)
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    kind, backend = request.param
    if kind in ("inprocess", "compact"):
        made = Client(storage=backend, compact_variables=kind == "compact")
        yield made
        made.close()
    else:
        yield request.getfixturevalue("shared_sidecars").fresh(backend)
