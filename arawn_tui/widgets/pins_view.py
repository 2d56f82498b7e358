"""Pinned notes under the workstream summary in the summary panel (hidden when there are none).

When the pins need more than their budget, a warning says which are left out of the
context: they are never cut silently.
"""

from __future__ import annotations

from textual import work
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from arawn_core.memory.pins import Pin, PinFit
from arawn_tui.sanitize import inert, one_line


class PinsView(Vertical):
    DEFAULT_CSS = """
    PinsView { height: auto; display: none; }
    PinsView .pin { margin-bottom: 1; }
    PinsView #pins-warning { color: $warning; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstream_id: str | None = None
        self.pins: list[Pin] = []
        self.fit: PinFit | None = None
        self._shown: tuple | None = None

    def compose(self):
        yield Static("Pinned notes", classes="panel-title", id="pins-title")
        yield Static("", id="pins-warning")
        yield Static("", id="pins-body")

    @work(group="load-pins", exclusive=True, exit_on_error=False)
    async def load(self, workstream_id: str | None) -> None:
        """Fetch the workstream's pins and their fit; shown when they arrive."""
        core = getattr(self.app, "core", None)
        if workstream_id is None or core is None:
            self.show(None, [], None)
            return
        pins = await core.list_pins(workstream_id)
        fit = await core.pin_fit(workstream_id) if pins else None
        self.show(workstream_id, pins, fit)

    def show(self, workstream_id: str | None, pins: list[Pin], fit: PinFit | None) -> None:
        key = (workstream_id, tuple((p.id, p.text) for p in pins), tuple(p.id for p in fit.omitted) if fit else ())
        if key == self._shown:
            return
        self._shown = key
        self.workstream_id, self.pins, self.fit = workstream_id, pins, fit
        self.display = bool(pins)
        omitted = {p.id for p in fit.omitted} if fit else set()
        lines = []
        for p in pins:
            mark = "  (left out: over budget)" if p.id in omitted else ""
            lines.append(Content.assemble(("• ", "$accent"), inert(p.text), (mark, "$warning")))
        self.query_one("#pins-title", Static).update(Content(f"Pinned notes ({len(pins)})"))
        self.query_one("#pins-body", Static).update(Content("\n").join(lines) if lines else Content(""))
        warning = self.query_one("#pins-warning", Static)
        warning.update(Content(one_line(fit.warning(), 400)) if fit and fit.over_budget else Content(""))
        warning.display = bool(fit and fit.over_budget)
