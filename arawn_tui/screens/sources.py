"""Pick one of a few places to go: the messages recalled for a reply, the sessions a summary covers."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option


class SourcePicker(ModalScreen[str | None]):
    """A titled list of (id, label); enter dismisses with the id, escape with None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, items: list[tuple[str, str]], hint: str = "") -> None:
        super().__init__(classes="dialog")
        self.picker_title = title
        self.items = items
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box dialog-wide"):
            yield Static(Content(self.picker_title), classes="dialog-title")
            if self.hint:
                yield Static(Content(self.hint), classes="dialog-hint")
            yield OptionList(*[Option(Content(label), id=key) for key, label in self.items], id="sources")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        options = self.query_one("#sources", OptionList)
        options.highlighted = 0 if self.items else None
        options.focus()

    @on(OptionList.OptionSelected, "#sources")
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
