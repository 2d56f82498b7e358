"""Append-only JSON Lines files: the source of truth for messages.

Each append takes an exclusive `flock` (two processes may share a data dir),
writes one whole line, flushes and fsyncs before returning, and reports the
line's byte offset and length so SQLite can index it. A torn last line left by
a crash is cut off (under the same lock) and kept aside in a `.torn` file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

FILE_MODE = 0o600


from arawn_core.errors import StorageFull  # noqa: E402,F401  (defined with the other errors; re-exported)


#: Out of space, whatever the limit: the disk (ENOSPC), a quota (EDQUOT) or a file size limit (EFBIG).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass
class Record:
    offset: int
    length: int
    data: dict[str, Any]


@dataclass
class BadLine:
    offset: int
    line_no: int
    reason: str


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)


def _repair_locked(fd: int, path: Path) -> int:
    """Cut a torn last line (no trailing newline) off the file; return the clean size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with open(path, "rb") as fh:
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
    tfd = os.open(torn_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(tfd, torn + b"\n")
        os.fsync(tfd)
    finally:
        os.close(tfd)
    os.truncate(path, end)
    os.fsync(fd)
    return end


def repair(path: Path) -> int:
    """Set a torn tail aside; returns the clean size. Safe while others append."""
    if not path.exists():
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
            os.truncate(path, start)
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
            os.truncate(path, size)
            os.fsync(fd)
    finally:
        os.close(fd)


def read_span(fh: Any, offset: int, length: int) -> dict[str, Any]:
    fh.seek(offset)
    raw = fh.read(length)
    return json.loads(raw)


def read_spans(path: Path, spans: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Read the given records; cost is O(their size), not the file's."""
    out = []
    with open(path, "rb") as fh:
        for offset, length in spans:
            out.append(read_span(fh, offset, length))
    return out


def scan(path: Path, start: int = 0, bad: list[BadLine] | None = None) -> Iterator[Record]:
    """Every complete, valid line from `start`; invalid lines are reported in `bad` and skipped.

    A final line without a newline is incomplete (a write in progress or torn) and is not returned.
    """
    if not path.exists():
        return
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        line_no = 0
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
                    bad.append(BadLine(offset, line_no, str(exc)[:200]))
            else:
                yield Record(offset, length, data)
            offset += length
