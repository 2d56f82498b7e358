"""ArawnApp: opens the core, runs compression workers, bridges engine events.

The app owns the background machinery; the main screen owns what is shown.
Nothing here waits on the LLM or the disk in a handler: the core is opened,
polled and closed from workers, and engine events become Textual messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar
from urllib.parse import urlsplit

from textual import on, work
from textual.app import App, InvalidThemeError
from textual.binding import Binding
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from arawn_core import events as ev
from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.llm.base import BackendInfo, LLMBackend
from arawn_core.llm.errors import BackendUnavailable
from arawn_core.models import Workstream
from arawn_tui import messages as m
from arawn_tui import gc_pause
from arawn_tui.commands import ArawnCommands
from arawn_tui.sanitize import one_line
from arawn_tui.screens.main import MainScreen

log = logging.getLogger(__name__)

COMPRESSION = "compression"
FIRST_PAINT_WAIT_S = 2.0  # the first full backend check waits at most this long for the first screen
CORE_HEAD_START_S = 0.15
START_UP_OVER_S = 5.0  # the garbage collector resumes by then at the latest (see gc_pause)
# Worker groups that only read, wait on the LLM or wait on a dialog: safe to cancel at quit.
CANCEL_ON_QUIT = frozenset({"chat", "dialog", "refresh", "load-list", "load-ws", "load-session", "poll", "queue", "search"})


class ArawnApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "arawn"
    # Only our provider: it lists every action (incl. theme, keys, quit) in a fixed order.
    COMMANDS = {ArawnCommands}
    BINDINGS: ClassVar = [
        Binding("ctrl+q", "quit", "Quit", id="arawn.quit", priority=True,
                tooltip="Quit (ends live sessions; queued compressions resume next time)"),
        Binding("ctrl+p", "command_palette", "Palette", id="arawn.palette", priority=True, show=False,
                tooltip="Every action, searchable"),
    ]

    # How often the app looks for due jobs (retries after backoff), idle sessions,
    # and the backend's health. Class attributes so tests can shorten them.
    JOB_POLL_S: ClassVar[float] = 2.0
    IDLE_POLL_MAX_S: ClassVar[float] = 30.0
    BACKEND_POLL_S: ClassVar[float] = 15.0

    def __init__(self, settings: Settings, backend: LLMBackend | None = None,
                 core: ArawnCore | None = None) -> None:
        super().__init__()
        gc_pause.pause()  # resumed once the first screen is painted (see first_screen_shown)
        self.settings = settings
        self.backend = backend
        self.core: ArawnCore | None = core
        self.main_screen: MainScreen
        self._poll_timers: list[Timer] = []
        self._warned_jobs: set[str] = set()
        self._shutting_down = False
        self._workers_in_job: set[Worker] = set()
        self.first_screen_painted = asyncio.Event()  # set by the main screen once its first list is shown
        self._core_settled = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------
    async def on_mount(self) -> None:
        try:
            self.theme = self.settings.ui.theme
        except InvalidThemeError:  # an unknown theme name must not stop the app
            self.notify(f"Unknown theme {self.settings.ui.theme!r}; using the default.", severity="warning",
                        markup=False)
        self.set_timer(START_UP_OVER_S, self.first_screen_shown)  # should the first list never come
        self.main_screen = MainScreen()
        given = self.core  # a core passed in (tests) is already open
        if given is None:
            self.open_core()
            # A head start: opening the data dir is a few quick queries, each a round trip
            # through the event loop, and those slow down to a crawl once the loop is busy
            # building the screen. With the core open first, the first screen comes up complete;
            # a slow disk (or a database locked by another process) delays it CORE_HEAD_START_S
            # at most, then the screen is built while the core opens.
            try:
                await asyncio.wait_for(self._core_settled.wait(), CORE_HEAD_START_S)
            except asyncio.TimeoutError:
                pass
        await self.push_screen(self.main_screen)
        if given is not None:
            self._core_opened(given)

    @work(group="core", exit_on_error=False)
    async def open_core(self) -> None:
        try:
            core = await ArawnCore.open(self.settings, self.backend)
            # The first list comes with the news that the core is open: one hop less to a full screen.
            # Only what fits on screen (a row is at least one line): the rest is read after it.
            first = self.size.height + 1
            workstreams = await core.list_workstreams(limit=first)
            self._core_opened(core, workstreams, partial=len(workstreams) >= first)
        finally:
            self._core_settled.set()  # open or failed (worker_state_changed reports a failure)

    def first_screen_shown(self) -> None:
        """The main screen has painted its first list (or it never came): the start-up is over."""
        if not self.first_screen_painted.is_set():
            gc_pause.freeze_and_resume()
            self.first_screen_painted.set()

    def _core_opened(self, core: ArawnCore, workstreams: list[Workstream] | None = None,
                     partial: bool = False) -> None:
        self.core = core
        core.events.subscribe(self._engine_event)
        self.main_screen.post_message(m.CoreReady(workstreams, partial))
        self.check_backend(first=True)
        self.check_queue()
        self.pump_jobs()  # jobs queued before the last quit (or a crash) resume now
        minutes = self.settings.workstream.session_timeout_minutes
        self._poll_timers = [
            self.set_interval(self.JOB_POLL_S, self.pump_jobs, name="job-poll"),
            self.set_interval(self.BACKEND_POLL_S, self.check_backend, name="backend-poll"),
        ]
        if minutes > 0:
            idle_every = max(1.0, min(self.IDLE_POLL_MAX_S, minutes * 60 / 4))
            self._poll_timers.append(self.set_interval(idle_every, self.check_idle_sessions, name="idle-poll"))

    def _engine_event(self, event: ev.Event) -> None:
        """Engine callback (runs inside whatever awaited the engine): only posts a message."""
        message = m.event_to_message(event)
        if message is not None:
            self.main_screen.post_message(message)

    async def action_quit(self) -> None:
        await self.close_core()
        self.exit()

    async def on_unmount(self) -> None:
        gc_pause.release()
        await self.close_core()

    async def close_core(self) -> None:
        """Stop the background work, then close the core.

        Workers inside an LLM call (a reply, a compression job) are cancelled:
        a stopped reply is stored as interrupted, a stopped job goes back to
        pending. Short database writes (ending a session, claiming a job) are
        waited for, not cancelled: a cancel landing inside one could leave the
        connection mid-transaction. `core.close()` then ends live sessions if
        `end_sessions_on_quit`; their compression stays queued for next time.
        """
        core = self.core
        if core is None or self._shutting_down:
            return
        self._shutting_down = True
        if self.main_screen.is_attached:
            self.main_screen.status.activity = "closing…"
        for timer in self._poll_timers:
            timer.stop()
        pending = [w for w in self.workers if not w.is_finished and w.group != "core"]
        for worker in pending:
            if worker.group in CANCEL_ON_QUIT or worker in self._workers_in_job:
                worker.cancel()
        # A cancelled worker's wait() raises WorkerCancelled: that is the expected end here.
        await asyncio.gather(*(worker.wait() for worker in pending), return_exceptions=True)
        core.events.unsubscribe(self._engine_event)
        try:
            await core.close()
        except Exception:  # at exit there is no screen left to show it; recovery runs at next start
            log.exception("closing the core failed; unfinished work is recovered at the next start")
        finally:
            self.core = None

    # ---- compression workers -------------------------------------------------------
    def pump_jobs(self) -> None:
        """Start one more job worker if below `max_concurrency` (a worker that finds
        work asks for another, so the pool grows only while there is work)."""
        if self.core is None or self._shutting_down:
            return
        limit = self.settings.workstream.compression.max_concurrency
        running = sum(1 for w in self.workers if w.group == COMPRESSION and not w.is_finished)
        if running < limit:
            self.work_jobs()

    @work(group=COMPRESSION, exit_on_error=False, description="compression jobs")
    async def work_jobs(self) -> None:
        """Claim and run due jobs until none is due. Only `run_job` is ever cancelled (see close_core)."""
        worker = get_current_worker()
        while (core := self.core) is not None and not self._shutting_down:
            if not await core.queue_length():  # a read: the idle poll never opens a write transaction
                return
            job = await core.claim_job(None)
            if job is None or self._shutting_down:
                return  # a job claimed while quitting stays `running`; start-up puts it back to pending
            self.call_later(self.pump_jobs)
            self._workers_in_job.add(worker)
            try:
                outcome = await core.run_job(job)
            finally:
                self._workers_in_job.discard(worker)
            if not outcome.ok and isinstance(outcome.error, BackendUnavailable):
                return  # don't hammer a down backend; the poll retries when the job is due

    @on(m.JobScheduled)
    def job_scheduled(self) -> None:
        self.pump_jobs()

    @on(m.JobFinished)
    def job_finished(self, message: m.JobFinished) -> None:
        title = self.main_screen.workstream_title(message.workstream_id)
        if message.ok:
            self._warned_jobs.discard(message.job_id)
            if message.kind in ("reduce", "rebuild"):
                self.notify(f"Summary of {title} updated.", title="Compression done", markup=False)
            elif message.kind == "session":
                self.notify(f"Session of {title} summarized.", title="Compression done", markup=False)
        elif message.will_retry:
            if message.job_id not in self._warned_jobs:  # one toast per job, not one per retry
                self._warned_jobs.add(message.job_id)
                self.notify(f"{title}: {one_line(message.error, 300)} — retrying with backoff.",
                            title="Compression waiting", severity="warning", markup=False)
        else:
            self._warned_jobs.discard(message.job_id)
            self.notify(f"{title}: {one_line(message.error, 300)} — ctrl+r retries.",
                        title="Compression failed", severity="error", timeout=10, markup=False)
        self.check_queue()

    # ---- periodic checks ----------------------------------------------------------------
    @work(group="poll", exclusive=True, exit_on_error=False)
    async def check_backend(self, first: bool = False) -> None:
        core = self.core
        if core is None:
            return
        if first:
            if core.backend.kind == "ollama" and await nothing_listens(core.backend.host):
                # Known without the HTTP client, whose import alone takes a few hundred ms at
                # start-up: the status line says so now; the full check below follows.
                self.main_screen.post_message(m.BackendChecked(
                    BackendInfo(kind="ollama", host=core.backend.host, reachable=False, detail="connection refused"),
                    core.model))
            # A full check that imports a client (in a thread) would slow the first paint down (one
            # interpreter lock): it waits until the first screen is up. The light probe does not.
            if not getattr(core.backend, "info_is_light", False):
                try:
                    await asyncio.wait_for(self.first_screen_painted.wait(), FIRST_PAINT_WAIT_S)
                except asyncio.TimeoutError:
                    pass
        info = await core.backend_info()
        self.main_screen.post_message(m.BackendChecked(info, core.model))

    @work(group="queue", exclusive=True, exit_on_error=False)
    async def check_queue(self) -> None:
        core = self.core
        if core is not None:
            self.main_screen.post_message(m.QueueLength(await core.queue_length()))

    def check_idle_sessions(self) -> None:
        # Not `exclusive`: a new check must not cancel one that is writing.
        if not any(w.group == "idle" and not w.is_finished for w in self.workers):
            self.end_idle_sessions()

    @work(group="idle", exit_on_error=False)
    async def end_idle_sessions(self) -> None:
        core = self.core
        if core is None or self._shutting_down:
            return
        ended = await core.end_idle_sessions()
        if ended:
            self.notify(f"{len(ended)} idle session{'s' if len(ended) != 1 else ''} ended: compressing.")

    # ---- one place for worker failures --------------------------------------------------
    @on(Worker.StateChanged)
    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        error = worker.error
        log.error("worker %s (%s) failed", worker.name, worker.group, exc_info=error)
        if worker.group == "core":
            self.main_screen.status.activity = f"cannot open the data dir: {one_line(str(error), 200)}"
        self.notify(f"{worker.description or worker.name or worker.group}: {type(error).__name__}: "
                    f"{one_line(str(error), 300)}", title="Something went wrong", severity="error",
                    timeout=10, markup=False)


async def nothing_listens(host: str, timeout_s: float = 0.5) -> bool:
    """True when a connection to the Ollama `host` is refused: nothing listens there.

    A timeout or any other answer is not proof of anything (False): the full check decides."""
    parts = urlsplit(host if "://" in host else f"http://{host}")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 11434), timeout_s)
    except ConnectionRefusedError:
        return True
    except (OSError, asyncio.TimeoutError, ValueError):
        return False
    writer.close()
    return False
