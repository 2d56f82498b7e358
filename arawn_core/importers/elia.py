"""elia's SQLite store (`elia.sqlite` in elia's data dir, e.g. ~/.local/share/elia/elia.sqlite).

Where the format description comes from: elia's SQLModel tables as
published in its repository (`elia_chat/database/models.py`): `chat` (`id`,
`model`, `title`, `started_at` DATETIME, `archived`) and `message` (`id`,
`chat_id`, `role`, `content`, `timestamp` DATETIME, `status`, `end_turn`,
`weight`, `meta` JSON, `model`, `parent_id`). Same two table names as
oterm's store, different columns: detection tells them apart by those.
The fixtures in tests are SQLite files built in that shape.

Each chat is one conversation: its messages ordered by id (the order elia
shows them), with their timestamps; the title and model go into the import
metadata. A message with an unknown role or a bad timestamp makes its chat
a problem naming it, and the chat is skipped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator

from arawn_core.importers.records import ImportProblem, RecordError, SourceMessage, check_unicode, normalize_timestamp
from arawn_core.importers.sqlite_store import columns, connect_read_only
from arawn_core.models import ROLES

Read = tuple[str, str | None, list[SourceMessage]]


def read_elia(path: Path, problems: list[ImportProblem]) -> Iterator[Read | None]:
    con = connect_read_only(path)
    try:
        chat_cols, msg_cols = columns(con, "chat"), columns(con, "message")
        chat_pick = ", ".join(c for c in ("id", "title", "model", "started_at") if c in chat_cols)
        msg_pick = ", ".join(c for c in ("id", "role", "content", "timestamp", "model") if c in msg_cols)
        for chat in con.execute(f"SELECT {chat_pick} FROM chat ORDER BY id").fetchall():
            title = chat["title"] if chat["title"] else None
            where = f"chat {chat['id']} ({title!r})" if title else f"chat {chat['id']}"
            try:
                rows = con.execute(f"SELECT {msg_pick} FROM message WHERE chat_id = ? ORDER BY id",
                                   (chat["id"],)).fetchall()
                msgs = _messages(chat, rows)
            except (RecordError, sqlite3.Error) as exc:
                problems.append(ImportProblem(where, str(exc)))
                continue
            if msgs:
                yield where, f"elia-chat-{chat['id']}", msgs
            yield None
    finally:
        con.close()


def _messages(chat: sqlite3.Row, rows: list[sqlite3.Row]) -> list[SourceMessage]:
    out: list[SourceMessage] = []
    last = None
    for i, row in enumerate(rows):
        keys = row.keys()
        role = row["role"]
        if role not in ROLES:
            raise RecordError(f"message {i}: role {role!r} is not one of {', '.join(sorted(ROLES))}")
        content = row["content"]
        if not isinstance(content, str):
            raise RecordError(f"message {i}: content must be a string, not {type(content).__name__}")
        if not content.strip():
            continue
        ts = normalize_timestamp(row["timestamp"]) if "timestamp" in keys and row["timestamp"] else last
        if ts and last and ts < last:
            ts = last
        last = ts or last
        extra: dict[str, Any] = {}
        if chat["title"]:
            extra["title"] = str(chat["title"])
        model = row["model"] if "model" in keys and row["model"] else chat["model"] if "model" in chat.keys() else None
        if model:
            extra["model"] = str(model)
        out.append(SourceMessage(role, content, ts, str(row["id"]) if "id" in keys else None, extra=extra or None))
    check_unicode([], out)
    return out
