"""A synchronous, read-only view of the index, for one-shot read commands.

`arawn --headless ws list` in a loop pays for every import and every hop: an
event loop, aiosqlite's thread, migrations checked. A read needs none of them
when the store is up to date and nothing is left to repair, so this opens the
database with the standard library's sqlite3 and only reads. When the store
needs the full open (it does not exist yet, its schema is older or newer than
this build's, a crash left JSONL lines unindexed or jobs orphaned, the search
index must be rebuilt), `open` returns None and the caller takes the full path,
which repairs first. The SQL is shared with the async store (`queries`), the
row mapping too (`converters`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from arawn_core.store import queries
from arawn_core.store.recovery import files_need_repair, index_changed_ns, orphaned_jobs
from arawn_core.store.schema import MIGRATIONS

DB_FILE = "arawn.db"
#: The tables every index has (as `store.db.REQUIRED_TABLES`, without importing aiosqlite here).
REQUIRED_TABLES = frozenset({"workstreams", "sessions", "messages", "summaries", "jobs", "imports", "kv"})


class StoreReader:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, data_dir: Path) -> StoreReader | None:
        """A reader over `data_dir`, or None when the store must go through the full open first."""
        path = data_dir / DB_FILE
        try:
            if not path.is_file() or path.is_symlink():
                return None
        except OSError:  # a name too long, ...: the full open says what is wrong, naming it
            return None
        index_ns = index_changed_ns(path)
        try:
            # mode=rw: never creates the file; only SELECTs are run on it
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30.0, isolation_level=None)
        except sqlite3.Error:
            return None  # the full open says what is wrong, naming the file
        conn.row_factory = sqlite3.Row
        reader = cls(conn)
        try:
            ready = reader._needs_nothing(data_dir, index_ns)
        except sqlite3.Error:
            ready = False
        if not ready:
            conn.close()
            return None
        return reader

    def _needs_nothing(self, data_dir: Path, index_ns: int = 0) -> bool:
        c = self.conn
        c.execute("PRAGMA busy_timeout = 30000")
        (version,) = c.execute("PRAGMA user_version").fetchone()
        if version != len(MIGRATIONS):
            return False
        if c.execute(queries.FTS_REBUILD_FLAG).fetchone() is not None:
            return False
        if orphaned_jobs(c.execute(queries.RUNNING_JOB_OWNERS).fetchall(), os.getpid()):
            return False
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not REQUIRED_TABLES <= tables:
            return False
        if (os.stat(data_dir).st_mode & 0o777) != 0o700 or (os.stat(data_dir / DB_FILE).st_mode & 0o777) != 0o600:
            return False  # the full open tightens them
        return not files_need_repair(data_dir, c.execute(queries.LOG_OFFSETS).fetchall(), index_ns)

    def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self.conn.close()
