"""The main screen: the sidebar (left), the chat pane (centre), the summary panel (right).

The screen puts together what its parts show. Each part turns its own widget
events into messages that say what happened (`Sidebar.WorkstreamSelected`,
`ChatPane.ScratchChosen`, ...), handled here as `on_sidebar_...`,
`on_chat_pane_...`. Loading happens in workers that post the data as messages
(`arawn_tui.messages`); handlers put it on the parts. Engine events arrive as
`EngineEvent` messages and bubble on to the app (toasts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from arawn_core import events as ev
from arawn_core.errors import ArawnError, NotFound
from arawn_core.models import Session, WorkstreamState
from arawn_tui import messages as m
from arawn_tui import workers as groups
from arawn_tui.formatting import local_time
from arawn_tui.screens.memory_actions import MemoryActions
from arawn_tui.sanitize import inert, one_line
from arawn_tui.screens.recall_actions import RecallActions
from arawn_tui.widgets.chat_input import ChatInput
from arawn_tui.widgets.chat_pane import EMPTY_HINT, LIVE_HINT, READ_ONLY_PLACEHOLDER, ChatPane  # noqa: F401
from arawn_tui.widgets.chat_view import ChatMessage, ChatView
from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.sidebar import SELECT_SETTLE_S, Sidebar  # noqa: F401
from arawn_tui.widgets.status_bar import StatusBar
from arawn_tui.widgets.summary_panel import SummaryPanel
from arawn_tui.widgets.workstream_list import WorkstreamList

if TYPE_CHECKING:
    from textual.worker import Worker

    from arawn_core.core import ArawnCore
    from arawn_core.search import SearchHit
    from arawn_tui.app import ArawnApp

# The search screen and the dialogs are imported when first opened, not before the first
# screen (about 40 ms of imports at start-up).

REFRESH_DELAY_S = 0.1  # coalesce bursts of engine events into one reload


class MainScreen(MemoryActions, RecallActions, Screen[None]):
    # Priority: the chat input (a TextArea) binds ctrl+e / ctrl+k itself.
    BINDINGS = [
        Binding("ctrl+n", "new_workstream", "New", id="arawn.new_workstream", priority=True,
                tooltip="Create a workstream"),
        Binding("ctrl+e", "end_session", "End session", id="arawn.end_session", priority=True,
                tooltip="End the live session; its compression starts in the background"),
        Binding("ctrl+k", "compress", "Compress", id="arawn.compress", priority=True,
                tooltip="Compress the selected workstream now"),
        Binding("ctrl+r", "retry", "Retry", id="arawn.retry", priority=True,
                tooltip="Retry failed compression jobs"),
        Binding("ctrl+f", "search", "Search", id="arawn.search", priority=True, show=False,
                tooltip="Search conversations and summaries"),
        # One key, two meanings; check_action enables the one that applies (the footer shows it).
        Binding("escape", "stop", "Stop reply", id="arawn.stop", tooltip="Stop the reply being written"),
        Binding("escape", "back_to_live", "Back to chat", id="arawn.back_to_live",
                tooltip="Leave the read-only transcript"),
        Binding("f2", "toggle_summary", "Summary", id="arawn.toggle_summary", show=False,
                tooltip="Show or hide the summary panel"),
        Binding("f3", "pins", "Pins", id="arawn.pins", show=False,
                tooltip="Pinned notes: add, edit, remove"),
        Binding("f4", "summary_history", "History", id="arawn.summary_history", show=False,
                tooltip="Every version of the workstream summary, with diffs and revert"),
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self._ws_id: str | None = None  # the workstream shown
        self.viewing_session: str | None = None  # an ended session shown read-only
        self._dirty: set[str] = set()
        self._refresh_scheduled = False
        self._refresh_running = False
        self.loaded = False  # the first workstream list is set (Painted follows its first frame)
        self._rest_of_list_due = False  # the first list was only a screenful: the rest follows its paint
        self._escape_state = (False, False)
        self.search_query = ""  # the last search, offered again by the next ctrl+f
        self.search_this_workstream = False
        # the parts, kept (not queried): they are reached on every event, also while the screen closes
        self._sidebar = Sidebar(id="sidebar")
        self._chat_pane = ChatPane(id="centre")

    # ---- layout --------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            yield self._sidebar
            yield self._chat_pane
            yield SummaryPanel(id="summary")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SummaryPanel).display = self.app.settings.ui.show_summary_panel
        self.query_one(ChatInput).focus()

    # ---- accessors -----------------------------------------------------------------
    @property
    def arawn(self) -> ArawnApp:
        return self.app  # type: ignore[return-value]

    @property
    def core(self) -> ArawnCore | None:
        return self.arawn.core

    @property
    def ws_id(self) -> str | None:
        return self._ws_id

    @ws_id.setter
    def ws_id(self, value: str | None) -> None:
        self._ws_id = value
        self.chat_pane.workstream_id = value  # where the next message goes

    @property
    def sidebar(self) -> Sidebar:
        return self._sidebar

    @property
    def chat_pane(self) -> ChatPane:
        return self._chat_pane

    @property
    def workstream_list(self) -> WorkstreamList:
        return self.query_one(WorkstreamList)

    @property
    def session_list(self) -> SessionList:
        return self.query_one(SessionList)

    @property
    def chat(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    @property
    def summary_panel(self) -> SummaryPanel:
        return self.query_one(SummaryPanel)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def reply_worker(self) -> Worker | None:
        return self.chat_pane.reply_worker

    @property
    def replying(self) -> bool:
        return self.chat_pane.replying

    def _need_core(self) -> ArawnCore | None:
        if self.core is None:
            self.notify("Still opening the data dir…", severity="warning")
        return self.core

    def _need_workstream(self) -> str | None:
        if self.ws_id is None:
            self.notify("Select a workstream first (ctrl+n creates one).", severity="warning")
        return self.ws_id

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.replying
        if action == "back_to_live":
            return not self.replying and self.viewing_session is not None
        return True

    def _update_stop_key(self) -> None:
        """Show escape in the footer only while it does something; refreshing the bindings
        rebuilds the footer, so only do it when that changes."""
        state = (self.replying, self.viewing_session is not None)
        if state != self._escape_state:
            self._escape_state = state
            self.refresh_bindings()

    def _set_title(self) -> None:
        pane = self.chat_pane
        if self.ws_id is None:
            pane.set_title(None)
        else:
            when = None
            if self.viewing_session is not None:
                session = self.session_list.sessions.get(self.viewing_session)
                when = local_time(session.started_at) if session else ""
            pane.set_title(self.workstream_list.title_of(self.ws_id), when)
        self._update_stop_key()

    # ---- start-up --------------------------------------------------------------------
    async def on_core_ready(self, message: m.CoreReady) -> None:
        self.status.activity = ""
        if message.workstreams is None:
            self.load_workstreams()
        else:
            self._rest_of_list_due = message.partial  # read once the first screenful is painted
            await self.on_workstreams_loaded(m.WorkstreamsLoaded(message.workstreams))

    @work(group=groups.LOAD_LIST, exclusive=True, exit_on_error=False)
    async def load_workstreams(self, select: str | None = None) -> None:
        core = self.core
        assert core is not None
        self.post_message(m.WorkstreamsLoaded(await core.list_workstreams(), select))

    async def on_workstreams_loaded(self, message: m.WorkstreamsLoaded) -> None:
        select = message.select or self.sidebar.workstream_id or self.ws_id  # the highlight as it is now
        self.sidebar.set_workstreams(message.workstreams, select)
        self.loaded = True
        if not message.workstreams:
            self.ws_id = None
            self.summary_panel.show_workstream(None, None)
            self.summary_panel.show_session(None, None)
            self._set_title()
            await self.chat_pane.show_empty()

    def on_workstream_list_painted(self, message: WorkstreamList.Painted) -> None:
        """The first list is on screen: the start-up is over (the app's deferred work may run),
        and the rest of the list (beyond the first screenful) is read now."""
        wl = self.workstream_list
        if wl.first_paint_seen or not self.arawn.ready:  # painted inside the start-up batch: not shown
            return
        wl.first_paint_seen = True
        self.arawn.first_screen_shown()
        if self._rest_of_list_due:
            self._rest_of_list_due = False
            self.load_workstreams()

    # ---- the sidebar -----------------------------------------------------------------
    def on_sidebar_workstream_highlighted(self, message: Sidebar.WorkstreamHighlighted) -> None:
        if message.workstream_id != self.ws_id:
            self.ws_id = message.workstream_id
            self.viewing_session = None
            self._set_title()

    def on_sidebar_workstream_selected(self, message: Sidebar.WorkstreamSelected) -> None:
        if message.workstream_id == self.ws_id:
            self.load_workstream(message.workstream_id)

    def on_sidebar_session_highlighted(self, message: Sidebar.SessionHighlighted) -> None:
        self.load_session_summary(message.session)

    def on_sidebar_session_selected(self, message: Sidebar.SessionSelected) -> None:
        session = message.session
        if session.active:
            self.action_back_to_live()
        else:
            self.viewing_session = session.id
            self._set_title()
            self.load_workstream(session.workstream_id, session.id, with_lists=False)

    # ---- loading a workstream (the one place) ------------------------------------------------
    @work(group=groups.LOAD_WORKSTREAM, exclusive=True, exit_on_error=False)
    async def load_workstream(self, ws_id: str, session_id: str | None = None, found: str | None = None,
                              opened: bool = False, with_lists: bool = True) -> None:
        """Everything shown for one workstream, loaded together so the screen puts it up in one
        layout pass: its sessions, its summary, and a transcript: the live session's chat, or
        (`session_id`) that session's, read-only once it ended and scrolled to `found` (a
        message id). `opened`: a search hit asked for it; `with_lists` False: the transcript alone."""
        core = self.core
        assert core is not None
        if not with_lists and session_id is not None:
            session = await core.get_session(session_id)
            self.post_message(m.TranscriptLoaded(ws_id, session.id, await core.session_messages(session.id),
                                                 read_only=not session.active))
            return
        try:
            ws = await core.get_workstream(ws_id)
        except NotFound:
            self.post_message(m.WorkstreamLoaded(ws_id, None))
            return
        sessions = await core.list_sessions(ws_id)
        summary = await core.workstream_summary(ws_id)
        session = next((s for s in sessions if s.id == session_id), None)
        if session is not None:
            session_summary = m.SessionSummaryLoaded(ws_id, session, await core.session_summary(session.id))
            transcript = m.TranscriptLoaded(ws_id, session.id, await core.session_messages(session.id),
                                            read_only=not session.active, opened=opened, found=found)
        else:
            session_summary = m.SessionSummaryLoaded(ws_id, None, None)
            live = next((s for s in sessions if s.active), None)
            history = await core.session_messages(live.id) if live else []
            transcript = m.TranscriptLoaded(ws_id, live.id if live else None, history, opened=opened)
        self.post_message(m.WorkstreamOpened(
            ws_id, m.SessionsLoaded(ws_id, sessions, select=session.id if session else None),
            m.WorkstreamSummaryLoaded(ws_id, ws, summary), session_summary, transcript))

    async def on_workstream_opened(self, message: m.WorkstreamOpened) -> None:
        if message.workstream_id != self.ws_id:
            return  # the highlight moved on meanwhile
        # No await between these: the screen lays them out and repaints once. (Not a
        # batch_update around the transcript's mount: that would hold back every frame,
        # a typed key's included, until the mount is done.)
        self.on_sessions_loaded(message.sessions)
        self.on_workstream_summary_loaded(message.summary)
        self.on_session_summary_loaded(message.session_summary)
        if message.transcript is not None:
            await self.on_transcript_loaded(message.transcript)

    def on_sessions_loaded(self, message: m.SessionsLoaded) -> None:
        if message.workstream_id == self.ws_id:
            self.sidebar.show_sessions(message.workstream_id, message.sessions, message.select)

    def on_workstream_summary_loaded(self, message: m.WorkstreamSummaryLoaded) -> None:
        if message.workstream_id == self.ws_id:
            self.summary_panel.show_workstream(message.workstream, message.summary)

    def on_session_summary_loaded(self, message: m.SessionSummaryLoaded) -> None:
        if message.workstream_id == self.ws_id:
            self.summary_panel.show_session(message.session, message.summary)

    async def on_transcript_loaded(self, message: m.TranscriptLoaded) -> None:
        if message.workstream_id != self.ws_id:
            return
        replying_here = self.chat_pane.replying_in(self.ws_id)
        if message.opened:  # a search hit: show this session, whatever was on screen
            self.viewing_session = message.session_id if message.read_only else None
            if not message.read_only and replying_here:
                self._set_title()  # its live chat is on screen, a reply streaming into it
                return
        elif message.read_only:
            if message.session_id != self.viewing_session:
                return
        elif self.viewing_session is not None or replying_here:
            return
        await self.chat_pane.show_transcript(message.messages, message.read_only, message.found)
        self._set_title()
        if message.opened:
            (self.chat if message.read_only else self.chat_input).focus()

    @work(group=groups.LOAD_SESSION, exclusive=True, exit_on_error=False)
    async def load_session_summary(self, session: Session) -> None:
        core = self.core
        assert core is not None
        self.post_message(m.SessionSummaryLoaded(session.workstream_id, session,
                                                 await core.session_summary(session.id)))

    def action_back_to_live(self) -> None:
        if self.ws_id is None:
            return
        self.viewing_session = None
        self._set_title()
        self.load_workstream(self.ws_id)
        self.chat_input.focus()

    # ---- the chat pane ------------------------------------------------------------------
    def on_chat_pane_scratch_chosen(self, message: ChatPane.ScratchChosen) -> None:
        if self.ws_id is None:
            self.ws_id = message.workstream_id
            self.sidebar.adopt(message.workstream_id)
            self.load_workstreams(message.workstream_id)

    def on_chat_pane_reply_state_changed(self) -> None:
        self._update_stop_key()

    def action_stop(self) -> None:
        self.chat_pane.stop_reply()

    # ---- engine events -------------------------------------------------------------
    def on_engine_event(self, message: m.EngineEvent) -> None:
        """Each engine event as the core published it; it bubbles on to the app (toasts)."""
        event = message.event
        if isinstance(event, ev.JobProgress):
            self.workstream_list.set_job_progress(event.workstream_id, event.job_id, event.done, event.total)
            return
        if isinstance(event, ev.BackendChecked):
            self.status.info = event.info
            self.status.model = event.model
        elif isinstance(event, ev.QueueLength):
            self.status.queue = event.length
        elif isinstance(event, ev.JobStarted):
            self.workstream_list.set_job_progress(event.workstream_id, event.job_id, 0, 0)
        elif isinstance(event, (ev.JobCompleted, ev.JobFailed)):
            self.workstream_list.job_ended(event.workstream_id, event.job_id)
        elif isinstance(event, ev.SessionEnded):
            if event.workstream_id == self.ws_id and self.viewing_session is None and not self.replying:
                # e.g. ended for being idle: the next message starts a new session from the summary
                self.post_message(m.TranscriptLoaded(event.workstream_id, None, [], read_only=False))
        if isinstance(event, ev.WorkstreamEvent):
            self._mark_dirty(event.workstream_id)

    def _mark_dirty(self, workstream_id: str) -> None:
        self._dirty.add(workstream_id)
        if not self._refresh_scheduled and not self._refresh_running:
            self._refresh_scheduled = True
            self.set_timer(REFRESH_DELAY_S, self._start_refresh)

    def _start_refresh(self) -> None:
        self._refresh_scheduled = False
        if self.core is not None and not self._refresh_running:
            self._refresh_running = True
            self.refresh_dirty()

    @work(group=groups.REFRESH, exit_on_error=False)
    async def refresh_dirty(self) -> None:
        """Reload the rows (and the selected workstream's details) that engine events touched.

        One worker at a time, looping until nothing is dirty, so results never
        arrive out of order.
        """
        try:
            while self._dirty and self.core is not None:
                core = self.core
                ids, self._dirty = self._dirty, set()
                if "" in ids:  # e.g. a reindex: everything may have changed, the one shown too
                    # no `select`: the highlight stays where it is when the list arrives, not where it was
                    self.post_message(m.WorkstreamsLoaded(await core.list_workstreams()))
                    ids.discard("")
                    if self.ws_id is not None:
                        ids.add(self.ws_id)
                for ws_id in ids:
                    try:
                        ws = await core.get_workstream(ws_id)
                    except NotFound:
                        ws = None
                    self.post_message(m.WorkstreamLoaded(ws_id, ws))
                    if ws_id == self.ws_id and ws is not None:
                        self.post_message(m.SessionsLoaded(ws_id, await core.list_sessions(ws_id)))
                        self.post_message(m.WorkstreamSummaryLoaded(ws_id, ws, await core.workstream_summary(ws_id)))
                        session = self.session_list.sessions.get(self.session_list.selected_id or "")
                        if session is not None:
                            self.post_message(m.SessionSummaryLoaded(ws_id, session,
                                                                     await core.session_summary(session.id)))
        finally:
            self._refresh_running = False

    def on_workstream_loaded(self, message: m.WorkstreamLoaded) -> None:
        ws = message.workstream
        wl = self.workstream_list
        if ws is None or ws.state is WorkstreamState.ARCHIVED:
            was_selected = message.workstream_id == self.ws_id
            self.sidebar.remove_workstream(message.workstream_id)  # announces where the highlight lands
            if was_selected:
                self.ws_id = None
                self.viewing_session = None
                self.summary_panel.show_session(None, None)
                if not wl.option_count:
                    self.load_workstreams()
            return
        if not wl.update_workstream(ws):
            self.load_workstreams()  # re-sorted; the highlight stays on whatever is highlighted then
        elif ws.id == self.ws_id:
            self._set_title()

    # ---- session and compression actions ------------------------------------------------
    def action_end_session(self) -> None:
        if self._need_core() is None or self._need_workstream() is None:
            return
        if self.replying:
            self.notify("A reply is still being written: wait, or press escape first.", severity="warning")
            return
        self.end_session(self.ws_id)

    @work(group=groups.ACTIONS, exit_on_error=False)
    async def end_session(self, ws_id: str) -> None:
        core = self.core
        assert core is not None
        session = await core.end_session(ws_id, "explicit")
        if session is None:
            self.notify("No live session to end in this workstream.", severity="warning")
            return
        if session.message_count and core.settings.workstream.compression.enabled:
            self.notify("Session ended: compressing it in the background.")
        else:
            self.notify("Session ended.")

    def action_compress(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.compress(self.ws_id, rebuild=False)

    def action_rebuild_summary(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.compress(self.ws_id, rebuild=True)

    @work(group=groups.ACTIONS, exit_on_error=False)
    async def compress(self, ws_id: str, rebuild: bool) -> None:
        core = self.core
        assert core is not None
        try:
            jobs = await core.compress(ws_id, rebuild=rebuild)
        except ArawnError as exc:
            self.notify(exc.message, severity="error", markup=False)
            return
        if jobs:
            what = "Rebuilding the summary" if rebuild else f"Compressing: {len(jobs)} job{'s' if len(jobs) != 1 else ''} queued"
            self.notify(what + ".")
        else:
            self.notify("Already queued.")

    def action_retry(self) -> None:
        if self._need_core() is not None:
            self.retry_failed()

    @work(group=groups.ACTIONS, exit_on_error=False)
    async def retry_failed(self) -> None:
        core = self.core
        assert core is not None
        n = await core.retry_jobs()
        self.notify(f"Retrying {n} failed job{'s' if n != 1 else ''}." if n else "No failed jobs to retry.")
        if n:
            self._mark_dirty("")  # the scheduler wakes on the retry by itself

    # ---- search ------------------------------------------------------------------------------
    def action_search(self) -> None:
        from arawn_tui.screens.search import SearchScreen

        if self._need_core() is None or isinstance(self.app.screen, SearchScreen):
            return
        title = self.workstream_list.title_of(self.ws_id) if self.ws_id else ""
        screen = SearchScreen(self.search_query, self.ws_id, title, self.search_this_workstream)

        def closed(hit: SearchHit | None) -> None:
            self.search_query = screen.query_text
            self.search_this_workstream = screen.this_workstream
            if hit is not None:
                self.open_search_hit(hit)

        self.app.push_screen(screen, closed)

    def open_search_hit(self, hit: SearchHit) -> None:
        """Show where a hit is: its workstream, and its session's transcript scrolled to the
        message (read-only once the session ended); a workstream-summary hit selects the workstream."""
        if hit.workstream_id not in self.workstream_list.workstreams:
            self.notify(f"{one_line(hit.workstream_title, 60)} is archived: it is not in the list.",
                        severity="warning", markup=False)
            return
        self.sidebar.select(hit.workstream_id)  # no highlight-settle load: this one loads below
        if hit.workstream_id != self.ws_id:
            self.ws_id = hit.workstream_id
            self.viewing_session = None
            self._set_title()
        if hit.kind != "message":
            self.summary_panel.display = True
        session_id = hit.session_id if hit.kind != "workstream_summary" else None
        self.load_workstream(hit.workstream_id, session_id, found=hit.message_id, opened=True)

    def action_toggle_summary(self) -> None:
        panel = self.summary_panel
        panel.display = not panel.display

    def action_toggle_help(self) -> None:
        if self.query("HelpPanel"):
            self.app.action_hide_help_panel()
        else:
            self.app.action_show_help_panel()

    async def action_show_whole_transcript(self) -> None:
        await self.chat.show_all()

    # ---- workstream actions (dialogs run in workers: push_screen_wait) ----------------------
    def action_new_workstream(self) -> None:
        if self._need_core() is not None:
            self.new_workstream()

    @work(group=groups.DIALOG, exit_on_error=False)
    async def new_workstream(self) -> None:
        from arawn_tui.screens.dialogs import TextPrompt

        title = await self.app.push_screen_wait(TextPrompt("New workstream", placeholder="Title", action="Create"))
        core = self.core
        if not title or core is None:
            return
        ws = await core.create_workstream(title)
        self.post_message(m.WorkstreamsLoaded(await core.list_workstreams(), ws.id))
        self.chat_input.focus()

    def action_rename_workstream(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.rename_workstream(self.ws_id)

    @work(group=groups.DIALOG, exit_on_error=False)
    async def rename_workstream(self, ws_id: str) -> None:
        from arawn_tui.screens.dialogs import TextPrompt

        current = self.workstream_list.workstreams.get(ws_id)
        title = await self.app.push_screen_wait(
            TextPrompt("Rename workstream", value=current.title if current else "", action="Rename"))
        core = self.core
        if title and core is not None:
            await core.rename_workstream(ws_id, title)

    def action_archive_workstream(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.archive_workstream(self.ws_id)

    @work(group=groups.DIALOG, exit_on_error=False)
    async def archive_workstream(self, ws_id: str) -> None:
        from arawn_tui.screens.dialogs import Confirm

        name = self.workstream_list.title_of(ws_id)
        ok = await self.app.push_screen_wait(Confirm(
            f"Archive {name!r}? Its live session ends (and is compressed); it leaves the list.", "Archive"))
        core = self.core
        if ok and core is not None:
            await core.archive_workstream(ws_id)
            self.notify(f"Archived {name}.", markup=False)

    def action_set_model(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.set_model(self.ws_id)

    @work(group=groups.DIALOG, exit_on_error=False)
    async def set_model(self, ws_id: str) -> None:
        from arawn_tui.screens.dialogs import DEFAULT_MODEL, ModelPicker

        core = self.core
        assert core is not None
        info = await core.backend_info()
        ws = await core.get_workstream(ws_id)
        choice = await self.app.push_screen_wait(ModelPicker(info.models, ws.model, core.model, info.reachable))
        if choice is None or self.core is None:
            return
        await core.set_workstream_model(ws_id, choice or None)
        shown = choice if choice != DEFAULT_MODEL else f"the default ({core.model})"
        self.notify(f"Model for this workstream: {one_line(shown, 80)}", markup=False)

    def action_set_system_prompt(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.set_system_prompt(self.ws_id)

    @work(group=groups.DIALOG, exit_on_error=False)
    async def set_system_prompt(self, ws_id: str) -> None:
        from arawn_tui.screens.dialogs import MultilinePrompt

        core = self.core
        assert core is not None
        ws = await core.get_workstream(ws_id)
        text = await self.app.push_screen_wait(MultilinePrompt(
            "System prompt for this workstream", ws.system_prompt or "",
            "Sent before the summary in every new turn. Empty clears it."))
        if text is None or self.core is None:
            return
        await core.set_system_prompt(ws_id, text or None)
        self.notify("System prompt saved." if text else "System prompt cleared.")

    # ---- clipboard --------------------------------------------------------------------------
    def _copy(self, text: str | None, what: str) -> None:
        if not text:
            self.notify(f"No {what} to copy.", severity="warning")
            return
        self.app.copy_to_clipboard(inert(text))
        self.notify(f"Copied the {what} to the clipboard.")

    @on(ChatMessage.CopyRequested)
    def copy_message(self, event: ChatMessage.CopyRequested) -> None:
        self._copy(event.text, "message")

    def action_copy_last_reply(self) -> None:
        self._copy(self.chat.last_reply, "last reply")

    def action_copy_workstream_summary(self) -> None:
        s = self.summary_panel.workstream_summary
        self._copy(s.text if s else None, "workstream summary")

    def action_copy_session_summary(self) -> None:
        s = self.summary_panel.session_summary
        self._copy(s.text if s else None, "session summary")

    # ---- for the app ----------------------------------------------------------------------------
    def workstream_title(self, ws_id: str) -> str:
        return self.workstream_list.title_of(ws_id)
