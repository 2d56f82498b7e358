"""Edit the workstream summary (a TextArea dialog): saving makes a new version authored by you."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea

from arawn_tui.screens.dialogs import CANCEL

EDIT_HINT = ("Lines you add or change are protected: later compressions keep them word for word. "
             "Delete a line to drop its protection. ctrl+s saves as a new version (the old one stays "
             "in the history).")


class SummaryEditor(ModalScreen[str | None]):
    """Dismisses with the edited text exactly as typed (None: cancelled)."""

    BINDINGS = [CANCEL, Binding("ctrl+s", "save", "Save", id="summary_edit.save", priority=True,
                                tooltip="Save the summary as a new version")]
    DEFAULT_CSS = """
    SummaryEditor #summary-text { height: 20; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__(classes="dialog")
        self.editor_title = title
        self.initial = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box dialog-wide"):
            yield Static(Content(self.editor_title), classes="dialog-title")
            yield Static(Content(EDIT_HINT), classes="dialog-hint")
            yield TextArea(self.initial, id="summary-text", soft_wrap=True, tab_behavior="focus")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    @on(Button.Pressed, "#ok")
    def action_save(self) -> None:
        text = self.query_one(TextArea).text
        if not text.strip():
            self.notify("The summary cannot be empty (Rebuild summary starts over).", severity="warning")
            return
        self.dismiss(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
