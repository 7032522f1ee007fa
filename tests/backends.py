"""The storage backends every store suite runs against, and how to make each for a test.

`BACKENDS` is what the `client` fixture (conftest.py) multiplies the contract suites by:
memory (the default), copying (keeps only what is saved: catches a forgotten write), SQLite
(durable, in a fresh file per test) and, when a `redis-server` can be started here, Redis.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from redis_server import fresh_prefix, redis_available, shared

from sidecar.storage.factory import StorageSpec, open_storage

BACKENDS = ["memory", "copying", "sqlite"] + (["redis"] if redis_available() else [])


def storage_option(backend: str, directory: Optional[Path] = None) -> str:
    """The `--storage` value of `backend` (SQLite: a new file in `directory`; Redis: the test
    run's own redis-server, tests/redis_server.py)."""
    if backend in ("memory", "copying"):
        return backend
    if backend == "sqlite":
        directory = Path(directory or tempfile.mkdtemp(prefix="sidecar-sqlite-"))
        return f"sqlite:{directory / 'store.db'}"
    if backend == "redis":
        return shared().url
    raise ValueError(f"no such test backend {backend!r}")


def storage_args(backend: str, directory: Optional[Path] = None) -> list[str]:
    """The sidecar's command-line arguments for a fresh store of kind `backend` (Redis: a key
    prefix of its own)."""
    args = ["--storage", storage_option(backend, directory)]
    if backend == "redis":
        args += ["--redis-prefix", fresh_prefix()]
    return args


def open_backend(backend: str, directory: Optional[Path] = None) -> Any:
    """A freshly opened storage of kind `backend` (Redis: under a key prefix of its own)."""
    if backend == "redis":
        return open_storage(StorageSpec.parse(storage_option(backend), prefix=fresh_prefix()))
    return open_storage(StorageSpec.parse(storage_option(backend, directory)))


def remove_sqlite_files(option: str) -> None:
    """Delete the files of a `sqlite:PATH` storage option (the database, its WAL and SHM)."""
    if option.startswith("sqlite:"):
        path = option[len("sqlite:") :]
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(path + suffix)
            except FileNotFoundError:
                pass


def snapshot(storage: Any, global_program_ids: list = ()) -> bytes:
    """Everything `storage` holds, through the interface only, as comparable bytes: every
    session's header, variables (every field but the stamp), name index and programs, the given
    global programs, the counters and the next variable number. Two backends (or one before and
    after a call) hold the same store when their snapshots are equal. Redis is read through
    another sidecar's eyes (`uncached_view`): what Redis holds, not the copies this one keeps."""
    from sidecar import codec

    if hasattr(storage, "uncached_view"):
        storage = storage.uncached_view()
    tx = storage.begin()
    try:
        sessions = []
        for session_id in tx.session_ids():
            contents = tx.load_session(session_id)
            variables = [variable.fields()[:-1] for variable in contents.variables]
            index = sorted(contents.index.items(), key=repr)
            programs = sorted(contents.programs, key=lambda program: codec.encode(program[0]))
            sessions.append((contents.header.fields(), variables, index, programs))
        globals_ = [(program_id, tx.get_global_program(program_id)) for program_id in global_program_ids]
        counters = sorted(tx.counters().items())
        number = tx.next_variable_number()
    finally:
        tx.rollback()
    return codec.encode((sessions, globals_, counters, number))
