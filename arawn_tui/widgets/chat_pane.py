"""The chat pane: the title row, the conversation and the input, and the reply being streamed.

The pane shows one workstream's live chat (or, read-only, an ended session's
transcript) and sends what is typed: the reply streams in a worker into the
view. It tells the screen what happened with its own messages:
`ScratchChosen` (a message typed with no workstream went to the scratch
workstream) and `ReplyStateChanged` (a reply began or ended: the escape key
changes meaning).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Static
from textual.worker import Worker

from arawn_core.errors import ArawnError
from arawn_core.models import Message as ChatRecord
from arawn_tui import messages as m
from arawn_tui import workers as groups
from arawn_tui.widgets.chat_input import PLACEHOLDER, ChatInput
from arawn_tui.widgets.chat_view import ChatView
from arawn_tui.widgets.recall_line import RecallNoted, recall_noter

if TYPE_CHECKING:
    from arawn_core.core import ArawnCore

LIVE_HINT = ("A new session starts with your first message; the model gets the workstream summary "
             "as its starting context.")
EMPTY_HINT = ("No workstreams yet. ctrl+n creates one; or just type: the chat goes to the Scratch "
              "workstream.")
READ_ONLY_PLACEHOLDER = "Read-only transcript of an ended session — escape returns to the live chat"


class ChatPane(Vertical):
    @dataclass
    class ScratchChosen(Message):
        """A message typed with no workstream selected went to the scratch workstream."""

        workstream_id: str

    class ReplyStateChanged(Message):
        """A reply started or ended."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstream_id: str | None = None  # whose chat is shown (None: the next message goes to scratch)
        self.reply_worker: Worker | None = None
        self.reply_ws: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="chat-title")
        yield ChatView(id="chat")
        yield ChatInput(id="input")

    @property
    def chat(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def chat_input(self) -> ChatInput:
        return self.query_one(ChatInput)

    @property
    def replying(self) -> bool:
        return self.reply_worker is not None and not self.reply_worker.is_finished

    def replying_in(self, workstream_id: str | None) -> bool:
        return self.replying and self.reply_ws == workstream_id

    # ---- what is shown -----------------------------------------------------------------
    def set_title(self, name: str | None, read_only_since: str | None = None) -> None:
        """`name` None: no workstream; `read_only_since`: an ended session's start, shown read-only."""
        # the title row is one line high whatever it says: no relayout of the whole chat
        title = self.query_one("#chat-title", Static)
        if name is None:
            title.update(Content("Scratch chat — ctrl+n for a new workstream"), layout=False)
            return
        if read_only_since is not None:
            title.update(Content.assemble(
                ("READ-ONLY ", "bold $warning"), (f"{name} — session of {read_only_since}", ""),
                ("  (escape: back to the live chat)", "$text-muted")), layout=False)
        else:
            title.update(Content.assemble((name, "bold"), ("  live chat", "$text-muted")), layout=False)
        chat_input = self.chat_input
        chat_input.disabled = read_only_since is not None
        chat_input.placeholder = READ_ONLY_PLACEHOLDER if read_only_since is not None else PLACEHOLDER

    async def show_transcript(self, messages: list[ChatRecord], read_only: bool, found: str | None = None) -> None:
        chat_input = self.chat_input
        chat_input.disabled = read_only
        if not read_only:
            chat_input.set_history([x.content for x in messages if x.role == "user"])
        await self.chat.show(messages, "" if read_only else LIVE_HINT, found=found)

    async def show_empty(self) -> None:
        if not self.replying:
            await self.chat.show([], EMPTY_HINT)

    # ---- sending and the reply ------------------------------------------------------------
    async def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        event.stop()
        if self.app.core is None:  # type: ignore[attr-defined]
            self.chat_input.load_text(event.text)
            self.notify("Still opening the data dir…", severity="warning")
            return
        if self.replying:
            self.chat_input.load_text(event.text)
            self.notify("A reply is still being written: wait, or press escape to stop it.", severity="warning")
            return
        await self.chat.add_user_message(event.text)
        await self.chat.begin_reply()
        self.reply_ws = self.workstream_id
        self.reply_worker = self.stream_reply(self.workstream_id, event.text)
        self.post_message(self.ReplyStateChanged())

    @work(group=groups.CHAT, exit_on_error=False)
    async def stream_reply(self, ws_id: str | None, text: str) -> None:
        """Send one message and stream the reply; errors the user can act on go into the chat."""
        core: ArawnCore = self.app.core  # type: ignore[attr-defined]
        ended = m.ReplyEnded(ws_id or "")
        try:
            if ws_id is None:
                ws_id = (await core.scratch_workstream()).id
                ended.workstream_id = ws_id
                self.post_message(m.ChatTargetChosen(ws_id))
            async for piece in core.send(ws_id, text, on_recall=recall_noter(self, ws_id)):
                self.post_message(m.ReplyPiece(ws_id, piece))
        except ArawnError as exc:
            ended.error = exc.message
        except asyncio.CancelledError:
            ended.stopped = True
            raise
        finally:
            self.post_message(ended)

    def on_chat_target_chosen(self, message: m.ChatTargetChosen) -> None:
        message.stop()
        if self.workstream_id is None:
            self.workstream_id = message.workstream_id
            self.reply_ws = message.workstream_id
            self.post_message(self.ScratchChosen(message.workstream_id))

    async def on_recall_noted(self, message: RecallNoted) -> None:
        message.stop()
        if message.workstream_id == self.reply_ws:
            await self.chat.note_recalled(message.recalled)

    def on_reply_piece(self, message: m.ReplyPiece) -> None:
        message.stop()
        if self.chat.replying and message.workstream_id == self.reply_ws:
            self.chat.write_reply(message.text)

    async def on_reply_ended(self, message: m.ReplyEnded) -> None:
        message.stop()
        showing = self.chat.replying
        await self.chat.end_reply()
        if showing and message.error:
            await self.chat.add_notice(f"No reply: {message.error}", "error")
        elif showing and message.stopped:
            await self.chat.add_notice("Stopped. The partial reply was kept.", "hint")
        self.post_message(self.ReplyStateChanged())

    def stop_reply(self) -> None:
        if self.replying and self.reply_worker is not None:
            self.reply_worker.cancel()
