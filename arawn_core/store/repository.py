"""Workstreams, sessions, messages and summaries: JSONL on disk, indexed in SQLite.

Per workstream directory `<data_dir>/workstreams/<uuid>/`:
  messages.jsonl  every message, in the original arawn server's layout
  events.jsonl    workstream snapshots, session ends and summaries, so that
                  `reindex` can rebuild SQLite from files alone
Directory names are always UUIDs we generated; user text never becomes a path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
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
    summary_from_row,
    summary_to_params,
    workstream_from_row,
    session_stamps_from_rows,
)
from arawn_core.store import queries
from arawn_core.store.db import (
    Database,
    ensure_private_dir,
)
from arawn_core.store.event_records import EVENTS_FILE, RECORD_ERRORS, checked_id, note_import, ws_event
from arawn_core.store.rebuild import IndexRebuild
from arawn_core.store.recovery import MESSAGES_FILE

log = logging.getLogger(__name__)

from arawn_core.errors import NotFound  # noqa: E402,F401  (defined with the other errors; re-exported)


class Repository(IndexRebuild):
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
            await self._append_event_locked(ws.id, ws_event(ws), undo)
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
            await self._append_event_locked(ws.id, ws_event(ws), undo)
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
            note_import(last, m)
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



def _remove_if_empty(directory: Path) -> None:
    """Undo a workstream directory whose creation was rolled back (only empty files in it)."""
    try:
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0:
                os.unlink(entry.path)
        os.rmdir(directory)
    except OSError:
        pass



async def _rowids(c: Any, ids: list[str]) -> dict[str, int]:
    """message id -> rowid for those of `ids` already stored (500 ids a query)."""
    out: dict[str, int] = {}
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        async with c.execute(f"SELECT id, rowid FROM messages WHERE id IN ({','.join('?' * len(part))})",
                             part) as cur:
            out.update((r[0], r[1]) for r in await cur.fetchall())
    return out
