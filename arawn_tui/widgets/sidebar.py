"""The sidebar: the workstream list, and the highlighted workstream's sessions under it.

It turns list events into what they mean and posts them to the screen:
`WorkstreamHighlighted` at once (the title follows the highlight),
`WorkstreamSelected` once the highlight rests (the screen loads the workstream
then, not for every row an arrow key passes), `SessionHighlighted` and
`SessionSelected`. Sessions are only put up for the workstream highlighted
when they arrive (`show_sessions` refuses a late answer for another one); the
list is replaced, not emptied first, when the new workstream's load lands, in
the same layout pass as the rest of it (emptying it on every arrow key would
cost each key a relayout).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import OptionList, Static

from arawn_core.models import Session, Workstream
from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.workstream_list import WorkstreamList

SELECT_SETTLE_S = 0.1  # a workstream is loaded once the list highlight rests this long


class Sidebar(Vertical):
    @dataclass
    class WorkstreamHighlighted(Message):
        """The highlight moved to this workstream (it is loaded once it rests: WorkstreamSelected)."""

        workstream_id: str

    @dataclass
    class WorkstreamSelected(Message):
        """Load and show this workstream."""

        workstream_id: str

    @dataclass
    class SessionHighlighted(Message):
        session: Session

    @dataclass
    class SessionSelected(Message):
        """Enter or a click on a session: its transcript (the live chat for the live one)."""

        session: Session

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstream_id: str | None = None  # the highlighted workstream
        self.sessions_of: str | None = None  # whose sessions the session list shows
        self._settle: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("Workstreams", classes="pane-title")
        yield WorkstreamList(id="workstreams")
        yield Static("Sessions", classes="pane-title")
        yield SessionList(id="sessions")

    @property
    def workstream_list(self) -> WorkstreamList:
        return self.query_one(WorkstreamList)

    @property
    def session_list(self) -> SessionList:
        return self.query_one(SessionList)

    # ---- the workstream list -----------------------------------------------------------
    def set_workstreams(self, workstreams: list[Workstream], select: str | None) -> None:
        self.workstream_list.set_workstreams(workstreams, select)
        if not workstreams:
            self.forget_workstream()
            self.show_sessions(None, [])
            return
        landed = self.workstream_list.selected_id
        if landed is not None and landed != self.workstream_id and select != landed:
            # `select` was not in the new list (gone meanwhile): the highlight fell on the first
            # row, perhaps at the index it already had (then OptionList posts no event)
            self._announce(landed)

    def forget_workstream(self) -> None:
        """No workstream is highlighted any more (the list emptied, or the one shown went away)."""
        self.cancel_settle()
        self.workstream_id = None

    def remove_workstream(self, workstream_id: str) -> None:
        """A workstream left the list (archived, gone). If it was the highlighted one, its
        sessions go with it and the workstream the highlight lands on is announced, even when
        the highlight did not move (the next row took the removed one's place: OptionList
        then posts no highlight event, and the screen would keep showing the removed one)."""
        wl = self.workstream_list
        was_highlighted = workstream_id == self.workstream_id
        wl.remove_workstream(workstream_id)
        if not was_highlighted:
            return
        self.forget_workstream()
        self.show_sessions(None, [])
        if wl.option_count:
            wl.highlighted = min(wl.highlighted or 0, wl.option_count - 1)
            if (landed := wl.selected_id) is not None:
                self._announce(landed)

    def _announce(self, workstream_id: str) -> None:
        """The highlight is on `workstream_id` without (or before) a highlight event: say so now."""
        self.cancel_settle()
        if self.sessions_of not in (None, workstream_id):
            self.show_sessions(None, [])
        self.workstream_id = workstream_id  # the highlight event, if one follows, has nothing to do
        self.post_message(self.WorkstreamHighlighted(workstream_id))
        self.post_message(self.WorkstreamSelected(workstream_id))

    def select(self, workstream_id: str) -> None:
        """Highlight a workstream for the screen, which loads it itself (a search hit)."""
        self.cancel_settle()
        if workstream_id != self.workstream_id:
            self.workstream_id = workstream_id  # first: the highlight event that follows has nothing to do
            wl = self.workstream_list
            wl.highlighted = wl.get_option_index(workstream_id)

    def adopt(self, workstream_id: str) -> None:
        """The screen now shows this workstream (e.g. the scratch one a first message created)."""
        self.workstream_id = workstream_id

    def cancel_settle(self) -> None:
        if self._settle is not None:
            self._settle.stop()
            self._settle = None

    @on(OptionList.OptionHighlighted, "#workstreams")
    def _workstream_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        ws_id = event.option.id
        if ws_id is None or ws_id == self.workstream_id:
            return
        first = self.workstream_id is None
        self.workstream_id = ws_id
        self.cancel_settle()
        self.post_message(self.WorkstreamHighlighted(ws_id))
        if first:
            self.post_message(self.WorkstreamSelected(ws_id))
        else:
            # Arrowing through the list repaints the highlight at once; the sessions, summary
            # and chat load once the highlight rests, not for every row passed on the way.
            self._settle = self.set_timer(SELECT_SETTLE_S, lambda: self._settled(ws_id))

    def _settled(self, ws_id: str) -> None:
        self._settle = None
        if ws_id == self.workstream_id:
            self.post_message(self.WorkstreamSelected(ws_id))

    # ---- the session list --------------------------------------------------------------
    def show_sessions(self, workstream_id: str | None, sessions: list[Session], select: str | None = None) -> bool:
        """Show `workstream_id`'s sessions, if it is still the highlighted one (else nothing changes)."""
        if workstream_id is not None and workstream_id != self.workstream_id:
            return False
        sl = self.session_list
        keep = select or (sl.selected_id if workstream_id == self.sessions_of else None)
        self.sessions_of = workstream_id
        sl.set_sessions(sessions, keep=keep)
        return True

    @on(OptionList.OptionHighlighted, "#sessions")
    def _session_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        session = self.session_list.sessions.get(event.option.id or "")
        if session is not None:
            self.post_message(self.SessionHighlighted(session))

    @on(OptionList.OptionSelected, "#sessions")
    def _session_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        session = self.session_list.sessions.get(event.option.id or "")
        if session is not None:
            self.post_message(self.SessionSelected(session))
