"""Textual messages: engine events as they are, and what workers loaded.

Engine events arrive on `core.events` (plain callbacks, see `arawn_core.events`).
The app posts each one, unchanged, inside one `EngineEvent` message to the main
screen, whose parts react to the event types they care about and let it bubble
on to the app (toasts). Workers never touch widgets: they post the data they
loaded as one of the messages below. Messages a widget sends about itself (a
selection in the sidebar, ...) live with that widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

from arawn_core import events as ev
from arawn_core.models import Message as ChatMessage
from arawn_core.models import Session, Summary, Workstream

if TYPE_CHECKING:
    from arawn_core.search import SearchHit

# ---- engine events ---------------------------------------------------------


class EngineEvent(Message):
    """One engine event (`arawn_core.events`), posted as it was published.

    A newer progress report for the same job replaces one still queued: a
    burst of progress costs one repaint, not one per chunk."""

    def __init__(self, event: ev.Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return (isinstance(self.event, ev.JobProgress) and isinstance(message, EngineEvent)
                and isinstance(message.event, ev.JobProgress) and message.event.job_id == self.event.job_id)

    def __repr__(self) -> str:
        return f"EngineEvent({self.event!r})"


# ---- app lifecycle -----------------------------------------------------------


@dataclass
class CoreReady(Message):
    """The core is open: the screen shows `workstreams` (or loads them when None; `partial`: the
    first screenful only, the screen loads the whole list after showing it)."""

    workstreams: list[Workstream] | None = None
    partial: bool = False


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
