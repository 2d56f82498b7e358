"""The facade's read-only half, without the event loop: what one-shot read commands need.

`ArawnCore` is asynchronous (aiosqlite, background jobs, events); importing and
opening it costs several times Python's own start-up, which scripts calling
`arawn --headless ws list` in a loop pay on every call. `ReadOnlyCore` answers
the same questions with the same SQL and the same row mapping over a plain
sqlite3 connection (`store.reader`). It serves only a store that needs nothing
(see `StoreReader.open`); otherwise `open` returns None and the caller opens
`ArawnCore`, which migrates and recovers first.
"""

from __future__ import annotations

from arawn_core.config import Settings
from arawn_core.models import CompressionJob, JobState, Workstream
from arawn_core.store import queries
from arawn_core.store.converters import job_from_row, job_status_from_rows, workstreams_from_rows
from arawn_core.store.reader import StoreReader


class ReadOnlyCore:
    def __init__(self, settings: Settings, reader: StoreReader) -> None:
        self.settings = settings
        self.reader = reader

    @classmethod
    def open(cls, settings: Settings) -> ReadOnlyCore | None:
        reader = StoreReader.open(settings.data_dir)
        return cls(settings, reader) if reader is not None else None

    def close(self) -> None:
        self.reader.close()

    def compression_model(self) -> str:
        """As `ArawnCore.compression_model` with the lazily chosen backend (which it predicts)."""
        from arawn_core.llm.lazy import LazyBackend

        return LazyBackend(self.settings).model_override or self.settings.compression_model

    def list_workstreams(self, include_archived: bool = False) -> list[Workstream]:
        r = self.reader
        status = job_status_from_rows(r.fetchall(*queries.job_status()))
        return workstreams_from_rows(r.fetchall(queries.workstreams(include_archived)), status, self.compression_model())

    def list_jobs(self, state: JobState | None = None, workstream_id: str | None = None) -> list[CompressionJob]:
        sql, params = queries.jobs(state.value if state else None, workstream_id, queries.JOB_LIST_LIMIT)
        return [job_from_row(row) for row in self.reader.fetchall(sql, params)]
