"""Reading another chat app's SQLite store, read-only, one chat at a time (shared by `oterm` and `elia`).

The store is opened with `mode=ro` through a URI, so importing never writes
to (or creates a journal beside) the other app's database, even while that
app is running.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def connect_read_only(path: Path) -> sqlite3.Connection:
    # The import reads batches on worker threads, one after another: the connection moves between them.
    con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    con.row_factory = sqlite3.Row
    return con


def columns(con: sqlite3.Connection, table: str) -> set[str]:
    """The column names of `table` (empty when there is no such table)."""
    return {str(r[1]) for r in con.execute(f"PRAGMA table_info({table!r})")}


def detect(path: Path) -> str | None:
    """"oterm", "elia" or None, from the columns of the store's `chat` and `message` tables."""
    try:
        con = connect_read_only(path)
    except sqlite3.Error:
        return None
    try:
        chat, message = columns(con, "chat"), columns(con, "message")
    except sqlite3.Error:
        return None
    finally:
        con.close()
    if {"chat_id", "author", "text"} <= message and "id" in chat:
        return "oterm"
    if {"chat_id", "role", "content"} <= message and {"id", "title"} <= chat:
        return "elia"
    return None
