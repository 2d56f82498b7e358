"""The SQLite connection: pragmas, migrations, owner-only files, one write lock."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import sqlite3
import stat
import time
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import aiosqlite

from arawn_core.store.jsonl import StorageFull, UnsafePath
from arawn_core.store.recovery import index_changed_ns
from arawn_core.store.schema import MIGRATIONS

#: Tables every index has (migration 1); one missing means the file was tampered with.
REQUIRED_TABLES = frozenset({"workstreams", "sessions", "messages", "summaries", "jobs", "imports", "kv"})

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


log = logging.getLogger(__name__)

#: How long a writer waits for another process's write transaction (a long reindex or import).
#: $ARAWN_BUSY_TIMEOUT_S overrides it (tests, or a slow shared disk).
BUSY_TIMEOUT_S = 30.0


#: The longest wait $ARAWN_BUSY_TIMEOUT_S may ask for (a day); SQLite takes whole milliseconds.
MAX_BUSY_TIMEOUT_S = 86_400.0

#: True inside the deferred part of an open (`Database.defer_writes`): its own writes pass the gate.
FIRST_WRITER: ContextVar[bool] = ContextVar("arawn_first_writer", default=False)


def busy_timeout_s() -> float:
    """$ARAWN_BUSY_TIMEOUT_S in [0, a day]; anything else (not a number, inf, nan) is the default."""
    try:
        value = float(os.environ.get("ARAWN_BUSY_TIMEOUT_S", BUSY_TIMEOUT_S))
    except ValueError:
        return BUSY_TIMEOUT_S
    if value != value or value in (float("inf"), float("-inf")):
        return BUSY_TIMEOUT_S
    return min(max(0.0, value), MAX_BUSY_TIMEOUT_S)


from arawn_core.errors import EXIT_USAGE, DatabaseError, StorageError  # noqa: E402,F401  (re-exported)


class CorruptIndex(DatabaseError):
    """arawn.db is damaged. Everything in it can be rebuilt from the JSONL files (`reindex`)."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(f"{path}: the index is damaged ({detail}); rebuild it from the message files:"
                         f" mv {path} {path}.corrupt && arawn --headless reindex")


class IndexBusy(DatabaseError):
    """Another process held the write lock past the busy timeout."""


class ReadOnlyStore(DatabaseError):
    """The data dir (or its file system) cannot be written: reads work, this write could not."""

    exit_code = EXIT_USAGE


class DataDirError(StorageError):
    """The data dir is unusable as given (a file, under a file, not creatable): bad input, exit 2."""

    exit_code = EXIT_USAGE


def tighten(path: Path, mode: int) -> bool:
    """chmod `path` to `mode` when it is looser; True if it was. Where that is not allowed (a
    read-only file system, someone else's file) reads still work, so it is logged, not fatal."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(errno.ELOOP, f"{path} is a symbolic link; arawn does not follow links inside its data"
                         " dir (put the real file or directory there, or remove the link)")
    if stat.S_IMODE(st.st_mode) == mode:
        return False
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.info("cannot tighten %s to %o: %s", path, mode, exc.strerror)
    return True


def ensure_private_dir(path: Path, *, link_ok: bool = False) -> bool:
    """Create `path` (mode 0700) if needed and tighten it (True if it was looser); one-line
    DataDirError if that cannot work.

    `link_ok`: the data dir itself may be a link the user made; nothing inside it may be.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    except FileExistsError:
        raise DataDirError(f"{path}: is a file, not a directory; point --data-dir or [workstream] data_dir"
                           " at a directory") from None
    except NotADirectoryError:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise DataDirError(f"{path}: cannot be a directory because {blocker} is a file; point --data-dir or"
                           " [workstream] data_dir elsewhere") from None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # path.is_dir() itself would raise on these
            raise DataDirError(f"{str(path)[:300]}: cannot be the data dir: {exc.strerror}; point --data-dir or"
                               " [workstream] data_dir elsewhere") from None
        if not path.is_dir():
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyStore(f"{path}: cannot be created: {exc.strerror} (the data dir is read-only?);"
                                    " reading works, writing needs a writable data dir") from None
            raise DataDirError(f"{path}: cannot create the directory: {exc.strerror}") from None
    if not path.is_dir():
        raise DataDirError(f"{path}: is not a directory; point --data-dir or [workstream] data_dir at one")
    if link_ok and path.is_symlink():
        path = path.resolve()
    return tighten(path, DIR_MODE)


def writable(path: Path) -> bool:
    """Can files be created in the directory `path`? (No: a read-only dir or file system.)"""
    if not os.access(path, os.W_OK):
        return False
    try:
        st = os.statvfs(path)
    except OSError:
        return True
    return not st.f_flag & os.ST_RDONLY


def _sqlite_code(exc: BaseException) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def is_corrupt(exc: BaseException) -> bool:
    """SQLite says the file is damaged, or arawn's own tables are gone from it (a hand-edited index)."""
    return isinstance(exc, sqlite3.DatabaseError) and (
        _sqlite_code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
        or "malformed" in str(exc) or "not a database" in str(exc)
        or str(exc).startswith(("no such table", "no such column")))


def _db_error(exc: BaseException, path: Path) -> BaseException:
    """Any SQLite failure as one of ours (one line naming the file); other exceptions unchanged."""
    mapped = _storage_error(exc, path)
    if mapped is not None:
        return mapped
    if isinstance(exc, sqlite3.Error):
        return DatabaseError(f"{path}: {exc}")
    return exc


def move_aside(path: Path) -> Path:
    """Rename a damaged arawn.db (and its -wal/-shm) to arawn.db.corrupt-<time>; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists() or src.is_symlink():
            os.replace(src, Path(str(target) + suffix))
    return target


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path, read_only: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.read_only = read_only
        #: True when this open created the file (none was there): the index must be built from the files.
        self.created = False
        #: When the index last changed before this open (newest mtime of the file and its WAL, in ns):
        #: message files changed later than this hold what the index may miss.
        self.changed_ns = 0
        self._write_lock = asyncio.Lock()
        #: Set by `defer_writes`: what must run before any other write, until it has succeeded.
        self._first: Callable[[], Awaitable[Any]] | None = None
        #: Its run (see `run_deferred`), kept for its result once the gate is open.
        self.deferred: asyncio.Task[Any] | None = None

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the index. A damaged file raises CorruptIndex; a data dir that
        cannot be written opens read-only (reads work, writes raise ReadOnlyStore)."""
        ensure_private_dir(path.parent, link_ok=True)
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            if p.is_symlink():
                raise UnsafePath(errno.ELOOP, f"{p} is a symbolic link; arawn does not follow links inside its"
                                 " data dir (remove the link)")
        existed = path.exists()
        changed_ns = index_changed_ns(path)
        if not writable(path.parent) or (existed and not os.access(path, os.W_OK)):
            if not existed:
                raise ReadOnlyStore(f"{path.parent}: the data dir is read-only and holds no index yet;"
                                    " make it writable or point --data-dir elsewhere")
            return await cls._open_read_only(path)
        old_umask = os.umask(0o077)
        try:
            conn = await aiosqlite.connect(path, timeout=busy_timeout_s(), isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: cannot open database: {exc}") from None
        finally:
            os.umask(old_umask)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        db.created = not existed
        db.changed_ns = changed_ns
        try:
            await db._setup()
        except sqlite3.DatabaseError as exc:
            await conn.close()
            if is_corrupt(exc):
                raise CorruptIndex(path, str(exc)) from None
            raise _storage_error(exc, path) or DatabaseError(f"{path}: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        for suffix in ("", "-wal", "-shm"):
            tighten(Path(str(path) + suffix), FILE_MODE)
        return db

    @classmethod
    async def _open_read_only(cls, path: Path) -> Database:
        """Reads on a read-only data dir: `mode=ro`, or `immutable=1` when SQLite cannot even
        create its shared-memory file there (nobody can be writing then)."""
        last: Exception | None = None
        for query in ("mode=ro", "immutable=1"):
            try:
                conn = await aiosqlite.connect(f"file:{path}?{query}", uri=True, timeout=busy_timeout_s(),
                                               isolation_level=None)
            except sqlite3.Error as exc:
                last = exc
                continue
            conn.row_factory = aiosqlite.Row
            try:
                await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s() * 1000)}")
                ((version,),) = await conn.execute_fetchall("PRAGMA user_version")
            except sqlite3.Error as exc:
                await conn.close()
                if is_corrupt(exc):
                    raise CorruptIndex(path, str(exc)) from None
                last = exc
                continue
            if version < len(MIGRATIONS):
                await conn.close()
                raise ReadOnlyStore(f"{path}: the index needs an upgrade but the data dir is read-only;"
                                    " run arawn once where it can write")
            db = cls(conn, path, read_only=True)
            db.changed_ns = index_changed_ns(path)
            return db
        raise DatabaseError(f"{path}: cannot open the index read-only: {last}")

    def refuse_write(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(f"{self.path.parent}: the data dir is read-only, so this cannot be saved"
                                " (reading works); make it writable and try again")

    async def _setup(self) -> None:
        # Each await is a round trip to the connection's thread and back through the event
        # loop, which at start-up is busy building the first screen: few of them here.
        c = self.conn
        await c.executescript(f"PRAGMA busy_timeout = {int(busy_timeout_s() * 1000)}; PRAGMA journal_mode = WAL; "
                              "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        ((current,),) = await c.execute_fetchall("PRAGMA user_version")
        if current >= len(MIGRATIONS):
            tables = {r[0] for r in await c.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not REQUIRED_TABLES <= tables:  # a hand-edited index: rebuilt from the files like a damaged one
                raise sqlite3.DatabaseError(f"no such table: {', '.join(sorted(REQUIRED_TABLES - tables))}")
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
        self.refuse_write()
        if self._first is not None and not FIRST_WRITER.get():
            await asyncio.shield(self.run_deferred())  # raises its error, if it failed
        async with self._write_lock:
            # BEGIN runs in aiosqlite's thread even if we are cancelled while waiting for it:
            # finish it, roll it back and only then let the cancellation through, or the
            # connection would stay inside a transaction and every later BEGIN would fail.
            begin = asyncio.ensure_future(self.conn.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except sqlite3.Error as exc:
                raise _db_error(exc, self.path) from None
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
                raise _db_error(exc, self.path)

    def defer_writes(self, first: Callable[[], Awaitable[Any]]) -> None:
        """Every write waits until `first` (the open's crash recovery) has run; it runs at
        `run_deferred()` or at the first write, whichever comes first, so nothing can wait for it
        forever. Reads go on meanwhile (the TUI paints its first screen from the index as it is).
        Its own writes pass (`FIRST_WRITER`); if it fails, every write raises its error."""
        self._first = first

    def run_deferred(self) -> asyncio.Task[Any] | None:
        """Start the deferred work if it has not started (None if nothing was deferred)."""
        first = self._first
        if self.deferred is None and first is not None:
            async def run() -> Any:
                FIRST_WRITER.set(True)  # in this task's own copy of the context only
                result = await first()
                self._first = None  # the gate opens
                return result

            self.deferred = asyncio.get_running_loop().create_task(run())
        return self.deferred

    async def fetchall(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[aiosqlite.Row]:
        # one round trip (execute, fetch and close in the connection's thread), not three
        try:
            return list(await self.conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _db_error(exc, self.path) from None

    async def fetchone(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> aiosqlite.Row | None:
        try:
            async with self.conn.execute(sql, params) as cur:
                return await cur.fetchone()
        except sqlite3.Error as exc:
            raise _db_error(exc, self.path) from None


def _storage_error(exc: BaseException, path: Path) -> Exception | None:
    """SQLite's failures that have a one-line meaning: a full disk (StorageFull), a lock held past
    the busy timeout (IndexBusy), a read-only file (ReadOnlyStore), a damaged file (CorruptIndex)."""
    if is_corrupt(exc):
        return CorruptIndex(path, str(exc))
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return IndexBusy(f"{path}: another arawn process (a long reindex or import?) kept the index locked for"
                         f" more than {busy_timeout_s():g}s; nothing was changed: try again when it is done")
    if code == sqlite3.SQLITE_READONLY:
        return ReadOnlyStore(f"{path}: the index is read-only ({exc}), so this cannot be saved;"
                             " make the data dir writable and try again")
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
