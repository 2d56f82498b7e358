"""What start-up recovery looks for, in one place.

The full open (`ArawnCore.open`) repairs what it finds: JSONL lines a crashed
writer left unindexed, jobs left `running` by a process that is gone. The sync
read path (`arawn_core.store.reader`) only serves a store that needs neither,
and hands anything else to the full open; both ask these functions.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Iterable

MESSAGES_FILE = "messages.jsonl"


def messages_path(data_dir: Path, workstream_id: str) -> Path:
    return data_dir / "workstreams" / workstream_id / MESSAGES_FILE


def logs_behind(data_dir: Path, offsets: Iterable[Any]) -> list[str]:
    """Ids of the workstreams whose messages.jsonl is longer than what SQLite indexed.

    `offsets` are (id, log_offset) rows. Blocking (a stat per workstream): run it in a thread
    from async code."""
    root = os.path.join(data_dir, "workstreams")
    behind = []
    for ws_id, offset in offsets:
        try:  # plain strings and os.stat: a thousand workstreams are checked at every start
            size = os.stat(os.path.join(root, ws_id, MESSAGES_FILE)).st_size
        except FileNotFoundError:
            continue
        if size > offset:
            behind.append(ws_id)
    return behind


def index_changed_ns(db_path: Path) -> int:
    """When the index last changed (newest mtime of the file and its WAL, ns). Read it before
    opening: a connection creates or rewrites the WAL.

    It is the first look at the index files, so it also refuses, with one line (UnsafePath,
    exit 2), an `arawn.db`, `-wal` or `-shm` that is there but is no regular file: SQLite
    would fail on a directory with a bare "unable to open database file", and on a FIFO with
    "disk I/O error" (and aiosqlite's thread then prints a traceback)."""
    import stat

    newest = 0
    for suffix in ("", "-wal", "-shm"):
        path = str(db_path) + suffix
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue  # the open refuses links itself, naming them
        if not stat.S_ISREG(st.st_mode):
            from arawn_core.store.jsonl import UnsafePath

            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UnsafePath(errno.EINVAL, f"{path} is {what}; move it aside (arawn keeps only plain files in its"
                             " data dir, and rebuilds the index from the message files with"
                             " `arawn --headless reindex`)")
        if suffix != "-shm":
            newest = max(newest, st.st_mtime_ns)
    return newest


def files_need_repair(data_dir: Path, offsets: Iterable[Any], index_ns: int) -> bool:
    """What the full open's survey repairs (issue 15), checked without changing anything: a
    workstream directory the index lacks, an events.jsonl newer than the index, a messages.jsonl
    longer than indexed, a loose mode, a link or a non-regular file where arawn keeps its files."""
    import stat

    known = {ws_id: offset for ws_id, offset in offsets}
    root = os.path.join(data_dir, "workstreams")
    try:
        if stat.S_IMODE(os.lstat(root).st_mode) != 0o700 or os.path.islink(root):
            return True  # the full open tightens it and everything in it
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return bool(known)
    except OSError:
        return True
    if set(known) - {entry.name for entry in entries}:
        return True  # an indexed workstream's directory is gone: the full open says so
    for entry in entries:
        if len(entry.name) != 36 or entry.name.count("-") != 4:
            continue  # not one of ours (the full open checks the UUID properly)
        if entry.is_symlink() or entry.name not in known:
            return True
        try:  # as the full open's survey: its two logs (modes inside are checked under a loose root)
            events = os.lstat(os.path.join(entry.path, "events.jsonl"))
            if not stat.S_ISREG(events.st_mode) or events.st_mtime_ns > index_ns:
                return True
        except FileNotFoundError:
            pass
        except OSError:
            return True
        try:
            messages = os.lstat(os.path.join(entry.path, MESSAGES_FILE))
            if not stat.S_ISREG(messages.st_mode) or messages.st_size > known[entry.name]:
                return True
        except FileNotFoundError:
            pass
        except OSError:
            return True
    return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned_jobs(owners: Iterable[Any], my_pid: int) -> list[str]:
    """Ids of running jobs whose owner is gone (or is this process, which has not started any yet).

    `owners` are (id, owner_pid) rows."""
    return [job_id for job_id, pid in owners if pid == my_pid or not pid_alive(pid)]
