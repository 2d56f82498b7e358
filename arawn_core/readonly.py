"""The facade's read-only half, without the event loop: what one-shot read commands need.

`ArawnCore` is asynchronous (aiosqlite, background jobs, events); importing and
opening it costs several times Python's own start-up, which scripts calling
`arawn --headless ws list` in a loop pay on every call. `ReadOnlyCore` answers
the same questions with the same SQL (`store.queries`) and the same row mapping
(`store.converters`) over a plain sqlite3 connection (`store.reader`). It serves
only a store that needs nothing (see `StoreReader.open`); otherwise `open`
returns None and the caller opens `ArawnCore`, which migrates and recovers first.

Its methods have `ArawnCore`'s names and are coroutines, so the CLI runs the same
command handlers over either; these never wait on anything (plain sqlite3 calls),
so `run_without_loop` drives them to the end without an event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

from arawn_core.config import Settings
from arawn_core.errors import NotFound
from arawn_core.models import CompressionJob, JobState, Session, Summary, Workstream
from arawn_core.staleness import is_stale
from arawn_core.store import queries
from arawn_core.store.converters import (
    apply_status,
    job_from_row,
    job_status_from_rows,
    one_by_title,
    session_from_row,
    session_stamps_from_rows,
    sessions_with_status,
    stamp_of,
    summary_from_row,
    workstream_from_row,
    workstreams_from_rows,
)
from arawn_core.store.reader import StoreReader

if TYPE_CHECKING:
    from arawn_core.memory.pins import Pin
    from arawn_core.memory.versions import SummaryVersion

T = TypeVar("T")


class NeedsEngine(Exception):
    """The command asked for something only `ArawnCore` has: it takes the full path."""


def run_without_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (one over `ReadOnlyCore`) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a read-only command waited on something: it needs the event loop")


class ReadOnlyCore:
    def __init__(self, settings: Settings, reader: StoreReader) -> None:
        self.settings = settings
        self.reader = reader
        self._compression_model: str | None = None

    @classmethod
    def open(cls, settings: Settings) -> ReadOnlyCore | None:
        reader = StoreReader.open(settings.data_dir)
        return cls(settings, reader) if reader is not None else None

    def close(self) -> None:
        self.reader.close()

    @property
    def notices(self) -> list[str]:
        """Problems met repairing the store: none here, since a store needing repair takes the full open."""
        return []

    def __getattr__(self, name: str) -> Any:
        # Only attributes not defined here land here: a handler that needs more than these reads
        # (a write, the backend, a newer read) is run on the full engine instead.
        raise NeedsEngine(name)

    def compression_model(self) -> str:
        """As `ArawnCore.compression_model` with the lazily chosen backend (which it predicts, once)."""
        if self._compression_model is None:
            from arawn_core.llm.prediction import embedded_model_name, predicted_kind

            embedded = predicted_kind(self.settings) == "embedded"
            self._compression_model = embedded_model_name(self.settings) if embedded else self.settings.compression_model
        return self._compression_model

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        rows = self.reader.fetchall(sql, params)
        return rows[0] if rows else None

    # ---- ArawnCore's read methods, same names and results -------------------------------
    async def list_workstreams(self, include_archived: bool = False) -> list[Workstream]:
        status = job_status_from_rows(self.reader.fetchall(*queries.job_status()))
        return workstreams_from_rows(self.reader.fetchall(queries.workstreams(include_archived)), status,
                                     self.compression_model())

    async def list_jobs(self, state: JobState | None = None, workstream_id: str | None = None) -> list[CompressionJob]:
        sql, params = queries.jobs(state.value if state else None, workstream_id, queries.JOB_LIST_LIMIT)
        return [job_from_row(row) for row in self.reader.fetchall(sql, params)]

    async def get_workstream(self, workstream_id: str) -> Workstream:
        row = self._one(queries.WORKSTREAM_BY_ID, (workstream_id,))
        if row is None:
            raise NotFound(f"no workstream with id {workstream_id}")
        ws = workstream_from_row(row)
        summary = await self.workstream_summary(ws.id)
        ws.summary = summary.text if summary else None
        status = job_status_from_rows(self.reader.fetchall(*queries.job_status(ws.id)))
        apply_status(ws, status.get(ws.id), stamp_of(summary), self.compression_model())
        return ws

    async def resolve_workstream(self, ref: str) -> Workstream:
        """An id, or an unambiguous title (exact, then case-insensitive)."""
        try:
            return await self.get_workstream(ref)
        except NotFound:
            pass
        rows = self.reader.fetchall(queries.WORKSTREAMS_BY_TITLE, (ref,)) or \
            self.reader.fetchall(queries.WORKSTREAMS_BY_TITLE_ANY_CASE, (ref,))
        return await self.get_workstream(one_by_title(ref, [workstream_from_row(r) for r in rows]).id)

    async def list_sessions(self, workstream_id: str) -> list[Session]:
        r = self.reader
        sessions = [session_from_row(row) for row in r.fetchall(queries.SESSIONS_OF, (workstream_id,))]
        stamps = session_stamps_from_rows(r.fetchall(queries.SESSION_SUMMARY_STAMPS, (workstream_id,)))
        status = job_status_from_rows(r.fetchall(*queries.job_status(workstream_id, per_session=True)),
                                      per_session=True)
        return sessions_with_status(sessions, stamps, status, self.compression_model())

    async def workstream_summary(self, workstream_id: str) -> Summary | None:
        return self._summary(queries.WORKSTREAM_SUMMARY, workstream_id)

    async def session_summary(self, session_id: str) -> Summary | None:
        return self._summary(queries.SESSION_SUMMARY, session_id)

    # ---- memory (what `ws show` prints besides the summary) -------------------------
    async def list_pins(self, workstream_id: str) -> list[Pin]:
        from arawn_core.store import memory

        return [memory.pin_from_row(r) for r in self.reader.fetchall(memory.PINS_OF_WORKSTREAM, (workstream_id,))]

    async def current_version(self, workstream_id: str) -> SummaryVersion | None:
        from arawn_core.store import memory

        rows = self.reader.fetchall(memory.CURRENT_VERSION, (workstream_id,))
        return memory.version_from_row(rows[0]) if rows else None

    async def workstream_origin(self, workstream_id: str) -> dict[str, Any] | None:
        from arawn_core.store import memory

        rows = self.reader.fetchall(memory.ORIGIN_OF_WORKSTREAM, (workstream_id,))
        return dict(rows[0]) if rows else None

    def _summary(self, sql: str, key: str) -> Summary | None:
        row = self._one(sql, (key,))
        if row is None:
            return None
        summary = summary_from_row(row)
        summary.stale = is_stale(summary, self.compression_model())
        return summary
