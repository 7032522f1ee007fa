"""The SQLite backend: the in-memory state, with a durable copy in one SQLite file and its log.

Reads are served from memory, as in memory mode. Every write marks what it changed; `flush`
(once per chunk of frames, before any reply of the chunk is written: group commit) turns
everything marked into rows and appends them to the log (`sqlite_log`) as one record with one
`write`. A reply therefore leaves the sidecar only after its write is durable, and a chunk of
16 callers' updates costs one append. Marks are coalesced: a variable updated 16 times in a
chunk is one row. The log's records reach the file later, thousands in one transaction
(`settle`, after a chunk's replies are out), and at close; opening replays what a killed
sidecar left in the log.

Durability (docs/storage.md): a record is in the operating system once `flush` returns, so a
killed sidecar (kill -9) loses nothing acknowledged; a power loss or kernel crash can lose the
last records, never the file's consistency, and what survives is a prefix of what was
acknowledged. With `synchronous="full"` the log is also `fdatasync`ed before any reply. The file
itself is always written with SQLite's `synchronous=FULL`, so it is on the disk before the log
that held its rows is emptied.

The file is opened with `locking_mode=EXCLUSIVE`: a second sidecar opening a file in use is
refused (sharing between sidecars is the Redis backend's job), before it touches the log. The
file records its schema version; an unknown one is refused, as is a log of an unknown format.
Opening reads the session headers, the global programs and the counters; a session's
variables, index and programs are read on its first use, and then kept in memory like the rest.

Layout: `sessions(id, seq, created_at, last_accessed, ttl, revision, variable_count,
program_count, total_variable_updates, rest)`, `variables(session, id, seq, data)`,
`variable_index(session, key, variable_id)`, `programs(session, key, seq, data)`,
`global_programs(id, stored_at, data)`, `meta(name, value)` (with `log_applied`, the number of
the last log record in the file). Ids are raw bytes, every term is in the external term format
(`records`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

from sidecar.storage.base import (
    EMPTY_MAP,
    STORE_COUNTERS,
    SessionContents,
    SessionId,
    SessionRecord,
    StorageError,
    StorageOpenError,
    VariableRecord,
)
from sidecar.storage.memory import MemoryStorage, SessionData, program_key
from sidecar.storage.records import (
    HeadCache,
    bytes_id,
    bytes_term,
    bytes_variable,
    id_bytes,
    term_bytes,
    variable_bytes,
)
from sidecar.storage.sqlite_log import UPSERT_META, AppendLog, Batch, Pending, encode_record

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
WAL_CHECKPOINT_PAGES = 8192
"""Pages of WAL (4 KiB each, so about 32 MiB) after which a commit also checkpoints."""
SYNCHRONOUS_LEVELS = ("normal", "full")
LOG_APPLY_RECORDS = 1024
LOG_APPLY_BYTES = 1 << 20
"""The log is written into the file (after a chunk's replies: `settle`) once it holds this many
records or bytes; a flush does it itself at four times either (nobody called `settle`)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_accessed INTEGER NOT NULL,
    ttl INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    variable_count INTEGER NOT NULL,
    program_count INTEGER NOT NULL,
    total_variable_updates INTEGER NOT NULL,
    rest BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variables (
    session BLOB NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (session, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variable_index (
    session BLOB NOT NULL, key BLOB NOT NULL, variable_id TEXT NOT NULL,
    PRIMARY KEY (session, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS programs (
    session BLOB NOT NULL, key BLOB NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (session, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS global_programs (id BLOB PRIMARY KEY, stored_at INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
"""

# what a mark names (the first item of a mark tuple)
_HEADER, _COUNTERS, _VARIABLE, _INDEX, _PROGRAM, _GLOBAL = range(6)


def _session_row(header: SessionRecord, seq: int, rest: bytes) -> tuple:
    return (
        id_bytes(header.id),
        seq,
        header.created_at,
        header.last_accessed,
        header.ttl,
        header.revision,
        header.variable_count,
        header.program_count,
        header.total_variable_updates,
        rest,
    )


def _header_from_row(row: tuple) -> SessionRecord:
    raw_id, _seq, created_at, last_accessed, ttl, revision, variables, programs, updates, rest = row
    last_worker_id, metadata = bytes_term(rest)
    if metadata == EMPTY_MAP and type(metadata) is dict:
        metadata = EMPTY_MAP
    return SessionRecord(
        bytes_id(raw_id), created_at, last_accessed, ttl, last_worker_id, metadata, variables, programs, updates, revision
    )


class StoredSession(SessionData):
    """A session read from the file: its header at once, its variables, name index and programs
    on first use (`SqliteStorage.load_rows`), so opening a big file reads only the headers."""

    __slots__ = ("_variables", "_index", "_programs", "_storage")

    def __init__(self, header: SessionRecord, seq: int, storage: "SqliteStorage") -> None:
        self.header = header
        self.seq = seq
        self._variables: Any = None
        self._index: Any = None
        self._programs: Any = None
        self._storage = storage

    def set_rows(self, variables: dict, index: dict, programs: dict) -> None:
        self._variables, self._index, self._programs = variables, index, programs

    @property
    def variables(self) -> dict:  # type: ignore[override]
        if self._variables is None:
            self._storage.load_rows(self)
        return self._variables

    @property
    def index(self) -> dict:  # type: ignore[override]
        if self._index is None:
            self._storage.load_rows(self)
        return self._index

    @property
    def programs(self) -> dict:  # type: ignore[override]
        if self._programs is None:
            self._storage.load_rows(self)
        return self._programs


class SqliteStorage(MemoryStorage):
    """The memory backend, made durable in the SQLite file at `path`."""

    name = "sqlite"

    def __init__(self, path: str, synchronous: str = "normal") -> None:
        super().__init__()
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise StorageOpenError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, got {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self._marks: dict[tuple, None] = {}
        self._rewrite: dict[SessionId, None] = {}
        """Sessions to write whole (deleted, replaced): every row deleted, then rewritten if the
        session is in memory at flush."""
        self._meta_dirty = False
        self._wipe = False
        self._variable_seqs: dict[SessionId, dict[str, int]] = {}
        self._encoded_variables: dict[int, tuple[VariableRecord, bytes]] = {}
        self._heads = HeadCache()
        self._encoded_terms: dict[int, tuple[Any, bytes]] = {}
        self._encoded_rests: dict[tuple[int, int], tuple[Any, Any, bytes]] = {}
        """The bytes of what this chunk wrote, made when it was written (so a term that cannot
        be stored fails its own call, which is undone, not the chunk's flush), by the identity
        of the (immutable) record or entry, checked against it; emptied by each flush. Except
        the hot path's: a variable `put_variable` stored is encoded at the flush, once however
        often the chunk changed it (16 callers updating one variable: one encoding, not 16).
        Its terms sit shallower in the file than in the replies whose depth the store already
        checked (`store.nesting`), so that encoding fails only by a defect, which fails the
        chunk (back to the durable state) rather than one call."""
        self._next_variable_seq = 1
        self._next_program_seq = 1
        self._program_seqs: dict[SessionId, dict[bytes, int]] = {}
        self._pending = Pending()
        self._log_number = 0
        """The number of the last record appended (or applied)."""
        self._db = self._open()
        try:
            self._log = self._open_log()
            try:
                self._replay()
                self._load()
            except BaseException:
                self._log.close(remove=False)
                raise
        except BaseException:
            self._db.close()
            raise

    # opening -----------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StorageOpenError(f"cannot open {self.path}: directory {directory} does not exist")
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=1.0)
        except sqlite3.Error as error:
            raise StorageOpenError(f"cannot open {self.path}: {error}") from None
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StorageOpenError(f"cannot put {self.path} in WAL mode (journal_mode is {mode})")
            # the file is written when the log is applied, rarely: each commit is on the disk
            # before the log is emptied (`sqlite_log`), whatever `synchronous` says of the log
            db.execute("PRAGMA synchronous=FULL")
            # checkpoints (copying the WAL into the file, with an fsync of each) every
            # WAL_CHECKPOINT_PAGES pages rather than SQLite's 1000: a sequential writer adds a
            # page or two per commit, and each checkpoint's fsyncs cost milliseconds here
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_PAGES * 4096}")
            # take the exclusive lock now (held until close): a second sidecar is refused here
            db.execute("BEGIN EXCLUSIVE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if version is None:
                db.execute(UPSERT_META, ("schema_version", SCHEMA_VERSION))
            elif version[0] != SCHEMA_VERSION:
                raise StorageOpenError(
                    f"{self.path} holds schema version {version[0]}; this sidecar reads version {SCHEMA_VERSION} only"
                )
            db.execute("COMMIT")
        except StorageOpenError:
            db.close()
            raise
        except sqlite3.OperationalError as error:
            db.close()
            if "locked" in str(error):
                raise StorageOpenError(
                    f"{self.path} is in use by another sidecar (sharing a store is the Redis backend's job)"
                ) from None
            raise StorageOpenError(f"cannot open {self.path}: {error}") from None
        except sqlite3.DatabaseError as error:
            db.close()
            raise StorageOpenError(f"cannot open {self.path}: {error}") from None
        return db

    def _open_log(self) -> AppendLog:
        path = self.path + "-log"
        try:
            return AppendLog(path, sync=self.synchronous == "full")
        except ValueError as error:
            raise StorageOpenError(str(error)) from None
        except OSError as error:
            raise StorageOpenError(f"cannot open {path}: {error}") from None

    def _replay(self) -> None:
        """The records a previous run left in the log into the file (those it does not have yet),
        then the log emptied."""
        applied = self._db.execute("SELECT value FROM meta WHERE name='log_applied'").fetchone()
        expected = (applied[0] if applied else 0) + 1
        try:
            records = self._log.records()
        except ValueError as error:
            raise StorageOpenError(str(error)) from None
        for number, batch in records:
            if number < expected:  # in the file already (a stop between apply and emptying)
                continue
            if number > expected:  # bytes of an emptied log (a power loss can leave them)
                log.warning("%s: record %d where %d was due; the rest is not this log's", self._log.path, number, expected)
                break
            self._pending.add(batch)
            expected += 1
        self._log_number = expected - 1
        if self._log.has_records:
            try:
                self._apply()
            except (sqlite3.Error, OSError) as error:
                raise StorageOpenError(f"cannot write the records of {self._log.path} into {self.path}: {error}") from None
            log.info("%s: replayed into %s", self._log.path, self.path)

    def _load(self) -> None:
        """The file's sessions (headers now, the rest of each on first use), global programs and
        counters into memory, forgetting anything held before."""
        MemoryStorage.reset(self)
        self._variable_seqs.clear()
        self._program_seqs.clear()
        db = self._db
        meta = dict(db.execute("SELECT name, value FROM meta"))
        self.variable_number = meta.get("variable_number", 0)
        self.counter_values = {name: meta.get(name, 0) for name in STORE_COUNTERS}
        sessions = self.sessions
        session_seq = 0
        for row in db.execute("SELECT * FROM sessions ORDER BY seq"):
            header = _header_from_row(row)
            sessions[header.id] = StoredSession(header, row[1], self)
            session_seq = row[1]
        self._session_seq = session_seq
        self._next_variable_seq = (db.execute("SELECT max(seq) FROM variables").fetchone()[0] or 0) + 1
        self._next_program_seq = (db.execute("SELECT max(seq) FROM programs").fetchone()[0] or 0) + 1
        for raw_id, stored_at, data in db.execute("SELECT id, stored_at, data FROM global_programs"):
            self.global_programs[bytes_id(raw_id)] = (bytes_term(data), stored_at)
        self._forget_marks()

    def load_rows(self, session: "StoredSession") -> None:
        """A session's variables, name index and programs from the file (its first use)."""
        session_id = session.header.id
        raw = id_bytes(session_id)
        db = self._db
        variables: dict[str, VariableRecord] = {}
        variable_seqs = self._variable_seqs.setdefault(session_id, {})
        for variable_id, seq, data in db.execute("SELECT id, seq, data FROM variables WHERE session=? ORDER BY seq", (raw,)):
            variables[variable_id] = bytes_variable(data)
            variable_seqs[variable_id] = seq
        index = {
            bytes_term(key): variable_id
            for key, variable_id in db.execute("SELECT key, variable_id FROM variable_index WHERE session=?", (raw,))
        }
        programs: dict[bytes, tuple[Any, Any]] = {}
        program_seqs = self._program_seqs.setdefault(session_id, {})
        for key, seq, data in db.execute("SELECT key, seq, data FROM programs WHERE session=? ORDER BY seq", (raw,)):
            programs[key] = bytes_term(data)
            program_seqs[key] = seq
        session.set_rows(variables, index, programs)

    # marks ---------------------------------------------------------------------------------

    def _forget_marks(self) -> None:
        self._marks.clear()
        self._rewrite.clear()
        self._meta_dirty = False
        self._wipe = False
        self._encoded_variables.clear()
        self._encoded_terms.clear()
        self._encoded_rests.clear()

    def _variable_bytes(self, variable: VariableRecord) -> bytes:
        entry = self._encoded_variables.get(id(variable))
        if entry is not None and entry[0] is variable:
            return entry[1]
        data = variable_bytes(variable, self._heads)
        self._encoded_variables[id(variable)] = (variable, data)
        return data

    def _term_bytes(self, term: Any) -> bytes:
        entry = self._encoded_terms.get(id(term))
        if entry is not None and entry[0] is term:
            return entry[1]
        data = term_bytes(term)
        self._encoded_terms[id(term)] = (term, data)
        return data

    def _rest_bytes(self, header: SessionRecord) -> bytes:
        """A header's worker id and metadata as one term (they rarely change: cached by both)."""
        key = (id(header.last_worker_id), id(header.metadata))
        entry = self._encoded_rests.get(key)
        if entry is not None and entry[0] is header.last_worker_id and entry[1] is header.metadata:
            return entry[2]
        data = term_bytes((header.last_worker_id, header.metadata))
        self._encoded_rests[key] = (header.last_worker_id, header.metadata, data)
        return data

    def insert_session(self, header: SessionRecord) -> tuple[SessionRecord, bool]:
        stored, inserted = super().insert_session(header)
        if inserted:
            self._marks[(_HEADER, header.id)] = None
            self._rest_bytes(header)
        return stored, inserted

    def touch_session(self, session_id: SessionId, now: int) -> None:
        super().touch_session(session_id, now)
        self._marks[(_COUNTERS, session_id)] = None

    def session_changed(
        self, session_id: SessionId, now: int, variables: int = 0, programs: int = 0, updates: int = 0, worker: Any = ...
    ) -> None:
        if worker is ...:
            super().session_changed(session_id, now, variables, programs, updates)
            self._marks[(_COUNTERS, session_id)] = None
        else:
            super().session_changed(session_id, now, variables, programs, updates, worker)
            self._marks[(_HEADER, session_id)] = None
            self._rest_bytes(self.sessions[session_id].header)

    def delete_session(self, session_id: SessionId) -> bool:
        deleted = super().delete_session(session_id)
        if deleted:
            self._rewrite[session_id] = None
        return deleted

    def replace_session(self, contents: SessionContents, expected_revision: int) -> bool:
        replaced = super().replace_session(contents, expected_revision)
        if replaced:
            self._rewrite[contents.header.id] = None
            self._rest_bytes(contents.header)
            for variable in contents.variables:
                self._variable_bytes(variable)
            for entry in self.sessions[contents.header.id].programs.values():
                self._term_bytes(entry)
            for key in contents.index:
                term_bytes(key)
        return replaced

    def put_variable(self, session_id: SessionId, variable: VariableRecord, index_key: Any) -> bool:
        new = super().put_variable(session_id, variable, index_key)
        if new:  # a new id (or one deleted before) goes to the end of the order
            self._variable_seqs.setdefault(session_id, {})[variable.id] = self._next_variable_seq
            self._next_variable_seq += 1
        marks = self._marks
        marks[(_VARIABLE, session_id, variable.id)] = None
        if index_key is not None:
            marks[(_INDEX, session_id, index_key)] = None
        return new

    def delete_variable(self, session_id: SessionId, variable_id: str, index_key: Any) -> None:
        super().delete_variable(session_id, variable_id, index_key)
        self._marks[(_VARIABLE, session_id, variable_id)] = None
        if index_key is not None:
            self._marks[(_INDEX, session_id, index_key)] = None

    def next_variable_number(self) -> int:
        self._meta_dirty = True
        return super().next_variable_number()

    def reserve_variable_number(self, number: int) -> None:
        self._meta_dirty = True
        super().reserve_variable_number(number)

    def put_program(self, session_id: SessionId, program_id: Any, data_term: Any) -> bool:
        new = super().put_program(session_id, program_id, data_term)
        key = program_key(program_id)
        self._term_bytes(self.sessions[session_id].programs[key])
        if new:
            self._program_seqs.setdefault(session_id, {})[key] = self._next_program_seq
            self._next_program_seq += 1
        self._marks[(_PROGRAM, session_id, key)] = None
        return new

    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None:
        super().put_global_program(program_id, data, stored_at)
        self._term_bytes(data)
        self._marks[(_GLOBAL, program_id)] = None

    def delete_global_program(self, program_id: SessionId) -> bool:
        deleted = super().delete_global_program(program_id)
        if deleted:
            self._marks[(_GLOBAL, program_id)] = None
        return deleted

    def count(self, counter: str, delta: int = 1) -> None:
        self._meta_dirty = True
        super().count(counter, delta)

    def reset(self) -> None:
        MemoryStorage.reset(self)
        self._variable_seqs.clear()
        self._program_seqs.clear()
        self._forget_marks()
        self._wipe = True

    # flushing ------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether anything committed is not in the log yet."""
        return bool(self._marks or self._rewrite or self._meta_dirty or self._wipe)

    @property
    def log_records(self) -> int:
        """How many records are in the log and not in the file yet."""
        return self._pending.records

    def flush(self) -> None:
        """Everything marked, as one record at the end of the log (durable when this returns)."""
        if not self.pending:
            return
        try:
            batch = self._collect_batch()
            self._log.append(encode_record(self._log_number + 1, batch))
        except Exception as error:  # OSError (a full disk), or a defect: the log did not take it
            self._recover(error)
        finally:
            self._forget_marks()
        self._log_number += 1
        self._pending.add(batch)
        if self._log_is_long(4):
            self._apply_quietly()  # nobody called settle (in-process use): bound the log anyway

    def settle(self) -> None:
        """After the chunk's replies are out: the log's records into the file once there are
        enough of them."""
        if self._log_is_long(1):
            self._apply_quietly()

    def _log_is_long(self, factor: int) -> bool:
        """Whether the log holds `factor` times LOG_APPLY_RECORDS records or LOG_APPLY_BYTES bytes."""
        return self._pending.records >= factor * LOG_APPLY_RECORDS or self._log.size >= factor * LOG_APPLY_BYTES

    def _apply(self) -> None:
        """Every pending record into the file in one transaction (committed with an fsync:
        `_open`), then the log emptied. A failure leaves both as they were."""
        db = self._db
        try:
            db.execute("BEGIN")
            self._pending.write(db, SCHEMA_VERSION)
            db.execute(UPSERT_META, ("log_applied", self._log_number))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._log.empty()
        self._pending.clear()

    def _apply_quietly(self) -> None:
        try:
            self._apply()
        except (sqlite3.Error, OSError) as error:  # the log still has every record: try again later
            log.warning(
                "writing the log's %d records into %s failed (%s); they stay in the log", self._pending.records, self.path, error
            )

    def _recover(self, error: Exception) -> None:
        """A failed flush: put memory back to the durable state, the file with the log's records
        (read inside a transaction that writes them, then rolled back), and report it (the
        chunk's replies become errors: `server.Sidecar`)."""
        log.error("appending to %s failed: %s; back to its last durable state", self._log.path, error)
        db = self._db
        try:
            db.execute("BEGIN")
            try:
                self._pending.write(db, SCHEMA_VERSION)
                self._load()
                for raw in self._pending.session_ids():  # their rows as the log has them, now
                    data = self.sessions.get(bytes_id(raw))
                    if isinstance(data, StoredSession):
                        data.variables  # noqa: B018 - reads the session's rows
            finally:
                db.execute("ROLLBACK")
        except sqlite3.Error as reload_error:
            raise StorageError(f"writing {self.path} failed ({error}), and so did reading it back ({reload_error})") from None
        raise StorageError(f"writing {self.path} failed: {error}")

    def _collect_batch(self) -> Batch:
        """What the chunk changed, as rows (a log record)."""
        if self._wipe:
            self._meta_dirty = True
            for session_id in self.sessions:
                self._rewrite[session_id] = None
            for program_id in self.global_programs:
                self._marks[(_GLOBAL, program_id)] = None
        rewrite = self._rewrite
        rewritten = tuple(self._session_rows(session_id) for session_id in rewrite)
        sessions = self.sessions
        headers: list[tuple] = []
        counters: list[tuple] = []
        variables: list[tuple] = []
        index: list[tuple] = []
        programs: list[tuple] = []
        globals_: list[tuple] = []
        for mark in self._marks:
            kind = mark[0]
            if kind == _GLOBAL:
                entry = self.global_programs.get(mark[1])
                raw = id_bytes(mark[1])
                globals_.append((raw, None if entry is None else (raw, entry[1], self._term_bytes(entry[0]))))
                continue
            session_id = mark[1]
            if session_id in rewrite:
                continue
            data = sessions.get(session_id)
            if data is None:  # deleted since: its rewrite deletes every row
                continue
            raw_session = id_bytes(session_id)
            if kind == _COUNTERS:
                header = data.header
                counters.append(
                    (
                        header.last_accessed,
                        header.revision,
                        header.variable_count,
                        header.program_count,
                        header.total_variable_updates,
                        raw_session,
                    )
                )
            elif kind == _HEADER:
                headers.append(_session_row(data.header, data.seq, self._rest_bytes(data.header)))
            elif kind == _VARIABLE:
                variable = data.variables.get(mark[2])
                if variable is None:
                    variables.append((raw_session, mark[2], None))
                else:
                    seq = self._variable_seqs[session_id][variable.id]
                    variables.append((raw_session, variable.id, (raw_session, variable.id, seq, self._variable_bytes(variable))))
            elif kind == _INDEX:
                variable_id = data.index.get(mark[2])
                key = term_bytes(mark[2])
                index.append((raw_session, key, None if variable_id is None else (raw_session, key, variable_id)))
            elif kind == _PROGRAM:
                program = data.programs.get(mark[2])
                if program is not None:  # a program is never deleted on its own
                    programs.append((raw_session, mark[2], self._program_seqs[session_id][mark[2]], self._term_bytes(program)))
        meta: tuple = ()
        if self._meta_dirty:
            meta = (("variable_number", self.variable_number), *self.counter_values.items())
        return Batch(
            self._wipe,
            rewritten,
            tuple(headers),
            tuple(counters),
            tuple(variables),
            tuple(index),
            tuple(programs),
            tuple(globals_),
            meta,
        )

    def _session_rows(self, session_id: SessionId) -> tuple:
        """A session to write whole: `(raw id, header row or None if it is gone, variable rows,
        index rows, program rows)`, with new seqs in memory's order."""
        raw = id_bytes(session_id)
        data = self.sessions.get(session_id)
        if data is None:
            self._variable_seqs.pop(session_id, None)
            self._program_seqs.pop(session_id, None)
            return (raw, None, (), (), ())
        variable_seqs = self._variable_seqs[session_id] = {}
        for variable in data.variables.values():
            variable_seqs[variable.id] = self._next_variable_seq
            self._next_variable_seq += 1
        program_seqs = self._program_seqs[session_id] = {}
        for key in data.programs:
            program_seqs[key] = self._next_program_seq
            self._next_program_seq += 1
        return (
            raw,
            _session_row(data.header, data.seq, self._rest_bytes(data.header)),
            tuple(
                (raw, variable.id, variable_seqs[variable.id], self._variable_bytes(variable))
                for variable in data.variables.values()
            ),
            tuple((raw, term_bytes(key), variable_id) for key, variable_id in data.index.items()),
            tuple((raw, key, program_seqs[key], self._term_bytes(program)) for key, program in data.programs.items()),
        )

    # lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush, write the log into the file and remove it, and release the file."""
        applied = False
        try:
            self.flush()
            self._apply()
            applied = True
        finally:
            self._log.close(remove=applied)
            self._db.close()

    def file_bytes(self) -> int:
        """The size of the database file, its WAL and the log on disk."""
        total = 0
        for suffix in ("", "-wal", "-log"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total
