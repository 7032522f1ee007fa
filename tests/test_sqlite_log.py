"""The SQLite backend's append log (`sidecar.storage.sqlite_log`): coalescing the pending records
writes exactly what writing every record in turn would, and the log file gives back the whole
records it took, in order, and nothing else.

Through the backend (torn tails, replays, failures, kill -9): tests/test_sqlite_storage.py.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.storage import sqlite_log
from sidecar.storage.sqlite import _SCHEMA
from sidecar.storage.sqlite_log import MAGIC, TABLES, AppendLog, Batch, Pending, encode_record

SESSIONS = [b"a", b"b"]
VARIABLE_IDS = ["x", "y"]
KEYS = [b"k1", b"k2"]
data = st.binary(max_size=3)
numbers = st.integers(0, 3)


def header(raw: bytes) -> Any:
    return st.tuples(st.just(raw), numbers, numbers, numbers, numbers, numbers, numbers, numbers, numbers, data)


def variable_row(raw: bytes) -> Any:
    return st.tuples(st.just(raw), st.sampled_from(VARIABLE_IDS), numbers, data)


def index_row(raw: bytes) -> Any:
    return st.tuples(st.just(raw), st.sampled_from(KEYS), st.sampled_from(VARIABLE_IDS))


def program_row(raw: bytes) -> Any:
    return st.tuples(st.just(raw), st.sampled_from(KEYS), numbers, data)


session = st.sampled_from(SESSIONS)
rewritten = session.flatmap(
    lambda raw: st.one_of(
        st.just((raw, None, (), (), ())),
        st.tuples(
            st.just(raw),
            header(raw),
            st.lists(variable_row(raw), max_size=2, unique_by=lambda row: row[1]).map(tuple),
            st.lists(index_row(raw), max_size=2, unique_by=lambda row: row[1]).map(tuple),
            st.lists(program_row(raw), max_size=2, unique_by=lambda row: row[1]).map(tuple),
        ),
    )
)
counters = session.flatmap(lambda raw: st.tuples(numbers, numbers, numbers, numbers, numbers, st.just(raw)))
variable_change = session.flatmap(
    lambda raw: st.sampled_from(VARIABLE_IDS).flatmap(
        lambda vid: st.tuples(
            st.just(raw), st.just(vid), st.one_of(st.none(), st.tuples(st.just(raw), st.just(vid), numbers, data))
        )
    )
)
index_change = session.flatmap(
    lambda raw: st.sampled_from(KEYS).flatmap(
        lambda key: st.tuples(
            st.just(raw), st.just(key), st.one_of(st.none(), st.tuples(st.just(raw), st.just(key), st.sampled_from(VARIABLE_IDS)))
        )
    )
)
global_change = st.sampled_from([b"g1", b"g2"]).flatmap(
    lambda raw: st.tuples(st.just(raw), st.one_of(st.none(), st.tuples(st.just(raw), numbers, data)))
)


def few(strategy: Any, unique_by: Any = None) -> Any:
    return st.lists(strategy, max_size=3, unique_by=unique_by).map(tuple)


# A batch names each row at most once (it is built from a set of marks), and a session it
# rewrites appears nowhere else in it.
batches = st.builds(
    Batch,
    wipe=st.sampled_from([False] * 5 + [True]),
    rewritten=few(rewritten, unique_by=lambda entry: entry[0]),
    headers=few(session.flatmap(header), unique_by=lambda row: row[0]),
    counters=few(counters, unique_by=lambda row: row[5]),
    variables=few(variable_change, unique_by=lambda change: change[:2]),
    name_index=few(index_change, unique_by=lambda change: change[:2]),
    programs=few(session.flatmap(program_row), unique_by=lambda row: row[:2]),
    globals_=few(global_change, unique_by=lambda change: change[0]),
    meta=few(st.tuples(st.sampled_from(["variable_number", "sessions_created"]), numbers), unique_by=lambda m: m[0]),
).map(
    lambda batch: batch._replace(
        headers=tuple(row for row in batch.headers if row[0] not in {entry[0] for entry in batch.rewritten}),
        counters=tuple(row for row in batch.counters if row[5] not in {entry[0] for entry in batch.rewritten}),
        variables=tuple(change for change in batch.variables if change[0] not in {entry[0] for entry in batch.rewritten}),
        name_index=tuple(change for change in batch.name_index if change[0] not in {entry[0] for entry in batch.rewritten}),
        programs=tuple(row for row in batch.programs if row[0] not in {entry[0] for entry in batch.rewritten}),
    )
)


def new_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(_SCHEMA)
    # something there before the records, for their deletes and updates to act on
    db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?)", (b"a", 1, 1, 1, 1, 1, 1, 1, 1, b"old"))
    db.execute("INSERT INTO variables VALUES (?,?,?,?)", (b"a", "x", 1, b"old"))
    db.execute("INSERT INTO variable_index VALUES (?,?,?)", (b"a", b"k1", "x"))
    db.execute("INSERT INTO programs VALUES (?,?,?,?)", (b"b", b"k2", 1, b"old"))
    db.execute("INSERT INTO global_programs VALUES (?,?,?)", (b"g1", 1, b"old"))
    db.execute("INSERT INTO meta VALUES (?,?)", ("variable_number", 1))
    return db


def contents(db: sqlite3.Connection) -> dict[str, list]:
    return {table: sorted(db.execute(f"SELECT * FROM {table}").fetchall()) for table in TABLES}


@settings(max_examples=150, deadline=None)
@given(st.lists(batches, max_size=6))
def test_pending_writes_what_writing_every_record_in_turn_writes(records: list[Batch]) -> None:
    one_by_one = new_db()
    for batch in records:
        single = Pending()
        single.add(batch)
        single.write(one_by_one, 1)
    coalesced = Pending()
    for batch in records:
        coalesced.add(batch)
    together = new_db()
    coalesced.write(together, 1)
    assert contents(together) == contents(one_by_one)
    last_wipe = max((at for at, batch in enumerate(records) if batch.wipe), default=0)
    assert coalesced.records == len(records) - last_wipe  # a wipe supersedes what came before


@settings(max_examples=100, deadline=None)
@given(st.lists(batches, max_size=4))
def test_pending_written_twice_changes_nothing_the_second_time(records: list[Batch]) -> None:
    pending = Pending()
    for batch in records:
        pending.add(batch)
    db = new_db()
    pending.write(db, 1)
    once = contents(db)
    pending.write(db, 1)  # a replay of records the file already has
    assert contents(db) == once


@settings(max_examples=50, deadline=None)
@given(st.lists(batches, max_size=5))
def test_the_log_gives_back_every_record_it_took(records: list[Batch]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "x-log")
        log = AppendLog(path, sync=False)
        for number, batch in enumerate(records, 1):
            log.append(encode_record(number, batch))
        log.close(remove=False)
        again = AppendLog(path, sync=False)
        assert again.records() == list(enumerate(records, 1))
        assert again.size == os.path.getsize(path)
        again.close(remove=True)
        assert not os.path.exists(path)


def test_a_failed_append_leaves_whole_records_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "x-log")
    log = AppendLog(path, sync=False)
    first = Batch(False, (), (), (), (), (), (), (), (("variable_number", 1),))
    log.append(encode_record(1, first))
    size = log.size
    real_write = os.write

    def half(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sqlite_log.os, "write", half)
    with pytest.raises(OSError, match="No space left"):
        log.append(encode_record(2, first))
    monkeypatch.undo()
    assert log.size == size == os.path.getsize(path)
    assert log.records() == [(1, first)]
    log.empty()
    assert os.path.getsize(path) == len(MAGIC) and log.records() == []
    log.close(remove=True)


def test_a_log_whose_creation_never_finished_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "x-log"
    path.write_bytes(MAGIC[:3])  # killed while writing the magic
    log = AppendLog(str(path), sync=False)
    assert log.records() == [] and path.read_bytes() == MAGIC
    log.close(remove=False)


def test_a_whole_record_that_does_not_read_is_an_error_not_a_torn_write(tmp_path: Path) -> None:
    import struct
    import zlib

    path = tmp_path / "x-log"
    payload = b"\xffnot marshal"
    path.write_bytes(MAGIC + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    log = AppendLog(str(path), sync=False)
    with pytest.raises(ValueError, match="a whole record at byte 8 cannot be read"):
        log.records()
    log.close(remove=False)
    assert path.stat().st_size == len(MAGIC) + 8 + len(payload)  # kept for someone to look at


def test_a_torn_record_that_cannot_be_cut_off_stops_every_later_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "x-log")
    log = AppendLog(path, sync=False)
    first = Batch(False, (), (), (), (), (), (), (), (("variable_number", 1),))
    real_write = os.write

    def half(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sqlite_log.os, "write", half)
    monkeypatch.setattr(sqlite_log.os, "ftruncate", no_truncate)
    with pytest.raises(OSError, match="No space left"):
        log.append(encode_record(1, first))
    monkeypatch.undo()
    # a record after the torn bytes would be acknowledged and never replayed: refused instead
    with pytest.raises(OSError, match="torn record that could not be cut off"):
        log.append(encode_record(1, first))
    log.close(remove=False)
    emptied = AppendLog(path + "2", sync=False)
    emptied.torn = True
    emptied.empty()  # the file took every record: the log is whole again
    emptied.append(encode_record(1, first))
    assert emptied.records() == [(1, first)]
    emptied.close(remove=True)
    again = AppendLog(path, sync=False)  # a restart drops the torn tail
    assert again.records() == [] and again.size == len(MAGIC)
    again.append(encode_record(1, first))
    assert again.records() == [(1, first)]
    again.close(remove=True)
