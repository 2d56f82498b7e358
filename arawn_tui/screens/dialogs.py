"""Modal dialogs, each a `ModalScreen[T]` that dismisses with its answer (None: cancelled)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from arawn_tui.sanitize import one_line

CANCEL = Binding("escape", "cancel", "Cancel", id="dialog.cancel")

DEFAULT_MODEL = ""  # ModelPicker's answer for "use the configured default"


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text (new workstream title, rename)."""

    BINDINGS = [CANCEL]

    def __init__(self, title: str, value: str = "", placeholder: str = "", action: str = "OK") -> None:
        super().__init__(classes="dialog")
        self.prompt_title = title
        self.initial = value
        self.placeholder_text = placeholder
        self.action_label = action

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(Content(self.prompt_title), classes="dialog-title")
            yield Input(self.initial, placeholder=self.placeholder_text, id="answer")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.action_label, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def accept(self) -> None:
        text = self.query_one("#answer", Input).value.strip()
        if text:
            self.dismiss(text)
        else:
            self.notify("It cannot be empty.", severity="warning")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class MultilinePrompt(ModalScreen[str | None]):
    """Edit a longer text (the workstream's system prompt). ctrl+s saves; empty clears it."""

    BINDINGS = [CANCEL, Binding("ctrl+s", "save", "Save", id="dialog.save", priority=True)]

    def __init__(self, title: str, value: str = "", hint: str = "") -> None:
        super().__init__(classes="dialog")
        self.prompt_title = title
        self.initial = value
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box dialog-wide"):
            yield Static(Content(self.prompt_title), classes="dialog-title")
            if self.hint:
                yield Static(Content(self.hint), classes="dialog-hint")
            yield TextArea(self.initial, id="answer", soft_wrap=True, tab_behavior="focus")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#ok")
    def action_save(self) -> None:
        self.dismiss(self.query_one("#answer", TextArea).text.strip())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    BINDINGS = [CANCEL, Binding("y", "yes", "Yes", id="dialog.yes"), Binding("n", "cancel", "No", id="dialog.no")]

    def __init__(self, question: str, action: str = "Yes") -> None:
        super().__init__(classes="dialog")
        self.question = question
        self.action_label = action

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(Content(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.action_label, variant="error", id="ok")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#ok")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class ModelPicker(ModalScreen[str | None]):
    """Pick a chat model from the backend's list; the first row clears the override."""

    BINDINGS = [CANCEL]

    def __init__(self, models: list[str], current: str | None, default: str, reachable: bool) -> None:
        super().__init__(classes="dialog")
        self.models = models
        self.current_model = current
        self.default_model = default
        self.reachable = reachable

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static("Model for this workstream", classes="dialog-title")
            if not self.reachable:
                yield Static("The backend is unreachable: only the configured default is listed.",
                             classes="dialog-hint")
            options = [Option(Content(f"default ({one_line(self.default_model, 60)})"), id="\0default")]
            options += [Option(Content(one_line(m, 80)), id=m) for m in self.models]
            yield OptionList(*options, id="models")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        models = self.query_one("#models", OptionList)
        if self.current_model and self.current_model in self.models:
            models.highlighted = models.get_option_index(self.current_model)
        else:
            models.highlighted = 0
        models.focus()

    @on(OptionList.OptionSelected, "#models")
    def picked(self, event: OptionList.OptionSelected) -> None:
        choice = event.option.id
        self.dismiss(DEFAULT_MODEL if choice == "\0default" else choice)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
