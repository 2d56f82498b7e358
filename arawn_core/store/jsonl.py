"""Append-only JSON Lines files: the source of truth for messages.

Each append takes an exclusive `flock` (two processes may share a data dir),
writes one whole line, flushes and fsyncs before returning, and reports the
line's byte offset and length so SQLite can index it. A torn last line left by
a crash is cut off (under the same lock) and kept aside in a `.torn` file.

Every file is opened with O_NOFOLLOW: a symbolic link planted inside the data
dir would otherwise send the conversation to (or read it from) wherever it
points. Such a link is refused with `UnsafePath`, one line naming it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

FILE_MODE = 0o600


from arawn_core.errors import EXIT_USAGE, StorageError, StorageFull  # noqa: E402,F401  (re-exported)


#: Out of space, whatever the limit: the disk (ENOSPC), a quota (EDQUOT) or a file size limit (EFBIG).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class UnsafePath(StorageError, OSError):
    """A file or directory arawn owns is a symbolic link: refused, never followed (exit 2)."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:
        return str(self.strerror)


class MissingLog(StorageError, FileNotFoundError):
    """A message log the index points into is gone (deleted by hand): its messages cannot be read,
    and the line says how to make the index agree with the files again."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOENT, f"{path} is missing (deleted?), so the messages the index lists there"
                         " cannot be read; `arawn --headless reindex` rebuilds the index from the files left")

    def __str__(self) -> str:
        return str(self.strerror)


class BadRecord(StorageError, ValueError):
    """A line the index points at is not the record it should be (hand-edited or damaged file)."""

    def __init__(self, path: Path, line_no: int, reason: str) -> None:
        self.path, self.line_no, self.reason = path, line_no, reason
        super().__init__(f"{path}: line {line_no}: {reason}")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _refuse_link(path: Path, exc: OSError) -> OSError:
    if exc.errno == errno.ELOOP or (path.is_symlink()):
        return UnsafePath(errno.ELOOP, f"{path} is a symbolic link; arawn does not follow links inside its data"
                          " dir (put the real file there, or remove the link)")
    return exc


def open_nofollow(path: Path, flags: int = os.O_RDONLY, mode: int = FILE_MODE) -> int:
    """os.open that refuses a symlink as the last component, and anything but a regular file
    (a FIFO planted there would block every open forever), with UnsafePath."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing
            raise UnsafePath(errno.ENXIO, f"{path} is not a regular file; remove it") from None
        raise _refuse_link(path, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(errno.EINVAL, f"{path} is not a regular file; remove it (arawn keeps only plain"
                             " files in its data dir)")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_read(path: Path) -> Any:
    """A binary reader for `path`, never through a symlink; MissingLog (a FileNotFoundError) if the
    file is not there, so a log deleted under the index is one line saying what to run."""
    try:
        return os.fdopen(open_nofollow(path), "rb")
    except FileNotFoundError:
        raise MissingLog(path) from None


def line_number(path: Path, offset: int) -> int:
    """1-based line of the byte at `offset` (reads the file up to it: for error messages only)."""
    count = 1
    with open_read(path) as fh:
        left = offset
        while left > 0:
            block = fh.read(min(1 << 20, left))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
    return count


@dataclass
class Record:
    offset: int
    length: int
    data: dict[str, Any]
    line_no: int = 0  # 1-based when scanned from the start of the file, else counted from where the scan began


@dataclass
class BadLine:
    offset: int
    line_no: int
    reason: str


def _open_append(path: Path) -> int:
    return open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)


def _repair_locked(fd: int, path: Path) -> int:
    """Cut a torn last line (no trailing newline) off the file; return the clean size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with open_read(path) as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return size
        # find the last newline, reading backwards in blocks
        pos = size
        end = 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            idx = block.rfind(b"\n")
            if idx >= 0:
                end = pos + idx + 1
                break
        fh.seek(end)
        torn = fh.read()
    torn_path = path.with_name(path.name + ".torn")
    tfd = open_nofollow(torn_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(tfd, torn + b"\n")
        os.fsync(tfd)
    finally:
        os.close(tfd)
    os.ftruncate(fd, end)
    os.fsync(fd)
    return end


def repair(path: Path) -> int:
    """Set a torn tail aside; returns the clean size. Safe while others append."""
    if not path.exists() and not path.is_symlink():
        return 0
    try:
        size = path.lstat().st_size
        if size and not path.is_symlink():
            with open_read(path) as fh:  # a whole last line: nothing to repair, no write access needed
                fh.seek(size - 1)
                if fh.read(1) == b"\n":
                    return size
    except FileNotFoundError:
        return 0
    fd = _open_append(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _repair_locked(fd, path)
    finally:
        os.close(fd)


def append_lines(path: Path, lines: list[bytes]) -> list[tuple[int, int]]:
    """Append whole lines durably; returns (offset, length) of each.

    A torn tail from an earlier crash is repaired first, so our line never
    glues onto half a record. On ENOSPC the partial write is cut back off.
    """
    try:
        fd = _open_append(path)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise StorageFull(exc.errno, f"disk full while writing {path}") from None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            start = _repair_locked(fd, path)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:  # no room to set a torn tail aside
                raise StorageFull(exc.errno, f"disk full while writing {path}") from None
            raise
        payload = b"".join(lines)
        try:
            view = memoryview(payload)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, start)
            if exc.errno in FULL_ERRNOS:
                raise StorageFull(exc.errno, f"disk full while writing {path}") from None
            raise
        spans = []
        offset = start
        for line in lines:
            spans.append((offset, len(line)))
            offset += len(line)
        return spans
    finally:
        os.close(fd)


def append_line(path: Path, line: bytes) -> tuple[int, int]:
    return append_lines(path, [line])[0]


def truncate_to(path: Path, size: int) -> None:
    """Cut the file back to `size` (undoing our own append whose indexing failed)."""
    fd = _open_append(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
            os.fsync(fd)
    finally:
        os.close(fd)


def read_span(fh: Any, offset: int, length: int) -> dict[str, Any]:
    """The JSON object at `offset`; ValueError if the bytes there are not one whole object line.

    The span comes from the index, which a hand edit or damage can fill with anything: a
    negative offset would fail the seek with a bare "Invalid argument", a huge length would
    allocate it; both are a line that is not where the index says, like any edit."""
    if not (isinstance(offset, int) and isinstance(length, int)) or offset < 0 or length <= 0 \
            or offset + length > os.fstat(fh.fileno()).st_size:
        raise ValueError("the index names a span the file does not have (the file or the index was edited)")
    fh.seek(offset)
    raw = fh.read(length)
    if len(raw) != length or not raw.endswith(b"\n"):
        raise ValueError("the line is shorter or longer than the index says (the file was edited)")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def read_spans(path: Path, spans: list[tuple[int, int]], bad: list[BadLine] | None = None,
               ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Read the given records; cost is O(their size), not the file's.

    A span that does not hold a whole JSON object (or, given `ids`, not the record with
    that id) raises BadRecord naming the file and line, or with `bad` is reported there
    and skipped, so the records around it are still read.
    """
    out = []
    with open_read(path) as fh:
        for i, (offset, length) in enumerate(spans):
            try:
                data = read_span(fh, offset, length)
                if ids is not None and data.get("id") != ids[i]:
                    raise ValueError("holds a different record than the index says (the file was edited)")
            except (ValueError, UnicodeDecodeError) as exc:
                line_no = line_number(path, offset)
                if bad is None:
                    raise BadRecord(path, line_no, str(exc)[:200]) from None
                bad.append(BadLine(offset, line_no, str(exc)[:200]))
                continue
            out.append(data)
    return out


def scan(path: Path, start: int = 0, bad: list[BadLine] | None = None) -> Iterator[Record]:
    """Every complete, valid line from `start`; invalid lines are reported in `bad` and skipped.

    A final line without a newline is incomplete (a write in progress or torn) and is not returned.
    """
    if not path.exists() and not path.is_symlink():
        return
    with open_read(path) as fh:
        fh.seek(start)
        offset = start
        line_no = 0  # counted from `start`; a bad line's real number is looked up when reported
        for raw in fh:
            line_no += 1
            length = len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a 4300+ digit integer, too deep
                if bad is not None:
                    real = line_no if start == 0 else line_number(path, offset)
                    bad.append(BadLine(offset, real, str(exc)[:200]))
            else:
                yield Record(offset, length, data, line_no)
            offset += length
