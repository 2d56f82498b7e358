"""The line under a reply that says which earlier messages recall added to its request.

"recalled 3 earlier messages": a click (or enter, when focused) asks the screen to list
them; each opens its session at that message. The list comes from the reply's
metadata (`recalled`, written by `ArawnCore.send`), so it is there after a restart too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.message_pump import MessagePump
from textual.widgets import Static

if TYPE_CHECKING:
    from arawn_core.recall import Recall


def recalled_label(n: int) -> str:
    return f"recalled {n} earlier message{'s' if n != 1 else ''}"


@dataclass
class RecallNoted(Message):
    """A chat turn's recall is known (posted by the reply worker before the reply streams)."""

    workstream_id: str
    recalled: list[dict[str, Any]] = field(default_factory=list)


def recall_noter(target: MessagePump, workstream_id: str) -> Callable[[Recall], None]:
    """`ArawnCore.send(on_recall=...)`: post what was recalled to `target`, so the chat shows it as
    the reply starts."""
    def noted(recall: Recall) -> None:
        if recall.messages:
            target.post_message(RecallNoted(workstream_id, [r.to_dict() for r in recall.messages]))
    return noted


class RecallLine(Static):
    """One muted line; selecting it posts `RecallLine.Selected` with the recalled messages."""

    DEFAULT_CSS = """
    RecallLine {
        color: $text-muted;
        text-style: italic;
        width: auto;
    }
    RecallLine:hover, RecallLine:focus {
        color: $text-accent;
        text-style: italic underline;
    }
    """
    BINDINGS = [Binding("enter", "open", "Open recalled", id="recall.open",
                        tooltip="List the earlier messages recalled for this reply")]
    can_focus = True

    @dataclass
    class Selected(Message):
        """The user wants to see (and open) the messages recalled for a reply."""

        recalled: list[dict[str, Any]]

    def __init__(self, recalled: list[dict[str, Any]]) -> None:
        super().__init__(Content(f"↺ {recalled_label(len(recalled))} (click to open one)"), classes="recall-line")
        self.recalled = list(recalled)
        self.tooltip = "The model also got these earlier messages of this workstream, found by search"

    def on_click(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        self.post_message(self.Selected(self.recalled))
