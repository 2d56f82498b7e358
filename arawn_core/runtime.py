"""The scheduler: the engine's background work, in one place for the TUI and the CLI.

It owns
- job concurrency: at most `[workstream.compression] max_jobs` compression jobs
  run at once (the LLM calls they make together are bounded separately, by
  `max_concurrency`, inside the summarizer);
- retry wake-ups: with nothing to claim it sleeps until the next pending job is
  due, a new job is queued on this core (`JobQueued`), or a job ends; at most
  `POLL_S`, so work queued by another process is seen too;
- idle-session ending: every so often (a quarter of the timeout, at most
  `IDLE_EVERY_MAX_S`) sessions idle past `session_timeout_minutes` are ended;
- backend health: checked every `HEALTH_EVERY_S`; while the backend is down
  (a check says so, or a job failed with `BackendUnavailable`) no job is
  claimed, it is checked every `DOWN_RECHECK_S` and at once when new work
  comes (a job queued, a retry asked for), and claiming resumes when a check
  finds it back.
Each of these is published on `core.events` (`BackendChecked`, `JobsPaused`,
`JobsResumed`, `IdleSessionsEnded`, `QueueLength`, and the job events the
runner publishes).

Two ways to run it: `run()` until `stop()` (the TUI, in one worker), or
`drain()` until the queue has nothing left for it (`jobs run`, `compress`,
`session end --wait`, `import --compress`). `stop()` cancels the jobs in
flight; the runner puts each back to pending, so a quit leaves them queued.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Awaitable, Callable, ClassVar

from arawn_core import events as ev
from arawn_core.errors import BackendUnavailable

if TYPE_CHECKING:
    from arawn_core.compression.runner import JobOutcome
    from arawn_core.core import ArawnCore
    from arawn_core.models import CompressionJob

log = logging.getLogger(__name__)


class Scheduler:
    # Class attributes so tests can shorten them.
    POLL_S: ClassVar[float] = 2.0  # the longest sleep with jobs pending or none (other processes' work)
    HEALTH_EVERY_S: ClassVar[float] = 15.0
    DOWN_RECHECK_S: ClassVar[float] = 5.0  # while the backend is down: it is looked for this often
    IDLE_EVERY_MAX_S: ClassVar[float] = 30.0

    def __init__(self, core: ArawnCore, max_jobs: int | None = None) -> None:
        self.core = core
        self.max_jobs = max(1, max_jobs or core.settings.workstream.compression.max_jobs)
        self.backend_up = True  # assumed until a check or a job says otherwise
        self._running: dict[asyncio.Task[JobOutcome], CompressionJob] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._recheck = asyncio.Event()  # new work while the backend is down: look for it now
        self._active = 0  # run()/drain() calls under way
        self._idle_done = asyncio.Event()
        self._idle_done.set()
        self._last_length: int | None = None
        self._before_claim: Callable[[], Awaitable[object]] | None = None  # see run()

    # ---- state -------------------------------------------------------------------
    @property
    def running_jobs(self) -> list[CompressionJob]:
        return list(self._running.values())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """Look for due work now (a job was queued or retried elsewhere in this process)."""
        self._wake.set()

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, (ev.JobQueued, ev.WorkstreamUpdated)):  # queued, or retried
            self._wake.set()
            if not self.backend_up:
                self._recheck.set()

    def _set_backend(self, up: bool, reason: str = "") -> None:
        if up == self.backend_up:
            return
        self.backend_up = up
        if up:
            self.core.events.publish(ev.JobsResumed())
            self._wake.set()
        else:
            self.core.events.publish(ev.JobsPaused(reason or "the LLM backend is unreachable"))
            self._recheck.set()  # the health loop moves to the shorter while-down period now

    # ---- the two ways to run ---------------------------------------------------------
    async def run(self, first_health_check: Callable[[], Awaitable[object]] | None = None,
                  first_claim: Callable[[], Awaitable[object]] | None = None) -> None:
        """Work jobs, end idle sessions and watch the backend until `stop()`.

        `first_health_check`, if given, is awaited before the first backend check, and
        `first_claim` before the first job is claimed (the TUI holds them back until the first
        screen is painted: a claim is a write, and the open's deferred recovery goes first)."""
        self._before_claim = first_claim
        tasks = [asyncio.create_task(self._health_loop(first_health_check), name="arawn-health"),
                 asyncio.create_task(self._idle_loop(), name="arawn-idle")]
        try:
            await self._work(None, drain=False, wait_for_retries=True, stop_on_unreachable=False)
        finally:
            tasks[0].cancel()  # a check only reads: safe to cancel mid-way
            # the idle loop may be writing (ending a session): it finishes, then sees the stop
            await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, workstream_id: str | None = None, stop_on_unreachable: bool = True,
                    wait_for_retries: bool = True) -> list[JobOutcome]:
        """Work due jobs (of one workstream, or all) until none is left, waiting out retry
        backoff if asked; with `stop_on_unreachable`, stop claiming at the first job the
        backend could not be reached for (the rest stays queued)."""
        return await self._work(workstream_id, drain=True, wait_for_retries=wait_for_retries,
                                stop_on_unreachable=stop_on_unreachable)

    async def stop(self) -> None:
        """Stop claiming, cancel the jobs in flight (each goes back to pending) and wait
        until `run()`/`drain()` have returned. Idempotent."""
        self._stop.set()
        self._wake.set()
        self._recheck.set()
        await self._cancel_running()
        while self._active or not self._idle_done.is_set():
            await asyncio.sleep(0.01)

    # ---- jobs -------------------------------------------------------------------------
    async def _work(self, workstream_id: str | None, drain: bool, wait_for_retries: bool,
                    stop_on_unreachable: bool) -> list[JobOutcome]:
        core = self.core
        outcomes: list[JobOutcome] = []
        pause_on_down = not drain or stop_on_unreachable
        self._active += 1
        core.events.subscribe(self._on_event)
        try:
            while not self.stopping:
                self._wake.clear()
                claimed = await self._fill(workstream_id)
                outcomes.extend(self._collect(pause_on_down))
                if not drain:
                    self._publish_queue_length(await core.queue.open_count())
                if drain and stop_on_unreachable and not self.backend_up:
                    await self._finish_running(outcomes)
                    return outcomes
                if claimed:
                    continue  # more may be due
                due = await core.queue.next_due_in(workstream_id) if self.backend_up else None  # None: none pending
                if drain and not self._running and (due is None or not wait_for_retries):
                    return outcomes
                if due is None or due <= 0 or len(self._running) >= self.max_jobs:
                    # Nothing pending, or due but not claimable (a reduce waits for its sessions' jobs),
                    # or every slot taken: a job's end, a new job or the poll wakes us.
                    timeout = self.POLL_S
                else:
                    timeout = min(due + 0.01, self.POLL_S)  # the next retry's due time
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            await self._finish_running(outcomes)
            return outcomes
        except asyncio.CancelledError:  # our own caller was cancelled (e.g. its worker, at exit)
            await asyncio.shield(self._cancel_running())
            raise
        finally:
            core.events.unsubscribe(self._on_event)
            self._active -= 1

    async def _fill(self, workstream_id: str | None) -> int:
        """Claim due jobs up to `max_jobs` running; returns how many were claimed."""
        queue = self.core.queue
        claimed = 0
        while len(self._running) < self.max_jobs and self.backend_up and not self.stopping:
            if not await queue.open_count(workstream_id):  # a read: an idle poll never opens a write transaction
                break
            if self._before_claim is not None:
                wait, self._before_claim = self._before_claim, None
                await self._unless_stopped(wait())
                continue  # the world may have changed meanwhile (stopped, backend down)
            job = await queue.claim(workstream_id)
            if job is None:
                break
            if self.stopping:  # claimed as the stop came: back to pending, no attempt used
                await queue.release(job)
                break
            task = asyncio.create_task(self.core.run_job(job), name=f"arawn-job-{job.id}")
            task.add_done_callback(lambda _t: self._wake.set())
            self._running[task] = job
            claimed += 1
        return claimed

    async def _unless_stopped(self, awaitable: Awaitable[object]) -> None:
        """Await it, or stop waiting as soon as `stop()` is called."""
        waits = {asyncio.ensure_future(awaitable), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _collect(self, pause_on_down: bool = True) -> list[JobOutcome]:
        """Outcomes of the jobs that ended; a backend that could not be reached pauses claiming."""
        done: list[JobOutcome] = []
        for task in [t for t in self._running if t.done()]:
            job = self._running.pop(task)
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:  # the runner records every job error itself: this is a bug
                log.error("compression job %s raised", job.id, exc_info=exc)
                continue
            outcome = task.result()
            done.append(outcome)
            if pause_on_down and not outcome.ok and isinstance(outcome.error, BackendUnavailable):
                self._set_backend(False, str(outcome.error))
        return done

    async def _cancel_running(self) -> None:
        """Cancel the jobs in flight and wait for each to put itself back to pending."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            self._running.pop(task, None)

    async def _finish_running(self, outcomes: list[JobOutcome]) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        outcomes.extend(self._collect())

    def _publish_queue_length(self, length: int) -> None:
        if length != self._last_length:
            self._last_length = length
            self.core.events.publish(ev.QueueLength(length))

    # ---- health and idle sessions --------------------------------------------------------
    async def _health_loop(self, first: Callable[[], Awaitable[object]] | None) -> None:
        if first is not None:
            await first()
        core = self.core
        while not self.stopping:
            info = await core.backend_info()
            core.events.publish(ev.BackendChecked(info, core.model))
            self._set_backend(info.reachable, info.detail)
            self._recheck.clear()
            every = self.HEALTH_EVERY_S if self.backend_up else min(self.HEALTH_EVERY_S, self.DOWN_RECHECK_S)
            try:
                await asyncio.wait_for(self._recheck.wait(), every)  # set by new work while down, or stop
            except asyncio.TimeoutError:
                pass

    async def _idle_loop(self) -> None:
        minutes = self.core.settings.workstream.session_timeout_minutes
        if minutes <= 0:
            return
        every = max(1.0, min(self.IDLE_EVERY_MAX_S, minutes * 60 / 4))
        while not self.stopping:
            try:
                await asyncio.wait_for(self._stop.wait(), every)
                return
            except asyncio.TimeoutError:
                pass
            self._idle_done.clear()
            try:
                ended = await self.core.end_idle_sessions()
            except Exception:  # a failed check is tried again next time
                log.exception("ending idle sessions failed")
                ended = []
            finally:
                self._idle_done.set()
            if ended:
                self.core.events.publish(ev.IdleSessionsEnded(len(ended)))
