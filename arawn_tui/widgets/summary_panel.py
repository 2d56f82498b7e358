"""The right-hand panel: the workstream summary with its provenance, and the
highlighted session's summary. Toggle it from the palette (or f2)."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from arawn_core.models import CompressionStatus, Session, Summary, Workstream
from arawn_tui.formatting import badge_label, local_time, provenance_line
from arawn_tui.sanitize import inert, one_line
from arawn_tui.widgets.markdown_text import MarkdownText
from arawn_tui.widgets.pins_view import PinsView


class SummaryPanel(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstream_summary: Summary | None = None
        self.session_summary: Summary | None = None
        self._shown: dict[str, str] = {}

    def compose(self):
        yield Static("Workstream summary", classes="panel-title")
        yield Static("", id="ws-meta", classes="provenance")
        yield Static("", id="ws-error", classes="error")
        yield MarkdownText("", id="ws-summary")
        yield PinsView(id="pins")
        yield Static("Session summary", classes="panel-title")
        yield Static("", id="session-meta", classes="provenance")
        yield MarkdownText("", id="session-summary")

    def show_workstream(self, ws: Workstream | None, summary: Summary | None) -> None:
        self.workstream_summary = summary
        meta: list[str] = []
        if ws is not None:
            model = ws.model or "default model"
            meta.append(f"chat model: {one_line(model, 60)}")
            meta.append("system prompt: " + ("set" if ws.system_prompt else "none"))
            status = badge_label(ws.compression, ws.progress)
            if status:
                meta.append(f"compression: {status}")
        if summary is not None:
            meta.insert(0, provenance_line(summary.provenance, covers=len(summary.covers), stale=summary.stale))
        self._set("#ws-meta", "\n".join(meta))
        error = ""
        if ws is not None and ws.compression is CompressionStatus.FAILED and ws.last_error:
            error = f"failed: {one_line(ws.last_error, 400)} — ctrl+r retries"
        self._set("#ws-error", error)
        self.query_one("#ws-error").display = bool(error)
        text = inert(summary.text) if summary else (
            "No summary yet: it is written when a session ends (ctrl+e) or on ctrl+k." if ws else "")
        self._set_markdown("#ws-summary", text)
        self.query_one(PinsView).load(ws.id if ws is not None else None)

    def show_session(self, session: Session | None, summary: Summary | None) -> None:
        self.session_summary = summary
        meta = ""
        if session is not None:
            meta = f"session of {local_time(session.started_at)}"
            if summary is not None:
                meta += "\n" + provenance_line(summary.provenance, stale=summary.stale)
            elif session.compression is CompressionStatus.FAILED and session.last_error:
                meta += f"\nfailed: {one_line(session.last_error, 300)}"
            elif session.active:
                meta += "\nlive: summarized when it ends"
        self._set("#session-meta", meta)
        body = inert(summary.text) if summary else ("" if session is None else "No summary yet.")
        self._set_markdown("#session-summary", body)

    # An update re-lays out the screen and re-renders the Markdown: only for what changed
    # (the panel is reloaded whenever the workstream's jobs move on).
    def _set(self, selector: str, text: str) -> None:
        widget = self.query_one(selector, Static)
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            widget.update(Content(text))

    def _set_markdown(self, selector: str, text: str) -> None:
        widget = self.query_one(selector, MarkdownText)
        if widget.source != inert(text):
            widget.set_source(text)
