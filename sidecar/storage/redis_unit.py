"""One unit of work on the Redis backend: optimistic reads, buffered writes, one commit script.

Reads are served from the sidecar's copy of the session (`redis_cache`), loaded with one read
script when it is not there, and every read is remembered as a check of what Redis must still
hold at commit: the header's identity token (`hv`: existence, worker, ttl, metadata) for a header,
its `ver` when the call looks at the revision or reads the whole session, a variable's stamp, a
name index entry, a program's stamp, the contents token (`cv`) for a listing. Writes change the
copy at once (so the unit reads its own writes) and are buffered as operations. `commit()` sends
the checks and the operations in ONE script (`redis_lua.COMMIT`): if any check fails, nothing is
written and `Conflict` is raised; the store then runs the call again, on a fresh copy of the
sessions that failed. Counters move by increments (HINCRBY), so calls of other sidecars on the
same session conflict only when they touched what this one read.

Round trips: a call on a session already held costs one (its commit, which also checks its
reads); a read-only call whose every read came from the last script it ran costs no commit; a
session not held costs one more (its load). Store-wide reads (listing, stats, expired sessions,
global programs) are one read script each.

`rollback()` and any failure drop the copies the unit changed: they are read again next time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from sidecar.storage.base import (
    STORE_COUNTERS,
    Conflict,
    SessionContents,
    SessionId,
    SessionRecord,
    VariableRecord,
    new_stamp,
)
from sidecar.storage.memory import program_key
from sidecar.storage.records import bytes_id, bytes_term, id_bytes, term_bytes, variable_bytes
from sidecar.storage.redis_cache import CachedSession, header_from_hash, pairs
from sidecar.storage.redis_layout import decimal

if TYPE_CHECKING:
    from sidecar.storage.redis import RedisStorage

_KEEP = object()

# operations that name no session (op[1] is something else), and the touch
_NOT_SESSION_OPS = frozenset(("T", "K", "M", "G", "g"))

# the parts of a session (KEYS offsets in the scripts)
_H, _V, _I, _P, _ST, _ORD = 1, 2, 3, 4, 5, 6


_STR_BYTES: dict[str, bytes] = {}


def _key_bytes(term: Any) -> bytes:
    """`term_bytes(term)`, remembered for strings (variable ids and names repeat on every call;
    only `str`: `1`, `1.0` and `True` are equal dict keys but different terms)."""
    if type(term) is str:
        found = _STR_BYTES.get(term)
        if found is None:
            if len(_STR_BYTES) > 50_000:
                _STR_BYTES.clear()
            found = _STR_BYTES[term] = term_bytes(term)
        return found
    return term_bytes(term)


def _binary(session_id: Any) -> bool:
    return isinstance(session_id, (str, bytes))


def canonical_id(session_id: SessionId) -> SessionId:
    """The form the codec gives a binary (str when UTF-8), so one session has one cache key."""
    if type(session_id) is bytes:
        return bytes_id(session_id)
    return session_id


class _Header(SessionRecord):
    """A header handed to the store: reading its revision makes the unit check the header's
    `ver` (the revision moves with every change, so only a call that looks at it may conflict
    on it)."""

    __slots__ = ("_revision", "_on_revision")

    def __init__(self, header: SessionRecord, on_revision: Any) -> None:
        self._on_revision = None
        SessionRecord.__init__(
            self,
            header.id,
            header.created_at,
            header.last_accessed,
            header.ttl,
            header.last_worker_id,
            header.metadata,
            header.variable_count,
            header.program_count,
            header.total_variable_updates,
            header.revision,
        )
        self._on_revision = on_revision

    @property
    def revision(self) -> int:
        notify = self._on_revision
        if notify is not None:
            self._on_revision = None
            notify()
        return self._revision

    @revision.setter
    def revision(self, value: int) -> None:
        self._revision = value


class _Slots:
    """The sessions one script names, each by its 1-based slot (as ASCII digits) in order of
    first mention: `slots(session_id)`; `order` lists them by slot."""

    __slots__ = ("slots", "order")

    def __init__(self) -> None:
        self.slots: dict = {}
        self.order: list = []

    def __call__(self, session_id: Any) -> bytes:
        j = self.slots.get(session_id)
        if j is None:
            j = self.slots[session_id] = len(self.order) + 1
            self.order.append(session_id)
        return str(j).encode()


class RedisUnit:
    """The reads and writes of one call (see the module docstring)."""

    def __init__(self, storage: "RedisStorage") -> None:
        self.storage = storage
        self.cache = storage.cache
        self.token = storage.new_token()
        self.checks: dict[tuple, list] = {}
        """(session, kind, key) -> [check arguments..., seq of the script that validated it]."""
        self.noted: set = set()
        """(session, kind, key) of everything read or written: only the first touch is checked."""
        self.ops: list[tuple] = []
        self.written: set = set()
        """Sessions whose copy this unit changed (dropped from the cache unless it commits)."""
        self.created: set = set()
        """Sessions inserted or replaced by this unit: their copy is this unit's own."""
        self.absent: set = set()
        self.deleted: set = set()
        self.last_seq: Optional[int] = None
        self.done = False
        self.globals: dict = {}
        """Global programs written by this unit: id -> (data, stored_at) or None."""
        self.counter_deltas: dict[str, int] = {}
        self.session_delta = 0
        self.inserted_order: list = []
        self.meta: Optional[tuple[dict, int]] = None
        self.expiry_seen: dict = {}
        self.number_state = storage.numbers.state()
        self.changed_variables: dict = {}
        """Session -> ids of the variables this unit put or deleted (the change feed)."""

    # scripts -------------------------------------------------------------------------------

    def _script_args(self, reads: list) -> tuple[list, list]:
        """KEYS and ARGV of a script carrying every check and the given read operations."""
        index = _Slots()
        checks_args = self._checks_args(index)
        ops_args: list = []
        for op in reads:
            if op[0] == "L":
                ops_args += ("L", index(op[1]))
            else:
                ops_args += op
        return self._assemble(index.order, checks_args, ops_args, b"", b"")

    def _checks_args(self, index: _Slots) -> list:
        """The ARGV of every check so far (sessions named by their slot in `index`)."""
        checks_args: list = []
        for check in self.checks.values():
            kind = check[0]
            if kind == "g":
                checks_args += ("g", check[1], check[2])
            elif kind == "x":
                checks_args += ("x", index(check[1]), check[2])
            elif kind == "h":
                checks_args += ("h", index(check[1]), check[2], check[3])
            else:
                checks_args += ("f", index(check[1]), check[2], check[3], check[4])
        return checks_args

    def _assemble(self, order: list, checks_args: list, ops_args: list, channel: bytes, message: bytes) -> tuple[list, list]:
        """KEYS (the store's, this node's, then each named session's) and ARGV of one script."""
        layout = self.storage.layout
        keys = list(layout.store_keys)
        keys.append(self.storage.node_key)
        raw_ids = []
        for session_id in order:
            raw = id_bytes(session_id)
            raw_ids.append(raw)
            keys.extend(layout.session_keys(raw))
        argv = [str(len(order)).encode(), *raw_ids, self.token, channel, message, *checks_args, "|", *ops_args]
        return keys, argv

    def _read(self, reads: list) -> list:
        """Run the read script: every check so far, then `reads`; their results in order."""
        keys, argv = self._script_args(reads)
        reply, seq = self.storage.run_read(keys, argv)
        self.last_seq = seq
        if reply[0] == 0:
            self._conflict(reply[1], argv)
        for check in self.checks.values():
            check[-1] = seq
        return reply[1:]

    def _conflict(self, failed: list, argv: list) -> None:
        """What a failed check means: forget the copies involved, and run the call again."""
        count = int(argv[0])
        for j in failed:
            j = int(j)
            if 1 <= j <= count:
                session_id = canonical_id(bytes_id(argv[j]))
                self.cache.drop(session_id)
                self.storage.suspect.add(session_id)
        self.storage.conflicts += 1
        raise Conflict("what this call read was changed by another store")

    # checks --------------------------------------------------------------------------------

    def _note(self, session_id: Any, kind: str, key: Any, check: Optional[list], entry: Optional[CachedSession]) -> None:
        """Remember a read (or the state a write replaces) the first time the unit touches it."""
        marker = (session_id, kind, key)
        if marker in self.noted:
            return
        self.noted.add(marker)
        if check is None or session_id in self.created:
            return
        check.append(entry.loaded_seq if entry is not None else -1)
        self.checks[marker] = check

    def _note_header(self, session_id: Any, entry: CachedSession, field: str) -> None:
        token = entry.hv if field == "hv" else entry.ver if field == "ver" else entry.cv
        self._note(session_id, field, None, ["h", session_id, field.encode(), token], entry)

    def _note_variable(self, session_id: Any, entry: CachedSession, variable_id: Any, variable: Optional[VariableRecord]) -> None:
        if (session_id, "var", variable_id) in self.noted:
            return
        field = b"v:" + _key_bytes(variable_id)
        stamp = b"" if variable is None else decimal(variable.stamp)
        self._note(session_id, "var", variable_id, ["f", session_id, b"5", field, stamp], entry)

    def _note_index(self, session_id: Any, entry: CachedSession, key: Any, variable_id: Any) -> None:
        if (session_id, "idx", key) in self.noted:
            return
        expected = b"" if variable_id is None else _key_bytes(variable_id)
        self._note(session_id, "idx", key, ["f", session_id, b"3", _key_bytes(key), expected], entry)

    def _note_program(self, session_id: Any, entry: CachedSession, key: bytes) -> None:
        if (session_id, "prog", key) in self.noted:
            return
        stamp = entry.program_stamps.get(key, b"")
        self._note(session_id, "prog", key, ["f", session_id, b"5", b"p:" + key, stamp], entry)

    def _listing(self, session_id: Any, entry: CachedSession) -> CachedSession:
        """The copy, fit for a listing (whole-session read): reloaded when it may miss another
        store's change, and its contents token checked."""
        if entry.cv is None and session_id not in self.created:
            if session_id in self.written:
                self.cache.drop(session_id)
                self.storage.suspect.add(session_id)
                raise Conflict("the session changed under this call")
            loaded = self._load(session_id)
            assert loaded is not None
            entry = loaded
        self._note_header(session_id, entry, "cv")
        return entry

    # session copies ------------------------------------------------------------------------

    def _load(self, session_id: Any) -> Optional[CachedSession]:
        reply = self._read([("L", session_id)])[0]
        assert self.last_seq is not None  # every read sets it
        entry = CachedSession.from_load(reply, self.last_seq)
        self.storage.suspect.discard(session_id)
        refreshed = self.storage._refreshed
        if refreshed is not None:  # what a cache above must forget (base.take_refreshed)
            refreshed.add(session_id)
        if entry is None:
            self.cache.drop(session_id)
            self.absent.add(session_id)
            self._note(session_id, "hv", None, ["h", session_id, b"hv", b""], None)
            check = self.checks.get((session_id, "hv", None))
            if check is not None:
                check[-1] = self.last_seq
            return None
        self.absent.discard(session_id)
        self.cache.put(session_id, entry)
        return entry

    def _entry(self, session_id: Any) -> Optional[CachedSession]:
        """The session's copy (loaded if not held), or None when there is no such session."""
        if session_id in self.deleted or session_id in self.absent:
            return None
        entry = self.cache.get(session_id)
        if entry is None:
            return self._load(session_id)
        return entry

    def _found(self, session_id: Any) -> tuple[Any, Optional[CachedSession]]:
        """The session's canonical id and its copy (`_entry`); no copy for a non-binary id, which
        names no session on this backend."""
        if not _binary(session_id):
            return session_id, None
        session_id = canonical_id(session_id)
        return session_id, self._entry(session_id)

    def _existing(self, session_id: Any) -> CachedSession:
        """The copy of a session the call found (the store writes only to those)."""
        entry = self._entry(session_id)
        if entry is None:
            raise Conflict("the session is gone")
        self._note_header(session_id, entry, "hv")
        return entry

    def _wrote(self, session_id: Any) -> None:
        self.written.add(session_id)

    # sessions --------------------------------------------------------------------------------

    def get_session(self, session_id: SessionId) -> Optional[SessionRecord]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return None
        self._note_header(session_id, entry, "hv")
        return _Header(entry.header, lambda: self._note_header(session_id, entry, "ver"))

    def insert_session(self, header: SessionRecord) -> tuple[SessionRecord, bool]:
        session_id = canonical_id(header.id)
        if session_id not in self.deleted and session_id not in self.absent:
            entry = self.cache.get(session_id)
            if entry is None and session_id in self.storage.suspect:
                entry = self._load(session_id)
            if entry is not None:
                self._note_header(session_id, entry, "hv")
                return _Header(entry.header, lambda: self._note_header(session_id, entry, "ver")), False
            if session_id not in self.absent:
                # not held: assume there is none, and let the commit check it (a conflict then
                # loads it, and the call finds the winner's session)
                self._note(session_id, "hv", None, ["h", session_id, b"hv", b""], None)
        entry = CachedSession(header, self.token, self.token, self.token, -1)
        self.cache.put(session_id, entry)
        self.created.add(session_id)
        self._wrote(session_id)
        self.deleted.discard(session_id)
        self.absent.discard(session_id)
        self.ops.append(("I", session_id, *self._header_fields(header)))
        self.session_delta += 1
        self.inserted_order.append(session_id)
        return header, True

    @staticmethod
    def _header_fields(header: SessionRecord) -> tuple:
        return (
            decimal(header.created_at),
            decimal(header.last_accessed),
            decimal(header.ttl),
            term_bytes((header.last_worker_id, header.metadata)),
            decimal(header.variable_count),
            decimal(header.program_count),
            decimal(header.total_variable_updates),
            decimal(header.revision),
        )

    def load_session(self, session_id: SessionId) -> Optional[SessionContents]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return None
        entry = self._listing(session_id, entry)
        self._note_header(session_id, entry, "ver")
        return SessionContents(entry.header, list(entry.variables.values()), dict(entry.index), list(entry.programs.values()))

    def touch_session(self, session_id: SessionId, now: int) -> None:
        session_id = canonical_id(session_id)
        entry = self._existing(session_id)
        # last_accessed never moves back (the script keeps the later one: another node's clock
        # may be a second behind this one's)
        entry.header = entry.header.touched(max(now, entry.header.last_accessed))
        self._wrote(session_id)
        self.ops.append(("T", session_id, decimal(now)))

    def session_changed(
        self, session_id: SessionId, now: int, variables: int = 0, programs: int = 0, updates: int = 0, worker: Any = _KEEP
    ) -> None:
        session_id = canonical_id(session_id)
        entry = self._existing(session_id)
        header = entry.header
        now = max(now, header.last_accessed)  # as touch_session
        if worker is _KEEP or worker is ...:
            entry.header = header.changed(now, variables, programs, updates)
            rest = b""
        else:
            entry.header = header.changed(now, variables, programs, updates, worker, True)
            rest = term_bytes((worker, header.metadata))
        self._wrote(session_id)
        self.ops.append(("C", session_id, decimal(now), decimal(variables), decimal(programs), decimal(updates), rest))

    def delete_session(self, session_id: SessionId) -> bool:
        session_id, entry = self._found(session_id)
        if entry is None:
            return False
        self._note_header(session_id, entry, "hv")
        self._delete(session_id)
        return True

    def _delete(self, session_id: Any) -> None:
        self.cache.drop(session_id)
        self.deleted.add(session_id)
        self.created.discard(session_id)
        self._wrote(session_id)
        self.ops.append(("D", session_id))
        self.session_delta -= 1
        if session_id in self.inserted_order:
            self.inserted_order.remove(session_id)

    def replace_session(self, contents: SessionContents, expected_revision: int) -> bool:
        header = contents.header
        session_id = canonical_id(header.id)
        entry = self._entry(session_id)
        if entry is None:
            return False
        self._note_header(session_id, entry, "ver")
        if entry.header.revision != expected_revision:
            return False
        fresh = CachedSession(header, self.token, self.token, self.token, -1)
        self.ops.append(("R", session_id, *self._header_fields(header)))
        for variable in contents.variables:
            fresh.variables[variable.id] = variable
            self.ops.append(("V", session_id, _key_bytes(variable.id), variable_bytes(variable), decimal(variable.stamp)))
        for key, variable_id in contents.index.items():
            fresh.index[key] = variable_id
            self.ops.append(("N", session_id, _key_bytes(key), _key_bytes(variable_id)))
        for program_id, data in contents.programs:
            key = program_key(program_id)
            stamp = decimal(new_stamp())
            fresh.programs[key] = (program_id, data)
            fresh.program_stamps[key] = stamp
            self.ops.append(("P", session_id, key, term_bytes((program_id, data)), stamp))
        self.cache.put(session_id, fresh)
        self.created.add(session_id)
        self._wrote(session_id)
        return True

    def _store_reads(self) -> tuple[dict, int]:
        """The store counters and the session count (one read per unit)."""
        if self.meta is None:
            flat, count = self._read([("m",)])[0]
            self.meta = (pairs(flat), int(count))
        return self.meta

    def session_ids(self) -> list[SessionId]:
        ids = [canonical_id(bytes_id(raw)) for raw in self._read([("s",)])[0]]
        if self.deleted:
            ids = [session_id for session_id in ids if session_id not in self.deleted]
        for session_id in self.inserted_order:
            if session_id not in ids:
                ids.append(session_id)
        return ids

    def session_count(self) -> int:
        return self._store_reads()[1] + self.session_delta

    def expired_session_ids(self, now: int, limit: int) -> list[SessionId]:
        if limit <= 0:
            return []
        flat = self._read([("e", decimal(now), decimal(limit))])[0]
        expired = []
        for raw, score in pairs(flat).items():
            session_id = canonical_id(bytes_id(raw))
            if session_id in self.deleted:
                continue
            self.expiry_seen[session_id] = float(score)
            expired.append(session_id)
        return expired

    def delete_session_if_expired(self, session_id: SessionId, now: int) -> bool:
        if not _binary(session_id):
            return False
        session_id = canonical_id(session_id)
        if session_id in self.deleted or session_id in self.absent:
            return False
        if session_id in self.expiry_seen and session_id not in self.written:
            expired = self.expiry_seen[session_id] < now  # read by this unit (fresher than a copy)
        else:
            entry = self._entry(session_id)
            expired = entry is not None and entry.header.expired(now)
        if not expired:
            return False
        # decided again inside Redis at commit: a session another store touched stays
        self.checks[(session_id, "exp", None)] = ["x", session_id, decimal(now), -1]
        self._delete(session_id)
        return True

    # variables -------------------------------------------------------------------------------

    def get_variable(self, session_id: SessionId, variable_id: Any) -> Optional[VariableRecord]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return None
        variable = entry.variables.get(variable_id)
        self._note_variable(session_id, entry, variable_id, variable)
        return variable

    def find_variable(self, session_id: SessionId, key: Any) -> Optional[VariableRecord]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return None
        variables = entry.variables
        variable = variables.get(key)
        self._note_variable(session_id, entry, key, variable)
        if variable is None:
            variable_id = entry.index.get(key)
            self._note_index(session_id, entry, key, variable_id)
            if variable_id is not None:
                variable = variables.get(variable_id)
                self._note_variable(session_id, entry, variable_id, variable)
        return variable

    def indexed_variable_id(self, session_id: SessionId, name_key: Any) -> Optional[str]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return None
        variable_id = entry.index.get(name_key)
        self._note_index(session_id, entry, name_key, variable_id)
        return variable_id

    def put_variable(self, session_id: SessionId, variable: VariableRecord, index_key: Any) -> bool:
        session_id = canonical_id(session_id)
        entry = self._existing(session_id)
        old = entry.variables.get(variable.id)
        self._note_variable(session_id, entry, variable.id, old)
        entry.variables[variable.id] = variable
        self.changed_variables.setdefault(session_id, []).append(variable.id)
        data = variable_bytes(variable)
        self.ops.append(("V", session_id, _key_bytes(variable.id), data, decimal(variable.stamp)))
        self.cache.resized(session_id, len(data))
        if index_key is not None:
            self.noted.add((session_id, "idx", index_key))
            entry.index[index_key] = variable.id
            self.ops.append(("N", session_id, _key_bytes(index_key), _key_bytes(variable.id)))
        self._wrote(session_id)
        return old is None

    def delete_variable(self, session_id: SessionId, variable_id: str, index_key: Any) -> None:
        session_id = canonical_id(session_id)
        entry = self._existing(session_id)
        variables = entry.variables
        if variable_id in variables:
            self._note_variable(session_id, entry, variable_id, variables[variable_id])
            del variables[variable_id]
            self.changed_variables.setdefault(session_id, []).append(variable_id)
            self.ops.append(("v", session_id, _key_bytes(variable_id)))
        if index_key is not None and index_key in entry.index:
            self._note_index(session_id, entry, index_key, entry.index[index_key])
            self.noted.add((session_id, "idx", index_key))
            del entry.index[index_key]
            self.ops.append(("n", session_id, _key_bytes(index_key)))
        self._wrote(session_id)

    def variables(self, session_id: SessionId) -> list[VariableRecord]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return []
        return list(self._listing(session_id, entry).variables.values())

    def variable_index(self, session_id: SessionId) -> dict:
        session_id, entry = self._found(session_id)
        if entry is None:
            return {}
        return dict(self._listing(session_id, entry).index)

    def next_variable_number(self) -> int:
        return self.storage.numbers.next()

    def reserve_variable_number(self, number: int) -> None:
        if self.storage.numbers.reserve(number):
            self.ops.append(("M", decimal(number)))

    # session programs ------------------------------------------------------------------------

    def get_program(self, session_id: SessionId, program_id: Any) -> tuple[bool, Any]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return False, None
        key = program_key(program_id)
        self._note_program(session_id, entry, key)
        program = entry.programs.get(key)
        return (False, None) if program is None else (True, program[1])

    def put_program(self, session_id: SessionId, program_id: Any, data: Any) -> bool:
        session_id = canonical_id(session_id)
        entry = self._existing(session_id)
        key = program_key(program_id)
        self._note_program(session_id, entry, key)
        new = key not in entry.programs
        stamp = decimal(new_stamp())
        entry.programs[key] = (program_id, data)
        entry.program_stamps[key] = stamp
        stored = term_bytes((program_id, data))
        self.ops.append(("P", session_id, key, stored, stamp))
        self.cache.resized(session_id, len(stored))
        self._wrote(session_id)
        return new

    def programs(self, session_id: SessionId) -> list[tuple[Any, Any]]:
        session_id, entry = self._found(session_id)
        if entry is None:
            return []
        return list(self._listing(session_id, entry).programs.values())

    # global programs -------------------------------------------------------------------------

    def _global(self, program_id: Any) -> Optional[tuple[Any, int]]:
        if program_id in self.globals:
            return self.globals[program_id]
        raw = id_bytes(program_id)
        data, stored_at = self._read([("r", raw)])[0]
        marker = ("G", "g", raw)
        if marker not in self.checks:
            self.checks[marker] = ["g", raw, b"" if stored_at is None else decimal(int(float(stored_at))), self.last_seq]
        if data is None:
            return None
        return bytes_term(data), int(float(stored_at))

    def put_global_program(self, program_id: SessionId, data: Any, stored_at: int) -> None:
        self.globals[program_id] = (data, stored_at)
        self.ops.append(("G", id_bytes(program_id), term_bytes(data), decimal(stored_at)))

    def get_global_program(self, program_id: SessionId) -> Optional[tuple[Any, int]]:
        if not _binary(program_id):
            return None
        return self._global(program_id)

    def delete_global_program(self, program_id: SessionId) -> bool:
        if not _binary(program_id) or self._global(program_id) is None:
            return False
        self.globals[program_id] = None
        self.ops.append(("g", id_bytes(program_id)))
        return True

    def delete_global_programs_stored_before(self, cutoff: int) -> int:
        flat = self._read([("o", decimal(cutoff))])[0]
        removed = 0
        for raw, score in pairs(flat).items():
            program_id = bytes_id(raw)
            if program_id in self.globals:
                continue  # written by this unit: decided below
            stored_at = int(float(score))
            self.checks[("G", "g", raw)] = ["g", raw, decimal(stored_at), self.last_seq]
            self.globals[program_id] = None
            self.ops.append(("g", raw))
            removed += 1
        for program_id, entry in list(self.globals.items()):
            if entry is not None and entry[1] < cutoff:
                self.globals[program_id] = None
                self.ops.append(("g", id_bytes(program_id)))
                removed += 1
        return removed

    # store-wide counters ---------------------------------------------------------------------

    def count(self, counter: str, delta: int = 1) -> None:
        self.counter_deltas[counter] = self.counter_deltas.get(counter, 0) + delta
        self.ops.append(("K", counter.encode(), decimal(delta)))

    def counters(self) -> dict[str, int]:
        stored = self._store_reads()[0]
        deltas = self.counter_deltas
        return {name: int(stored.get(name.encode(), 0)) + deltas.get(name, 0) for name in STORE_COUNTERS}

    # the end of the unit ---------------------------------------------------------------------

    def confirm_reads(self) -> None:
        """Make sure every read is still what Redis holds (Conflict if not), unless the last
        script this unit ran already did: before an error answer (`SessionStore.transact`)."""
        if self.done or all(check[-1] == self.last_seq for check in self.checks.values()):
            return
        try:
            self._read([])
        except BaseException:
            self._abandon()
            raise

    def commit(self) -> None:
        if self.done:
            return
        if not self.ops:  # a read-only call: its reads checked (one read script), nothing written
            self.confirm_reads()
            self._finish()
            return
        try:
            reply = self._commit_script()
        except BaseException:
            self._abandon()
            raise
        if reply is None:  # committed, but its answer was lost (resolved through the node key)
            self._abandon(keep_numbers=True)
            return
        if reply[0] == 0:
            self._abandon()
            self._conflict(reply[1], self._last_argv)
        self._apply_answer(reply[1:])
        self._finish()

    def _commit_script(self) -> Optional[list]:
        index = _Slots()
        checks_args = self._checks_args(index)
        ops_args: list = []
        for op in self.ops:
            kind = op[0]
            if kind in ("K", "M", "G", "g"):
                ops_args += op
            else:
                ops_args.append(kind)
                ops_args.append(index(op[1]))
                ops_args += op[2:]
        # sessions this commit only touched (a read's last_accessed): a read cache keeps them
        touched = {op[1] for op in self.ops if op[0] == "T"}
        if touched:
            touched.difference_update(op[1] for op in self.ops if op[0] not in _NOT_SESSION_OPS)
        channel, message = self.storage.change_message(self.written, self.changed_variables, list(self.globals), touched)
        keys, argv = self._assemble(index.order, checks_args, ops_args, channel, message)
        self._last_argv = argv
        return self.storage.run_commit(keys, argv, self.token)

    def _apply_answer(self, answers: list) -> None:
        """Bring the copies this unit wrote up to what Redis now holds."""
        argv = self._last_argv
        cache = self.cache
        for j, cv_before, header_flat in answers:
            session_id = canonical_id(bytes_id(argv[int(j)]))
            entry = cache.get(session_id)
            if entry is None:
                continue
            if not header_flat:
                cache.drop(session_id)
                continue
            fields = pairs(header_flat)
            if session_id not in self.created and cv_before != entry.cv:
                entry.cv = None  # another store changed the contents meanwhile: listings reload
            else:
                entry.cv = fields[b"cv"]
            entry.header = header_from_hash(fields)
            entry.hv = fields[b"hv"]
            entry.ver = fields[b"ver"]
            entry.loaded_seq = -1
        cache.trim()

    def _abandon(self, keep_numbers: bool = False) -> None:
        for session_id in self.written:
            self.cache.drop(session_id)
        if not keep_numbers:
            self.storage.numbers.restore(self.number_state)
        self.done = True

    def _finish(self) -> None:
        self.done = True
        self.cache.trim()

    def rollback(self) -> None:
        if self.done:
            return
        self._abandon()
