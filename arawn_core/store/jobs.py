"""The durable compression job queue (SQLite).

States: pending -> running -> done | failed (or back to pending with a later
next_attempt_at for a transient error). One open job per session; at most one
pending reduce per workstream, so a reduce requested while one runs runs once
more afterwards, never twice. Claiming is one IMMEDIATE transaction, so two
processes never take the same job.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from arawn_core.models import CompressionJob, JobKind, JobState, JobStatus, new_id, utc_now
from arawn_core.store.converters import job_from_row, job_status_from_rows
from arawn_core.store import queries
from arawn_core.store.db import Database
from arawn_core.store.recovery import orphaned_jobs

REDUCE_KINDS = ("reduce", "rebuild")


class JobQueue:
    def __init__(self, db: Database, max_attempts: int, retry_base_s: float, retry_max_s: float) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.pid = os.getpid()

    async def enqueue(self, kind: JobKind, workstream_id: str, session_id: str | None = None) -> CompressionJob | None:
        """Add a job unless an equivalent one is already open; returns the new job or None."""
        async with self.db.transaction() as c:
            job_id = await self.enqueue_in(c, kind, workstream_id, session_id)
        return await self.get(job_id) if job_id else None

    async def enqueue_in(self, c: Any, kind: JobKind, workstream_id: str, session_id: str | None = None) -> str | None:
        """`enqueue` inside the caller's transaction (so a result and its follow-up job commit together)."""
        now = utc_now()
        if kind in (JobKind.REDUCE, JobKind.REBUILD):
            row = await (await c.execute(
                "SELECT id, kind FROM jobs WHERE workstream_id = ? AND kind IN ('reduce','rebuild')"
                " AND state = 'pending'", (workstream_id,))).fetchone()
            if row is not None:
                if kind is JobKind.REBUILD and row["kind"] != "rebuild":
                    await c.execute("UPDATE jobs SET kind = 'rebuild', updated_at = ? WHERE id = ?", (now, row["id"]))
                return None
        job_id = new_id()
        cur = await c.execute(
            "INSERT OR IGNORE INTO jobs (id, kind, workstream_id, session_id, state, attempts, max_attempts,"
            " next_attempt_at, created_at, updated_at) VALUES (?,?,?,?,'pending',0,?,?,?,?)",
            (job_id, kind.value, workstream_id, session_id, self.max_attempts, time.time(), now, now),
        )
        return job_id if cur.rowcount else None

    async def get(self, job_id: str) -> CompressionJob | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(row) if row else None

    async def claim(self, workstream_id: str | None = None, exclude: set[str] = frozenset()) -> CompressionJob | None:
        """Take the oldest due job. A reduce waits while its workstream has open session jobs."""
        now = time.time()
        ws_filter = "AND j.workstream_id = :ws" if workstream_id else ""
        async with self.db.transaction() as c:
            rows = await (await c.execute(
                "SELECT j.* FROM jobs j WHERE j.state = 'pending' AND j.next_attempt_at <= :now " + ws_filter +
                " AND NOT (j.kind IN ('reduce','rebuild') AND EXISTS (SELECT 1 FROM jobs o WHERE"
                "   o.workstream_id = j.workstream_id AND o.id != j.id AND ("
                "   (o.kind IN ('reduce','rebuild') AND o.state = 'running') OR"
                "   (o.kind = 'session' AND o.state IN ('pending','running')))))"
                " ORDER BY CASE j.kind WHEN 'checkpoint' THEN 0 WHEN 'session' THEN 1 ELSE 2 END, j.created_at"
                " LIMIT 20",
                {"now": now, "ws": workstream_id},
            )).fetchall()
            row = next((r for r in rows if r["id"] not in exclude), None)
            if row is None:
                return None
            await c.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, owner_pid = ?, updated_at = ?,"
                " progress_done = 0, progress_total = 0 WHERE id = ?",
                (self.pid, utc_now(), row["id"]),
            )
        return await self.get(row["id"])

    async def finish(self, c: Any, job_id: str) -> None:
        """Mark done inside the caller's transaction (with the job's result)."""
        await c.execute(
            "UPDATE jobs SET state = 'done', last_error = NULL, updated_at = ?, owner_pid = NULL WHERE id = ?",
            (utc_now(), job_id),
        )

    async def fail(self, job: CompressionJob, error: str, transient: bool) -> tuple[bool, float]:
        """Record a failure; returns (will_retry, delay_s)."""
        will_retry = transient and job.attempts < job.max_attempts
        delay = 0.0
        if will_retry:
            delay = min(self.retry_max_s, self.retry_base_s * (2 ** max(0, job.attempts - 1)))
            delay *= random.uniform(0.8, 1.2)
        async with self.db.transaction() as c:
            await c.execute(
                "UPDATE jobs SET state = ?, last_error = ?, next_attempt_at = ?, updated_at = ?, owner_pid = NULL"
                " WHERE id = ?",
                ("pending" if will_retry else "failed", error, time.time() + delay, utc_now(), job.id),
            )
        return will_retry, delay

    async def release(self, job: CompressionJob) -> None:
        """Put a job we were stopped in the middle of back, without using up an attempt."""
        async with self.db.transaction() as c:
            await c.execute(
                "UPDATE jobs SET state = 'pending', attempts = max(0, attempts - 1), owner_pid = NULL,"
                " updated_at = ? WHERE id = ? AND state = 'running'",
                (utc_now(), job.id),
            )

    async def set_progress(self, job_id: str, done: int, total: int) -> None:
        async with self.db.transaction() as c:
            await c.execute("UPDATE jobs SET progress_done = ?, progress_total = ? WHERE id = ?", (done, total, job_id))

    async def recover_orphans(self) -> int:
        """Jobs left `running` by a process that is gone go back to `pending`."""
        dead = orphaned_jobs(await self.db.fetchall(queries.RUNNING_JOB_OWNERS), self.pid)
        if dead:
            async with self.db.transaction() as c:
                await c.executemany(
                    "UPDATE jobs SET state = 'pending', owner_pid = NULL, next_attempt_at = 0 WHERE id = ?"
                    " AND state = 'running'", [(d,) for d in dead]
                )
        return len(dead)

    async def retry(self, job_id: str | None = None, workstream_id: str | None = None) -> int:
        """Failed jobs (one, a workstream's, or all) go back to pending with fresh attempts."""
        sql = "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = 0, updated_at = ? WHERE state = 'failed'"
        params: list[Any] = [utc_now()]
        if job_id:
            sql += " AND id = ?"
            params.append(job_id)
        if workstream_id:
            sql += " AND workstream_id = ?"
            params.append(workstream_id)
        async with self.db.transaction() as c:
            cur = await c.execute(sql, params)
            return cur.rowcount

    async def list(self, state: JobState | None = None, workstream_id: str | None = None,
                   limit: int = queries.JOB_LIST_LIMIT) -> list[CompressionJob]:
        sql, params = queries.jobs(state.value if state else None, workstream_id, limit)
        return [job_from_row(r) for r in await self.db.fetchall(sql, params)]

    async def open_count(self, workstream_id: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM jobs WHERE state IN ('pending','running')"
        params: tuple[Any, ...] = ()
        if workstream_id:
            sql += " AND workstream_id = ?"
            params = (workstream_id,)
        row = await self.db.fetchone(sql, params)
        return row[0]

    async def next_due_in(self, workstream_id: str | None = None) -> float | None:
        """Seconds until the next pending job is due (None: nothing pending)."""
        sql = "SELECT MIN(next_attempt_at) FROM jobs WHERE state = 'pending'"
        params: tuple[Any, ...] = ()
        if workstream_id:
            sql += " AND workstream_id = ?"
            params = (workstream_id,)
        row = await self.db.fetchone(sql, params)
        if row[0] is None:
            return None
        return max(0.0, row[0] - time.time())

    async def status(self, workstream_id: str | None = None, per_session: bool = False) -> dict[str, JobStatus]:
        """Open and failed jobs folded per workstream (or, with `per_session`, per session of
        `workstream_id`, session jobs only); the SQL and the folding are shared with the read path."""
        sql, params = queries.job_status(workstream_id, per_session)
        return job_status_from_rows(await self.db.fetchall(sql, params), per_session)
