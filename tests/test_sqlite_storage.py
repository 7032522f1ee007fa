"""The SQLite backend: what is committed is in the file, the file is one sidecar's, and what
opening it finds is exactly the store that wrote it (terms, ids, versions, counters, order).

The store suites (tests/test_contract_*.py, replays, fuzzing) run on SQLite too; this file is
about the file: reopening, refusals, group commit, failures, and time across restarts.
"""

from __future__ import annotations

import errno
import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backends import snapshot
from client import SubprocessClient, sidecar_env

from sidecar import codec
from sidecar.cli import SidecarOptions
from sidecar.clock import FakeClock
from sidecar.server import Sidecar
from sidecar.storage import sqlite_log
from sidecar.storage.base import StorageError, StorageOpenError
from sidecar.storage.records import bytes_variable
from sidecar.storage.sqlite import LOG_APPLY_RECORDS, SCHEMA_VERSION, SqliteStorage
from sidecar.storage.sqlite_log import MAGIC
from sidecar.terms import Atom as A
from sidecar.terms import Opaque, term_equal

OK = A("ok")
ERROR = A("error")
PID = Opaque("pid", bytes.fromhex("58770d6e6f6e6f6465406e6f686f7374000000530000000000000000"))


class Served:
    """A sidecar on a SQLite file, called the way the wire calls it."""

    def __init__(self, path: Path, clock: Any = None) -> None:
        self.clock = clock or FakeClock(100)
        self.storage = SqliteStorage(str(path))
        self.sidecar = Sidecar(SidecarOptions(), clock_factory=lambda *_start: self.clock, storage=self.storage)
        self._ids = itertools.count(1)

    def call(self, function: str, *args: Any) -> Any:
        frames = self.sidecar.handle_input(codec.encode_frame((A("call"), next(self._ids), A(function), list(args))))
        return codec.decode(frames[-1][4:])[2]

    def close(self) -> None:
        self.storage.close()


def _fill(served: Served) -> None:
    big = 2**200
    assert (
        served.call("create_session", "s", [(A("metadata"), {A("k"): (1, PID, big)}), (A("programs"), {"p0": [1.0, "x"]})])[0]
        is OK
    )
    served.call("register_variable", "s", A("t"), A("float"), 0.5, [(A("constraints"), {A("min"): 0.0})])
    served.call("register_variable", "s", "n", A("integer"), big, [(A("metadata"), {"tuple": (A("a"), b"\xff")})])
    served.call("register_variable", "s", A("e"), A("embedding"), [1, 2.5], [])
    for value in (0.6, 0.7, 0.8):
        served.call("update_variable", "s", A("t"), value)
    served.call("store_program", "s", A("prog"), {A("nested"): {"deep": [PID, None, True]}})
    served.call("store_program", "s", [1, 2], 1.0)
    served.call("store_global_program", "g", {A("model"): "gpt", A("pid"): PID})
    served.call("store_worker_session", "s", "worker-1")
    served.call("start_optimization", "s", "n", "opt-1", PID)
    served.call("create_session", "other", [(A("ttl"), 7)])
    served.call("register_variable", "other", A("x"), A("string"), "hello")
    served.call("delete_variable", "s", A("e"))


def test_a_reopened_file_holds_exactly_what_was_acknowledged(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    _fill(served)
    held = snapshot(served.storage, ["g"])
    session = served.call("get_session", "s")
    served.storage._db.close()  # no close(): what a killed sidecar leaves
    again = Served(tmp_path / "store.db")
    assert snapshot(again.storage, ["g"]) == held
    assert term_equal(again.call("get_session", "s"), session)
    assert again.call("get_variable_value", "s", "n") == 2**200
    assert again.call("update_variable", "s", "n", 1) == (ERROR, A("variable_locked_for_optimization"))
    assert again.call("get_program", "s", [1, 2]) == (OK, 1.0)
    assert again.call("get_program", "s", A("prog")) == (OK, {A("nested"): {"deep": [PID, None, True]}})
    assert again.call("get_global_program", "g") == (OK, {A("model"): "gpt", A("pid"): PID})
    assert again.call("list_sessions") == ["s", "other"]
    assert [v[A("name")] for v in again.call("list_variables", "s")[1]] == [A("t"), "n"]
    again.close()


def test_ids_versions_and_counters_continue_after_a_reopen(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    _fill(served)
    stats = served.call("get_stats")
    served.close()
    again = Served(tmp_path / "store.db")
    assert again.call("register_variable", "s", A("later"), A("float"), 1.0) == (OK, "var_later_5")
    assert again.call("update_variable", "s", A("t"), 0.9) is OK
    assert again.call("get_variable", "s", A("t"))[1][A("version")] == 4
    new_stats = again.call("get_stats")
    for key in (A("sessions_created"), A("global_programs_stored")):
        assert new_stats[key] == stats[key]
    again.close()


def test_every_write_of_a_chunk_is_one_log_record_and_the_file_takes_many_in_one_transaction(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    served.call("register_variable", "s", A("t"), A("float"), 0.5)
    storage = served.storage
    records, size = storage.log_records, os.path.getsize(tmp_path / "store.db-log")
    statements: list[str] = []
    storage._db.set_trace_callback(statements.append)
    frames = b"".join(codec.encode_frame((A("call"), 100 + n, A("update_variable"), ["s", A("t"), n / 10])) for n in range(16))
    answers = [codec.decode(frame[4:]) for frame in served.sidecar.handle_input(frames)]
    assert [answer[2] for answer in answers if answer[0] is A("reply")] == [OK] * 16
    assert statements == []  # the chunk is durable in the log: nothing asked of SQLite
    assert storage.log_records == records + 1 and os.path.getsize(tmp_path / "store.db-log") > size
    served.sidecar.settle()  # below the threshold: nothing
    assert statements == []
    storage._apply()  # what settle does once the log is long enough
    assert statements.count("BEGIN") == 1 and statements.count("COMMIT") == 1
    assert storage.log_records == 0 and os.path.getsize(tmp_path / "store.db-log") == len(MAGIC)
    storage._db.set_trace_callback(None)
    # the 16 updates were written as one row: the newest
    [(data,)] = storage._db.execute("SELECT data FROM variables").fetchall()
    assert bytes_variable(data).version == 16 and bytes_variable(data).value == 1.5
    assert served.call("get_variable", "s", A("t"))[1][A("version")] == 16
    served.close()


def test_a_variable_updated_many_times_in_a_chunk_is_encoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sidecar.storage.sqlite as sqlite_module

    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    served.call("register_variable", "s", A("t"), A("float"), 0.5)
    encoded: list[Any] = []
    real = sqlite_module.variable_bytes
    monkeypatch.setattr(
        sqlite_module, "variable_bytes", lambda variable, heads: encoded.append(variable) or real(variable, heads)
    )
    frames = b"".join(codec.encode_frame((A("call"), 100 + n, A("update_variable"), ["s", A("t"), n / 10])) for n in range(16))
    served.sidecar.handle_input(frames)
    assert [variable.version for variable in encoded] == [16]  # the chunk's last state, once
    monkeypatch.undo()
    served.storage._db.close()
    again = Served(tmp_path / "store.db")
    assert again.call("get_variable", "s", A("t"))[1][A("value")] == 1.5
    again.close()


def test_settle_writes_the_log_into_the_file_once_it_is_long_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sidecar.storage.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "LOG_APPLY_RECORDS", 5)
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    counts = []
    for n in range(12):
        served.call("register_variable", "s", f"v{n}", A("integer"), n)
        counts.append(served.storage.log_records)
        served.sidecar.settle()
    assert counts == [2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3]
    assert served.storage._db.execute("SELECT count(*) FROM variables").fetchone()[0] == 9
    served.storage._db.close()  # killed: the last three are in the log only
    again = Served(tmp_path / "store.db")
    assert [v[A("value")] for v in again.call("list_variables", "s")[1]] == list(range(12))
    again.close()


def test_without_settle_a_flush_bounds_the_log_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sidecar.storage.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "LOG_APPLY_RECORDS", 3)
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    for n in range(30):
        served.call("register_variable", "s", f"v{n}", A("integer"), n)
        assert served.storage.log_records < 12
    assert served.storage._db.execute("SELECT count(*) FROM variables").fetchone()[0] >= 30 - 12
    served.close()


def test_a_read_only_chunk_writes_nothing(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    served.call("register_variable", "s", A("t"), A("float"), 0.5)
    served.call("get_variable", "s", A("t"))  # the touch of this second is written once
    statements: list[str] = []
    served.storage._db.set_trace_callback(statements.append)
    size = os.path.getsize(tmp_path / "store.db-log")
    for _ in range(5):
        served.call("get_variable", "s", A("t"))
        served.call("list_variables", "s")
    assert statements == [] and os.path.getsize(tmp_path / "store.db-log") == size
    served.close()


def test_a_second_sidecar_on_the_same_file_is_refused(tmp_path: Path) -> None:
    first = Served(tmp_path / "store.db")
    first.call("create_session", "s", {})
    log_bytes = (tmp_path / "store.db-log").read_bytes()
    with pytest.raises(StorageOpenError, match="in use by another sidecar"):
        SqliteStorage(str(tmp_path / "store.db"))
    assert (tmp_path / "store.db-log").read_bytes() == log_bytes  # refused before the log
    first.call("create_session", "t", {})
    first.storage._db.close()  # killed: its log is replayed by the next open
    first.storage._log.close(remove=False)
    again = SqliteStorage(str(tmp_path / "store.db"))  # free again once the first is gone
    assert sorted(again.sessions) == ["s", "t"]
    again.close()


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    SqliteStorage(str(tmp_path / "store.db")).close()
    db = sqlite3.connect(tmp_path / "store.db")
    db.execute("UPDATE meta SET value=? WHERE name='schema_version'", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(StorageOpenError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqliteStorage(str(tmp_path / "store.db"))


@pytest.mark.parametrize("make", ["not_a_database", "missing_directory", "a_directory"])
def test_a_path_that_does_not_open_is_a_clear_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "store.db"
    if make == "not_a_database":
        path.write_bytes(b"this is not sqlite" * 100)
    elif make == "missing_directory":
        path = tmp_path / "nope" / "store.db"
    else:
        path.mkdir()
    with pytest.raises(StorageOpenError, match="cannot open"):
        SqliteStorage(str(path))


def test_a_failed_flush_turns_the_chunks_replies_into_errors_and_keeps_the_file_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    served.call("register_variable", "s", A("t"), A("float"), 0.5)
    served.call("store_program", "s", A("p"), 1)
    before = snapshot(served.storage)
    assert served.storage.log_records == 3  # memory goes back to the file with the log's records
    log_size = os.path.getsize(tmp_path / "store.db-log")
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:  # the log takes part of the record, then is full
        if fd == served.storage._log._fd and len(data) > 10:
            real_write(fd, bytes(data)[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(sqlite_log.os, "write", full_disk)
    frames = b"".join(codec.encode_frame((A("call"), 7 + n, A("update_variable"), ["s", A("t"), 0.9])) for n in range(2))
    frames += codec.encode_frame((A("call"), 9, A("get_variable_value"), ["s", A("t")]))
    answers = [codec.decode(frame[4:]) for frame in served.sidecar.handle_input(frames)]
    replies = [answer for answer in answers if answer[0] is A("reply")]
    assert [reply[1] for reply in replies] == [7, 8, 9]
    for reply in replies:
        assert reply[2][0] is ERROR and reply[2][1][0] is A("storage_error") and "No space left" in reply[2][1][1]
    assert not [answer for answer in answers if answer[0] is A("telemetry")]
    monkeypatch.undo()
    assert os.path.getsize(tmp_path / "store.db-log") == log_size  # the torn part was cut off again
    assert snapshot(served.storage) == before  # memory went back to what the file and log hold
    assert served.call("get_variable_value", "s", A("t")) == 0.5
    assert served.call("get_program", "s", A("p")) == (OK, 1)
    served.storage._db.close()  # killed: what is durable is what was acknowledged
    again = Served(tmp_path / "store.db")
    assert snapshot(again.storage) == snapshot(served.storage)
    again.close()


def test_flush_reports_a_failure_as_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = SqliteStorage(str(tmp_path / "store.db"))
    storage.begin().count("cleanup_runs")
    monkeypatch.setattr(sqlite_log.os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(StorageError, match="Input/output error"):
        storage.flush()
    monkeypatch.undo()
    assert storage.counters()["cleanup_runs"] == 0 and not storage.pending
    storage.close()


def test_times_survive_a_restart_of_the_beam_on_its_new_clock(tmp_path: Path) -> None:
    # the first run: storage time 1_000_000 is BEAM time -500
    first = Served(tmp_path / "store.db", FakeClock(1_000_000, beam_offset=1_000_500))
    session = first.call("create_session", "s", [(A("ttl"), 100)])[1]
    assert session[A("created_at")] == -500
    first.call("register_variable", "s", A("t"), A("float"), 0.5)
    first.close()
    # thirty seconds later, a new BEAM whose monotonic clock says 77_000
    second = Served(tmp_path / "store.db", FakeClock(1_000_030, beam_offset=1_000_030 - 77_000))
    session = second.call("get_session", "s")[1]
    assert session[A("created_at")] == 77_000 - 30 and session[A("last_accessed")] == 77_000
    assert second.call("get_variable", "s", A("t"))[1][A("created_at")] == 77_000 - 30
    second.close()


def test_a_session_that_expired_while_the_store_was_down_goes_at_the_next_cleanup(tmp_path: Path) -> None:
    first = Served(tmp_path / "store.db", FakeClock(1_000))
    first.call("create_session", "short", [(A("ttl"), 60)])
    first.call("create_session", "long", [(A("ttl"), 3600)])
    first.close()
    second = Served(tmp_path / "store.db", FakeClock(1_000 + 600))  # down for ten minutes
    assert second.call("cleanup_expired_sessions") == 1
    assert second.call("list_sessions") == ["long"]
    second.close()
    third = Served(tmp_path / "store.db", FakeClock(1_000 + 601))
    assert third.call("list_sessions") == ["long"]
    third.close()


def test_the_synchronous_level_is_the_one_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for level in ("normal", "full"):
        storage = SqliteStorage(str(tmp_path / f"{level}.db"), synchronous=level)
        # the file's commits always reach the disk before the log is emptied
        assert storage._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert storage._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        synced: list[int] = []
        monkeypatch.setattr(sqlite_log.os, "fdatasync", synced.append)
        storage.begin().count("cleanup_runs")
        storage.flush()
        monkeypatch.undo()
        assert synced == ([storage._log._fd] if level == "full" else [])
        storage.close()
    with pytest.raises(StorageOpenError):
        SqliteStorage(str(tmp_path / "x.db"), synchronous="off")


def test_a_reset_empties_the_file(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    _fill(served)
    served.sidecar.store.call("reset")
    served.sidecar.store.flush()
    served.call("create_session", "after", {})
    served.close()
    again = Served(tmp_path / "store.db")
    assert again.call("list_sessions") == ["after"]
    assert again.call("get_global_program", "g") == (ERROR, A("not_found"))
    assert again.call("get_stats")[A("sessions_created")] == 1
    again.close()


# -- through a real subprocess ------------------------------------------------------------


def _sidecar_with_a_counter(tmp_path: Path) -> tuple[str, SubprocessClient]:
    """A sidecar subprocess on `store.db`, with session "s" holding the integer variable `:t`."""
    option = f"sqlite:{tmp_path / 'store.db'}"
    sidecar = SubprocessClient("--storage", option)
    assert sidecar.call("create_session", "s")[0] is OK
    assert sidecar.call("register_variable", "s", A("t"), A("integer"), 0)[0] is OK
    return option, sidecar


@pytest.mark.subprocess
def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    option, sidecar = _sidecar_with_a_counter(tmp_path)
    acknowledged = 0
    pipelined = [sidecar.send_call("update_variable", "s", A("t"), n) for n in range(1, 201)]
    for call_id in pipelined:
        assert sidecar.wait_reply(call_id) is OK
        acknowledged += 1
    sidecar.process.kill()
    sidecar.process.wait()
    again = SubprocessClient("--storage", option)
    variable = again.call("get_variable", "s", A("t"))[1]
    assert variable[A("version")] >= acknowledged and variable[A("value")] == 200
    assert again.call("register_variable", "s", A("u"), A("integer"), 0) == (OK, "var_u_2")
    again.close()
    sidecar.close()


@pytest.mark.subprocess
def test_the_serving_loop_writes_the_log_into_the_file_after_the_replies(tmp_path: Path) -> None:
    option, sidecar = _sidecar_with_a_counter(tmp_path)
    record = os.path.getsize(tmp_path / "store.db-log")
    assert sidecar.call("update_variable", "s", A("t"), 1) is OK
    record = os.path.getsize(tmp_path / "store.db-log") - record  # one update's record
    for n in range(2, LOG_APPLY_RECORDS + 100):  # one chunk each: each waits for its reply
        assert sidecar.call("update_variable", "s", A("t"), n) is OK
    # settle emptied the log once it held LOG_APPLY_RECORDS (a flush alone waits for 4x that)
    assert os.path.getsize(tmp_path / "store.db-log") < 200 * record
    sidecar.process.kill()
    sidecar.process.wait()
    again = SubprocessClient("--storage", option)
    assert again.call("get_variable", "s", A("t"))[1][A("value")] == LOG_APPLY_RECORDS + 99
    again.close()
    sidecar.close()


@pytest.mark.subprocess
def test_a_sidecar_whose_storage_does_not_open_refuses_the_hello_and_every_call(tmp_path: Path) -> None:
    option = f"sqlite:{tmp_path / 'missing' / 'store.db'}"
    sidecar = SubprocessClient("--storage", option, hello=False)
    sidecar.send_term((A("hello"), 1, {}))
    reason, message = sidecar.next_protocol_error()
    assert reason[0] is A("storage_unavailable") and "does not exist" in reason[1] and "storage unavailable" in message
    assert sidecar.call("ping") == (ERROR, (A("storage_unavailable"), reason[1]))
    assert "cannot be opened" in sidecar.stderr_text()
    assert sidecar.close() == 0


@pytest.mark.subprocess
def test_a_bad_storage_option_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "--storage", "postgres://x"],
        env=sidecar_env(),
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert b"unknown storage 'postgres://x'" in done.stderr and done.stdout == b""


def test_the_file_lives_where_the_option_says(tmp_path: Path) -> None:
    options = SidecarOptions(storage=f"sqlite:{tmp_path / 'here.db'}", sqlite_synchronous="full")
    sidecar = Sidecar(options)
    assert sidecar.store.storage.name == "sqlite" and sidecar.store.storage.synchronous == "full"
    sidecar.store.storage.close()
    assert os.path.exists(tmp_path / "here.db")


def test_opening_reads_headers_only_and_each_session_on_first_use(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    for name in ("a", "b", "c"):
        served.call("create_session", name, {})
        served.call("register_variable", name, A("v"), A("integer"), 1)
        served.call("store_program", name, "p", name)
    held = snapshot(served.storage)
    served.close()
    again = Served(tmp_path / "store.db")
    loaded = lambda: sorted(sid for sid, data in again.storage.sessions.items() if data._variables is not None)  # noqa: E731
    assert loaded() == [] and again.call("list_sessions") == ["a", "b", "c"]
    assert again.call("update_variable", "a", A("v"), 2) is OK
    assert again.call("delete_session", "c") is OK  # never read: its rows go all the same
    assert loaded() == ["a"]
    again.close()
    third = Served(tmp_path / "store.db")
    assert third.call("list_sessions") == ["a", "b"]
    assert third.call("get_variable_value", "a", A("v")) == 2 and third.call("get_program", "b", "p") == (OK, "b")
    assert third.call("register_variable", "b", A("w"), A("integer"), 1) == (OK, "var_w_4")
    assert [v[A("name")] for v in third.call("list_variables", "b")[1]] == [A("v"), A("w")]
    assert snapshot(third.storage) != held
    third.close()


def test_a_term_the_file_cannot_hold_fails_its_own_call_not_the_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    served.call("register_variable", "s", A("t"), A("float"), 0.5)
    before = snapshot(served.storage)
    import sidecar.storage.sqlite as sqlite_module

    real = sqlite_module.term_bytes

    def refusing(term: Any) -> bytes:
        if term == (A("p"), "poison") or term == "poison":
            raise codec.EncodeError("this term has no external form")
        return real(term)

    monkeypatch.setattr(sqlite_module, "term_bytes", refusing)
    frames = codec.encode_frame((A("call"), 7, A("update_variable"), ["s", A("t"), 0.9]))
    frames += codec.encode_frame((A("call"), 8, A("store_program"), ["s", A("p"), "poison"]))
    frames += codec.encode_frame((A("call"), 9, A("store_global_program"), ["g", "poison"]))
    answers = {a[1]: a[2] for a in map(lambda f: codec.decode(f[4:]), served.sidecar.handle_input(frames)) if a[0] is A("reply")}
    assert answers[7] is OK
    for call_id in (8, 9):
        assert answers[call_id][0] is ERROR and "no external form" in answers[call_id][1][1]
    monkeypatch.undo()
    served.close()
    again = Served(tmp_path / "store.db")
    assert again.call("get_variable_value", "s", A("t")) == 0.9
    assert again.call("get_program", "s", A("p")) == (ERROR, A("not_found"))
    assert snapshot(again.storage) != before
    again.close()


# -- the log ------------------------------------------------------------------------------


def test_a_torn_record_at_the_end_of_the_log_is_dropped_and_the_rest_replayed(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    _fill(served)
    held = snapshot(served.storage, ["g"])
    served.storage._db.close()  # killed while appending a record, which was never acknowledged:
    log_path = tmp_path / "store.db-log"
    whole = log_path.read_bytes()
    with open(log_path, "ab") as log_file:
        log_file.write(whole[len(MAGIC) : len(MAGIC) + 20])
    again = Served(tmp_path / "store.db")
    assert snapshot(again.storage, ["g"]) == held
    assert os.path.getsize(log_path) == len(MAGIC)  # replayed into the file, then emptied
    again.close()


def test_a_damaged_record_ends_the_replay(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    served.call("create_session", "s", {})
    held = snapshot(served.storage)
    size = os.path.getsize(tmp_path / "store.db-log")
    served.call("register_variable", "s", A("t"), A("integer"), 1)
    served.call("register_variable", "s", A("u"), A("integer"), 2)
    served.storage._db.close()
    with open(tmp_path / "store.db-log", "r+b") as log_file:  # a bit flipped in the second record
        log_file.seek(size + 12)
        byte = log_file.read(1)
        log_file.seek(size + 12)
        log_file.write(bytes([byte[0] ^ 1]))
    again = Served(tmp_path / "store.db")
    assert snapshot(again.storage) == held
    assert len((tmp_path / "store.db-log.dropped").read_bytes()) > 20  # kept aside
    again.close()


def test_replaying_records_the_file_already_has_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = Served(tmp_path / "store.db")
    _fill(served)
    old_records = (tmp_path / "store.db-log").read_bytes()[len(MAGIC) :]
    monkeypatch.setattr(sqlite_log.AppendLog, "empty", lambda self: None)
    served.storage._apply()  # killed after the file's commit, before the log was emptied
    monkeypatch.undo()
    served.call("update_variable", "s", A("t"), 0.1)
    served.call("delete_session", "other")
    held = snapshot(served.storage, ["g"])
    served.storage._db.close()
    again = Served(tmp_path / "store.db")
    assert snapshot(again.storage, ["g"]) == held
    assert again.call("get_variable", "s", A("t"))[1][A("version")] == 4
    # an emptied log whose old bytes a power loss brought back after new records: their
    # numbers say they are in the file already, so they are skipped
    again.call("update_variable", "s", A("t"), 0.2)
    held = snapshot(again.storage, ["g"])
    again.storage._db.close()
    with open(tmp_path / "store.db-log", "ab") as log_file:
        log_file.write(old_records)
    third = Served(tmp_path / "store.db")
    assert snapshot(third.storage, ["g"]) == held and third.call("list_sessions") == ["s"]
    third.close()


def test_a_log_of_another_format_is_refused(tmp_path: Path) -> None:
    SqliteStorage(str(tmp_path / "store.db")).close()
    (tmp_path / "store.db-log").write_bytes(b"SNKSLOG9" + b"\0" * 40)
    with pytest.raises(StorageOpenError, match="not a log of this sidecar's format"):
        SqliteStorage(str(tmp_path / "store.db"))
    SqliteStorage(str(tmp_path / "other.db")).close()


def test_close_writes_the_log_into_the_file_and_removes_it(tmp_path: Path) -> None:
    served = Served(tmp_path / "store.db")
    _fill(served)
    assert served.storage.log_records > 0
    served.close()
    assert not os.path.exists(tmp_path / "store.db-log")
    db = sqlite3.connect(tmp_path / "store.db")
    assert db.execute("SELECT count(*) FROM variables").fetchone()[0] == 3
    db.close()


def test_a_log_record_that_does_not_read_refuses_the_open(tmp_path: Path) -> None:
    import struct
    import zlib

    SqliteStorage(str(tmp_path / "store.db")).close()
    payload = b"\xffnot marshal"
    (tmp_path / "store.db-log").write_bytes(MAGIC + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    with pytest.raises(StorageOpenError, match="cannot be read"):
        SqliteStorage(str(tmp_path / "store.db"))
