"""oterm's SQLite store (`store.db` in oterm's data dir, e.g. ~/.local/share/oterm/store.db).

Where the format description comes from: oterm's own schema (its
`store/` package and versioned `store/upgrades/`), as published in its
repository: a table `chat` (`id` INTEGER, `name` TEXT, `model` TEXT,
`system` TEXT, `format`, `parameters`, `keep_alive`, later `tools`, ...)
and a table `message` (`chat_id` INTEGER, `author` TEXT, `text` TEXT; later
versions add an `id` primary key and `images`). oterm keeps no message
times. `author` was "me" / "ollama" in early versions and is "user" /
"assistant" since. The fixtures in tests are SQLite files built with both
shapes.

Each chat is one conversation: its `system` prompt (if any) first, then
its messages in insertion order; its name and model go into the import
metadata. A chat with an unknown author, or whose rows cannot be read, is
a problem naming the chat and is skipped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator

from arawn_core.importers.records import ImportProblem, RecordError, SourceMessage, check_unicode
from arawn_core.importers.sqlite_store import columns, connect_read_only

AUTHORS = {"user": "user", "me": "user", "assistant": "assistant", "ollama": "assistant", "system": "system"}

Read = tuple[str, str | None, list[SourceMessage]]  # (where, source id, messages)


def read_oterm(path: Path, problems: list[ImportProblem]) -> Iterator[Read | None]:
    con = connect_read_only(path)
    try:
        chat_cols, msg_cols = columns(con, "chat"), columns(con, "message")
        order = "id" if "id" in msg_cols else "rowid"
        pick = ", ".join(c for c in ("id", "name", "model", "system") if c in chat_cols)
        for chat in con.execute(f"SELECT {pick} FROM chat ORDER BY id").fetchall():
            where = _where(chat)
            try:
                rows = con.execute(f"SELECT author, text FROM message WHERE chat_id = ? ORDER BY {order}",
                                   (chat["id"],)).fetchall()
                msgs = _messages(chat, rows)
            except (RecordError, sqlite3.Error) as exc:
                problems.append(ImportProblem(where, str(exc)))
                continue
            if msgs:
                yield where, f"oterm-chat-{chat['id']}", msgs
            yield None
    finally:
        con.close()


def _where(chat: sqlite3.Row) -> str:
    keys = chat.keys()
    name = chat["name"] if "name" in keys and chat["name"] else None
    return f"chat {chat['id']} ({name!r})" if name else f"chat {chat['id']}"


def _messages(chat: sqlite3.Row, rows: list[sqlite3.Row]) -> list[SourceMessage]:
    keys = chat.keys()
    extra: dict[str, Any] = {}
    if "name" in keys and chat["name"]:
        extra["title"] = str(chat["name"])
    if "model" in keys and chat["model"]:
        extra["model"] = str(chat["model"])
    out: list[SourceMessage] = []
    if "system" in keys and isinstance(chat["system"], str) and chat["system"].strip():
        out.append(SourceMessage("system", chat["system"], extra=dict(extra) or None))
    for i, row in enumerate(rows):
        role = AUTHORS.get(str(row["author"]).lower()) if row["author"] is not None else None
        if role is None:
            raise RecordError(f"message {i}: author {row['author']!r} is not one of {', '.join(sorted(AUTHORS))}")
        text = row["text"]
        if not isinstance(text, str):
            raise RecordError(f"message {i}: text must be a string, not {type(text).__name__}")
        if text.strip():
            out.append(SourceMessage(role, text, extra=dict(extra) or None))
    check_unicode([], out)
    return out
