"""The multi-line message input.

enter sends; ctrl+j (or shift+enter / alt+enter where the terminal reports
them) inserts a newline. up/down on the first/last line recall earlier
inputs, like a shell. Keys are BINDINGS: enter is a priority binding because
TextArea itself would insert a newline for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

PLACEHOLDER = "Message — enter sends, ctrl+j newline, ↑/↓ history"


class ChatInput(TextArea):
    BINDINGS = [
        Binding("enter", "submit", "Send", id="chat.send", priority=True),
        Binding("ctrl+j,shift+enter,alt+enter", "newline", "Newline", key_display="ctrl+j",
                id="chat.newline"),
        Binding("up", "history_previous", "Previous input", show=False, id="chat.history_previous"),
        Binding("down", "history_next", "Next input", show=False, id="chat.history_next"),
    ]

    @dataclass
    class Submitted(Message):
        """The user pressed enter on a non-empty input."""

        input: ChatInput
        text: str

        @property
        def control(self) -> ChatInput:
            return self.input

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         placeholder=PLACEHOLDER, compact=True)
        self.input_history: list[str] = []
        self._history_index: int | None = None  # None: editing a fresh draft
        self._draft = ""

    def set_history(self, entries: list[str]) -> None:
        self.input_history = [e for e in entries if e.strip()][-500:]
        self._history_index = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in {"submit", "newline"} and (self.read_only or self.disabled):
            return False
        return True

    def action_submit(self) -> None:
        # enter is a priority binding, so it runs from the app's queue while keys typed just
        # before it may still wait in this widget's queue (fast typing, a paste, a busy CPU).
        # Submitting from our own queue keeps the order: every earlier key lands first.
        self.call_later(self._submit)

    def _submit(self) -> None:
        text = self.text
        if not text.strip():
            return
        if not self.input_history or self.input_history[-1] != text:
            self.input_history.append(text)
        self._history_index = None
        self._draft = ""
        self.clear()
        self.post_message(self.Submitted(self, text))

    def action_newline(self) -> None:
        self.insert("\n")

    def action_history_previous(self) -> None:
        row, _ = self.cursor_location
        if row > 0 or not self.input_history:
            self.action_cursor_up()
            return
        if self._history_index is None:
            self._draft = self.text
            self._history_index = len(self.input_history)
        if self._history_index > 0:
            self._history_index -= 1
            self._recall(self.input_history[self._history_index])

    def action_history_next(self) -> None:
        row, _ = self.cursor_location
        if row < self.document.line_count - 1 or self._history_index is None:
            self.action_cursor_down()
            return
        self._history_index += 1
        if self._history_index >= len(self.input_history):
            self._history_index = None
            self._recall(self._draft)
        else:
            self._recall(self.input_history[self._history_index])

    def _recall(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)
