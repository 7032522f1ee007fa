"""The SQLite backend's append log: how a chunk's writes become durable with one `write`.

A SQLite commit costs 13-23 µs here even in WAL mode with `synchronous=NORMAL`, more than the
whole memory-mode update it would guard (`tools/sqlite_commit_floor.py`). So the backend makes a
chunk durable by appending one record to a log file next to the database (`PATH-log`) and
answering; the rows reach the SQLite file later, thousands of records in one transaction
(`Pending`, coalesced: a variable updated 500 times is written once). What this gives and costs:

- **The same promise.** A record is in the operating system once `os.write` returns, as a WAL
  commit under `synchronous=NORMAL` is: a killed sidecar loses nothing acknowledged. With
  `sync` the log is also `fdatasync`ed before any reply, as SQLite's `FULL` would fsync.
- **Recovery.** Opening replays the log into the file (in one transaction), then empties it.
  A record is `length, crc32, payload` (a `marshal`led `(number, Batch)`): a torn or damaged
  record ends the replay there. After a kill it is the only one and was never acknowledged (its
  reply leaves only after the write returns); after a power loss under `synchronous=normal` it
  and what follows are the last records the kernel had not written out. The dropped bytes are
  kept in `PATH-log.dropped`.
- **Idempotent and numbered.** Every row in a record is the whole row as of that record,
  deletes are deletes, and a rewritten session starts by deleting all its rows, so writing a
  record again changes nothing. Records are numbered, the numbers go on across emptyings, and
  the file keeps the last number it holds (`meta.log_applied`): replay skips records the file
  has (a stop between the apply's commit and the log's truncation, or old bytes of an emptied
  log that a power loss brought back) and stops at a gap.
- **Ordered durability.** The apply commits with SQLite's `synchronous=FULL` (its WAL is on the
  disk) before the log is emptied, so a power loss never finds the log empty and the file
  without its records: what survives one is a prefix of the acknowledged history.

`marshal` (the standard library's, C, for the record payloads): tuples of ints, strs, bytes
and None only, written and read by this module, in marshal's version 4 (every Python since 3.4
reads it). A record whose checksum holds but that cannot be read is not a torn write: opening
is refused rather than dropping it.
"""

from __future__ import annotations

import errno
import logging
import marshal
import os
import sqlite3
import struct
import zlib
from typing import NamedTuple, Optional

log = logging.getLogger(__name__)

MAGIC = b"SNKSLOG1"
"""The first bytes of a log file: the format and its version (an unknown one is refused)."""
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
_MARSHAL_VERSION = 4

_UPSERT_SESSION = (
    "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
    "seq=excluded.seq, created_at=excluded.created_at, last_accessed=excluded.last_accessed, ttl=excluded.ttl, "
    "revision=excluded.revision, variable_count=excluded.variable_count, program_count=excluded.program_count, "
    "total_variable_updates=excluded.total_variable_updates, rest=excluded.rest"
)
_UPDATE_SESSION_COUNTERS = (
    "UPDATE sessions SET last_accessed=?, revision=?, variable_count=?, program_count=?, total_variable_updates=? WHERE id=?"
)
_UPSERT_VARIABLE = (
    "INSERT INTO variables VALUES (?,?,?,?) ON CONFLICT(session, id) DO UPDATE SET seq=excluded.seq, data=excluded.data"
)
_UPSERT_INDEX = (
    "INSERT INTO variable_index VALUES (?,?,?) ON CONFLICT(session, key) DO UPDATE SET variable_id=excluded.variable_id"
)
_UPSERT_PROGRAM = (
    "INSERT INTO programs VALUES (?,?,?,?) ON CONFLICT(session, key) DO UPDATE SET seq=excluded.seq, data=excluded.data"
)
_UPSERT_GLOBAL = (
    "INSERT INTO global_programs VALUES (?,?,?) ON CONFLICT(id) DO UPDATE SET stored_at=excluded.stored_at, data=excluded.data"
)
UPSERT_META = "INSERT INTO meta VALUES (?,?) ON CONFLICT(name) DO UPDATE SET value=excluded.value"
TABLES = ("sessions", "variables", "variable_index", "programs", "global_programs", "meta")


class Batch(NamedTuple):
    """What one chunk changed, as rows (a log record). `raw` is a session's id as bytes.

    - `wipe`: everything deleted first (`__reset__`).
    - `rewritten`: sessions whose rows are all deleted, then, unless the session is gone
      (`header` None), written again whole: `(raw, header, variables, index, programs)`.
    - `headers`: whole session rows; `counters`: the `_UPDATE_SESSION_COUNTERS` parameters.
    - `variables`: `(raw, id, row or None)`, None deleting; `name_index`: `(raw, key, row or None)`.
    - `programs`: program rows; `globals_`: `(id, row or None)`; `meta`: `(name, value)`.
    """

    wipe: bool
    rewritten: tuple
    headers: tuple
    counters: tuple
    variables: tuple
    name_index: tuple
    programs: tuple
    globals_: tuple
    meta: tuple


class _SessionRows:
    """The pending rows of one session, newest last-wins."""

    __slots__ = ("header", "counters", "variables", "index", "programs")

    def __init__(self) -> None:
        self.header: Optional[tuple] = None
        self.counters: Optional[tuple] = None
        self.variables: dict[str, Optional[tuple]] = {}
        self.index: dict[bytes, Optional[tuple]] = {}
        self.programs: dict[bytes, tuple] = {}


class Pending:
    """The records appended since the file was last written, coalesced: per row, only its newest
    state (an update made 500 times is written once). `write(db)` puts them in the file in the
    order that gives the same result as writing every record in turn."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.wipe = False
        self.records = 0
        self.reset_sessions: dict[bytes, None] = {}
        """Sessions whose rows are all deleted before any pending row is written."""
        self.sessions: dict[bytes, _SessionRows] = {}
        self.globals_: dict[bytes, Optional[tuple]] = {}
        self.meta: dict[str, int] = {}

    def add(self, batch: Batch) -> None:
        self.records += 1
        if batch.wipe:
            self.clear()
            self.records = 1
            self.wipe = True
        sessions = self.sessions
        for raw, header, variables, index, programs in batch.rewritten:
            # everything pending for it is superseded: its rows go, then these are written
            self.reset_sessions[raw] = None
            if header is None:
                sessions.pop(raw, None)
                continue
            rows = sessions[raw] = _SessionRows()
            rows.header = header
            rows.variables = {row[1]: row for row in variables}
            rows.index = {row[1]: row for row in index}
            rows.programs = {row[1]: row for row in programs}
        for row in batch.headers:
            rows = sessions.get(row[0]) or sessions.setdefault(row[0], _SessionRows())
            rows.header, rows.counters = row, None  # the whole row holds the counters too
        for row in batch.counters:
            rows = sessions.get(row[5]) or sessions.setdefault(row[5], _SessionRows())
            rows.counters = row
        for raw, variable_id, row in batch.variables:
            rows = sessions.get(raw) or sessions.setdefault(raw, _SessionRows())
            rows.variables[variable_id] = row
        for raw, key, row in batch.name_index:
            rows = sessions.get(raw) or sessions.setdefault(raw, _SessionRows())
            rows.index[key] = row
        for row in batch.programs:
            rows = sessions.get(row[0]) or sessions.setdefault(row[0], _SessionRows())
            rows.programs[row[1]] = row
        for raw, row in batch.globals_:
            self.globals_[raw] = row
        for name, value in batch.meta:
            self.meta[name] = value

    def write(self, db: sqlite3.Connection, schema_version: int) -> None:
        """Every pending row into `db`, inside the caller's transaction."""
        if self.wipe:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute(UPSERT_META, ("schema_version", schema_version))
        for raw in self.reset_sessions:
            for table in ("variables", "variable_index", "programs"):
                db.execute(f"DELETE FROM {table} WHERE session=?", (raw,))
            db.execute("DELETE FROM sessions WHERE id=?", (raw,))
        headers: list[tuple] = []
        counters: list[tuple] = []
        variables: list[tuple] = []
        gone_variables: list[tuple] = []
        index: list[tuple] = []
        gone_index: list[tuple] = []
        programs: list[tuple] = []
        for raw, rows in self.sessions.items():
            if rows.header is not None:
                headers.append(rows.header)
            if rows.counters is not None:
                counters.append(rows.counters)
            for variable_id, row in rows.variables.items():
                if row is None:
                    gone_variables.append((raw, variable_id))
                else:
                    variables.append(row)
            for key, row in rows.index.items():
                if row is None:
                    gone_index.append((raw, key))
                else:
                    index.append(row)
            programs.extend(rows.programs.values())
        gone_globals = [(raw,) for raw, row in self.globals_.items() if row is None]
        globals_ = [row for row in self.globals_.values() if row is not None]
        for statement, rows_ in (
            (_UPSERT_SESSION, headers),
            (_UPDATE_SESSION_COUNTERS, counters),
            ("DELETE FROM variables WHERE session=? AND id=?", gone_variables),
            (_UPSERT_VARIABLE, variables),
            ("DELETE FROM variable_index WHERE session=? AND key=?", gone_index),
            (_UPSERT_INDEX, index),
            (_UPSERT_PROGRAM, programs),
            ("DELETE FROM global_programs WHERE id=?", gone_globals),
            (_UPSERT_GLOBAL, globals_),
            (UPSERT_META, list(self.meta.items())),
        ):
            if rows_:
                db.executemany(statement, rows_)

    def session_ids(self) -> list[bytes]:
        """The sessions with pending rows (those whose rows `SqliteStorage._recover` reads while
        the pending rows are in the file)."""
        return list(self.sessions)


def encode_record(number: int, batch: Batch) -> bytes:
    """Record `number` of the log (numbers go on across emptyings: `AppendLog.records`)."""
    payload = marshal.dumps((number, tuple(batch)), _MARSHAL_VERSION)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


class AppendLog:
    """The log file: `append` one record (durable in the operating system when it returns, on
    the disk too with `sync`), `records()` what a previous run left, `empty()` once the file has
    it all."""

    def __init__(self, path: str, sync: bool) -> None:
        self.path = path
        self.sync = sync
        self.torn = False
        """Whether a failed append left part of a record that could not be cut off (`append`)."""
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            self.size = os.fstat(self._fd).st_size
            if self.size < len(MAGIC):  # new, or its creation never finished
                os.ftruncate(self._fd, 0)
                self._write_all(MAGIC)
                self.size = len(MAGIC)
            else:
                magic = os.pread(self._fd, len(MAGIC), 0)
                if magic != MAGIC:
                    raise ValueError(f"{path} is not a log of this sidecar's format (it starts {magic!r})")
        except BaseException:
            os.close(self._fd)
            raise

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def append(self, record: bytes) -> None:
        """One record at the end. On failure (a full disk), whatever part of it was written is cut
        off again, so the log stays a sequence of whole records; OSError propagates. If the cut
        fails too, every later append fails: a record after a torn one would be acknowledged and
        then never replayed (a restart drops the torn tail, which no reply acknowledged)."""
        if self.torn:
            raise OSError(errno.EIO, f"{self.path} ends in a torn record that could not be cut off; restart the sidecar")
        try:
            self._write_all(record)
            if self.sync:
                os.fdatasync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.torn = True
            raise
        self.size += len(record)

    def records(self) -> list[tuple[int, Batch]]:
        """The whole records in the file, in order, with their numbers; a torn or damaged one
        ends them (and is cut off, with everything after it). ValueError for a whole record
        that does not read as one."""
        data = os.pread(self._fd, self.size, 0)
        batches: list[tuple[int, Batch]] = []
        at = len(MAGIC)
        end = len(data)
        while at + _FRAME.size <= end:
            length, crc = _FRAME.unpack_from(data, at)
            payload = data[at + _FRAME.size : at + _FRAME.size + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            try:
                number, fields = marshal.loads(payload)
                batches.append((number, Batch(*fields)))
            except (ValueError, EOFError, TypeError) as error:
                raise ValueError(f"{self.path}: a whole record at byte {at} cannot be read ({error})") from None
            at += _FRAME.size + length
        if at != end:
            # A kill leaves at most the start of one record (never acknowledged); a power loss
            # or a damaged disk can leave more. The bytes are kept aside for whoever looks.
            aside = self.path + ".dropped"
            try:
                with open(aside, "wb") as dropped:
                    dropped.write(data[at:end])
            except OSError as error:
                aside = f"not kept ({error})"
            log.warning("%s: the last %d bytes are not whole records; dropped, kept in %s", self.path, end - at, aside)
            os.ftruncate(self._fd, at)
            self.size = at
        return batches

    @property
    def has_records(self) -> bool:
        """Whether anything follows the magic (whole records: `records` cut off the rest)."""
        return self.size > len(MAGIC)

    def empty(self) -> None:
        """Drop every record (the file holds them now), and any torn tail with them."""
        os.ftruncate(self._fd, len(MAGIC))
        self.size = len(MAGIC)
        self.torn = False

    def close(self, remove: bool) -> None:
        os.close(self._fd)
        if remove:
            try:
                os.unlink(self.path)
            except OSError:
                pass
