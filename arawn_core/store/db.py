"""The SQLite connection: pragmas, migrations, owner-only files, one write lock."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

import aiosqlite

from arawn_core.store.jsonl import StorageFull
from arawn_core.store.schema import MIGRATIONS

DIR_MODE = 0o700
FILE_MODE = 0o600


class _NoSqlParameters(logging.Filter):
    """aiosqlite logs every call with its arguments at DEBUG, and SQL parameters are message contents.

    Keep the call's name, drop its arguments, so DEBUG logs never hold what the user wrote.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                f"{getattr(a.func, '__qualname__', type(a.func).__name__)}(...)" if isinstance(a, functools.partial)
                else a for a in record.args)
        return True


logging.getLogger("aiosqlite").addFilter(_NoSqlParameters())


from arawn_core.errors import DatabaseError  # noqa: E402,F401  (defined with the other errors; re-exported)


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        ensure_private_dir(path.parent)
        old_umask = os.umask(0o077)
        try:
            conn = await aiosqlite.connect(path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: cannot open database: {exc}") from None
        finally:
            os.umask(old_umask)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await db._setup()
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise _storage_error(exc, path) or DatabaseError(f"{path}: {exc}") from None
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            if p.exists():
                os.chmod(p, FILE_MODE)
        return db

    async def _setup(self) -> None:
        # Each await is a round trip to the connection's thread and back through the event
        # loop, which at start-up is busy building the first screen: few of them here.
        c = self.conn
        await c.executescript("PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL; "
                              "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        ((current,),) = await c.execute_fetchall("PRAGMA user_version")
        if current >= len(MIGRATIONS):
            return  # up to date (the version only grows); else migrate under the write lock:
        async with self.transaction():
            version = (await (await c.execute("PRAGMA user_version")).fetchone())[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _split_sql(script):
                    await c.execute(statement)
                await c.execute(f"PRAGMA user_version = {number}")

    async def close(self) -> None:
        await self.conn.close()

    @asynccontextmanager
    async def transaction(self, undo: list[Callable[[], Any]] | None = None) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: one writer at a time (across processes), all or nothing.

        A failed statement or COMMIT rolls back (if SQLite has not already) so the
        connection is never left inside a transaction; a full disk raises StorageFull.
        Callables the block appends to `undo` run on failure while the write lock is
        still held (e.g. cutting a JSONL line back off, before anyone else can append).
        """
        async with self._write_lock:
            # BEGIN runs in aiosqlite's thread even if we are cancelled while waiting for it:
            # finish it, roll it back and only then let the cancellation through, or the
            # connection would stay inside a transaction and every later BEGIN would fail.
            begin = asyncio.ensure_future(self.conn.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                try:
                    await begin
                    if self.conn.in_transaction:
                        await self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
            try:
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException as exc:
                for step in reversed(undo or []):
                    await asyncio.to_thread(step)
                if self.conn.in_transaction:
                    try:
                        await self.conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        if self.conn.in_transaction:
                            raise
                raise _storage_error(exc, self.path) or exc

    async def fetchall(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[aiosqlite.Row]:
        # one round trip (execute, fetch and close in the connection's thread), not three
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()


def _storage_error(exc: BaseException, path: Path) -> Exception | None:
    """SQLite's "database or disk is full" (or an I/O error on a full file system) as StorageFull."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_IOERR:
        try:
            st = os.statvfs(path.parent)
            full = st.f_bavail == 0 or st.f_favail == 0
        except OSError:
            full = False
        if not full:
            return DatabaseError(f"{path}: {exc}")
    elif code != sqlite3.SQLITE_FULL:
        return None
    error = StorageFull(errno.ENOSPC, f"disk full while writing {path}")
    error.__cause__ = exc
    error.__suppress_context__ = True
    return error


def _split_sql(script: str) -> list[str]:
    """Split a migration on statement boundaries (sqlite3.complete_statement-aware)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
