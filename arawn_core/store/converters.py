"""Rows -> domain objects, in one place."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Iterable, Mapping, TypeVar

from arawn_core.models import (
    CompressionJob,
    CompressionStatus,
    JobKind,
    JobStatus,
    JobState,
    Provenance,
    Session,
    Summary,
    SummaryAudit,
    SummaryKind,
    SummaryStamp,
    Workstream,
    WorkstreamState,
)
from arawn_core.errors import DatabaseError
from arawn_core.staleness import stale_fields

Row = Mapping[str, Any]
F = TypeVar("F", bound=Callable[..., Any])


class DamagedRow(DatabaseError):
    """A row of arawn.db holds what no arawn wrote (a hand-edited or damaged index): every value
    in it can be rebuilt from the JSONL files, so the one line says how."""

    def __init__(self, what: str, row: Row, exc: Exception) -> None:
        try:
            ident = f" {row['id']}"
        except (KeyError, IndexError, TypeError):
            ident = ""
        detail = f"{type(exc).__name__}: {exc}"[:120]
        super().__init__(f"the index (arawn.db) holds a damaged {what} row{ident} ({detail}); rebuild it from the"
                         " message files: arawn --headless reindex")


def _row_checked(what: str) -> Callable[[F], F]:
    """A row converter whose failure on a value no arawn writes is `DamagedRow`, not a bug line."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def convert(row: Row, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(row, *args, **kwargs)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                raise DamagedRow(what, row, exc) from None
        return convert  # type: ignore[return-value]
    return wrap


_WS_STATES = {s.value: s for s in WorkstreamState}  # a dict lookup: listing maps a thousand rows


@_row_checked("workstream")
def workstream_from_row(row: Row) -> Workstream:
    tags = row["tags"]
    tag_list = json.loads(tags) if tags and tags != "[]" else []
    if type(tag_list) is not list or not all(type(t) is str for t in tag_list):
        raise ValueError("tags is not a list of strings")
    title = row["title"]
    if type(title) is not str:
        raise TypeError("title is not text")
    return Workstream(
        id=row["id"],
        title=title,
        state=_WS_STATES.get(row["state"]) or WorkstreamState(row["state"]),
        tags=tag_list,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        is_scratch=bool(row["is_scratch"]),
        session_count=row["session_count"],  # kept by triggers (schema 4)
    )


@_row_checked("session")
def session_from_row(row: Row) -> Session:
    return Session(
        id=row["id"],
        workstream_id=row["workstream_id"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        last_activity_at=row["last_activity_at"],
        turn_count=row["turn_count"],
        char_count=row["char_count"],
        message_count=row["message_count"],
        end_reason=row["end_reason"],
        title=row["title"],
    )


@_row_checked("summary")
def summary_from_row(row: Row) -> Summary:
    return Summary(
        id=row["id"],
        kind=SummaryKind(row["kind"]),
        workstream_id=row["workstream_id"],
        session_id=row["session_id"],
        text=row["text"],
        provenance=Provenance(
            model=row["model"],
            prompt_version=row["prompt_version"],
            input_chars=row["input_chars"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            llm_calls=row["llm_calls"],
            duration_s=row["duration_s"],
            input_hash=row["input_hash"],
            created_at=row["created_at"],
            method=_get(row, "method") or ("verbatim" if row["model"] == "verbatim" else "model"),
            audit=_audit_from(_get(row, "audit")),
        ),
        covers=json.loads(row["covers"] or "[]"),
    )


def _get(row: Row, key: str) -> Any:
    """A column added by a later migration (absent from older events.jsonl records)."""
    try:
        return row[key]
    except (KeyError, IndexError):
        return None


def _audit_from(value: Any) -> SummaryAudit | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return SummaryAudit.from_dict(value)


def summary_to_params(s: Summary) -> dict[str, Any]:
    p = s.provenance
    return {
        "id": s.id,
        "kind": s.kind.value,
        "workstream_id": s.workstream_id,
        "session_id": s.session_id,
        "text": s.text,
        "model": p.model,
        "prompt_version": p.prompt_version,
        "input_chars": p.input_chars,
        "input_tokens": p.input_tokens,
        "output_tokens": p.output_tokens,
        "llm_calls": p.llm_calls,
        "duration_s": p.duration_s,
        "input_hash": p.input_hash,
        "created_at": p.created_at,
        "covers": json.dumps(s.covers),
        "method": p.method,
        "audit": json.dumps(p.audit.to_dict(), ensure_ascii=False) if p.audit is not None else None,
    }


def summary_from_record(rec: Mapping[str, Any]) -> Summary:
    """A summary as stored in a workstream's events.jsonl (same keys as the row)."""
    # the unchecked converter: a bad record is the reader's ValueError (skipped and named), not an index row
    return summary_from_row.__wrapped__({**rec, "covers": json.dumps(rec.get("covers") or [])})  # type: ignore[attr-defined]


@_row_checked("job")
def job_from_row(row: Row) -> CompressionJob:
    return CompressionJob(
        id=row["id"],
        kind=JobKind(row["kind"]),
        workstream_id=row["workstream_id"],
        session_id=row["session_id"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def status_from_jobs(jobs: JobStatus | None, has_summary: bool, stale: bool) -> CompressionStatus:
    states = jobs.states if jobs else set()
    if "running" in states:
        return CompressionStatus.RUNNING
    if "pending" in states:
        return CompressionStatus.PENDING
    if "failed" in states:
        return CompressionStatus.FAILED
    if has_summary:
        return CompressionStatus.STALE if stale else CompressionStatus.DONE
    return CompressionStatus.NONE


# ---- the workstream list (shared by ArawnCore and the sync read path) ---------------

def job_status_from_rows(rows: Iterable[Row], per_session: bool = False) -> dict[str, JobStatus]:
    """`queries.job_status` rows folded per workstream (or per session): the one place job status
    is computed (`JobQueue.status` and the read path both call it)."""
    out: dict[str, JobStatus] = {}
    retrying: dict[str, str] = {}
    for r in rows:
        key = r["session_id"] if per_session else r["workstream_id"]
        s = out.setdefault(key, JobStatus())
        s.states.add(r["state"])
        if r["state"] == "failed":
            s.error = r["last_error"] or s.error
        elif r["last_error"]:
            retrying[key] = r["last_error"]
        if r["state"] == "running":
            s.progress.done += r["progress_done"]
            s.progress.total += r["progress_total"]
    for key, error in retrying.items():
        if out[key].error is None:
            out[key].error = error
    return out


def apply_status(ws: Workstream, jobs: JobStatus | None, stamp: SummaryStamp | None, compression_model: str) -> None:
    """Set a workstream's badge (and progress, last error) from its jobs and its summary's stamp."""
    stale = stamp is not None and stale_fields(stamp.model, stamp.prompt_version, compression_model)
    ws.compression = status_from_jobs(jobs, stamp is not None, stale)
    if jobs:
        ws.progress = jobs.progress
        ws.last_error = jobs.error


def workstreams_from_rows(rows: Iterable[Row], status: dict[str, JobStatus],
                          compression_model: str) -> list[Workstream]:
    """The workstream list from `queries.workstreams` rows (each with its summary's stamp) and the
    folded job status."""
    out = []
    for row in rows:
        ws = workstream_from_row(row)
        model = row["summary_model"]
        stamp = SummaryStamp(model, row["summary_prompt_version"]) if model is not None else None
        apply_status(ws, status.get(ws.id), stamp, compression_model)
        out.append(ws)
    return out


def sessions_with_status(sessions: list[Session], stamps: Mapping[str, SummaryStamp],
                         status: Mapping[str, JobStatus], compression_model: str) -> list[Session]:
    """A workstream's sessions with their summary text and badge (from `queries.SESSION_SUMMARY_STAMPS`
    and the per-session job status)."""
    for s in sessions:
        stamp = stamps.get(s.id)
        jobs = status.get(s.id)
        stale = stamp is not None and stale_fields(stamp.model, stamp.prompt_version, compression_model)
        s.summary = stamp.text if stamp else None
        s.compression = status_from_jobs(jobs, stamp is not None, stale)
        s.last_error = jobs.error if jobs else None
    return sessions


def session_stamps_from_rows(rows: Iterable[Row]) -> dict[str, SummaryStamp]:
    return {r["id"]: SummaryStamp(r["model"], r["prompt_version"], r["text"]) for r in rows}


def stamp_of(summary: Summary | None) -> SummaryStamp | None:
    return SummaryStamp(summary.provenance.model, summary.provenance.prompt_version) if summary else None


def one_by_title(ref: str, found: list[Workstream]) -> Workstream:
    """The workstream a title names, or the user's error (none, or several: give an id)."""
    from arawn_core.errors import UsageError

    if not found:
        raise UsageError(f"no workstream matches {ref!r} (give an id or a title; see `ws list`)")
    if len(found) > 1:
        ids = ", ".join(w.id for w in found)
        raise UsageError(f"workstream title {ref!r} is ambiguous: use one of the ids {ids}")
    return found[0]
