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
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    workstream_id: str


@dataclass(frozen=True)
class WorkstreamUpdated(Event):
    pass


@dataclass(frozen=True)
class SessionStarted(Event):
    session_id: str


@dataclass(frozen=True)
class SessionEnded(Event):
    session_id: str
    reason: str


@dataclass(frozen=True)
class MessageAdded(Event):
    session_id: str
    message_id: str
    role: str


@dataclass(frozen=True)
class JobQueued(Event):
    job_id: str
    kind: str
    session_id: str | None


@dataclass(frozen=True)
class JobStarted(Event):
    job_id: str
    kind: str
    session_id: str | None


@dataclass(frozen=True)
class JobProgress(Event):
    job_id: str
    done: int
    total: int


@dataclass(frozen=True)
class JobCompleted(Event):
    job_id: str
    kind: str
    session_id: str | None


@dataclass(frozen=True)
class JobFailed(Event):
    job_id: str
    kind: str
    session_id: str | None
    error: str
    will_retry: bool


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
