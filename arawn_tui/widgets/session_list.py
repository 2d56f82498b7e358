"""The selected workstream's sessions: start, turns, status; newest first."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from arawn_core.models import Session
from arawn_tui.formatting import ListRow, badge, local_time, plural
from arawn_tui.sanitize import one_line


def session_row(session: Session) -> Content:
    """Its title (if it has one), when it started, then `N turns  status`."""
    start = local_time(session.started_at)
    turns = plural(session.turn_count, "turn")
    title = one_line(session.title, 28) if session.title else ""
    if session.active:
        state = Content.styled("● live", "bold $success")
    else:
        state = badge(session.compression) if session.compression.value != "none" else Content.styled(
            "ended", "$text-muted")
    head = [(title, "bold"), "\n", (start, "$text-muted")] if title else [(start, "bold" if session.active else "")]
    return ListRow.of(Content.assemble(*head, "\n", (turns, "$text-muted"), "  ", state))


class SessionList(OptionList):
    """Highlight a session to see its summary; select it (enter/click) to read its transcript."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sessions: dict[str, Session] = {}

    def set_sessions(self, sessions: list[Session], keep: str | None = None) -> None:
        ordered = sorted(sessions, key=lambda s: (s.active, s.started_at), reverse=True)
        if ordered == list(self.sessions.values()) and keep == self.selected_id:
            return  # unchanged (a reload after a job moved on elsewhere): no re-measure, no repaint
        self.sessions = {s.id: s for s in ordered}
        with self.prevent(OptionList.OptionHighlighted):
            self.set_options(Option(session_row(s), id=s.id) for s in ordered)
            if keep and keep in self.sessions:
                self.highlighted = self.get_option_index(keep)
            else:
                self.highlighted = None

    @property
    def selected_id(self) -> str | None:
        option = self.highlighted_option
        return option.id if option is not None else None
