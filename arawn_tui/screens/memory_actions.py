"""The main screen's memory actions: pins, pin a message, edit the summary, its history,
compress with focus, fork, rename a session. Mixed into `MainScreen`; the palette and the
keys (f3 pins, f4 history) call these actions."""

from __future__ import annotations

from textual import work

from arawn_core.core import UsageError
from arawn_tui import messages as m
from arawn_tui.sanitize import one_line


class MemoryActions:
    """Needs the MainScreen's `core`, `ws_id`, `chat`, `session_list`, `workstream_list` and helpers."""

    def action_pins(self) -> None:
        from arawn_tui.screens.pins import PinsScreen

        if self._need_core() is not None and self._need_workstream() is not None:
            self.app.push_screen(PinsScreen(self.ws_id, self.workstream_list.title_of(self.ws_id)))

    def action_pin_message(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.pin_message(self.ws_id, self.viewing_session)

    @work(group="dialog", exit_on_error=False)
    async def pin_message(self, ws_id: str, session_id: str | None) -> None:
        """Pick a message of the transcript on screen (the read-only one, else the live session)."""
        from arawn_tui.screens.pins import MessagePicker

        core = self.core
        assert core is not None
        if session_id is None:
            live = await core.active_session(ws_id)
            session_id = live.id if live else None
        messages = await core.session_messages(session_id) if session_id else []
        if not any(x.content.strip() for x in messages):
            self.notify("No message in this transcript to pin.", severity="warning")
            return
        chosen = await self.app.push_screen_wait(MessagePicker(messages))
        if chosen is None or self.core is None:
            return
        try:
            await self.core.add_pin(ws_id, chosen.content, source_message_id=chosen.id)
        except UsageError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        fit = await self.core.pin_fit(ws_id)
        self.notify("Pinned." + (f" {fit.warning()}" if fit.over_budget else ""),
                    severity="warning" if fit.over_budget else "information", markup=False)

    def action_edit_summary(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.edit_summary(self.ws_id)

    @work(group="dialog", exit_on_error=False)
    async def edit_summary(self, ws_id: str) -> None:
        from arawn_tui.screens.summary_edit import SummaryEditor

        core = self.core
        assert core is not None
        current = await core.workstream_summary(ws_id)
        title = f"Edit the summary of {one_line(self.workstream_list.title_of(ws_id), 50)}"
        text = await self.app.push_screen_wait(SummaryEditor(title, current.text if current else ""))
        if text is None or self.core is None:
            return
        try:
            version = await core.set_summary(ws_id, text)
        except UsageError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        if version is None:
            self.notify("Unchanged.")
        else:
            self.notify(f"Saved as version {version.number}; {len(version.protected)} line"
                        f"{'s' if len(version.protected) != 1 else ''} protected from later compressions.")

    def action_summary_history(self) -> None:
        from arawn_tui.screens.summary_history import SummaryHistoryScreen

        if self._need_core() is not None and self._need_workstream() is not None:
            self.app.push_screen(SummaryHistoryScreen(self.ws_id, self.workstream_list.title_of(self.ws_id)))

    def action_compress_with_focus(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.compress_with_focus(self.ws_id)

    @work(group="dialog", exit_on_error=False)
    async def compress_with_focus(self, ws_id: str) -> None:
        from arawn_tui.screens.dialogs import TextPrompt

        focus = await self.app.push_screen_wait(TextPrompt(
            "Compress with focus: what should this run keep above all?", placeholder="e.g. the budget figures",
            action="Compress"))
        if not focus or self.core is None:
            return
        try:
            jobs = await self.core.compress(ws_id, focus=focus)
        except UsageError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(f"Compressing with focus: {one_line(focus, 60)}." if jobs else "Already queued.", markup=False)

    def action_fork_workstream(self) -> None:
        if self._need_core() is not None and self._need_workstream() is not None:
            self.fork_workstream(self.ws_id)

    @work(group="dialog", exit_on_error=False)
    async def fork_workstream(self, ws_id: str) -> None:
        from arawn_tui.screens.dialogs import TextPrompt

        name = self.workstream_list.title_of(ws_id)
        title = await self.app.push_screen_wait(TextPrompt(
            "Fork: a new workstream that starts from this one's summary and pins", value=f"{name} (fork)",
            action="Fork"))
        core = self.core
        if not title or core is None:
            return
        ws = await core.fork_workstream(ws_id, title)
        self.post_message(m.WorkstreamsLoaded(await core.list_workstreams(), ws.id))
        self.notify(f"Forked {one_line(name, 40)} into {one_line(ws.title, 40)}.", markup=False)

    def action_rename_session(self) -> None:
        if self._need_core() is None or self._need_workstream() is None:
            return
        session_id = self.viewing_session or self.session_list.selected_id
        session = self.session_list.sessions.get(session_id or "")
        if session is None:
            self.notify("Highlight a session first.", severity="warning")
            return
        self.rename_session(session.id, session.title or "")

    @work(group="dialog", exit_on_error=False)
    async def rename_session(self, session_id: str, current: str) -> None:
        from arawn_tui.screens.dialogs import TextPrompt

        title = await self.app.push_screen_wait(TextPrompt("Rename session", value=current, action="Rename"))
        if title and self.core is not None:
            await self.core.rename_session(session_id, title)
