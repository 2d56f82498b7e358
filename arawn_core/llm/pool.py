"""A pool of model hosts: several servers of one backend kind serving the same model.

Why: people who outgrow one machine run a model server on each GPU box.
Compression is many independent calls (chunk summaries, merges), so it
spreads over the hosts; a chat is one conversation whose prompt prefix the
server caches, so it stays on one host.

* Each host has `slots` (requests it serves at once; 1 = one sequence at a
  time, like llama.cpp without `--parallel`). A compression call takes a free
  slot on any healthy host, preferring hosts no chat is using, and waits when
  every slot is busy.
* A host that refuses the connection is marked down and skipped; the call
  moves to another host at once. A down host is tried again after
  `retry_after_s` (doubling while it stays down, up to `MAX_RETRY_S`), by a
  real request or by `refresh()`; `health()` says which hosts are down and
  until when, for `doctor`, the status line and the runtime's checks.
* A chat goes to its sticky host (the first healthy one, kept while it stays
  up), and moves only when that host is down before the reply starts.
* Every other error (timeout, 5xx, a context refusal) is the request's, not the
  host's: it is raised for the caller's retry policy.

Small API for other parts: `health()`, `refresh()`, `capacity`, `hosts`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Sequence

from .base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, LLMBackend
from .errors import BackendUnavailable
from .server_context import ServerContext

#: First wait before a down host is tried again, and the cap of the doubling.
RETRY_AFTER_S = 5.0
MAX_RETRY_S = 120.0


@dataclass
class HostStatus:
    """One host as `doctor` and the status line show it."""

    host: str
    up: bool = True
    in_flight: int = 0
    slots: int = 1
    served: int = 0
    detail: str = ""  # why it is down
    retry_in_s: float = 0.0  # when it is tried again (0: now)
    chat: bool = False  # the host chats go to

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "up": self.up, "in_flight": self.in_flight, "slots": self.slots,
                "served": self.served, "detail": self.detail, "retry_in_s": round(self.retry_in_s, 1),
                "chat": self.chat}


@dataclass
class _Host:
    backend: LLMBackend
    slots: int
    in_flight: int = 0
    chats: int = 0
    served: int = 0
    down_until: float = 0.0  # monotonic; 0 = up
    backoff_s: float = 0.0
    detail: str = ""
    failures: int = field(default=0)

    @property
    def name(self) -> str:
        return self.backend.host

    def usable(self, now: float) -> bool:
        return self.down_until <= now


class HostPool:
    """`LLMBackend` over several hosts of one kind (see the module docstring)."""

    def __init__(self, backends: Sequence[LLMBackend], slots: int = 1, retry_after_s: float = RETRY_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not backends:
            raise ValueError("a host pool needs at least one host")
        self._hosts = [_Host(b, max(1, slots)) for b in backends]
        self.kind = backends[0].kind
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._changed = asyncio.Condition()
        self._chat_host: _Host | None = None
        self.selection_reason = getattr(backends[0], "selection_reason", "")

    # ---- what others read ----------------------------------------------
    @property
    def host(self) -> str:
        return ", ".join(h.name for h in self._hosts)

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self._hosts]

    @property
    def backends(self) -> list[LLMBackend]:
        return [h.backend for h in self._hosts]

    @property
    def capacity(self) -> int:
        """Requests the pool serves at once when every host is up."""
        return sum(h.slots for h in self._hosts)

    @property
    def memory(self):  # noqa: ANN201 - the members' shared ContextMemory, if they have one
        return getattr(self._hosts[0].backend, "memory", None)

    def health(self) -> list[HostStatus]:
        now = self._clock()
        return [HostStatus(h.name, up=h.usable(now) and not h.detail, in_flight=h.in_flight, slots=h.slots,
                           served=h.served, detail=h.detail, retry_in_s=max(0.0, h.down_until - now),
                           chat=h is self._chat_host) for h in self._hosts]

    async def refresh(self) -> list[HostStatus]:
        """Ask every host (concurrently) whether it is up; updates `health()`."""
        infos = await asyncio.gather(*(h.backend.info() for h in self._hosts))
        for h, info in zip(self._hosts, infos):
            if info.reachable:
                self._mark_up(h)
            else:
                self._mark_down(h, info.detail or "unreachable")
        return self.health()

    # ---- host state -----------------------------------------------------
    def _mark_down(self, h: _Host, detail: str) -> None:
        h.failures += 1
        h.backoff_s = min(MAX_RETRY_S, h.backoff_s * 2 if h.backoff_s else self.retry_after_s)
        h.down_until = self._clock() + h.backoff_s
        h.detail = detail
        if self._chat_host is h:
            self._chat_host = None

    def _mark_up(self, h: _Host) -> None:
        h.down_until, h.backoff_s, h.detail, h.failures = 0.0, 0.0, "", 0

    def _all_down(self) -> BackendUnavailable:
        details = "; ".join(f"{h.name}: {h.detail or 'down'}" for h in self._hosts)
        return BackendUnavailable(self.host, details, hint="no host of the pool answers")

    # ---- choosing a host --------------------------------------------------
    async def _acquire(self, tried: set[int]) -> _Host:
        """A free slot on a healthy host not tried yet for this call; waits while all are busy."""
        async with self._changed:
            while True:
                now = self._clock()
                candidates = [h for i, h in enumerate(self._hosts) if i not in tried and h.usable(now)]
                if not candidates:
                    raise self._all_down()
                free = [h for h in candidates if h.in_flight < h.slots]
                if free:
                    best = min(free, key=lambda h: (h.chats > 0, h.in_flight / h.slots, h.served))
                    best.in_flight += 1
                    return best
                wake = min((h.down_until for h in self._hosts if h.down_until > now), default=None)
                timeout = None if wake is None else max(0.01, wake - now)
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass

    async def _release(self, h: _Host) -> None:
        async with self._changed:
            h.in_flight -= 1
            self._changed.notify_all()

    def _chat_target(self, tried: set[int]) -> _Host:
        now = self._clock()
        current = self._chat_host
        if current is not None and current.usable(now) and self._hosts.index(current) not in tried:
            return current
        for i, h in enumerate(self._hosts):
            if i not in tried and h.usable(now):
                self._chat_host = h
                return h
        raise self._all_down()

    # ---- the protocol -----------------------------------------------------
    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        tried: set[int] = set()
        while True:
            h = await self._acquire(tried)
            try:
                result = await h.backend.complete(messages, options)
            except BackendUnavailable as exc:
                self._mark_down(h, exc.detail or str(exc))
                tried.add(self._hosts.index(h))
                continue
            finally:
                await self._release(h)
            h.served += 1
            self._mark_up(h)
            return result

    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        tried: set[int] = set()
        while True:
            h = self._chat_target(tried)
            started = False
            h.chats += 1
            try:
                async for chunk in h.backend.chat(messages, options):
                    started = True
                    yield chunk
                h.served += 1
                return
            except BackendUnavailable as exc:
                if started:
                    raise
                self._mark_down(h, exc.detail or str(exc))
                tried.add(self._hosts.index(h))
            finally:
                h.chats -= 1

    async def info(self) -> BackendInfo:
        """Reachable when any host is; the models of the first reachable host; every host's state."""
        infos = await asyncio.gather(*(h.backend.info() for h in self._hosts))
        for h, info in zip(self._hosts, infos):
            if info.reachable:
                self._mark_up(h)
            elif not h.detail:
                self._mark_down(h, info.detail or "unreachable")
        up = [i for i in infos if i.reachable]
        status = self.health()
        down = [s for s in status if not s.up]
        detail = f"{len(up)} of {len(infos)} hosts up"
        if down:
            detail += "; down: " + ", ".join(f"{s.host} ({s.detail})" for s in down)
        if self.selection_reason:
            detail += f"; {self.selection_reason}"
        info = BackendInfo(kind=self.kind, host=self.host, reachable=bool(up), models=up[0].models if up else [],
                           detail=detail)
        info.hosts = status
        return info

    async def server_context(self, model: str) -> ServerContext | None:
        """The smallest context any healthy host states (the pool serves one model: plan for the smallest)."""
        found: list[ServerContext] = []
        now = self._clock()
        for h in self._hosts:
            read = getattr(h.backend, "server_context", None)
            if read is None or not h.usable(now):
                continue
            ctx = await read(model)
            if ctx is not None:
                found.append(ctx)
        return min(found, key=lambda c: c.size) if found else None

    async def aclose(self) -> None:
        await asyncio.gather(*(h.backend.aclose() for h in self._hosts), return_exceptions=True)
