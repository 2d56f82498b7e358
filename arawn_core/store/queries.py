"""SQL text shared by the async store (Repository, JobQueue, ArawnCore) and the sync read path
(`arawn_core.store.reader`).

One string per query: both paths ask SQLite the same question, and the rows are mapped by the
same functions in `converters`, so a read-only command served without the event loop can never
show something the full engine would not.
"""

from __future__ import annotations

from typing import Any


def workstreams(include_archived: bool, limit: int | None = None) -> str:
    """Workstream rows in list order (the scratch workstream first, then most recently used), each
    with the model and prompt version of its summary, if any (for the "stale" badge); the first
    `limit` only, if given (the TUI's first screen)."""
    where = "" if include_archived else "WHERE w.state = 'active'"
    # session_count is a column kept by triggers (schema 4): no per-call count over sessions
    return ("SELECT w.*, m.model AS summary_model, m.prompt_version AS summary_prompt_version"
            f" FROM workstreams w LEFT JOIN summaries m ON m.id = w.summary_id {where}"
            " ORDER BY w.is_scratch DESC, w.updated_at DESC" + (f" LIMIT {int(limit)}" if limit is not None else ""))


def job_status(workstream_id: str | None = None, per_session: bool = False) -> tuple[str, tuple[Any, ...]]:
    """Open and failed jobs (of one workstream; only session jobs with `per_session`), oldest
    change first, for the badges (folded by `converters.job_status_from_rows`)."""
    sql = ("SELECT workstream_id, session_id, state, kind, last_error, progress_done, progress_total FROM jobs"
           " WHERE state IN ('pending','running','failed')")
    params: tuple[Any, ...] = ()
    if workstream_id:
        sql += " AND workstream_id = ?"
        params = (workstream_id,)
    if per_session:
        sql += " AND kind = 'session'"
    return sql + " ORDER BY updated_at", params


#: Start-up recovery: how far each workstream's messages.jsonl is indexed ...
LOG_OFFSETS = "SELECT id, log_offset FROM workstreams"
#: ... and who claims the jobs marked running.
RUNNING_JOB_OWNERS = "SELECT id, owner_pid FROM jobs WHERE state = 'running'"
#: Set when the full-text index must be rebuilt from the JSONL files (schema 3).
FTS_REBUILD_FLAG = "SELECT value FROM kv WHERE key = 'fts_rebuild'"


JOB_LIST_LIMIT = 500


def jobs(state: str | None, workstream_id: str | None, limit: int) -> tuple[str, list[Any]]:
    """The job list, newest first, optionally of one state and one workstream."""
    sql = "SELECT * FROM jobs WHERE 1=1"
    params: list[Any] = []
    if state:
        sql += " AND state = ?"
        params.append(state)
    if workstream_id:
        sql += " AND workstream_id = ?"
        params.append(workstream_id)
    sql += " ORDER BY created_at DESC LIMIT ?"
    params.append(limit)
    return sql, params


# ---- one workstream and its sessions (ws show, session list, summary) --------------------
WORKSTREAM_BY_ID = "SELECT * FROM workstreams WHERE id = ?"
WORKSTREAMS_BY_TITLE = "SELECT * FROM workstreams WHERE title = ?"
WORKSTREAMS_BY_TITLE_ANY_CASE = "SELECT * FROM workstreams WHERE lower(title) = lower(?)"
SESSIONS_OF = "SELECT * FROM sessions WHERE workstream_id = ? ORDER BY started_at"
#: session id -> its summary's text and stamp, for one workstream's sessions
SESSION_SUMMARY_STAMPS = ("SELECT s.id, m.text, m.model, m.prompt_version FROM sessions s"
                          " JOIN summaries m ON m.id = s.summary_id WHERE s.workstream_id = ?")
WORKSTREAM_SUMMARY = "SELECT m.* FROM workstreams w JOIN summaries m ON m.id = w.summary_id WHERE w.id = ?"
SESSION_SUMMARY = "SELECT m.* FROM sessions s JOIN summaries m ON m.id = s.summary_id WHERE s.id = ?"
