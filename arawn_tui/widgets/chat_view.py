"""The chat transcript: one block per message, the reply streaming in as Markdown.

Content is made inert (`sanitize.inert`) and rendered as plain `Content` (user
turns) or `Markdown` (model turns); neither interprets Rich/Textual markup.
"""

from __future__ import annotations

from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from arawn_core.models import Message
from arawn_tui.formatting import local_time
from arawn_tui.sanitize import StreamSanitizer, inert, markdown_parser

# Long transcripts mount only their tail first; "show earlier" mounts the rest.
TAIL = 200

ROLE_LABEL = {"user": "you", "assistant": "model", "system": "system", "tool_use": "tool call",
              "tool_result": "tool result", "agent_push": "agent"}


class ChatMessage(Vertical):
    """One message: a small header (role, time) and the body."""

    def __init__(self, role: str, content: str, timestamp: str | None = None, *, note: str = "") -> None:
        super().__init__(classes=f"message role-{role if role in ROLE_LABEL else 'other'}")
        self.role = role
        self.body_text = inert(content)
        self.timestamp = timestamp
        self.note = note

    def compose(self):
        header = ROLE_LABEL.get(self.role, self.role)
        when = local_time(self.timestamp)
        parts = [header] + ([when] if when else []) + ([self.note] if self.note else [])
        yield Static(Content(" · ".join(parts)), classes="message-header")
        if self.role == "assistant":
            yield Markdown(self.body_text, classes="message-body", parser_factory=markdown_parser)
        else:
            yield Static(Content(self.body_text), classes="message-body")


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
        self.reply_text: list[str] = []
        self._stream: MarkdownStream | None = None
        self._sanitizer = StreamSanitizer()
        self._reply_markdown: Markdown | None = None

    async def show(self, messages: list[Message], hint: str = "") -> None:
        """Replace everything with `messages` (only the last TAIL mounted at first)."""
        await self.end_reply()
        self.messages = list(messages)
        self.reply_text = []
        await self.remove_children()
        widgets: list = []
        if len(messages) > TAIL:
            widgets.append(ChatNotice(f"{len(messages) - TAIL} earlier messages not shown: "
                                      "use the palette's 'Show the whole transcript'", "hint"))
        widgets.extend(ChatMessage(m.role, m.content, m.timestamp,
                                   note="stopped" if (m.metadata or {}).get("interrupted") else "")
                       for m in messages[-TAIL:])
        if not messages and hint:
            widgets.append(ChatNotice(hint, "hint"))
        if widgets:
            await self.mount_all(widgets)
        self.scroll_end(animate=False)
        self.anchor()

    async def show_all(self) -> None:
        if len(self.messages) > TAIL:
            await self.remove_children()
            await self.mount_all([ChatMessage(m.role, m.content, m.timestamp) for m in self.messages])

    async def add_user_message(self, text: str) -> None:
        await self.query(".notice-hint").remove()
        await self.mount(ChatMessage("user", text))
        self.anchor()

    async def begin_reply(self) -> None:
        await self.end_reply()
        self.reply_text = []
        self._sanitizer = StreamSanitizer()
        message = ChatMessage("assistant", "")
        await self.mount(message)
        self._reply_markdown = message.query_one(Markdown)
        self._stream = Markdown.get_stream(self._reply_markdown)
        self.anchor()

    async def write_reply(self, piece: str) -> None:
        if self._stream is None:
            await self.begin_reply()
        assert self._stream is not None
        self.reply_text.append(piece)
        await self._stream.write(self._sanitizer.feed(piece))

    async def end_reply(self) -> None:
        """Flush and stop the stream (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            tail = self._sanitizer.flush()
            if tail:
                await stream.write(tail)
            await stream.stop()
        if self._reply_markdown is not None and not self.reply_text:
            # No text arrived: drop the empty reply block.
            await self._reply_markdown.parent.remove()  # type: ignore[union-attr]
        self._reply_markdown = None

    @property
    def replying(self) -> bool:
        return self._stream is not None

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
