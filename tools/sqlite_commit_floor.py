"""The cost of a bare SQLite commit here, with nothing of the sidecar around it (not a test: it
prints, it never asserts).

    taskset -c 0 python3 tools/sqlite_commit_floor.py [--commits 5000]

Opens a fresh file the way `sidecar/storage/sqlite.py` does (WAL, `synchronous=NORMAL`, exclusive
locking mode), fills 10,000 rows of 200 bytes, then times transactions of one variable row plus
one counter row (what a sequential `update_variable` commits) and of fifteen variable rows plus
the counter (a chunk of 16 callers), and the same with `synchronous=FULL`. docs/storage.md
("Throughput") compares the durable store's extra time per update with these figures.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

ROWS = 10_000


def open_db(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE variables (id INTEGER PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO variables VALUES (?, ?)", ((i, b"x" * 200) for i in range(ROWS)))
    db.execute("INSERT INTO counters VALUES (1, 0)")
    db.execute("COMMIT")
    return db


def per_commit_us(db: sqlite3.Connection, commits: int, rows: int) -> float:
    started = time.perf_counter()
    for i in range(commits):
        db.execute("BEGIN")
        for r in range(rows):
            db.execute("UPDATE variables SET data=? WHERE id=?", (b"y" * 200, (i * 7 + r) % ROWS))
        db.execute("UPDATE counters SET n=n+1 WHERE id=1")
        db.execute("COMMIT")
    return (time.perf_counter() - started) * 1e6 / commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("NORMAL", "FULL"):
            db = open_db(Path(tmp) / f"{synchronous}.db", synchronous)
            commits = args.commits if synchronous == "NORMAL" else max(1, args.commits // 20)
            per_commit_us(db, commits // 10, 1)  # warm up: the pages in the cache, the WAL grown
            for rows in (1, 15):
                us = per_commit_us(db, commits, rows)
                print(
                    f"synchronous={synchronous}: {rows:2d} variable row(s) + counter per commit: {us:7.1f} us/commit, {us / rows:6.1f} us/row"
                )
            db.close()


if __name__ == "__main__":
    main()
