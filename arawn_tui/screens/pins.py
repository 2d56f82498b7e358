"""Pinned notes of a workstream: list, add, edit, remove (f3); and pick a transcript message to pin.

Pins are the user's verbatim notes that go into every chat context of the workstream.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, OptionList, Static
from textual.widgets.option_list import Option

from arawn_core.core import UsageError
from arawn_core.memory.pins import Pin, PinFit
from arawn_core.models import Message
from arawn_tui.formatting import local_time
from arawn_tui.sanitize import one_line
from arawn_tui.screens.dialogs import CANCEL
from arawn_tui.widgets.chat_view import ROLE_LABEL

PINS_HINT = ("Pinned notes go verbatim into every chat of this workstream and are never summarized. "
             "a adds, e edits, delete removes.")


def pin_row(pin: Pin, left_out: bool) -> Content:
    head = Content.assemble((local_time(pin.created_at), "$text-muted"),
                            ("  left out: over budget" if left_out else "", "$warning"))
    return Content.assemble(head, "\n", one_line(pin.text, 300))


class PinsScreen(ModalScreen[None]):
    BINDINGS = [
        CANCEL,
        Binding("a", "add", "Add", id="pins.add", tooltip="Pin a new note"),
        Binding("e", "edit", "Edit", id="pins.edit", tooltip="Edit the highlighted note"),
        Binding("delete", "remove", "Remove", id="pins.remove", tooltip="Unpin the highlighted note"),
    ]

    def __init__(self, workstream_id: str, workstream_title: str) -> None:
        super().__init__(classes="dialog", id="pins-screen")
        self.workstream_id = workstream_id
        self.workstream_title = workstream_title
        self.pins: list[Pin] = []
        self.fit: PinFit | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box dialog-wide"):
            yield Static(Content(f"Pinned notes · {one_line(self.workstream_title, 50)}"), classes="dialog-title")
            yield Static(Content(PINS_HINT), classes="dialog-hint")
            yield Static("", id="pins-status", classes="dialog-hint")
            yield OptionList(id="pin-list")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Add (a)", variant="primary", id="add")
                yield Button("Edit (e)", id="edit")
                yield Button("Remove (del)", variant="error", id="remove")
                yield Button("Close", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#pin-list", OptionList).focus()

    @property
    def core(self):  # noqa: ANN201 - the app's ArawnCore
        return self.app.core  # type: ignore[attr-defined]

    @work(group="pins", exclusive=True, exit_on_error=False)
    async def reload(self, select: str | None = None) -> None:
        self.pins = await self.core.list_pins(self.workstream_id)
        self.fit = await self.core.pin_fit(self.workstream_id)
        left_out = {p.id for p in self.fit.omitted}
        listing = self.query_one("#pin-list", OptionList)
        keep = select or (listing.highlighted_option.id if listing.highlighted_option else None)
        listing.set_options(Option(pin_row(p, p.id in left_out), id=p.id) for p in self.pins)
        ids = [p.id for p in self.pins]
        if ids:
            listing.highlighted = ids.index(keep) if keep in ids else 0
        status = (f"{len(self.pins)} note{'s' if len(self.pins) != 1 else ''}, "
                  f"{self.fit.used_tokens} of {self.fit.budget_tokens} tokens") if self.pins else "No pinned notes yet."
        if self.fit.over_budget:
            status += "\n" + self.fit.warning()
        self.query_one("#pins-status", Static).update(Content(status))

    def _highlighted(self) -> Pin | None:
        option = self.query_one("#pin-list", OptionList).highlighted_option
        return next((p for p in self.pins if option is not None and p.id == option.id), None)

    @on(Button.Pressed, "#add")
    def action_add(self) -> None:
        self.edit_pin(None)

    @on(Button.Pressed, "#edit")
    def action_edit(self) -> None:
        pin = self._highlighted()
        if pin is None:
            self.notify("No note highlighted.", severity="warning")
        else:
            self.edit_pin(pin)

    @work(group="pin-dialog", exit_on_error=False)
    async def edit_pin(self, pin: Pin | None) -> None:
        from arawn_tui.screens.dialogs import MultilinePrompt

        text = await self.app.push_screen_wait(MultilinePrompt(
            "Edit pinned note" if pin else "New pinned note", pin.text if pin else "",
            "Kept word for word in every chat context of this workstream. ctrl+s saves."))
        if not text:
            return
        try:
            if pin is None:
                pin = await self.core.add_pin(self.workstream_id, text)
            else:
                await self.core.edit_pin(self.workstream_id, pin.id, text)
        except UsageError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.reload(pin.id)

    @on(Button.Pressed, "#remove")
    def action_remove(self) -> None:
        pin = self._highlighted()
        if pin is None:
            self.notify("No note highlighted.", severity="warning")
        else:
            self.remove_pin(pin)

    @work(group="pin-dialog", exit_on_error=False)
    async def remove_pin(self, pin: Pin) -> None:
        await self.core.remove_pin(self.workstream_id, pin.id)
        self.notify("Unpinned.")
        self.reload()

    @on(OptionList.OptionSelected, "#pin-list")
    def picked(self) -> None:
        self.action_edit()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class MessagePicker(ModalScreen[Message | None]):
    """Pick one message of the transcript on screen (newest first) to pin."""

    BINDINGS = [CANCEL]

    def __init__(self, messages: list[Message]) -> None:
        super().__init__(classes="dialog")
        self.messages = [m for m in reversed(messages) if m.content.strip()]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box dialog-wide"):
            yield Static("Pin a message", classes="dialog-title")
            yield Static("Its text becomes a pinned note of this workstream, word for word.", classes="dialog-hint")
            yield OptionList(*[Option(Content.assemble(
                (f"{ROLE_LABEL.get(m.role, m.role)} · {local_time(m.timestamp)}", "$text-muted"), "\n",
                one_line(m.content, 200)), id=m.id) for m in self.messages], id="message-list")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        listing = self.query_one("#message-list", OptionList)
        if self.messages:
            listing.highlighted = 0
        listing.focus()

    @on(OptionList.OptionSelected, "#message-list")
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(next(m for m in self.messages if m.id == event.option.id))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
