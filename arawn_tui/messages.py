"""Textual messages: engine events turned into UI messages, and worker results.

Engine events arrive on `core.events` (plain callbacks, see
`arawn_core.events`); `event_to_message` maps each one to a small message that
is posted to the main screen, handled there (lists, badges, panels) and then
bubbles to the app (job workers, toasts). Workers never touch widgets: they
post the data they loaded as one of the messages below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

from arawn_core import events as ev
from arawn_core.llm.base import BackendInfo
from arawn_core.models import Message as ChatMessage
from arawn_core.models import Session, Summary, Workstream

if TYPE_CHECKING:
    from arawn_core.search import SearchHit

# ---- engine events ---------------------------------------------------------


@dataclass
class WorkstreamChanged(Message):
    """Something about a workstream (title, sessions, counts, job state) changed: reload its row."""

    workstream_id: str
    session_id: str | None = None


@dataclass
class JobScheduled(Message):
    """A compression job was queued: the app starts a worker if one is free."""

    workstream_id: str
    job_id: str
    kind: str
    session_id: str | None


@dataclass
class JobRunning(Message):
    workstream_id: str
    job_id: str
    kind: str
    session_id: str | None


@dataclass
class JobProgressed(Message):
    """Progress of one job; a newer report for the same job replaces a queued older one."""

    workstream_id: str
    job_id: str
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgressed) and message.job_id == self.job_id


@dataclass
class JobFinished(Message):
    """A job completed (`ok`) or failed (`error`; `will_retry` when it goes back to pending)."""

    workstream_id: str
    job_id: str
    kind: str
    session_id: str | None
    ok: bool
    error: str | None = None
    will_retry: bool = False


@dataclass
class SessionClosed(Message):
    """A session ended (explicitly, idle, archive, quit): a live chat showing it starts afresh."""

    workstream_id: str
    session_id: str
    reason: str


def event_to_message(event: ev.Event) -> Message | None:
    """The UI message for an engine event (None: the UI does not care)."""
    if isinstance(event, ev.JobProgress):
        return JobProgressed(event.workstream_id, event.job_id, event.done, event.total)
    if isinstance(event, ev.JobQueued):
        return JobScheduled(event.workstream_id, event.job_id, event.kind, event.session_id)
    if isinstance(event, ev.JobStarted):
        return JobRunning(event.workstream_id, event.job_id, event.kind, event.session_id)
    if isinstance(event, ev.JobCompleted):
        return JobFinished(event.workstream_id, event.job_id, event.kind, event.session_id, ok=True)
    if isinstance(event, ev.JobFailed):
        return JobFinished(event.workstream_id, event.job_id, event.kind, event.session_id, ok=False,
                           error=event.error, will_retry=event.will_retry)
    if isinstance(event, ev.SessionEnded):
        return SessionClosed(event.workstream_id, event.session_id, event.reason)
    if isinstance(event, (ev.SessionStarted, ev.MessageAdded)):
        return WorkstreamChanged(event.workstream_id, event.session_id)
    if isinstance(event, ev.WorkstreamUpdated):
        return WorkstreamChanged(event.workstream_id)
    return None


# ---- app lifecycle -----------------------------------------------------------


@dataclass
class CoreReady(Message):
    """The core is open: the screen shows `workstreams` (or loads them when None; `partial`: the
    first screenful only, the screen loads the whole list after showing it)."""

    workstreams: list[Workstream] | None = None
    partial: bool = False


@dataclass
class BackendChecked(Message):
    info: BackendInfo
    model: str


@dataclass
class QueueLength(Message):
    length: int


# ---- data loaded by workers ----------------------------------------------------


@dataclass
class WorkstreamsLoaded(Message):
    workstreams: list[Workstream]
    select: str | None = None


@dataclass
class WorkstreamLoaded(Message):
    """One refreshed row; `workstream` is None when it is gone or archived."""

    workstream_id: str
    workstream: Workstream | None


@dataclass
class SessionsLoaded(Message):
    workstream_id: str
    sessions: list[Session]
    select: str | None = None  # highlight this session (a search hit opened it)


@dataclass
class WorkstreamSummaryLoaded(Message):
    workstream_id: str
    workstream: Workstream | None
    summary: Summary | None


@dataclass
class SessionSummaryLoaded(Message):
    workstream_id: str
    session: Session | None
    summary: Summary | None


@dataclass
class TranscriptLoaded(Message):
    """Messages of one session; `read_only` for an ended session shown as a transcript.

    `opened`: a search hit asked for this session, so it is shown whatever was on
    screen, scrolled to `found` (a message id) when that is set.
    """

    workstream_id: str
    session_id: str | None
    messages: list[ChatMessage] = field(default_factory=list)
    read_only: bool = False
    opened: bool = False
    found: str | None = None


@dataclass
class WorkstreamOpened(Message):
    """Everything shown for one workstream (sessions, summaries, transcript), loaded together
    so the screen puts it up in one layout pass instead of one per part."""

    workstream_id: str
    sessions: SessionsLoaded
    summary: WorkstreamSummaryLoaded
    session_summary: SessionSummaryLoaded
    transcript: TranscriptLoaded | None = None


@dataclass
class SearchDone(Message):
    """One search finished: its hits, or the one-line reason the query was refused."""

    generation: int  # the query's number: an answer to an older query is dropped
    query: str
    hits: list[SearchHit] = field(default_factory=list)
    error: str | None = None


# ---- chat ---------------------------------------------------------------------


@dataclass
class ReplyPiece(Message):
    workstream_id: str
    text: str


@dataclass
class ChatTargetChosen(Message):
    """A message typed with no workstream selected went to the scratch workstream."""

    workstream_id: str


@dataclass
class ReplyEnded(Message):
    """The reply stream ended: normally, stopped by the user, or with an error to show."""

    workstream_id: str
    stopped: bool = False
    error: str | None = None
