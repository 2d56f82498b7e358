"""The right-hand panel: the workstream summary with its provenance, and the
highlighted session's summary. Toggle it from the palette (or f2).

Each summary shows its key-item audit ("kept 41/45 key items") and, when it
was written without the model, says so; the items it missed, appended
verbatim or dropped are in a collapsible under the provenance."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Collapsible, Static

from arawn_core.models import CompressionStatus, Session, Summary, Workstream
from arawn_core.memory.audit import describe as describe_audit
from arawn_tui.formatting import badge_label, local_time, provenance_line
from arawn_tui.sanitize import inert, one_line
from arawn_tui.widgets.markdown_text import MarkdownText


class SummaryPanel(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstream_summary: Summary | None = None
        self.session_summary: Summary | None = None
        self._shown: dict[str, str] = {}

    def compose(self):
        yield Static("Workstream summary", classes="panel-title")
        yield Static("", id="ws-meta", classes="provenance")
        with Collapsible(title="key items", id="ws-audit", collapsed=True):
            yield Static("", id="ws-audit-detail", classes="provenance")
        yield Static("", id="ws-error", classes="error")
        yield MarkdownText("", id="ws-summary")
        yield Static("Session summary", classes="panel-title")
        yield Static("", id="session-meta", classes="provenance")
        with Collapsible(title="key items", id="session-audit", collapsed=True):
            yield Static("", id="session-audit-detail", classes="provenance")
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
            if line := describe_audit(summary.provenance):
                meta.insert(1, line)
        self._set("#ws-meta", "\n".join(meta))
        self._set_audit("ws", summary)
        error = ""
        if ws is not None and ws.compression is CompressionStatus.FAILED and ws.last_error:
            error = f"failed: {one_line(ws.last_error, 400)} — ctrl+r retries"
        self._set("#ws-error", error)
        self.query_one("#ws-error").display = bool(error)
        text = inert(summary.text) if summary else (
            "No summary yet: it is written when a session ends (ctrl+e) or on ctrl+k." if ws else "")
        self._set_markdown("#ws-summary", text)

    def show_session(self, session: Session | None, summary: Summary | None) -> None:
        self.session_summary = summary
        meta = ""
        if session is not None:
            meta = f"session of {local_time(session.started_at)}"
            if summary is not None:
                meta += "\n" + provenance_line(summary.provenance, stale=summary.stale)
                if line := describe_audit(summary.provenance):
                    meta += "\n" + line
            elif session.compression is CompressionStatus.FAILED and session.last_error:
                meta += f"\nfailed: {one_line(session.last_error, 300)}"
            elif session.active:
                meta += "\nlive: summarized when it ends"
        self._set("#session-meta", meta)
        self._set_audit("session", summary)
        body = inert(summary.text) if summary else ("" if session is None else "No summary yet.")
        self._set_markdown("#session-summary", body)

    def _set_audit(self, prefix: str, summary: Summary | None) -> None:
        """The missed / appended / dropped items, in the collapsible (hidden when there is no audit)."""
        detail = audit_detail(summary) if summary is not None else ""
        box = self.query_one(f"#{prefix}-audit", Collapsible)
        box.display = bool(detail)
        self._set(f"#{prefix}-audit-detail", detail)

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


def audit_detail(summary: Summary) -> str:
    """The audit's item lists, one item a line (inert: they are conversation text)."""
    a = summary.provenance.audit
    if a is None or not (a.missing or a.appended or a.dropped or a.defects):
        return ""
    out: list[str] = []
    for title, items in (("missed by the model", a.missing), ("appended verbatim", a.appended),
                         ("dropped (over the bound)", a.dropped), ("rejected replies", a.defects)):
        if items:
            out.append(f"{title} ({len(items)}):")
            out.extend(f"  • {one_line(inert(str(it)), 120)}" for it in items[:50])
            if len(items) > 50:
                out.append(f"  … {len(items) - 50} more")
    return "\n".join(out)
