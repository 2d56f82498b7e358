"""Typed engine events and the bus that fans them out.

Subscribers are plain callables invoked synchronously by `publish`; they must
be quick (the TUI's just posts a Textual message). A subscriber that wants to
consume at its own pace uses `subscribe_queue`, a bounded queue that drops its
oldest event instead of stalling the engine.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from arawn_core.llm.base import BackendInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of every engine event (the TUI posts them to the screen as they are)."""


@dataclass(frozen=True)
class WorkstreamEvent(Event):
    """Something that happened in one workstream ("" : possibly all of them, e.g. a reindex)."""

    workstream_id: str


@dataclass(frozen=True)
class WorkstreamUpdated(WorkstreamEvent):
    pass


@dataclass(frozen=True)
class SessionStarted(WorkstreamEvent):
    session_id: str


@dataclass(frozen=True)
class SessionEnded(WorkstreamEvent):
    session_id: str
    reason: str


@dataclass(frozen=True)
class MessageAdded(WorkstreamEvent):
    session_id: str
    message_id: str
    role: str


@dataclass(frozen=True)
class JobQueued(WorkstreamEvent):
    job_id: str
    kind: str
    session_id: str | None


@dataclass(frozen=True)
class JobStarted(WorkstreamEvent):
    job_id: str
    kind: str
    session_id: str | None


@dataclass(frozen=True)
class JobProgress(WorkstreamEvent):
    job_id: str
    done: int
    total: int


@dataclass(frozen=True)
class JobCompleted(WorkstreamEvent):
    job_id: str
    kind: str
    session_id: str | None


@dataclass(frozen=True)
class JobFailed(WorkstreamEvent):
    job_id: str
    kind: str
    session_id: str | None
    error: str
    will_retry: bool


# ---- published by the scheduler (arawn_core.runtime) ------------------------------

@dataclass(frozen=True)
class BackendChecked(Event):
    """A periodic health check of the LLM backend; `model` is the chat model in use."""

    info: BackendInfo
    model: str


@dataclass(frozen=True)
class JobsPaused(Event):
    """The backend is down: no job is claimed until a check finds it back."""

    reason: str


@dataclass(frozen=True)
class JobsResumed(Event):
    """The backend is back: due jobs are claimed again."""


@dataclass(frozen=True)
class IdleSessionsEnded(Event):
    """`count` sessions idle past `session_timeout_minutes` were ended (and queued for compression)."""

    count: int


@dataclass(frozen=True)
class QueueLength(Event):
    """Open (pending or running) jobs in the queue, when that number changed."""

    length: int


@dataclass(frozen=True)
class Notice(Event):
    """A problem met reading or indexing the files (a bad line, with its file and line number; a
    workstream that could not be indexed; a rebuilt index): the CLI prints it, the TUI shows it."""

    text: str


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Subscriber:
        self._subscribers.append(callback)
        return callback

    def unsubscribe(self, callback: Subscriber) -> None:
        try:
            self._subscribers.remove(callback)
        except ValueError:
            pass

    def subscribe_queue(self, maxsize: int = 1000) -> EventQueue:
        queue = EventQueue(maxsize)
        self.subscribe(queue.put)
        return queue

    def publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not break the engine
                log.exception("event subscriber %r failed on %r", callback, event)


class EventQueue:
    """A bounded per-subscriber queue: when full, the oldest event is dropped and counted."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, event: Event) -> None:
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.dropped += 1

    async def get(self) -> Event:
        return await self.queue.get()
