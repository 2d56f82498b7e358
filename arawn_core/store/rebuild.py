"""Rebuilding the index from the files: a part of `Repository`, kept apart for its size.

Everything SQLite holds can be rebuilt from the JSONL files: `reindex` (every workstream, or
one), the open's catch-up of an index that is missing workstreams or older than their files
(`catch_up_all`, with the events replay), and the full-text index after a schema change. Bad
records are skipped and reported per workstream, so one damaged line never blocks the rest.
`IndexRebuild` is a base of `Repository` and uses its attributes and helpers (the db, the
notices, the paths, `_index`, `catch_up`, `write_summary`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Callable

from arawn_core.errors import NotFound
from arawn_core.models import (
    Message,
    Summary,
    Workstream,
    WorkstreamState,
    utc_now,
)
from arawn_core.memory.versions import VersionMeta
from arawn_core.store import fts, jsonl, memory
from arawn_core.store.converters import (
    summary_from_record,
)
from arawn_core.store import queries
from arawn_core.store.db import (
    DIR_MODE,
    FILE_MODE,
    CorruptIndex,
    DatabaseError,
    IndexBusy,
    ReadOnlyStore,
    tighten,
)
from arawn_core.store.recovery import MESSAGES_FILE

log = logging.getLogger(__name__)
from arawn_core.store.event_records import (
    EVENTS_FILE,
    RECORD_ERRORS,
    checked_id,
    note_import,
    short_reason,
    text_field,
    ws_from_event,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class IndexRebuild:
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
                        self.notice(f"{self.messages_path(ws_id)}: not searchable: {short_reason(exc)}")
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
            self.notice(f"workstream {ws_id} could not be indexed: {short_reason(exc)}; its files are kept as they are")
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
                    ws = ws_from_event(ev, ws_id)
                elif kind == "session_end":
                    sid = text_field(ev, "session_id")
                    ends.setdefault(sid, (text_field(ev, "ended_at"), str(ev.get("reason") or "explicit")))
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
                bad.append((events_path, jsonl.BadLine(rec.offset, rec.line_no, f"not a valid {kind} event: {short_reason(exc)}")))
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
                bad.append((messages_path, jsonl.BadLine(rec.offset, rec.line_no, f"not a message: {short_reason(exc)}")))
                continue
            if m.id in indexed:  # the same message twice (a line copied by hand): counted once
                continue
            indexed.add(m.id)
            note_import(imported, m)
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
                    self.notice(f"workstream {ws_id} could not be indexed: {short_reason(exc)}; its files are kept as"
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
                            ws = ws_from_event(ev, ws_id)  # UPDATE, not REPLACE: a REPLACE would cascade
                            await c.execute(  # the delete to the workstream's sessions
                                "UPDATE workstreams SET title=?, state=?, tags=?, updated_at=max(updated_at, ?),"
                                " model=?, system_prompt=?, is_scratch=? WHERE id=?",
                                (ws.title, ws.state.value, json.dumps(ws.tags), ws.updated_at, ws.model,
                                 ws.system_prompt, int(ws.is_scratch), ws.id))
                        elif ev.get("type") == "session_end":
                            await c.execute("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ?"
                                            " AND ended_at IS NULL",
                                            (text_field(ev, "ended_at"), str(ev.get("reason") or "explicit"),
                                             text_field(ev, "session_id")))
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
            self.notice(f"workstream {ws_id}: could not catch up its events: {short_reason(exc)}")


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



async def recount_sessions(c: Any) -> None:
    """Every workstream's kept session count, counted afresh (reindex: whatever the triggers saw)."""
    await c.execute("UPDATE workstreams SET session_count ="
                    " (SELECT COUNT(*) FROM sessions s WHERE s.workstream_id = workstreams.id)")

