"""Workstreams, sessions, messages and summaries: JSONL on disk, indexed in SQLite.

Per workstream directory `<data_dir>/workstreams/<uuid>/`:
  messages.jsonl  every message, in the original arawn server's layout
  events.jsonl    workstream snapshots, session ends and summaries, so that
                  `reindex` can rebuild SQLite from files alone
Directory names are always UUIDs we generated; user text never becomes a path.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sqlite3
import stat
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from arawn_core.models import (
    Message,
    Session,
    Summary,
    SummaryKind,
    SummaryStamp,
    Workstream,
    WorkstreamState,
    new_id,
    utc_now,
)
from arawn_core.memory.versions import VersionMeta
from arawn_core.store import fts, jsonl, memory
from arawn_core.store.converters import (
    session_from_row,
    summary_from_record,
    summary_from_row,
    summary_to_params,
    workstream_from_row,
    session_stamps_from_rows,
)
from arawn_core.store import queries
from arawn_core.store.db import (
    DIR_MODE,
    FILE_MODE,
    CorruptIndex,
    Database,
    DatabaseError,
    IndexBusy,
    ReadOnlyStore,
    ensure_private_dir,
    tighten,
)
from arawn_core.store.recovery import MESSAGES_FILE

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"

Progress = Callable[[int, int], None]


from arawn_core.errors import NotFound  # noqa: E402,F401  (defined with the other errors; re-exported)


def checked_id(value: str) -> str:
    """Only our own UUIDs name directories."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"not a workstream id: {value!r}") from None


#: Errors that mean "this record or workstream is unreadable", not "the program is wrong".
RECORD_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


class Repository:
    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir
        self.ws_root = data_dir / "workstreams"
        #: Check every workstream dir's and file's mode at open (set when the data dir was found loose:
        #: under a 0700 data dir and workstreams/ nobody else can reach what is inside).
        self.check_modes = False
        #: One line per problem met while reading or indexing (a bad line, a workstream that could not
        #: be indexed, an index that was behind); the CLI prints them on stderr, the TUI logs them.
        self.notices: list[str] = []
        #: Told of each new notice (the core publishes it as an event for the TUI).
        self.on_notice: Callable[[str], None] | None = None

    def notice(self, text: str) -> None:
        log.info("%s", text)  # not WARNING: with no logging set up, Python would print it raw on stderr
        if text not in self.notices:
            self.notices.append(text)
            if self.on_notice is not None:
                self.on_notice(text)

    # ---- files ---------------------------------------------------------
    def ws_dir(self, workstream_id: str) -> Path:
        return self.ws_root / checked_id(workstream_id)

    def messages_path(self, workstream_id: str) -> Path:
        return self.ws_dir(workstream_id) / MESSAGES_FILE

    def events_path(self, workstream_id: str) -> Path:
        return self.ws_dir(workstream_id) / EVENTS_FILE

    async def _append_event(self, workstream_id: str, event: dict[str, Any]) -> None:
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode()
        path = self.events_path(workstream_id)
        await asyncio.to_thread(jsonl.append_line, path, line)

    async def _append_event_locked(self, workstream_id: str, event: dict[str, Any],
                                   undo: list[Callable[[], Any]]) -> None:
        """Inside a write transaction: the event line, cut back off if the transaction fails.

        So a write that cannot be indexed (the index locked past the busy timeout, a read-only
        file) leaves events.jsonl as it was, instead of a change the index never saw.
        """
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode()
        path = self.events_path(workstream_id)
        offset, _ = await asyncio.to_thread(jsonl.append_line, path, line)
        undo.append(lambda: jsonl.truncate_to(path, offset))

    # ---- workstreams ---------------------------------------------------
    async def create_workstream(self, title: str, tags: list[str], is_scratch: bool = False) -> Workstream:
        now = utc_now()
        ws = Workstream(
            id=new_id(), title=title, state=WorkstreamState.ACTIVE, tags=list(tags),
            created_at=now, updated_at=now, is_scratch=is_scratch,
        )
        self.db.refuse_write()
        async with self.db.transaction(undo := []) as c:
            ensure_private_dir(self.ws_root)
            ensure_private_dir(self.ws_dir(ws.id))
            undo.append(lambda: _remove_if_empty(self.ws_dir(ws.id)))
            await self._append_event_locked(ws.id, _ws_event(ws), undo)
            await self._insert_workstream(c, ws)
        return ws

    async def _insert_workstream(self, c: Any, ws: Workstream) -> None:
        await c.execute(
            "INSERT OR REPLACE INTO workstreams (id, title, state, tags, created_at, updated_at, model,"
            " system_prompt, is_scratch, summary_id, log_offset, session_count) VALUES (?,?,?,?,?,?,?,?,?,"
            " (SELECT summary_id FROM workstreams WHERE id = ?),"
            " COALESCE((SELECT log_offset FROM workstreams WHERE id = ?), 0),"
            " COALESCE((SELECT session_count FROM workstreams WHERE id = ?), 0))",
            (ws.id, ws.title, ws.state.value, json.dumps(ws.tags), ws.created_at, ws.updated_at,
             ws.model, ws.system_prompt, int(ws.is_scratch), ws.id, ws.id, ws.id),
        )

    async def update_workstream(self, ws: Workstream, **changes: Any) -> Workstream:
        ws = replace(ws, **changes, updated_at=utc_now())
        async with self.db.transaction(undo := []) as c:
            await self._append_event_locked(ws.id, _ws_event(ws), undo)
            await c.execute(
                "UPDATE workstreams SET title=?, state=?, tags=?, updated_at=?, model=?, system_prompt=?"
                " WHERE id=?",
                (ws.title, ws.state.value, json.dumps(ws.tags), ws.updated_at, ws.model, ws.system_prompt, ws.id),
            )
        return ws

    async def get_workstream(self, workstream_id: str) -> Workstream:
        row = await self.db.fetchone(queries.WORKSTREAM_BY_ID, (workstream_id,))
        if row is None:
            raise NotFound(f"no workstream with id {workstream_id}")
        return workstream_from_row(row)

    async def workstream_rows(self, include_archived: bool, limit: int | None = None) -> list[Any]:
        """`queries.workstreams` rows (mapped by `converters.workstreams_from_rows`, as on the read path)."""
        return await self.db.fetchall(queries.workstreams(include_archived, limit))

    async def session_summary_stamps(self, workstream_id: str) -> dict[str, SummaryStamp]:
        """session id -> its summary's text and what it was made with, for one workstream's sessions."""
        return session_stamps_from_rows(await self.db.fetchall(queries.SESSION_SUMMARY_STAMPS, (workstream_id,)))

    async def index_offsets(self) -> list[tuple[str, int]]:
        """(workstream id, bytes of its messages.jsonl indexed so far), for crash recovery."""
        return [(r[0], r[1]) for r in await self.db.fetchall(queries.LOG_OFFSETS)]

    async def find_workstreams_by_title(self, title: str) -> list[Workstream]:
        rows = await self.db.fetchall(queries.WORKSTREAMS_BY_TITLE, (title,))
        if not rows:
            rows = await self.db.fetchall(queries.WORKSTREAMS_BY_TITLE_ANY_CASE, (title,))
        return [workstream_from_row(r) for r in rows]

    async def scratch_workstream(self) -> Workstream | None:
        row = await self.db.fetchone("SELECT * FROM workstreams WHERE is_scratch = 1 LIMIT 1")
        return workstream_from_row(row) if row else None

    async def touch_workstream(self, c: Any, workstream_id: str, when: str) -> None:
        await c.execute("UPDATE workstreams SET updated_at = max(updated_at, ?) WHERE id = ?", (when, workstream_id))

    # ---- sessions ------------------------------------------------------
    async def active_session(self, workstream_id: str) -> Session | None:
        row = await self.db.fetchone(
            "SELECT * FROM sessions WHERE workstream_id = ? AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1",
            (workstream_id,),
        )
        return session_from_row(row) if row else None

    async def get_session(self, session_id: str) -> Session:
        row = await self.db.fetchone("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            raise NotFound(f"no session with id {session_id}")
        return session_from_row(row)

    async def list_sessions(self, workstream_id: str) -> list[Session]:
        return [session_from_row(r) for r in await self.db.fetchall(queries.SESSIONS_OF, (workstream_id,))]

    async def create_session(self, workstream_id: str, started_at: str) -> Session:
        session = Session(id=new_id(), workstream_id=workstream_id, started_at=started_at, ended_at=None,
                          last_activity_at=started_at)
        async with self.db.transaction() as c:
            await c.execute(
                "INSERT INTO sessions (id, workstream_id, started_at, last_activity_at) VALUES (?,?,?,?)",
                (session.id, workstream_id, started_at, started_at),
            )
        return session

    async def end_session(self, session: Session, reason: str, ended_at: str | None = None) -> Session:
        ended_at = ended_at or utc_now()
        async with self.db.transaction(undo := []) as c:
            await self._append_event_locked(
                session.workstream_id,
                {"type": "session_end", "session_id": session.id, "ended_at": ended_at, "reason": reason}, undo)
            await c.execute("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                            (ended_at, reason, session.id))
        return replace(session, ended_at=ended_at, end_reason=reason)

    async def idle_sessions(self, before: str) -> list[Session]:
        rows = await self.db.fetchall(
            "SELECT * FROM sessions WHERE ended_at IS NULL AND last_activity_at < ?", (before,)
        )
        return [session_from_row(r) for r in rows]

    async def all_active_sessions(self) -> list[Session]:
        rows = await self.db.fetchall("SELECT * FROM sessions WHERE ended_at IS NULL")
        return [session_from_row(r) for r in rows]

    # ---- messages ------------------------------------------------------
    async def append_messages(self, workstream_id: str, messages: list[Message]) -> None:
        """Write durably to JSONL, then index in one transaction (counters included)."""
        if not messages:
            return
        async with self.db.transaction(undo := []) as c:
            await self._append_locked(c, workstream_id, messages, undo)

    async def _append_locked(self, c: Any, workstream_id: str, messages: list[Message],
                             undo: list[Callable[[], Any]]) -> None:
        """Inside a write transaction: append to JSONL and index, as one unit.

        The SQLite write lock is held from before the append to after the commit, so no
        other writer (in any process) can append or index in between: lines a crashed
        writer left unindexed are caught up first, and if our transaction fails, our
        lines are cut back off before anyone else can write after them.
        """
        await self._catch_up_locked(c, workstream_id)
        path = self.messages_path(workstream_id)
        spans = await asyncio.to_thread(jsonl.append_lines, path, [m.to_json_line() for m in messages])
        undo.append(lambda: jsonl.truncate_to(path, spans[0][0]))
        await self._index(c, workstream_id, list(zip(messages, spans)))

    async def _index(self, c: Any, workstream_id: str, items: list[tuple[Message, tuple[int, int]]]) -> None:
        """Index messages and count them into their sessions, once: ids already indexed are skipped."""
        known = await _rowids(c, [m.id for m, _ in items])
        seen: set[str] = set(known)
        unique = []
        for m, span in items:  # an id twice (in the file or in one batch) is stored and counted once
            if m.id not in seen:
                seen.add(m.id)
                unique.append((m, span))
        items = unique
        if not items:
            return
        await c.executemany(
            "INSERT OR IGNORE INTO messages (id, workstream_id, session_id, role, timestamp, offset, length)"
            " VALUES (?,?,?,?,?,?,?)",
            [(m.id, m.workstream_id, m.session_id, m.role, m.timestamp, off, ln) for m, (off, ln) in items],
        )
        rowids = await _rowids(c, [m.id for m, _ in items])
        await fts.insert(c, [(rowids[m.id], m.content) for m, _ in items])
        per_session: dict[str, list[Message]] = {}
        first_user: dict[str, str] = {}
        for m, _ in items:
            per_session.setdefault(m.session_id, []).append(m)
            if m.role == "user" and m.session_id not in first_user:
                first_user[m.session_id] = m.content
        for sid, msgs in per_session.items():
            turns = sum(1 for m in msgs if m.role == "user")
            chars = sum(len(m.content) for m in msgs)
            first, last = min(m.timestamp for m in msgs), max(m.timestamp for m in msgs)
            await c.execute(
                "INSERT INTO sessions (id, workstream_id, started_at, last_activity_at, turn_count, char_count,"
                " message_count) VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                " turn_count = turn_count + excluded.turn_count, char_count = char_count + excluded.char_count,"
                " message_count = message_count + excluded.message_count,"
                " last_activity_at = max(last_activity_at, excluded.last_activity_at)",
                (sid, workstream_id, first, last, turns, chars, len(msgs)),
            )
        await memory.set_titles(c, first_user)  # a session's title: its first user message's first line
        end = max(off + ln for _, (off, ln) in items)
        await c.execute("UPDATE workstreams SET log_offset = max(log_offset, ?) WHERE id = ?", (end, workstream_id))
        await self.touch_workstream(c, workstream_id, max(m.timestamp for m, _ in items))

    async def session_messages(self, session: Session) -> list[Message]:
        """O(this session): offsets from the index, then direct reads."""
        rows = await self.db.fetchall(
            "SELECT id, offset, length FROM messages WHERE session_id = ? ORDER BY offset", (session.id,)
        )
        if not rows:
            return []
        path = self.messages_path(session.workstream_id)
        bad: list[jsonl.BadLine] = []
        records = await asyncio.to_thread(jsonl.read_spans, path, [(r[1], r[2]) for r in rows], bad,
                                          [r[0] for r in rows])
        if bad:
            # The file changed under the index (a line edited or deleted by hand): find this session's
            # messages by reading the file itself, and say where the damage is.
            for b in bad[:3]:
                self.notice(f"{path}: line {b.line_no}: {b.reason}; run `arawn --headless reindex` to re-read"
                            " the file")
            records = await asyncio.to_thread(self._scan_session, path, session.id)
        out = []
        for r in records:
            try:
                out.append(Message.from_record(r))
            except RECORD_ERRORS:
                continue
        return out

    def _scan_session(self, path: Path, session_id: str) -> list[dict[str, Any]]:
        """Every readable record of one session, straight from the file (slow path, damaged index)."""
        bad: list[jsonl.BadLine] = []
        found = [r.data for r in jsonl.scan(path, 0, bad) if r.data.get("session_id") == session_id]
        for b in bad[:3]:
            self.notice(f"{path}: line {b.line_no}: not a readable record ({b.reason}); skipped")
        seen: set[Any] = set()
        unique = []
        for data in found:
            if data.get("id") not in seen:
                seen.add(data.get("id"))
                unique.append(data)
        return unique

    async def catch_up(self, workstream_id: str) -> int:
        """Index lines appended to JSONL but not to SQLite (a writer died between the two)."""
        async with self.db.transaction() as c:
            return await self._catch_up_locked(c, workstream_id)

    async def _catch_up_locked(self, c: Any, workstream_id: str) -> int:
        async with c.execute("SELECT log_offset FROM workstreams WHERE id = ?", (workstream_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return 0
        path = self.messages_path(workstream_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if size <= row[0]:
            return 0
        await asyncio.to_thread(jsonl.repair, path)
        bad: list[jsonl.BadLine] = []
        records = await asyncio.to_thread(lambda: list(jsonl.scan(path, row[0], bad)))
        for b in bad[:3]:
            self.notice(f"{path}: line {b.line_no}: not a readable record ({b.reason}); skipped")
        items = []
        for r in records:
            try:
                m = Message.from_record(r.data)
                if m.workstream_id != workstream_id:
                    raise ValueError("it names another workstream")
                items.append((m, (r.offset, r.length)))
            except RECORD_ERRORS:  # a JSON object, but not a message of this workstream (an edited file)
                line_no = await asyncio.to_thread(jsonl.line_number, path, r.offset)
                self.notice(f"{path}: line {line_no}: not a message of this workstream; skipped")
        if items:
            await self._index(c, workstream_id, items)
            await self._finish_imported(c, [m for m, _ in items])
        if records:
            end = max(r.offset + r.length for r in records)
            await c.execute("UPDATE workstreams SET log_offset = max(log_offset, ?) WHERE id = ?",
                            (end, workstream_id))
        return len(items)

    async def _finish_imported(self, c: Any, messages: list[Message]) -> None:
        """Caught-up lines of an interrupted import: their sessions are ended and their keys recorded,
        so importing the file again does not store them twice."""
        last: dict[str, tuple[str, str]] = {}
        for m in messages:
            _note_import(last, m)
        await self._end_imported(c, last)

    async def _end_imported(self, c: Any, last: dict[str, tuple[str, str]]) -> None:
        """An imported session is always ended (at its last message), even if its end event was lost."""
        if last:
            await c.executemany(
                "UPDATE sessions SET ended_at = ?, end_reason = 'import' WHERE id = ? AND ended_at IS NULL",
                [(ended, sid) for sid, (_, ended) in last.items()])
            await c.executemany("INSERT OR IGNORE INTO imports (key, session_id) VALUES (?, ?)",
                                [(key, sid) for sid, (key, _) in last.items()])

    # ---- summaries -----------------------------------------------------
    async def get_summary(self, summary_id: str | None) -> Summary | None:
        if not summary_id:
            return None
        row = await self.db.fetchone("SELECT * FROM summaries WHERE id = ?", (summary_id,))
        return summary_from_row(row) if row else None

    async def session_summary(self, session_id: str) -> Summary | None:
        row = await self.db.fetchone(queries.SESSION_SUMMARY, (session_id,))
        return summary_from_row(row) if row else None

    async def checkpoint(self, session_id: str) -> Summary | None:
        row = await self.db.fetchone(
            "SELECT m.* FROM sessions s JOIN summaries m ON m.id = s.checkpoint_id WHERE s.id = ?", (session_id,)
        )
        return summary_from_row(row) if row else None

    async def workstream_summary(self, workstream_id: str) -> Summary | None:
        row = await self.db.fetchone(queries.WORKSTREAM_SUMMARY, (workstream_id,))
        return summary_from_row(row) if row else None

    async def unfolded_session_summaries(self, workstream_id: str) -> list[tuple[str, Summary]]:
        rows = await self.db.fetchall(
            "SELECT s.id AS sid, m.* FROM sessions s JOIN summaries m ON m.id = s.summary_id"
            " WHERE s.workstream_id = ? AND s.folded = 0 ORDER BY s.started_at",
            (workstream_id,),
        )
        return [(r["sid"], summary_from_row(r)) for r in rows]

    async def all_session_summaries(self, workstream_id: str) -> list[tuple[str, Summary]]:
        rows = await self.db.fetchall(
            "SELECT s.id AS sid, m.* FROM sessions s JOIN summaries m ON m.id = s.summary_id"
            " WHERE s.workstream_id = ? ORDER BY s.started_at",
            (workstream_id,),
        )
        return [(r["sid"], summary_from_row(r)) for r in rows]

    async def prepare_summary(self, summary: Summary, folded: list[str] | None = None,
                              version: VersionMeta | None = None) -> None:
        """Record the summary in events.jsonl first (so reindex can restore it)."""
        event = {"type": "summary", **summary_to_params(summary), "covers": summary.covers}
        if summary.provenance.audit is not None:  # an object in the event, not JSON in a string
            event["audit"] = summary.provenance.audit.to_dict()
        if folded is not None:
            event["folded"] = folded
        if version is not None:
            event["version"] = version.to_event()
        await self._append_event(summary.workstream_id, event)

    async def write_summary(self, c: Any, summary: Summary, folded: list[str] | None = None,
                            version: VersionMeta | None = None) -> None:
        """Inside the caller's transaction: the summary row and what points at it (a workstream
        summary also becomes its next numbered version)."""
        await c.execute(
            "INSERT OR IGNORE INTO summaries (id, kind, workstream_id, session_id, text, model, prompt_version,"
            " input_chars, input_tokens, output_tokens, llm_calls, duration_s, input_hash, created_at, covers,"
            " method, audit)"
            " VALUES (:id, :kind, :workstream_id, :session_id, :text, :model, :prompt_version, :input_chars,"
            " :input_tokens, :output_tokens, :llm_calls, :duration_s, :input_hash, :created_at, :covers,"
            " :method, :audit)",
            summary_to_params(summary),
        )
        # a new summary supersedes the old one of its kind (also one left by a crash before its commit)
        if summary.kind is SummaryKind.WORKSTREAM:
            await c.execute("DELETE FROM summaries WHERE workstream_id = ? AND kind = 'workstream' AND id != ?",
                            (summary.workstream_id, summary.id))
        else:
            await c.execute("DELETE FROM summaries WHERE session_id = ? AND kind = ? AND id != ?",
                            (summary.session_id, summary.kind.value, summary.id))
        if summary.kind is SummaryKind.SESSION:
            await c.execute("UPDATE sessions SET summary_id = ?, folded = 0 WHERE id = ?",
                            (summary.id, summary.session_id))
        elif summary.kind is SummaryKind.CHECKPOINT:
            await c.execute("UPDATE sessions SET checkpoint_id = ? WHERE id = ?", (summary.id, summary.session_id))
        else:
            await c.execute("UPDATE workstreams SET summary_id = ? WHERE id = ?", (summary.id, summary.workstream_id))
            await memory.record_version(c, summary, version)
            if folded:
                await c.executemany("UPDATE sessions SET folded = 1 WHERE id = ?", [(s,) for s in folded])

    # ---- key/value -----------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return row[0] if row else None

    async def kv_set(self, key: str, value: str) -> None:
        async with self.db.transaction() as c:
            await c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    # ---- imports -------------------------------------------------------
    async def imported(self, key: str) -> bool:
        return await self.db.fetchone("SELECT 1 FROM imports WHERE key = ?", (key,)) is not None

    async def import_sessions(self, workstream_id: str, batch: list[tuple[str, list[Message], str]]) -> list[str]:
        """Many imported conversations -> ended sessions: one JSONL append, one events append, one transaction.

        Each item is (dedupe key, the session's new messages, ended_at). Keys already imported are
        skipped, checked under the write lock so two processes importing one file add it once.
        Returns the keys written.
        """
        batch = [item for item in batch if item[1]]
        if not batch:
            return []
        async with self.db.transaction(undo := []) as c:
            done: set[str] = set()
            keys = [key for key, _, _ in batch]
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                async with c.execute(f"SELECT key FROM imports WHERE key IN ({','.join('?' * len(part))})",
                                     part) as cur:
                    done.update(r[0] for r in await cur.fetchall())
            fresh = []
            for item in batch:
                if item[0] not in done:
                    done.add(item[0])
                    fresh.append(item)
            if not fresh:
                return []
            messages = [m for _, msgs, _ in fresh for m in msgs]
            await self._append_locked(c, workstream_id, messages, undo)
            events = [(json.dumps({"type": "session_end", "session_id": msgs[0].session_id, "ended_at": ended_at,
                                   "reason": "import"}, ensure_ascii=False) + "\n").encode()
                      for _, msgs, ended_at in fresh]
            await asyncio.to_thread(jsonl.append_lines, self.events_path(workstream_id), events)
            await c.executemany("UPDATE sessions SET ended_at = ?, end_reason = 'import' WHERE id = ?",
                                [(ended_at, msgs[0].session_id) for _, msgs, ended_at in fresh])
            await c.executemany("INSERT OR IGNORE INTO imports (key, session_id) VALUES (?, ?)",
                                [(key, msgs[0].session_id) for key, msgs, _ in fresh])
        return [key for key, _, _ in fresh]

    # ---- full-text index ---------------------------------------------
    async def message_index_rebuild_pending(self) -> bool:
        """A migration asked for the full-text index to be rebuilt from the JSONL files."""
        return await self.db.fetchone(queries.FTS_REBUILD_FLAG) is not None

    async def rebuild_message_index(self, progress: Progress | None = None) -> int:
        """Re-index every message's text from the JSONL files (after schema 3 replaced the index)."""
        ws_ids = [r[0] for r in await self.db.fetchall("SELECT id FROM workstreams ORDER BY rowid")]
        total = 0
        async with self.db.transaction() as c:
            await fts.clear(c)
            for i, ws_id in enumerate(ws_ids):
                async with c.execute("SELECT rowid, offset, length FROM messages WHERE workstream_id = ?"
                                     " ORDER BY offset", (ws_id,)) as cur:
                    spans = [tuple(r) for r in await cur.fetchall()]
                for j in range(0, len(spans), 2000):
                    part = spans[j:j + 2000]
                    bad: list[jsonl.BadLine] = []
                    try:
                        records = await asyncio.to_thread(jsonl.read_spans, self.messages_path(ws_id),
                                                          [(off, ln) for _, off, ln in part], bad)
                    except OSError as exc:  # this workstream's log is unreadable: its text is not searchable
                        self.notice(f"{self.messages_path(ws_id)}: not searchable: {_reason(exc)}")
                        break
                    skipped = {b.offset for b in bad}  # damaged lines: named, the others indexed
                    part = [span for span in part if span[1] not in skipped]
                    self._report_bad([(self.messages_path(ws_id), b) for b in bad])
                    await fts.insert(c, [(rid, str(rec.get("content", ""))) for (rid, _, _), rec in zip(part, records)])
                    total += len(part)
                if progress:
                    progress(i + 1, len(ws_ids))
            await c.execute("DELETE FROM kv WHERE key = 'fts_rebuild'")
        log.info("full-text index rebuilt: %d messages", total)
        return total

    # ---- reindex -------------------------------------------------------
    async def reindex(self, progress: Progress | None = None) -> dict[str, int]:
        """Rebuild every table the files can rebuild; jobs and kv are kept.

        Each workstream is rebuilt in its own transaction: a workstream whose files cannot be
        read is reported (in `notices` and the "failed" count) and the others are rebuilt anyway.
        Bad lines are skipped and reported with their file and line number.
        """
        dirs = await asyncio.to_thread(self.workstream_dirs)
        counts = {"workstreams": 0, "sessions": 0, "messages": 0, "summaries": 0, "bad_lines": 0, "failed": 0}
        async with self.db.transaction() as c:
            for table in ("messages", "summaries", "imports", "sessions", "workstreams", "pins",
                          "summary_versions", "workstream_origins"):
                await c.execute(f"DELETE FROM {table}")
            await fts.clear(c)
        for i, ws_id in enumerate(dirs):
            counts_ws = await self.reindex_workstream(ws_id)
            for k, v in counts_ws.items():
                counts[k] += v
            if progress:
                progress(i + 1, len(dirs))
        async with self.db.transaction() as c:
            await recount_sessions(c)  # whatever the triggers saw, counted afresh
        return counts

    async def reindex_workstream(self, ws_id: str) -> dict[str, int]:
        """Index one workstream that has no rows yet, in its own transaction; failures are reported."""
        try:
            async with self.db.transaction() as c:
                return await self._reindex_workstream(c, ws_id)
        except (jsonl.StorageFull, IndexBusy, CorruptIndex, ReadOnlyStore):
            raise
        except (OSError, sqlite3.Error, DatabaseError, *RECORD_ERRORS) as exc:
            self.notice(f"workstream {ws_id} could not be indexed: {_reason(exc)}; its files are kept as they are")
            return {"failed": 1}

    def workstream_dirs(self) -> list[str]:
        """The ids of the workstream directories on disk, tightening loose modes on the way.

        A name that is not one of our UUIDs is not ours and is left alone; a symbolic link is
        refused (reported, never followed).
        """
        # workstreams/ itself a file or a link: every workstream is out of reach, so this is the one
        # line (exit 2) of every command, not warnings before another command's own failure
        if self.ws_root.is_symlink():
            raise jsonl.UnsafePath(errno.ELOOP, f"{self.ws_root} is a symbolic link; arawn does not follow links inside"
                             " its data dir (put the real directory there, or remove the link)")
        try:
            entries = list(os.scandir(self.ws_root))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise jsonl.UnsafePath(errno.ENOTDIR, f"{self.ws_root} is not a directory; arawn keeps its workstreams there"
                             " (move it aside)") from None
        if not self.db.read_only and tighten(self.ws_root, DIR_MODE):
            self.check_modes = True
        out = []
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                ws_id = checked_id(entry.name)
            except NotFound:
                continue
            if entry.is_symlink():
                self.notice(f"{entry.path} is a symbolic link; not followed, workstream {ws_id} skipped")
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            out.append(ws_id)
        return out

    def tighten_workstream(self, ws_id: str) -> None:
        """0700 on the directory, 0600 on every file in it (a data dir copied with loose modes)."""
        if self.db.read_only:
            return
        d = self.ws_dir(ws_id)
        tighten(d, DIR_MODE)
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != FILE_MODE:
                tighten(Path(entry.path), FILE_MODE)
            elif stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != DIR_MODE:
                tighten(Path(entry.path), DIR_MODE)

    async def _reindex_workstream(self, c: Any, ws_id: str) -> dict[str, int]:
        counts = {"workstreams": 0, "sessions": 0, "messages": 0, "summaries": 0, "bad_lines": 0}
        async with c.execute("SELECT 1 FROM workstreams WHERE id = ?", (ws_id,)) as cur:
            if await cur.fetchone() is not None:  # another process indexed it since we looked (under the lock now)
                return counts
        events_path, messages_path = self.events_path(ws_id), self.messages_path(ws_id)
        if not self.db.read_only:
            await asyncio.to_thread(self.tighten_workstream, ws_id)
            await asyncio.to_thread(jsonl.repair, events_path)
            await asyncio.to_thread(jsonl.repair, messages_path)
        ws: Workstream | None = None
        ends: dict[str, tuple[str, str]] = {}
        summaries: list[tuple[Summary, list[str] | None, int, VersionMeta | None]] = []
        pin_events: list[dict[str, Any]] = []
        titles: dict[str, str] = {}
        origin: dict[str, Any] | None = None
        bad: list[tuple[Path, jsonl.BadLine]] = []
        event_bad: list[jsonl.BadLine] = []
        for rec in await asyncio.to_thread(lambda: list(jsonl.scan(events_path, 0, event_bad))):
            ev = rec.data
            kind = ev.get("type")
            try:
                if kind == "workstream":
                    ws = _ws_from_event(ev, ws_id)
                elif kind == "session_end":
                    sid = _text_field(ev, "session_id")
                    ends.setdefault(sid, (_text_field(ev, "ended_at"), str(ev.get("reason") or "explicit")))
                elif kind == "summary":
                    folded = ev.get("folded")
                    if folded is not None and not (isinstance(folded, list) and all(isinstance(f, str) for f in folded)):
                        raise ValueError("folded is not a list of session ids")
                    summary = summary_from_record(ev)
                    if summary.workstream_id != ws_id:
                        raise ValueError("it belongs to another workstream")
                    summaries.append((summary, folded, rec.line_no, VersionMeta.from_event(ev.get("version"))))
                elif kind in ("pin", "pin_edit", "unpin"):
                    pin_events.append(ev)
                elif kind == "session_title" and isinstance(ev.get("title"), str):
                    titles[str(ev.get("session_id"))] = ev["title"]
                elif kind == "fork":
                    origin = ev
            except RECORD_ERRORS as exc:
                bad.append((events_path, jsonl.BadLine(rec.offset, rec.line_no, f"not a valid {kind} event: {_reason(exc)}")))
        bad.extend((events_path, b) for b in event_bad)
        if ws is None:
            # No readable snapshot of the workstream itself: keep its messages findable under a stand-in
            # title (renaming it writes a real snapshot), rather than hide them.
            if not messages_path.exists():
                self._report_bad(bad)
                counts["bad_lines"] += len(bad)
                if bad or events_path.exists():
                    self.notice(f"{events_path}: no readable workstream record; workstream {ws_id} skipped")
                return counts
            now = utc_now()
            ws = Workstream(id=ws_id, title=f"(recovered {ws_id[:8]})", state=WorkstreamState.ACTIVE, tags=[],
                            created_at=now, updated_at=now)
            self.notice(f"{events_path}: no readable workstream record; its messages are listed as"
                        f" {ws.title!r} (rename it to keep a title)")
        await self._insert_workstream(c, ws)
        counts["workstreams"] = 1
        batch: list[tuple[Message, tuple[int, int]]] = []
        imported: dict[str, tuple[str, str]] = {}  # session id -> (import key, last message time)
        message_bad: list[jsonl.BadLine] = []
        indexed: set[str] = set()
        for rec in await asyncio.to_thread(lambda: list(jsonl.scan(messages_path, 0, message_bad))):
            try:
                m = Message.from_record(rec.data)
                if m.workstream_id != ws_id:
                    raise ValueError("it names another workstream")
            except RECORD_ERRORS as exc:
                bad.append((messages_path, jsonl.BadLine(rec.offset, rec.line_no, f"not a message: {_reason(exc)}")))
                continue
            if m.id in indexed:  # the same message twice (a line copied by hand): counted once
                continue
            indexed.add(m.id)
            _note_import(imported, m)
            batch.append((m, (rec.offset, rec.length)))
            if len(batch) >= 5000:
                await self._index(c, ws_id, batch)
                counts["messages"] += len(batch)
                batch = []
        bad.extend((messages_path, b) for b in message_bad)
        if batch:
            await self._index(c, ws_id, batch)
            counts["messages"] += len(batch)
        await c.executemany(
            "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ?",
            [(at, reason, sid) for sid, (at, reason) in ends.items()],
        )
        await self._end_imported(c, imported)
        for summary, folded, line_no, version in summaries:
            await c.execute("SAVEPOINT summary")
            try:
                await self.write_summary(c, summary, folded, version)
            except sqlite3.Error as exc:
                await c.execute("ROLLBACK TO summary")
                bad.append((events_path, jsonl.BadLine(0, line_no, f"summary not stored: {exc}")))
            else:
                counts["summaries"] += 1
            await c.execute("RELEASE summary")
        await _reindex_memory(c, ws_id, pin_events, titles, origin)
        row = await (await c.execute("SELECT COUNT(*) FROM sessions WHERE workstream_id = ?", (ws_id,))).fetchone()
        counts["sessions"] = row[0]
        counts["bad_lines"] += len(bad)
        self._report_bad(bad)
        return counts

    def _report_bad(self, bad: list[tuple[Path, jsonl.BadLine]]) -> None:
        for path, b in bad[:20]:
            self.notice(f"{path}: line {b.line_no}: {b.reason} (skipped)")
        if len(bad) > 20:
            self.notice(f"... and {len(bad) - 20} more bad lines in {bad[20][0].parent}")

    # ---- an index that is missing or behind the files ---------------------
    async def catch_up_all(self) -> int:
        """At open: notice an index that is missing workstreams or older than their files, and catch up.

        * a workstream directory with no row (the index was deleted, or a reindex was cut short):
          indexed from its files;
        * events.jsonl newer than the index (its WAL was deleted, or a writer died before its
          commit): the workstream's events are replayed (snapshot, session ends, summaries);
        * messages beyond the indexed end (`catch_up`).
        Returns how many workstreams were caught up.
        """
        rows = await self.db.fetchall("SELECT id, log_offset FROM workstreams")
        known = {r[0]: r[1] for r in rows}
        index_ns = self.db.changed_ns

        def survey(on_disk: list[str]) -> tuple[list[str], list[str], list[str]]:
            # Two lstat calls a workstream (its two logs), a thousand workstreams at every start. Modes
            # inside are checked only when the data dir or workstreams/ was loose (`check_modes`):
            # under 0700 dirs nobody else can reach them, and a data dir copied loose is loose on top.
            missing, stale, behind = [], [], []
            on_disk.extend(self.workstream_dirs())
            for ws_id in on_disk:
                d = os.path.join(self.ws_root, ws_id)
                if self.check_modes and not self.db.read_only:
                    self.tighten_workstream(ws_id)
                if ws_id not in known:
                    missing.append(ws_id)
                    continue
                try:
                    if os.lstat(os.path.join(d, EVENTS_FILE)).st_mtime_ns > index_ns:
                        stale.append(ws_id)
                except OSError:
                    pass
                try:
                    if os.lstat(os.path.join(d, MESSAGES_FILE)).st_size > known[ws_id]:
                        behind.append(ws_id)
                except OSError:
                    pass
            return missing, stale, behind

        on_disk: list[str] = []
        missing, stale, behind = await asyncio.to_thread(survey, on_disk)
        gone = sorted(set(known) - set(on_disk))
        if gone:
            self.notice(f"{len(gone)} indexed workstream(s) have no directory under {self.ws_root} any more"
                        f" (first: {gone[0]}); `arawn --headless reindex` drops them from the index")
        if self.db.read_only:
            if missing or stale or behind:
                self.notice(f"the index in {self.data_dir} is behind its files, and the data dir is read-only:"
                            " what was written since may not be listed")
            return 0
        try:
            rebuilt = 0
            for ws_id in missing:
                rebuilt += not (await self.reindex_workstream(ws_id)).get("failed")
            for ws_id in stale:
                await self.replay_events(ws_id)
            for ws_id in behind:
                try:
                    await self.catch_up(ws_id)
                except (jsonl.StorageFull, IndexBusy, CorruptIndex, ReadOnlyStore):
                    raise
                except (OSError, sqlite3.Error, DatabaseError) as exc:  # this workstream's files; the others open
                    self.notice(f"workstream {ws_id} could not be indexed: {_reason(exc)}; its files are kept as"
                                " they are")
        except IndexBusy:  # another process is writing (a long reindex or import): read what there is
            self.notice("another arawn process holds the index's write lock, so it was not caught up with"
                        " its files; what they hold since may not be shown yet")
            return 0
        if rebuilt:
            self.notice(f"the index was missing {rebuilt} workstream(s); rebuilt them from their files")
        return len(missing) + len(stale) + len(behind)

    async def replay_events(self, ws_id: str) -> None:
        """Re-apply a workstream's events (idempotent): its snapshot, session ends and summaries."""
        path = self.events_path(ws_id)
        bad: list[jsonl.BadLine] = []
        try:
            async with self.db.transaction() as c:
                # read under the write lock: every writer that appended an event before its commit has
                # committed by now, so an older snapshot never overwrites what a newer one indexed
                records = await asyncio.to_thread(lambda: list(jsonl.scan(path, 0, bad)))
                for rec in records:
                    ev = rec.data
                    try:
                        if ev.get("type") == "workstream":
                            ws = _ws_from_event(ev, ws_id)  # UPDATE, not REPLACE: a REPLACE would cascade
                            await c.execute(  # the delete to the workstream's sessions
                                "UPDATE workstreams SET title=?, state=?, tags=?, updated_at=max(updated_at, ?),"
                                " model=?, system_prompt=?, is_scratch=? WHERE id=?",
                                (ws.title, ws.state.value, json.dumps(ws.tags), ws.updated_at, ws.model,
                                 ws.system_prompt, int(ws.is_scratch), ws.id))
                        elif ev.get("type") == "session_end":
                            await c.execute("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ?"
                                            " AND ended_at IS NULL",
                                            (_text_field(ev, "ended_at"), str(ev.get("reason") or "explicit"),
                                             _text_field(ev, "session_id")))
                        elif ev.get("type") == "summary":
                            summary = summary_from_record(ev)
                            if summary.workstream_id == ws_id:
                                await c.execute("SAVEPOINT summary")
                                try:
                                    await self.write_summary(c, summary, ev.get("folded"),
                                                             VersionMeta.from_event(ev.get("version")))
                                except sqlite3.Error:
                                    await c.execute("ROLLBACK TO summary")
                                await c.execute("RELEASE summary")
                        elif ev.get("type") in ("pin", "pin_edit", "unpin", "session_title", "fork"):
                            await memory.replay_event(c, ws_id, ev)  # pins, titles, the fork origin
                    except RECORD_ERRORS:
                        continue
        except (IndexBusy, CorruptIndex, ReadOnlyStore, jsonl.StorageFull, jsonl.UnsafePath):
            raise  # an UnsafePath (a planted link) is refused with its own one line, as any read of it
        except (OSError, sqlite3.Error, DatabaseError) as exc:
            self.notice(f"workstream {ws_id}: could not catch up its events: {_reason(exc)}")


def _remove_if_empty(directory: Path) -> None:
    """Undo a workstream directory whose creation was rolled back (only empty files in it)."""
    try:
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0:
                os.unlink(entry.path)
        os.rmdir(directory)
    except OSError:
        pass


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase for a one-line report."""
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}" if exc.args else "a key is missing"
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def _text_field(ev: dict[str, Any], key: str) -> str:
    value = ev[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a string")
    return value


async def _reindex_memory(c: Any, ws_id: str, pin_events: list[dict[str, Any]], titles: dict[str, str],
                          origin: dict[str, Any] | None) -> None:
    """Pins, renamed session titles and the fork origin, from the workstream's events."""
    for ev in pin_events:
        try:
            await memory.apply_pin_event(c, {**ev, "workstream_id": ws_id})
        except KeyError:
            log.warning("workstream %s: a pin event without its fields; skipped", ws_id)
    if titles:
        await c.executemany("UPDATE sessions SET title = ? WHERE id = ? AND workstream_id = ?",
                            [(t, sid, ws_id) for sid, t in titles.items()])
    if origin is not None:
        await memory.set_origin(c, ws_id, origin)


def _note_import(last: dict[str, tuple[str, str]], m: Message) -> None:
    """Track (import key, latest timestamp) per imported session."""
    key = m.import_key
    if key:
        prev = last.get(m.session_id)
        last[m.session_id] = (key, max(m.timestamp, prev[1]) if prev else m.timestamp)


def _ws_event(ws: Workstream) -> dict[str, Any]:
    return {
        "type": "workstream", "id": ws.id, "title": ws.title, "state": ws.state.value, "tags": ws.tags,
        "created_at": ws.created_at, "updated_at": ws.updated_at, "model": ws.model,
        "system_prompt": ws.system_prompt, "is_scratch": ws.is_scratch,
    }


def _ws_from_event(ev: dict[str, Any], ws_id: str | None = None) -> Workstream:
    """A workstream snapshot event; ValueError/KeyError/TypeError when it is not one (a hand-edited line)."""
    if ws_id is not None and ev.get("id") != ws_id:
        raise ValueError("its id is not this directory's")
    tags = ev.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("tags is not a list of strings")
    for key in ("model", "system_prompt"):
        if ev.get(key) is not None and not isinstance(ev[key], str):
            raise ValueError(f"{key} is not a string")
    if not isinstance(ev["title"], str):
        raise ValueError("title is not a string")
    return Workstream(
        id=_text_field(ev, "id"), title=ev["title"], state=WorkstreamState(ev.get("state", "active")), tags=tags,
        created_at=_text_field(ev, "created_at"), updated_at=_text_field(ev, "updated_at"), model=ev.get("model"),
        system_prompt=ev.get("system_prompt"), is_scratch=bool(ev.get("is_scratch")),
    )


async def recount_sessions(c: Any) -> None:
    """Every workstream's kept session count, counted afresh (reindex: whatever the triggers saw)."""
    await c.execute("UPDATE workstreams SET session_count ="
                    " (SELECT COUNT(*) FROM sessions s WHERE s.workstream_id = workstreams.id)")


async def _rowids(c: Any, ids: list[str]) -> dict[str, int]:
    """message id -> rowid for those of `ids` already stored (500 ids a query)."""
    out: dict[str, int] = {}
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        async with c.execute(f"SELECT id, rowid FROM messages WHERE id IN ({','.join('?' * len(part))})",
                             part) as cur:
            out.update((r[0], r[1]) for r in await cur.fetchall())
    return out
