"""The chat transcript: one block per message, the reply streaming in as Markdown.

Content is made inert (`sanitize.inert`) and rendered as plain `Content` (user
turns) or `MarkdownText` (model turns); neither interprets Rich/Textual markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual import events

from textual.containers import Vertical, VerticalScroll
from textual.message import Message as UIMessage
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Static

from arawn_core.models import Message
from arawn_tui.formatting import local_time
from arawn_tui.sanitize import StreamSanitizer, inert
from arawn_tui.widgets.markdown_text import MarkdownText

# A transcript is mounted newest first, in batches (about 10 ms a message), so
# the screen answers keys while a long session fills in; at most TAIL messages
# are mounted unless the user asks for the whole transcript.
FIRST_BATCH = 12
BATCH = 12
TAIL = 200
# A streaming reply is re-rendered at most this often, however fast tokens come.
STREAM_REFRESH_S = 0.05

ROLE_LABEL = {"user": "you", "assistant": "model", "system": "system", "tool_use": "tool call",
              "tool_result": "tool result", "agent_push": "agent"}


class ChatMessage(Vertical):
    """One message: a small header (role, time) and the body."""

    def __init__(self, role: str, content: str, timestamp: str | None = None, *, note: str = "",
                 message_id: str | None = None) -> None:
        super().__init__(classes=f"message role-{role if role in ROLE_LABEL else 'other'}")
        self.message_id = message_id  # the stored message's id (None: typed or streamed just now)
        self.role = role
        self.body_text = inert(content)
        self.timestamp = timestamp
        self.note = note

    @dataclass
    class CopyRequested(UIMessage):
        """The user double-clicked a message: copy its text."""

        text: str

    def compose(self):
        header = ROLE_LABEL.get(self.role, self.role)
        when = local_time(self.timestamp)
        parts = [header] + ([when] if when else []) + ([self.note] if self.note else [])
        title = Static(Content(" · ".join(parts)), classes="message-header")
        title.tooltip = "Double-click a message to copy it"
        yield title
        if self.role == "assistant":
            yield MarkdownText(self.body_text, classes="message-body")
        else:
            yield Static(Content(self.body_text), classes="message-body")

    @property
    def text(self) -> str:
        """What the message says (for a streaming reply: what has arrived so far)."""
        body = self.query(MarkdownText)
        return body.first().source if body else self.body_text

    def on_click(self, event: events.Click) -> None:
        if event.chain == 2:
            self.post_message(self.CopyRequested(self.text))


class ChatNotice(Static):
    """A line that is not a message: an error, a stopped reply, an empty-state hint."""

    def __init__(self, text: str, kind: str = "hint") -> None:
        super().__init__(Content(inert(text)), classes=f"notice notice-{kind}")


class ChatView(VerticalScroll):
    """The centre pane. `show` replaces the transcript; `begin_reply` streams a new one."""

    can_focus = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.messages: list[Message] = []
        self.reply_text: list[str] = []  # raw pieces of the reply being streamed (for copy)
        self._reply_body: MarkdownText | None = None
        self._reply_shown = ""
        self._sanitizer = StreamSanitizer()
        self._flush_timer: Timer | None = None
        self._generation = 0  # bumps on every show(): stale batch timers stop
        self._earlier: list[Message] = []  # older messages still to mount
        self._not_mounted = 0  # beyond TAIL: mounted only on request
        self._found: ChatMessage | None = None  # shown at the top until the user scrolls (search hit)

    async def show(self, messages: list[Message], hint: str = "", found: str | None = None) -> None:
        """Replace everything with `messages`: the newest at once, older ones in batches.

        `found` (a message id, from a search hit): that message is mounted at once,
        marked, and scrolled to the top of the view instead of the end.
        """
        await self.end_reply()
        self._generation += 1
        self.messages = list(messages)
        self.reply_text = []
        self._found = None
        await self.remove_children()
        index = next((i for i, m in enumerate(messages) if m.id == found), None) if found else None
        start = max(0, len(messages) - TAIL)
        if index is not None:
            start = min(start, index)
        tail = messages[start:]
        first = FIRST_BATCH if index is None else max(FIRST_BATCH, len(messages) - index)
        widgets: list = [_message_widget(m) for m in tail[-first:]]
        if not messages and hint:
            widgets.append(ChatNotice(hint, "hint"))
        if widgets:
            await self.mount_all(widgets)
        self._earlier = tail[:-first]
        self._not_mounted = start
        if index is None:
            self.scroll_end(animate=False)
            self.anchor()
        else:
            self.anchor(False)
            self._found = next(w for w in widgets if isinstance(w, ChatMessage) and w.message_id == found)
            self._found.add_class("-found")
            self.call_after_refresh(self._scroll_to_found)
        if self._earlier or self._not_mounted:
            self.set_timer(0.01, partial(self._mount_earlier, self._generation))

    def _scroll_to_found(self) -> None:
        if self._found is not None and self._found.is_attached:
            self.scroll_to_widget(self._found, animate=False, top=True, immediate=True)

    def on_key(self) -> None:
        self._found = None  # the user moves: older batches arriving no longer pull the view back

    def on_mouse_scroll_up(self) -> None:
        self._found = None

    def on_mouse_scroll_down(self) -> None:
        self._found = None

    async def _mount_earlier(self, generation: int) -> None:
        if generation != self._generation:  # another transcript was shown meanwhile
            return
        batch, self._earlier = self._earlier[-BATCH:], self._earlier[:-BATCH]
        widgets: list = [_message_widget(m) for m in batch]
        if not self._earlier and self._not_mounted:
            widgets.insert(0, ChatNotice(f"{self._not_mounted} earlier messages not shown: use the palette's "
                                         "'Show the whole transcript'", "hint"))
        if widgets:
            await self.mount_all(widgets, before=0)
            if self._found is not None:  # messages above the found one push it down: put it back
                self.call_after_refresh(self._scroll_to_found)
        if self._earlier:
            self.set_timer(0.01, partial(self._mount_earlier, generation))

    async def show_all(self) -> None:
        """Mount every message of the transcript (the user asked for it)."""
        if self._not_mounted:
            self._generation += 1
            self._found = None
            await self.remove_children()
            await self.mount_all([_message_widget(m) for m in self.messages])
            self._earlier, self._not_mounted = [], 0

    async def add_user_message(self, text: str) -> None:
        await self.query(".notice-hint").remove()
        await self.mount(ChatMessage("user", text))
        self.anchor()

    async def begin_reply(self) -> None:
        await self.end_reply()
        self.reply_text = []
        self._reply_shown = ""
        self._sanitizer = StreamSanitizer()
        message = ChatMessage("assistant", "")
        await self.mount(message)
        self._reply_body = message.query_one(MarkdownText)
        self.anchor()

    def write_reply(self, piece: str) -> None:
        """Add a piece of the reply; the screen shows it within STREAM_REFRESH_S."""
        if self._reply_body is None:
            return
        self.reply_text.append(piece)
        self._reply_shown += self._sanitizer.feed(piece)
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(STREAM_REFRESH_S, self._flush_reply)

    def _flush_reply(self) -> None:
        self._flush_timer = None
        if self._reply_body is not None:
            self._reply_body.set_source(self._reply_shown)

    async def end_reply(self) -> None:
        """Show the whole reply and stop streaming (idempotent)."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        body, self._reply_body = self._reply_body, None
        if body is None:
            return
        self._reply_shown += self._sanitizer.flush()
        if self.reply_text:
            body.set_source(self._reply_shown)
        else:  # no text arrived (an error, or stopped at once): drop the empty block
            await body.parent.remove()  # type: ignore[union-attr]

    @property
    def replying(self) -> bool:
        return self._reply_body is not None

    async def add_notice(self, text: str, kind: str = "hint") -> None:
        await self.mount(ChatNotice(text, kind))
        self.anchor()

    @property
    def last_reply(self) -> str | None:
        """The text of the most recent model reply shown (for copy to clipboard)."""
        if self.reply_text:
            return "".join(self.reply_text)
        for m in reversed(self.messages):
            if m.role == "assistant":
                return m.content
        return None


def _message_widget(m: Message) -> ChatMessage:
    return ChatMessage(m.role, m.content, m.timestamp, message_id=m.id,
                       note="stopped" if (m.metadata or {}).get("interrupted") else "")
