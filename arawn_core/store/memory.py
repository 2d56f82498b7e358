"""SQL for steerable memory: pins, summary versions, fork origins, session titles.

Each change is written to the workstream's events.jsonl first (by the caller, through
`Repository._append_event`) and then here, so `reindex` rebuilds all of it from files.
"""

from __future__ import annotations

import json
from typing import Any

from arawn_core.memory.pins import Pin
from arawn_core.memory.steer import Steer
from arawn_core.memory.versions import SummaryVersion, VersionMeta
from arawn_core.models import Summary

#: Longest session title kept (the first line of a long first message is cut here, with "…").
TITLE_MAX_CHARS = 80


def title_from_text(text: str) -> str | None:
    """A session's title: the first non-blank line of its first user message, trimmed."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= TITLE_MAX_CHARS else line[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return None


PINS_OF_WORKSTREAM = "SELECT * FROM pins WHERE workstream_id = ? ORDER BY created_at, rowid"
CURRENT_VERSION = "SELECT * FROM summary_versions WHERE workstream_id = ? ORDER BY number DESC LIMIT 1"
ORIGIN_OF_WORKSTREAM = "SELECT * FROM workstream_origins WHERE workstream_id = ?"


def pin_from_row(row: Any) -> Pin:
    return Pin(row["id"], row["workstream_id"], row["text"], row["created_at"], row["updated_at"],
               row["source_message_id"])


# ---- pins -------------------------------------------------------------------
async def apply_pin_event(c: Any, ev: dict[str, Any]) -> None:
    """One pin event (`pin`, `pin_edit`, `unpin`) into the pins table, inside the caller's transaction."""
    kind = ev.get("type")
    if kind == "pin":
        await c.execute("INSERT OR REPLACE INTO pins (id, workstream_id, text, created_at, updated_at,"
                        " source_message_id) VALUES (?,?,?,?,?,?)",
                        (ev["id"], ev["workstream_id"], ev["text"], ev["created_at"], ev["created_at"],
                         ev.get("source_message_id")))
    elif kind == "pin_edit":
        await c.execute("UPDATE pins SET text = ?, updated_at = ? WHERE id = ?", (ev["text"], ev["updated_at"], ev["id"]))
    elif kind == "unpin":
        await c.execute("DELETE FROM pins WHERE id = ?", (ev["id"],))


# ---- versions ---------------------------------------------------------------
async def latest_version_row(c: Any, workstream_id: str) -> Any:
    async with c.execute("SELECT * FROM summary_versions WHERE workstream_id = ? ORDER BY number DESC LIMIT 1",
                         (workstream_id,)) as cur:
        return await cur.fetchone()


async def record_version(c: Any, summary: Summary, meta: VersionMeta | None) -> int:
    """A workstream summary becomes the next numbered version (once: a summary already recorded is skipped)."""
    async with c.execute("SELECT number FROM summary_versions WHERE summary_id = ?", (summary.id,)) as cur:
        row = await cur.fetchone()
    if row is not None:
        return row[0]
    last = await latest_version_row(c, summary.workstream_id)
    if meta is None:  # a model's version: protection carries over from the one before
        meta = VersionMeta("model", protected=json.loads(last["protected"]) if last else [])
    number = (last["number"] if last else 0) + 1
    await c.execute(
        "INSERT INTO summary_versions (workstream_id, number, summary_id, author, text, created_at, provenance,"
        " covers, protected, restored, focus, reverted_from) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (summary.workstream_id, number, summary.id, meta.author, summary.text, summary.provenance.created_at,
         json.dumps(summary.provenance.to_dict()), json.dumps(summary.covers), json.dumps(meta.protected),
         json.dumps(meta.restored), meta.focus, meta.reverted_from))
    return number


def version_from_row(row: Any) -> SummaryVersion:
    return SummaryVersion.from_row(row)


# ---- titles -----------------------------------------------------------------
async def set_titles(c: Any, firsts: dict[str, str]) -> None:
    """Untitled sessions get a title from their first user message (session id -> its text)."""
    params = [(t, sid) for sid, text in firsts.items() if (t := title_from_text(text))]
    if params:
        await c.executemany("UPDATE sessions SET title = ? WHERE id = ? AND title IS NULL", params)


# ---- fork origins -----------------------------------------------------------
async def set_origin(c: Any, workstream_id: str, ev: dict[str, Any]) -> None:
    await c.execute("INSERT OR REPLACE INTO workstream_origins (workstream_id, origin_id, origin_title,"
                    " origin_version, created_at) VALUES (?,?,?,?,?)",
                    (workstream_id, str(ev.get("origin_id", "")), str(ev.get("origin_title", "")),
                     ev.get("origin_version") if isinstance(ev.get("origin_version"), int) else None,
                     str(ev.get("created_at", ""))))


# ---- focus and protected lines for a compression run --------------------------
def focus_key(workstream_id: str) -> str:
    return f"memory.focus:{workstream_id}"


async def steer_for(repo: Any, workstream_id: str, with_protected: bool = True) -> Steer:
    """What steers the workstream's next compression: the focus of `compress --focus` (until the
    reduce of that run is written) and the lines the user's edits protect."""
    focus = await repo.kv_get(focus_key(workstream_id))
    keep: tuple[str, ...] = ()
    if with_protected:
        row = await repo.db.fetchone("SELECT protected FROM summary_versions WHERE workstream_id = ?"
                                     " ORDER BY number DESC LIMIT 1", (workstream_id,))
        keep = tuple(json.loads(row[0])) if row else ()
    return Steer(focus or None, keep)


async def clear_focus(repo: Any, workstream_id: str, focus: str) -> None:
    """The run's reduce is written: its focus is done (unless a newer one replaced it meanwhile)."""
    async with repo.db.transaction() as c:
        await c.execute("DELETE FROM kv WHERE key = ? AND value = ?", (focus_key(workstream_id), focus))


async def replay_event(c: Any, workstream_id: str, ev: dict[str, Any]) -> None:
    """One memory event again (idempotent; replayed in file order, they end in the files' state)."""
    kind = ev.get("type")
    if kind in ("pin", "pin_edit", "unpin"):
        await apply_pin_event(c, {**ev, "workstream_id": workstream_id})
    elif kind == "session_title" and isinstance(ev.get("title"), str):
        await c.execute("UPDATE sessions SET title = ? WHERE id = ? AND workstream_id = ?",
                        (ev["title"], str(ev.get("session_id")), workstream_id))
    elif kind == "fork":
        await set_origin(c, workstream_id, ev)
