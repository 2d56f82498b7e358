"""ArawnApp: opens the core, runs its scheduler in one worker, bridges engine events.

The app owns the background machinery; the main screen owns what is shown.
Nothing here waits on the LLM or the disk in a handler: the core is opened and
closed from workers, the engine's scheduler (`arawn_core.runtime`) runs the
compression jobs, idle-session ends and backend checks in one worker, and
engine events are posted to the screen as they are (`messages.EngineEvent`).
Process-wide tuning (frame rate, garbage collector) is the run path's choice
(`arawn_tui.__main__`), never an import's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar
from urllib.parse import urlsplit

from textual import work
from textual.app import App, InvalidThemeError
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from arawn_core import events as ev
from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.llm.base import BackendInfo, LLMBackend
from arawn_core.models import Workstream
from arawn_core.runtime import Scheduler
from arawn_tui import gc_pause
from arawn_tui import messages as m
from arawn_tui import workers as groups
from arawn_tui.commands import ArawnCommands
from arawn_tui.sanitize import one_line
from arawn_tui.screens.main import MainScreen
from arawn_tui.widgets.workstream_list import rows_that_fit

log = logging.getLogger(__name__)

FIRST_PAINT_WAIT_S = 2.0  # the first full backend check waits at most this long for the first screen
CORE_HEAD_START_S = 0.15
START_UP_OVER_S = 5.0  # the start-up counts as over by then at the latest (see first_screen_shown)


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

    def __init__(self, settings: Settings, backend: LLMBackend | None = None,
                 core: ArawnCore | None = None, tune_gc: bool = False) -> None:
        """`tune_gc`: the process is this app's (`arawn` itself): at the first screen, freeze what
        start-up built and make full collections rarer (see gc_pause); given back at unmount."""
        super().__init__()
        self.settings = settings
        self.backend = backend
        self.core: ArawnCore | None = core
        self.scheduler: Scheduler | None = None
        self.tune_gc = tune_gc
        self.main_screen: MainScreen
        self._warned_jobs: set[str] = set()
        self._paused_warned = False
        self._shutting_down = False
        self.first_screen_painted = asyncio.Event()  # set by the main screen once its first list is shown
        self.ready = False  # Textual's Ready: the start-up batch is over, paints from now on are shown
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

    @work(group=groups.CORE, exit_on_error=False)
    async def open_core(self) -> None:
        try:
            # The check of every workstream's files against the index (what a crash left) waits
            # until the first screen is up (see finish_open); every write waits for it.
            core = await ArawnCore.open(self.settings, self.backend, defer_recovery=True)
            # The first list comes with the news that the core is open: one hop less to a full screen.
            # Only what fits on screen (a row is at least ROW_MIN_LINES high): the rest is read after it.
            first = rows_that_fit(self.size.height)
            workstreams = await core.list_workstreams(limit=first)
            self._core_opened(core, workstreams, partial=len(workstreams) >= first)
        finally:
            self._core_settled.set()  # open or failed (worker_state_changed reports a failure)

    def on_ready(self) -> None:
        self.ready = True

    def first_screen_shown(self) -> None:
        """The main screen has painted its first list (or it never came): the start-up is over."""
        if not self.first_screen_painted.is_set():
            if self.tune_gc:
                gc_pause.freeze_and_resume()
            self.first_screen_painted.set()
            if self.core is not None:
                self.finish_open(self.core)

    @work(group=groups.CORE, exit_on_error=False)
    async def finish_open(self, core: ArawnCore) -> None:
        """The open's deferred recovery, once the first screen is up: it indexes what a crash left
        (the engine then says every workstream may have changed, and the lists are read anew)."""
        await core.finish_open()

    def _core_opened(self, core: ArawnCore, workstreams: list[Workstream] | None = None,
                     partial: bool = False) -> None:
        self.core = core
        core.events.subscribe(self._engine_event)
        for text in core.notices[:5]:  # what opening the store met (bad lines, a rebuilt index ...)
            self._notice(text)
        self.main_screen.post_message(m.CoreReady(workstreams, partial))
        if self.first_screen_painted.is_set():  # the first screen came up without the core (slow open)
            self.finish_open(core)
        self.scheduler = core.scheduler()
        self.run_scheduler(self.scheduler)  # jobs queued before the last quit (or a crash) resume now

    @work(group=groups.SCHEDULER, exit_on_error=False, description="background work")
    async def run_scheduler(self, scheduler: Scheduler) -> None:
        """The engine's scheduler, until close_core stops it."""
        await scheduler.run(first_health_check=self._before_first_backend_check,
                            first_claim=self.first_screen_painted.wait)

    async def _before_first_backend_check(self) -> None:
        core = self.core
        if core is None:
            return
        if core.backend.kind == "ollama" and await nothing_listens(core.backend.host):
            # Known without the HTTP client, whose import alone takes a few hundred ms at
            # start-up: the status line says so now; the full check follows.
            self._engine_event(ev.BackendChecked(
                BackendInfo(kind="ollama", host=core.backend.host, reachable=False, detail="connection refused"),
                core.model))
        # A full check that imports a client (in a thread) would slow the first paint down (one
        # interpreter lock): it waits until the first screen is up. The light probe does not.
        if not getattr(core.backend, "info_is_light", False):
            try:
                await asyncio.wait_for(self.first_screen_painted.wait(), FIRST_PAINT_WAIT_S)
            except asyncio.TimeoutError:
                pass

    def _engine_event(self, event: ev.Event) -> None:
        """Engine callback (runs inside whatever awaited the engine): only posts a message."""
        self.main_screen.post_message(m.EngineEvent(event))

    async def action_quit(self) -> None:
        await self.close_core()
        self.exit()

    async def on_unmount(self) -> None:
        if self.tune_gc:
            gc_pause.release()
        await self.close_core()

    async def close_core(self) -> None:
        """Stop the background work, then close the core.

        The scheduler stops first: the jobs in flight are cancelled and go back to
        pending. Then workers are cancelled or waited for as `arawn_tui.workers` says
        (a stopped reply is stored as interrupted). `core.close()` then ends live
        sessions if `end_sessions_on_quit`; their compression stays queued for next time.
        """
        core = self.core
        if core is None or self._shutting_down:
            return
        self._shutting_down = True
        if self.main_screen.is_attached:
            self.main_screen.status.activity = "closing…"
        if self.scheduler is not None:
            await self.scheduler.stop()
        pending = [w for w in self.workers if not w.is_finished and w.group != groups.CORE]
        for worker in pending:
            if worker.group in groups.CANCEL_ON_QUIT:
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

    # ---- toasts for what the engine did ---------------------------------------------------
    def on_engine_event(self, message: m.EngineEvent) -> None:
        event = message.event
        if isinstance(event, ev.JobCompleted):
            self._warned_jobs.discard(event.job_id)
            title = self.main_screen.workstream_title(event.workstream_id)
            if event.kind in ("reduce", "rebuild"):
                self.notify(f"Summary of {title} updated.", title="Compression done", markup=False)
            elif event.kind == "session":
                self.notify(f"Session of {title} summarized.", title="Compression done", markup=False)
        elif isinstance(event, ev.JobFailed):
            title = self.main_screen.workstream_title(event.workstream_id)
            if event.will_retry:
                if event.job_id not in self._warned_jobs:  # one toast per job, not one per retry
                    self._warned_jobs.add(event.job_id)
                    self.notify(f"{title}: {one_line(event.error, 300)} — retrying with backoff.",
                                title="Compression waiting", severity="warning", markup=False)
            else:
                self._warned_jobs.discard(event.job_id)
                self.notify(f"{title}: {one_line(event.error, 300)} — ctrl+r retries.",
                            title="Compression failed", severity="error", timeout=10, markup=False)
        elif isinstance(event, ev.JobQueued) and self.scheduler is not None and not self.scheduler.backend_up:
            self._warn_paused()
        elif isinstance(event, ev.JobsPaused) and self.main_screen.status.queue:
            self._warn_paused()
        elif isinstance(event, ev.JobsResumed):
            self._paused_warned = False
        elif isinstance(event, ev.Notice):
            self._notice(event.text)
        elif isinstance(event, ev.IdleSessionsEnded):
            self.notify(f"{event.count} idle session{'s' if event.count != 1 else ''} ended: compressing.")

    def _notice(self, text: str) -> None:
        """A damaged file or index, said where (file and line): the rest is shown as usual."""
        self.notify(one_line(text, 400), title="Data files", severity="warning", timeout=10, markup=False)

    def _warn_paused(self) -> None:
        if not self._paused_warned:  # once until the backend is back
            self._paused_warned = True
            self.notify("The LLM backend is unreachable: compression waits, and resumes when it is back.",
                        title="Compression waiting", severity="warning", markup=False)

    # ---- one place for worker failures --------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        error = worker.error
        log.error("worker %s (%s) failed", worker.name, worker.group, exc_info=error)
        if worker.group == groups.CORE:
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
