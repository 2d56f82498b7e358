"""What start-up recovery looks for, in one place.

The full open (`ArawnCore.open`) repairs what it finds: JSONL lines a crashed
writer left unindexed, jobs left `running` by a process that is gone. The sync
read path (`arawn_core.store.reader`) only serves a store that needs neither,
and hands anything else to the full open; both ask these functions.
"""

from __future__ import annotations

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
