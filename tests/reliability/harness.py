"""Shared pieces of the reliability suite: child processes, and the invariants a data dir must keep.

`check_store` is what "nothing lost, nothing duplicated, nothing corrupt" means
here, checked against the files (the source of truth) and the SQLite index.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from arawn_core.core import ArawnCore
from arawn_core.store import fts

REPO = Path(__file__).resolve().parents[2]


class Child:
    """A `tests.crash_child` process; its stdout lines are collected as they come."""

    def __init__(self, data_dir: Path, *args: str, ready_timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_child", str(data_dir), *args], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.wait_for("ready", ready_timeout):
            self.kill()
            raise AssertionError(f"child {args} never got ready: {self.stderr()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                if line.endswith("\n"):  # a line cut by the kill was not acknowledged
                    self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> bool:
        """True once a line starting with `prefix` was printed (False on timeout or exit)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: any(x.startswith(prefix) for x in self.lines) or self.proc.poll() is not None
                and not self._reader.is_alive(), timeout) and any(x.startswith(prefix) for x in self.lines)

    def kill(self) -> list[str]:
        """SIGKILL (if still running), reap, and return every complete stdout line."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        return list(self.lines)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def acked_messages(lines: list[str]) -> list[str]:
    return [x.split()[1] for x in lines if x.startswith("ok ") and len(x.split()) == 2]


def acked_jobs(lines: list[str]) -> list[tuple[str, str, bool]]:
    out = []
    for x in lines:
        if x.startswith("ok job "):
            _, _, job_id, kind, ok = x.split()
            out.append((job_id, kind, ok == "True"))
    return out


def raw_peek(data_dir: Path) -> dict:
    """What a kill left behind, read with plain sqlite3 before any recovery runs."""
    conn = sqlite3.connect(data_dir / "arawn.db", timeout=30)
    try:
        running = conn.execute("SELECT kind FROM jobs WHERE state = 'running'").fetchall()
        offsets = dict(conn.execute("SELECT id, log_offset FROM workstreams").fetchall())
        errors = dict(conn.execute("SELECT id, last_error FROM jobs WHERE last_error IS NOT NULL").fetchall())
    finally:
        conn.close()
    unindexed_tail = {}
    for ws_id, log_offset in offsets.items():
        path = data_dir / "workstreams" / ws_id / "messages.jsonl"
        size = path.stat().st_size if path.exists() else 0
        unindexed_tail[ws_id] = size - log_offset
    return {"running": [r[0] for r in running], "unindexed_tail": unindexed_tail, "errors": errors}


#: Invariants a known, not yet fixed bug still breaks: name -> what goes wrong. `check_store(...,
#: tolerate=KNOWN_BUGS)` counts such violations in `Facts.tolerated` instead of failing. Empty: every
#: bug this suite found is fixed, and test_crash_points.py keeps each one fixed.
KNOWN_BUGS: dict[str, str] = {
}


@dataclass
class Facts:
    """What check_store saw (for reports)."""

    messages: int = 0
    sessions: int = 0
    summaries: int = 0
    jobs: Counter = field(default_factory=Counter)
    tolerated: Counter = field(default_factory=Counter)
    first_seen: dict = field(default_factory=dict)

    def expect(self, ok: bool, bug: str | None, message: str, tolerate: frozenset[str] | dict) -> None:
        if ok:
            return
        if bug is not None and bug in tolerate:
            self.tolerated[bug] += 1
            self.first_seen.setdefault(bug, message)
            return
        raise AssertionError(message)


def _lines(path: Path) -> tuple[list[dict], bytes]:
    """Complete lines (each must be a JSON object) and the torn tail (bytes after the last newline)."""
    if not path.exists():
        return [], b""
    raw = path.read_bytes()
    body, _, tail = raw.rpartition(b"\n")
    out = []
    if body or raw.startswith(b"\n"):
        for n, line in enumerate(body.split(b"\n"), 1):
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise AssertionError(f"{path}: line {n} is not valid JSON ({exc}): {line[:120]!r}") from None
            assert isinstance(rec, dict), f"{path}: line {n} is not an object"
            out.append(rec)
    return out, tail


async def check_store(core: ArawnCore, where: str, acked: dict[str, str] | None = None,
                      done_jobs: set[str] | None = None, allow_running: bool = False,
                      tolerate: frozenset[str] | dict = frozenset()) -> Facts:
    """Every invariant of a data dir just opened (so recovery has run) by `core`.

    Sessions are assumed to be summarized at most once each (no recompression in these tests).
    """
    db = core.db
    facts = Facts()
    row = await db.fetchone("PRAGMA integrity_check")
    assert row[0] == "ok", f"{where}: integrity_check: {row[0]}"
    row = await db.fetchone("PRAGMA foreign_key_check")
    assert row is None, f"{where}: foreign key violation {tuple(row)}"

    # ---- messages: the index matches the JSONL files exactly ---------------------------------
    n_msgs = (await db.fetchone("SELECT COUNT(*) FROM messages"))[0]
    n_fts = await fts.count(db.conn)
    assert n_fts == n_msgs, f"{where}: the full-text index has {n_fts} rows, messages {n_msgs}"
    misplaced = await fts.misplaced(db.conn)  # with the counts equal, none misplaced = every message indexed once
    assert misplaced == 0, f"{where}: {misplaced} full-text rows without their message or outside their shard"
    facts.messages = n_msgs
    all_file_ids: set[str] = set()
    keys_seen: dict[str, set[str]] = defaultdict(set)
    import_sessions: set[str] = set()
    per_session_file: Counter = Counter()
    ws_ids = [r[0] for r in await db.fetchall("SELECT id FROM workstreams")]
    for ws_id in ws_ids:
        path = core.repo.messages_path(ws_id)
        records, tail = _lines(path)
        assert tail == b"", f"{where}: {path} still ends in a torn line after recovery: {tail[:80]!r}"
        ids = [r["id"] for r in records]
        dup = [i for i, c in Counter(ids).items() if c > 1]
        assert not dup, f"{where}: {len(dup)} message ids appear twice in {path}, e.g. {dup[:3]}"
        all_file_ids.update(ids)
        for r in records:
            assert r["workstream_id"] == ws_id, f"{where}: message {r['id']} in the wrong file"
            per_session_file[r["session_id"]] += 1
            meta = r.get("metadata") or {}
            if isinstance(meta, dict) and isinstance(meta.get("import"), dict):
                keys_seen[meta["import"]["key"]].add(r["session_id"])
                import_sessions.add(r["session_id"])
        rows = await db.fetchall("SELECT id, session_id, offset, length FROM messages WHERE workstream_id = ?"
                                 " ORDER BY offset", (ws_id,))
        indexed = {r["id"] for r in rows}
        lost = set(ids) - indexed
        assert not lost, f"{where}: {len(lost)} lines of {path} are not in the index, e.g. {sorted(lost)[:3]}"
        ghosts = indexed - set(ids)
        assert not ghosts, f"{where}: {len(ghosts)} index rows have no line in {path}"
        if rows:  # every indexed record reads back whole, at its recorded offset
            with open(path, "rb") as fh:
                for r in rows:
                    fh.seek(r["offset"])
                    raw = fh.read(r["length"])
                    assert raw.endswith(b"\n"), f"{where}: index span of {r['id']} is not a whole line"
                    rec = json.loads(raw)
                    assert rec["id"] == r["id"] and rec["session_id"] == r["session_id"], \
                        f"{where}: index row {r['id']} points at record {rec.get('id')}"
        events, _ = _lines(core.repo.events_path(ws_id))  # every complete event line parses (a torn tail is
        # repaired by the next append)
        # what reindex would restore: a summary supersedes the earlier one of its kind (per session, or
        # the workstream's), so the last logged of each must be exactly the committed rows. A job killed
        # between logging and committing may leave a later-superseded line; while a job is still open the
        # newest line may not be committed yet, so the check waits for an idle queue.
        last: dict[tuple, str] = {}
        for e in events:
            if e.get("type") == "summary":
                last[(e.get("kind"), e.get("session_id") if e.get("kind") != "workstream" else None)] = e["id"]
        logged = [e["id"] for e in events if e.get("type") == "summary"]
        committed = {r[0] for r in await db.fetchall("SELECT id FROM summaries WHERE workstream_id = ?", (ws_id,))}
        open_jobs = (await db.fetchone("SELECT COUNT(*) FROM jobs WHERE workstream_id = ? AND state IN"
                                       " ('pending','running')", (ws_id,)))[0]
        if not open_jobs:
            assert set(last.values()) == committed, (
                f"{where}: reindex would not restore the summaries of {ws_id}: logged last"
                f" {sorted(set(last.values()) - committed)[:3]} not committed, committed"
                f" {sorted(committed - set(last.values()))[:3]} not logged last")
        assert committed <= set(logged), f"{where}: summaries of {ws_id} missing from events.jsonl (reindex loses them)"
    orphans = (await db.fetchone(
        f"SELECT COUNT(*) FROM messages WHERE workstream_id NOT IN ({','.join('?' * len(ws_ids)) or 'NULL'})",
        ws_ids))[0]
    assert orphans == 0, f"{where}: {orphans} index rows belong to no workstream"

    # ---- acknowledged writes are all there, with their content ---------------------------------
    if acked:
        missing = set(acked) - all_file_ids
        assert not missing, f"{where}: {len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:3]}"
        rows = await db.fetchall("SELECT id, workstream_id, offset, length FROM messages")
        spans = {r["id"]: r for r in rows}
        for mid, content in acked.items():
            r = spans[mid]
            with open(core.repo.messages_path(r["workstream_id"]), "rb") as fh:
                fh.seek(r["offset"])
                got = json.loads(fh.read(r["length"]))["content"]
            assert got == content, f"{where}: acknowledged message {mid} reads back different content"

    # ---- sessions: counters agree with the files -------------------------------------------------
    active_imports = []
    for s in await db.fetchall("SELECT id, message_count, ended_at FROM sessions"):
        n = per_session_file.get(s["id"], 0)
        assert s["message_count"] == n, \
            f"{where}: session {s['id']} counts {s['message_count']} messages, its files hold {n}"
        if s["id"] in import_sessions and not s["ended_at"]:
            active_imports.append(s["id"])
    facts.expect(not active_imports, "import-reindex",
                 f"{where}: {len(active_imports)} imported sessions are not ended", tolerate)
    facts.sessions = len(per_session_file)

    # ---- imports: each conversation once, and the index knows it was imported ----------------------
    twice = {k: v for k, v in keys_seen.items() if len(v) > 1}
    assert not twice, f"{where}: {len(twice)} imported conversations are stored more than once"
    recorded = {r[0]: r[1] for r in await db.fetchall("SELECT key, session_id FROM imports")}
    unrecorded = set(keys_seen) - set(recorded)
    assert not unrecorded, (f"{where}: {len(unrecorded)} imported conversations are in the files but not in the"
                            " imports table (importing the file again would duplicate them)")
    for k, sids in keys_seen.items():
        if k in recorded:
            assert recorded[k] in sids, f"{where}: imports row for {k[:12]} names another session"
    stray = set(recorded) - set(keys_seen)
    assert not stray, f"{where}: {len(stray)} imports rows name conversations that are in no file"

    # ---- jobs: one open job per session, no session compressed to done twice ------------------------
    jobs = await db.fetchall("SELECT id, kind, session_id, state FROM jobs")
    facts.jobs = Counter(j["state"] for j in jobs)
    if not allow_running:
        running = [j["id"] for j in jobs if j["state"] == "running"]
        assert not running, f"{where}: jobs still running with no live owner: {running}"
    open_per = Counter((j["session_id"], j["kind"]) for j in jobs
                       if j["session_id"] and j["state"] in ("pending", "running"))
    assert all(c == 1 for c in open_per.values()), f"{where}: two open jobs for one session"
    done_per = Counter(j["session_id"] for j in jobs if j["kind"] == "session" and j["state"] == "done")
    assert all(c == 1 for c in done_per.values()), f"{where}: a session job ran to done twice: {done_per}"
    if done_jobs:
        states = {j["id"]: j["state"] for j in jobs}
        not_done = {j: states.get(j) for j in done_jobs if states.get(j) != "done"}
        assert not not_done, f"{where}: acknowledged jobs are not done: {not_done}"

    # ---- summaries: each session's summary committed once ------------------------------------------
    per_session = Counter(r[0] for r in await db.fetchall(
        "SELECT session_id FROM summaries WHERE kind = 'session'"))
    for s in await db.fetchall("SELECT id, summary_id FROM sessions WHERE summary_id IS NOT NULL"):
        assert per_session[s["id"]] == 1, f"{where}: session {s['id']} has {per_session[s['id']]} summary rows"
        kind = await db.fetchone("SELECT kind, session_id FROM summaries WHERE id = ?", (s["summary_id"],))
        assert kind is not None and kind[0] == "session" and kind[1] == s["id"], \
            f"{where}: session {s['id']} points at a missing or foreign summary"
    facts.summaries = sum(per_session.values())
    for r in await db.fetchall("SELECT id, summary_id FROM workstreams WHERE summary_id IS NOT NULL"):
        kind = await db.fetchone("SELECT kind FROM summaries WHERE id = ?", (r["summary_id"],))
        assert kind is not None and kind[0] == "workstream", f"{where}: workstream summary of {r['id']} missing"
    return facts


async def check_worked(core: ArawnCore, where: str, workstream_ids: list[str],
                       tolerate: frozenset[str] | dict = frozenset(), facts: Facts | None = None) -> Facts:
    """After the queue was worked: nothing open or failed; every ended session summarized once and folded."""
    facts = facts or Facts()
    left = await core.db.fetchall("SELECT id, kind, state, last_error FROM jobs WHERE state != 'done'")
    assert not left, f"{where}: jobs not done after working the queue: {[tuple(r) for r in left]}"
    for ws_id in workstream_ids:
        rows = await core.db.fetchall(
            "SELECT id, summary_id, folded FROM sessions WHERE workstream_id = ? AND ended_at IS NOT NULL"
            " AND message_count > 0", (ws_id,))
        unsummarized = [r["id"] for r in rows if not r["summary_id"]]
        assert not unsummarized, f"{where}: ended sessions without a summary: {unsummarized}"
        done = Counter(r[0] for r in await core.db.fetchall(
            "SELECT session_id FROM jobs WHERE workstream_id = ? AND kind = 'session' AND state = 'done'", (ws_id,)))
        assert all(done[r["id"]] == 1 for r in rows), f"{where}: a session's job is not done exactly once: {done}"
        unfolded = [r["id"] for r in rows if not r["folded"]]
        assert not unfolded, f"{where}: {len(unfolded)} session summaries never folded into the workstream summary"
        if rows and not unfolded:
            ws = await core.repo.workstream_summary(ws_id)
            assert ws is not None and set(r["id"] for r in rows) <= set(ws.covers), \
                f"{where}: the workstream summary does not cover every session"
    return facts


async def fts_finds(core: ArawnCore, word: str, message_id: str) -> bool:
    """The full-text index holds `word` for that message (exact, whatever else matches)."""
    row = await core.db.fetchone("SELECT rowid FROM messages WHERE id = ?", (message_id,))
    return row is not None and await fts.contains(core.db.conn, row[0], '"' + word.replace('"', '""') + '"')


async def probe_fts(core: ArawnCore, where: str) -> int:
    """The newest message of each workstream is found by a word of its own; returns how many were probed."""
    import re

    probed = 0
    for ws_id in [r[0] for r in await core.db.fetchall("SELECT id FROM workstreams")]:
        row = await core.db.fetchone(
            "SELECT id, offset, length FROM messages WHERE workstream_id = ? ORDER BY offset DESC LIMIT 1", (ws_id,))
        if row is None:
            continue
        with open(core.repo.messages_path(ws_id), "rb") as fh:
            fh.seek(row["offset"])
            content = json.loads(fh.read(row["length"]))["content"]
        words = sorted(set(re.findall(r"[A-Za-z0-9]{4,}", content)), key=len, reverse=True)
        if words:
            assert await fts_finds(core, words[0], row["id"]), f"{where}: FTS misses {words[0]!r} of {row['id']}"
            probed += 1
    return probed
