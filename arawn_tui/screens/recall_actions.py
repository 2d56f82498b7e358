"""The main screen's recall and summary-source actions, kept out of screens/main.py.

`RecallActions` is mixed into `MainScreen`: it lists the messages recalled for
a reply when its "recalled N earlier messages" line is selected (the chat pane
puts the line up as the reply starts), and lists the sessions a summary covers
(its provenance); either choice opens its session the way a search hit does
(`open_search_hit`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import work

from arawn_tui.formatting import local_time
from arawn_tui.sanitize import one_line
from arawn_tui.widgets.recall_line import RecallLine

if TYPE_CHECKING:
    from arawn_core.search import SearchHit
    from arawn_tui.screens.main import MainScreen


def recalled_hit(entry: dict[str, Any], workstream_id: str, title: str) -> SearchHit:
    """A recalled message as a search hit on it, so opening it takes the search screen's path."""
    from arawn_core.search import SearchHit

    return SearchHit("message", workstream_id, title, entry.get("session_id"), entry.get("id"),
                     str(entry.get("role", "")), str(entry.get("timestamp", "")), str(entry.get("snippet", "")),
                     0.0, False)


def session_hit(session_id: str, workstream_id: str, title: str) -> SearchHit:
    """A covered session as a hit on its summary: opening it shows the session (and the panel)."""
    from arawn_core.search import SearchHit

    return SearchHit("session_summary", workstream_id, title, session_id, None, "summary", "", "", 0.0, False)


class RecallActions:
    """Mixin for MainScreen (uses its ws_id, chat, core, summary_panel and open_search_hit)."""

    @property
    def _main(self) -> MainScreen:
        return cast("MainScreen", self)

    def on_recall_line_selected(self, message: RecallLine.Selected) -> None:
        self.pick_recalled(message.recalled)

    @work(group="dialog", exit_on_error=False)
    async def pick_recalled(self, recalled: list[dict[str, Any]]) -> None:
        from arawn_tui.screens.sources import SourcePicker

        main = self._main
        ws_id = main.ws_id
        if ws_id is None:
            return
        items = [(str(r["id"]), f"{local_time(str(r.get('timestamp', '')))} · {r.get('role', '')} · "
                                f"{one_line(str(r.get('snippet', '')), 100)}") for r in recalled]
        choice = await main.app.push_screen_wait(SourcePicker(
            "Earlier messages recalled for this reply", items, "enter opens the session at that message"))
        entry = next((r for r in recalled if str(r["id"]) == choice), None)
        if entry is not None:
            main.open_search_hit(recalled_hit(entry, ws_id, main.workstream_list.title_of(ws_id)))

    def action_open_summary_sources(self) -> None:
        main = self._main
        if main._need_core() is not None and main._need_workstream() is not None:
            self.pick_summary_source(main.ws_id)

    @work(group="dialog", exit_on_error=False)
    async def pick_summary_source(self, ws_id: str) -> None:
        """The sessions the shown summaries cover (the workstream summary's, then the session summary's)."""
        from arawn_tui.screens.sources import SourcePicker

        main = self._main
        core = main.core
        assert core is not None
        panel = main.summary_panel
        covered: list[str] = []
        for summary in (panel.workstream_summary, panel.session_summary):
            if summary is not None and summary.workstream_id == ws_id:
                covered += [sid for sid in summary.covers if sid not in covered]
        if not covered:
            main.notify("No summary with sources here yet: a summary is written when a session ends.",
                        severity="warning")
            return
        sessions = {s.id: s for s in await core.list_sessions(ws_id)}
        items = []
        for sid in covered:
            s = sessions.get(sid)
            if s is None:
                continue
            gist = one_line(s.summary or "", 70)
            items.append((sid, f"session of {local_time(s.started_at)} · {s.message_count} messages"
                               + (f" · {gist}" if gist else "")))
        choice = await main.app.push_screen_wait(SourcePicker(
            "Sessions this summary covers", items, "enter opens the session's transcript"))
        if choice:
            main.open_search_hit(session_hit(choice, ws_id, main.workstream_list.title_of(ws_id)))
