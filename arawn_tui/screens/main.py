"""The main screen: workstreams and sessions (left), chat (centre), summaries (right).

The screen owns what is on display. Loading happens in workers that post the
data as messages (`arawn_tui.messages`); handlers put it on the widgets. Engine
events reach this screen as messages too, then bubble on to the app, which
runs the compression workers and raises the toasts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, OptionList, Static
from textual.worker import Worker

from arawn_core import events as ev
from arawn_core.errors import ArawnError, NotFound
from arawn_core.models import Session, WorkstreamState
from arawn_tui import messages as m
from arawn_tui import workers as groups
from arawn_tui.formatting import local_time
from arawn_tui.sanitize import inert, one_line
from arawn_tui.screens.recall_actions import RecallActions
from arawn_tui.widgets.chat_input import PLACEHOLDER, ChatInput
from arawn_tui.widgets.chat_view import ChatMessage, ChatView
from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.status_bar import StatusBar
from arawn_tui.widgets.summary_panel import SummaryPanel
from arawn_tui.widgets.workstream_list import WorkstreamList

if TYPE_CHECKING:
    from arawn_core.core import ArawnCore
    from arawn_core.search import SearchHit
    from arawn_tui.app import ArawnApp

# The search screen and the dialogs are imported when first opened, not before the first
# screen (about 40 ms of imports at start-up).

LIVE_HINT = ("A new session starts with your first message; the model gets the workstream summary "
             "as its starting context.")
EMPTY_HINT = ("No workstreams yet. ctrl+n creates one; or just type: the chat goes to the Scratch "
              "workstream.")
READ_ONLY_PLACEHOLDER = "Read-only transcript of an ended session — escape returns to the live chat"
REFRESH_DELAY_S = 0.1  # coalesce bursts of engine events into one reload
SELECT_SETTLE_S = 0.1  # load a workstream once the list highlight rests this long


class MainScreen(RecallActions, Screen[None]):
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
    ]

    def __init__(self) -> None:
        super().__init__(id="main")
        self.ws_id: str | None = None
        self.viewing_session: str | None = None  # an ended session shown read-only
        self.reply_worker: Worker | None = None
        self.reply_ws: str | None = None
        self._dirty: set[str] = set()
        self._refresh_scheduled = False
        self._refresh_running = False
        self.loaded = False  # the first workstream list is on screen
        self._escape_state = (False, False)
        self._select_timer: Timer | None = None
        self.search_query = ""  # the last search, offered again by the next ctrl+f
        self.search_this_workstream = False

    # ---- layout --------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            with Vertical(id="sidebar"):
                yield Static("Workstreams", classes="pane-title")
                yield WorkstreamList(id="workstreams")
                yield Static("Sessions", classes="pane-title")
                yield SessionList(id="sessions")
            with Vertical(id="centre"):
                yield Static("", id="chat-title")
                yield ChatView(id="chat")
                yield ChatInput(id="input")
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
    def replying(self) -> bool:
        return self.reply_worker is not None and not self.reply_worker.is_finished

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

    # ---- start-up --------------------------------------------------------------------
    async def on_core_ready(self, message: m.CoreReady) -> None:
        self.status.activity = ""
        if message.workstreams is None:
            self.load_workstreams()
        else:
            await self.on_workstreams_loaded(m.WorkstreamsLoaded(message.workstreams))
            if message.partial:  # the first screenful is up: now the whole list
                self.load_workstreams()

    @work(group=groups.LOAD_LIST, exclusive=True, exit_on_error=False)
    async def load_workstreams(self, select: str | None = None) -> None:
        core = self.core
        assert core is not None
        self.post_message(m.WorkstreamsLoaded(await core.list_workstreams(), select))

    async def on_workstreams_loaded(self, message: m.WorkstreamsLoaded) -> None:
        select = message.select or self.ws_id
        self.workstream_list.set_workstreams(message.workstreams, select)
        if not self.loaded:
            self.call_after_refresh(self.arawn.first_screen_shown)
        self.loaded = True
        if not message.workstreams:
            self.ws_id = None
            self.session_list.set_sessions([])
            self.summary_panel.show_workstream(None, None)
            self.summary_panel.show_session(None, None)
            self._set_title()
            if not self.replying:
                await self.chat.show([], EMPTY_HINT)


    # ---- selection --------------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#workstreams")
    def workstream_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        ws_id = event.option.id
        if ws_id is None or ws_id == self.ws_id:
            return
        first = self.ws_id is None
        self.ws_id = ws_id
        self.viewing_session = None
        self._set_title()
        if self._select_timer is not None:
            self._select_timer.stop()
        if first:
            self.load_workstream(ws_id)
        else:
            # Arrowing through the list repaints the highlight at once; the sessions, summary
            # and chat load once the highlight rests, not for every row passed on the way.
            self._select_timer = self.set_timer(SELECT_SETTLE_S, lambda: self.load_workstream(ws_id))

    @work(group=groups.LOAD_WORKSTREAM, exclusive=True, exit_on_error=False)
    async def load_workstream(self, ws_id: str, with_chat: bool = True) -> None:
        """Everything shown for one workstream: sessions, summary, the live session's chat."""
        core = self.core
        assert core is not None
        try:
            ws = await core.get_workstream(ws_id)
        except NotFound:
            self.post_message(m.WorkstreamLoaded(ws_id, None))
            return
        sessions = await core.list_sessions(ws_id)
        summary = await core.workstream_summary(ws_id)
        transcript = None
        if with_chat:
            live = next((s for s in sessions if s.active), None)
            history = await core.session_messages(live.id) if live else []
            transcript = m.TranscriptLoaded(ws_id, live.id if live else None, history, read_only=False)
        self.post_message(m.WorkstreamOpened(ws_id, m.SessionsLoaded(ws_id, sessions),
                                             m.WorkstreamSummaryLoaded(ws_id, ws, summary),
                                             m.SessionSummaryLoaded(ws_id, None, None), transcript))

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
        if message.workstream_id != self.ws_id:
            return
        self.session_list.set_sessions(message.sessions, keep=message.select or self.session_list.selected_id)

    def on_workstream_summary_loaded(self, message: m.WorkstreamSummaryLoaded) -> None:
        if message.workstream_id == self.ws_id:
            self.summary_panel.show_workstream(message.workstream, message.summary)

    def on_session_summary_loaded(self, message: m.SessionSummaryLoaded) -> None:
        if message.workstream_id == self.ws_id:
            self.summary_panel.show_session(message.session, message.summary)

    async def on_transcript_loaded(self, message: m.TranscriptLoaded) -> None:
        if message.workstream_id != self.ws_id:
            return
        if message.opened:  # a search hit: show this session, whatever was on screen
            self.viewing_session = message.session_id if message.read_only else None
            if not message.read_only and self.replying and self.reply_ws == self.ws_id:
                self._set_title()  # its live chat is on screen, a reply streaming into it
                return
        elif message.read_only:
            if message.session_id != self.viewing_session:
                return
        elif self.viewing_session is not None or (self.replying and self.reply_ws == self.ws_id):
            return
        chat_input = self.chat_input
        chat_input.disabled = message.read_only
        if not message.read_only:
            chat_input.set_history([x.content for x in message.messages if x.role == "user"])
        await self.chat.show(message.messages, "" if message.read_only else LIVE_HINT, found=message.found)
        self._set_title()
        if message.opened:
            (self.chat if message.read_only else self.chat_input).focus()

    @on(OptionList.OptionHighlighted, "#sessions")
    def session_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        session = self.session_list.sessions.get(event.option.id or "")
        if session is not None:
            self.load_session_summary(session)

    @work(group=groups.LOAD_SESSION, exclusive=True, exit_on_error=False)
    async def load_session_summary(self, session: Session) -> None:
        core = self.core
        assert core is not None
        self.post_message(m.SessionSummaryLoaded(session.workstream_id, session,
                                                 await core.session_summary(session.id)))

    @on(OptionList.OptionSelected, "#sessions")
    def session_selected(self, event: OptionList.OptionSelected) -> None:
        session = self.session_list.sessions.get(event.option.id or "")
        if session is None:
            return
        if session.active:
            self.action_back_to_live()
        else:
            self.viewing_session = session.id
            self._set_title()
            self.open_transcript(session)

    @work(group=groups.LOAD_WORKSTREAM, exclusive=True, exit_on_error=False)
    async def open_transcript(self, session: Session) -> None:
        core = self.core
        assert core is not None
        messages = await core.session_messages(session.id)
        self.post_message(m.TranscriptLoaded(session.workstream_id, session.id, messages, read_only=True))

    def action_back_to_live(self) -> None:
        if self.ws_id is None:
            return
        self.viewing_session = None
        self._set_title()
        self.load_workstream(self.ws_id)
        self.chat_input.focus()

    def _set_title(self) -> None:
        # the title row is one line high whatever it says: no relayout of the whole chat
        title = self.query_one("#chat-title", Static)
        if self.ws_id is None:
            title.update(Content("Scratch chat — ctrl+n for a new workstream"), layout=False)
            return
        name = self.workstream_list.title_of(self.ws_id)
        if self.viewing_session is not None:
            session = self.session_list.sessions.get(self.viewing_session)
            when = local_time(session.started_at) if session else ""
            title.update(Content.assemble(
                ("READ-ONLY ", "bold $warning"), (f"{name} — session of {when}", ""),
                ("  (escape: back to the live chat)", "$text-muted")), layout=False)
        else:
            title.update(Content.assemble((name, "bold"), ("  live chat", "$text-muted")), layout=False)
        read_only = self.viewing_session is not None
        self.chat_input.disabled = read_only
        self.chat_input.placeholder = READ_ONLY_PLACEHOLDER if read_only else PLACEHOLDER
        self._update_stop_key()

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
                if "" in ids:  # e.g. a reindex: everything may have changed
                    self.post_message(m.WorkstreamsLoaded(await core.list_workstreams(), self.ws_id))
                    ids.discard("")
                for ws_id in ids:
                    try:
                        ws = await core.get_workstream(ws_id)
                    except NotFound:
                        ws = None
                    self.post_message(m.WorkstreamLoaded(ws_id, ws))
                    if ws_id == self.ws_id and ws is not None:
                        self.post_message(m.SessionsLoaded(ws_id, await core.list_sessions(ws_id)))
                        self.post_message(m.WorkstreamSummaryLoaded(ws_id, ws, await core.workstream_summary(ws_id)))
                        session_id = self.session_list.selected_id
                        session = self.session_list.sessions.get(session_id or "")
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
            wl.remove_workstream(message.workstream_id)
            if was_selected:
                self.ws_id = None
                if wl.option_count:
                    wl.highlighted = min(wl.highlighted or 0, wl.option_count - 1)
                else:
                    self.load_workstreams()
            return
        if not wl.update_workstream(ws):
            self.load_workstreams(self.ws_id)
        elif ws.id == self.ws_id:
            self._set_title()

    # ---- chat --------------------------------------------------------------------------
    @on(ChatInput.Submitted)
    async def send(self, event: ChatInput.Submitted) -> None:
        if self._need_core() is None:
            self.chat_input.load_text(event.text)
            return
        if self.replying:
            self.chat_input.load_text(event.text)
            self.notify("A reply is still being written: wait, or press escape to stop it.", severity="warning")
            return
        await self.chat.add_user_message(event.text)
        await self.chat.begin_reply()
        self.reply_ws = self.ws_id
        self.reply_worker = self.stream_reply(self.ws_id, event.text)
        self._update_stop_key()

    @work(group=groups.CHAT, exit_on_error=False)
    async def stream_reply(self, ws_id: str | None, text: str) -> None:
        """Send one message and stream the reply; errors the user can act on go into the chat."""
        core = self.core
        assert core is not None
        ended = m.ReplyEnded(ws_id or "")
        try:
            if ws_id is None:
                ws_id = (await core.scratch_workstream()).id
                ended.workstream_id = ws_id
                self.post_message(m.ChatTargetChosen(ws_id))
            async for piece in core.send(ws_id, text, on_recall=self.recall_noter(ws_id)):
                self.post_message(m.ReplyPiece(ws_id, piece))
        except ArawnError as exc:
            ended.error = str(exc)
        except asyncio.CancelledError:
            ended.stopped = True
            raise
        finally:
            self.post_message(ended)

    def on_chat_target_chosen(self, message: m.ChatTargetChosen) -> None:
        if self.ws_id is None:
            self.ws_id = message.workstream_id
            self.reply_ws = message.workstream_id
            self.load_workstreams(message.workstream_id)

    def on_reply_piece(self, message: m.ReplyPiece) -> None:
        if self.chat.replying and message.workstream_id == self.reply_ws:
            self.chat.write_reply(message.text)

    async def on_reply_ended(self, message: m.ReplyEnded) -> None:
        showing = self.chat.replying
        await self.chat.end_reply()
        if showing and message.error:
            await self.chat.add_notice(f"No reply: {message.error}", "error")
        elif showing and message.stopped:
            await self.chat.add_notice("Stopped. The partial reply was kept.", "hint")
        self._update_stop_key()

    def action_stop(self) -> None:
        if self.replying and self.reply_worker is not None:
            self.reply_worker.cancel()

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
        wl = self.workstream_list
        if hit.workstream_id not in wl.workstreams:
            self.notify(f"{one_line(hit.workstream_title, 60)} is archived: it is not in the list.",
                        severity="warning", markup=False)
            return
        if self._select_timer is not None:  # a highlight still settling must not load another workstream
            self._select_timer.stop()
        if hit.workstream_id != self.ws_id:
            self.ws_id = hit.workstream_id  # first: the highlight event that follows has nothing to do
            self.viewing_session = None
            wl.highlighted = wl.get_option_index(hit.workstream_id)
            self._set_title()
        if hit.kind != "message":
            self.summary_panel.display = True
        session_id = hit.session_id if hit.kind != "workstream_summary" else None
        self.open_hit(hit.workstream_id, session_id, hit.message_id)

    @work(group=groups.LOAD_WORKSTREAM, exclusive=True, exit_on_error=False)
    async def open_hit(self, ws_id: str, session_id: str | None, message_id: str | None) -> None:
        core = self.core
        assert core is not None
        try:
            ws = await core.get_workstream(ws_id)
        except NotFound:
            self.post_message(m.WorkstreamLoaded(ws_id, None))
            return
        sessions = await core.list_sessions(ws_id)
        session = next((s for s in sessions if s.id == session_id), None)
        self.post_message(m.SessionsLoaded(ws_id, sessions, select=session.id if session else None))
        self.post_message(m.WorkstreamSummaryLoaded(ws_id, ws, await core.workstream_summary(ws_id)))
        if session is None:  # the workstream itself: its live chat, as when it is selected
            self.post_message(m.SessionSummaryLoaded(ws_id, None, None))
            live = next((s for s in sessions if s.active), None)
            history = await core.session_messages(live.id) if live else []
            self.post_message(m.TranscriptLoaded(ws_id, live.id if live else None, history, opened=True))
            return
        self.post_message(m.SessionSummaryLoaded(ws_id, session, await core.session_summary(session.id)))
        self.post_message(m.TranscriptLoaded(ws_id, session.id, await core.session_messages(session.id),
                                             read_only=not session.active, opened=True, found=message_id))

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
