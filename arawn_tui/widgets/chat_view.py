"""The chat transcript: one block per message, the reply streaming in as Markdown.

Content is made inert (`sanitize.inert`) and rendered as plain `Content` (user
turns) or `MarkdownText` (model turns); neither interprets Rich/Textual markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.containers import Vertical, VerticalScroll
from textual.message import Message as UIMessage
from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static

from arawn_core.models import Message
from arawn_tui.formatting import local_time
from arawn_tui.sanitize import StreamSanitizer, inert
from arawn_tui.widgets.markdown_text import MarkdownText
from arawn_tui.widgets.recall_line import RecallLine

# A transcript shows a window of it: the newest WINDOW messages (or the ones around a
# search hit). Every mounted message makes each layout pass of the screen longer, so the
# rest is mounted PAGE at a time when the user scrolls to the window's top (or bottom),
# or all at once on request ('Show the whole transcript').
WINDOW = 12
PAGE = 12
BEFORE_FOUND = 8  # messages mounted above a search hit, for context
LOAD_MARGIN = 3  # lines from the window's edge at which the next page is mounted
# A streaming reply is re-rendered at most this often, however fast tokens come.
STREAM_REFRESH_S = 0.05

ROLE_LABEL = {"user": "you", "assistant": "model", "system": "system", "tool_use": "tool call",
              "tool_result": "tool result", "agent_push": "agent"}


class ChatMessage(Vertical):
    """One message: a small header (role, time) and the body."""

    def __init__(self, role: str, content: str, timestamp: str | None = None, *, note: str = "",
                 message_id: str | None = None, recalled: list[dict] | None = None) -> None:
        super().__init__(classes=f"message role-{role if role in ROLE_LABEL else 'other'}")
        self.message_id = message_id  # the stored message's id (None: typed or streamed just now)
        self.recalled = list(recalled or [])  # earlier messages recall added to this reply's request
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
        if self.recalled:
            yield RecallLine(self.recalled)
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
    """The centre pane. `show` replaces the transcript; `begin_reply` streams a new one.

    Of `messages`, `messages[_lo:_hi]` are mounted; a notice above (below) them says
    how many are not, and scrolling onto it mounts the next page.
    """

    can_focus = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.messages: list[Message] = []
        self.reply_text: list[str] = []  # raw pieces of the reply being streamed (for copy)
        self._reply_body: MarkdownText | None = None
        self._reply_shown = ""
        self._sanitizer = StreamSanitizer()
        self._flush_timer: Timer | None = None
        self._lo = 0
        self._hi = 0
        self._earlier: ChatNotice | None = None
        self._later: ChatNotice | None = None
        self._paging = False  # a page is being mounted
        self._generation = 0  # bumps on every show(): a page mounted for an older one is dropped
        self._shown: tuple | None = None  # what show() put up, while nothing was added to it
        self._found: ChatMessage | None = None  # shown at the top until the user scrolls (search hit)

    async def show(self, messages: list[Message], hint: str = "", found: str | None = None) -> None:
        """Replace everything with `messages`: the newest WINDOW of them, at the end.

        `found` (a message id, from a search hit): the window holds that message and
        the ones around it, marked, scrolled to the top of the view instead of the end.
        """
        await self.end_reply()
        shown = (tuple(m.id for m in messages), hint)
        if found is None and shown == self._shown:
            return  # already on screen (a reload, or the same empty live chat): no remount, no scroll
        self._shown = shown if found is None else None
        self._generation += 1
        self.messages = list(messages)
        self.reply_text = []
        self._found = None
        index = next((i for i, m in enumerate(messages) if m.id == found), None) if found else None
        n = len(messages)
        if index is None:
            self._lo, self._hi = max(0, n - WINDOW), n
        else:
            self._lo = max(0, index - BEFORE_FOUND)
            self._hi = min(n, self._lo + WINDOW)
        widgets: list[Widget] = [_message_widget(m) for m in messages[self._lo:self._hi]]
        if not messages and hint:
            widgets.append(ChatNotice(hint, "hint"))
        self._earlier = ChatNotice("", "more") if self._lo else None
        self._later = ChatNotice("", "more") if self._hi < n else None
        self._label_edges()
        if self._earlier is not None:
            widgets.insert(0, self._earlier)
        if self._later is not None:
            widgets.append(self._later)
        await self.remove_children()
        if widgets:
            await self.mount_all(widgets)
        if index is None:
            self.scroll_end(animate=False)
            self.anchor()
        else:
            self.anchor(False)
            self._found = next(w for w in widgets if isinstance(w, ChatMessage) and w.message_id == found)
            self._found.add_class("-found")
            self.call_after_refresh(self._scroll_to_found)
        self.call_after_refresh(self._fill_view)

    def _fill_view(self) -> None:
        """A window too short to scroll would never load the rest: load the next page now."""
        if self._paging or not self.is_attached or self.max_scroll_y > LOAD_MARGIN:
            return
        if self._earlier is not None:
            self._paging = True
            self.call_later(self._mount_earlier)
        elif self._later is not None:
            self._paging = True
            self.call_later(self._mount_later)

    def _label_edges(self) -> None:
        if self._earlier is not None:
            self._earlier.update(Content(f"↑ {self._lo} earlier message{'s' if self._lo != 1 else ''}: scroll up "
                                         "to load them (or 'Show the whole transcript' in the palette)"))
        if self._later is not None:
            later = len(self.messages) - self._hi
            self._later.update(Content(f"↓ {later} later message{'s' if later != 1 else ''}: scroll down to "
                                       "load them"))

    def _scroll_to_found(self) -> None:
        if self._found is not None and self._found.is_attached:
            self.scroll_to_widget(self._found, animate=False, top=True, immediate=True)

    def on_key(self) -> None:
        self._found = None  # the user moves: the view no longer holds on to the hit

    def on_mouse_scroll_up(self) -> None:
        self._found = None

    def on_mouse_scroll_down(self) -> None:
        self._found = None

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._paging or self._found is not None:
            return
        if self._earlier is not None and new_value <= LOAD_MARGIN and new_value < old_value:
            self._paging = True
            self.call_later(self._mount_earlier)
        elif self._later is not None and new_value >= self.max_scroll_y - LOAD_MARGIN and new_value > old_value:
            self._paging = True
            self.call_later(self._mount_later)

    async def _mount_earlier(self) -> None:
        """The user reached the top of the window: mount the PAGE messages before it, and keep
        what was on screen where it was (the new messages grow the view upwards)."""
        try:
            notice, generation = self._earlier, self._generation
            if notice is None or not notice.is_attached:
                return
            # a scroll still gliding towards the top would run on into the page just mounted
            await self.app.animator.stop_animation(self, "scroll_y", complete=False)
            lo = max(0, self._lo - PAGE)
            widgets = [_message_widget(m) for m in self.messages[lo:self._lo]]
            self._lo = lo
            height = self.virtual_size.height
            await self.mount_all(widgets, after=notice)
            if generation != self._generation:
                return
            if lo == 0:
                self._earlier = None
                await notice.remove()
            else:
                self._label_edges()
            self.call_after_refresh(self._keep_view, height, self.scroll_y)
        finally:
            self._paging = False
        self.call_after_refresh(self._fill_view)

    def _keep_view(self, height: int, scroll_y: float) -> None:
        if self._found is not None:
            self._scroll_to_found()
        else:
            self.scroll_to(y=scroll_y + self.virtual_size.height - height, animate=False, immediate=True)

    async def _mount_later(self) -> None:
        """The user reached the bottom of a window opened at a search hit: mount the next PAGE."""
        try:
            notice, generation = self._later, self._generation
            if notice is None or not notice.is_attached:
                return
            await self.app.animator.stop_animation(self, "scroll_y", complete=False)
            hi = min(len(self.messages), self._hi + PAGE)
            await self.mount_all([_message_widget(m) for m in self.messages[self._hi:hi]], before=notice)
            if generation != self._generation:
                return
            self._hi = hi
            if hi == len(self.messages):
                self._later = None
                await notice.remove()
            else:
                self._label_edges()
        finally:
            self._paging = False
        self.call_after_refresh(self._fill_view)

    async def show_all(self) -> None:
        """Mount every message of the transcript (the user asked for it)."""
        if self._lo or self._hi < len(self.messages):
            self._generation += 1
            self._shown = None
            self._found = None
            await self.remove_children()
            await self.mount_all([_message_widget(m) for m in self.messages])
            self._lo, self._hi = 0, len(self.messages)
            self._earlier = self._later = None

    async def _to_live_end(self) -> None:
        """Something is added at the end: a window opened at a search hit jumps to the newest messages."""
        if self._later is not None:
            await self.show(self.messages)

    async def add_user_message(self, text: str) -> None:
        await self._to_live_end()
        self._shown = None
        await self.query(".notice-hint").remove()
        await self.mount(ChatMessage("user", text))
        self.anchor()

    async def begin_reply(self) -> None:
        await self.end_reply()
        await self._to_live_end()
        self._shown = None
        self.reply_text = []
        self._reply_shown = ""
        self._sanitizer = StreamSanitizer()
        message = ChatMessage("assistant", "")
        await self.mount(message)
        self._reply_body = message.query_one(MarkdownText)
        self.anchor()

    async def note_recalled(self, recalled: list[dict]) -> None:
        """Say under the reply being streamed which earlier messages its request carried."""
        if self._reply_body is None or not recalled:
            return
        message = self._reply_body.parent
        if isinstance(message, ChatMessage) and not message.recalled:
            message.recalled = list(recalled)
            await message.mount(RecallLine(message.recalled), before=self._reply_body)

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
        await self._to_live_end()
        self._shown = None
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
    meta = m.metadata or {}
    recalled = meta.get("recalled") if isinstance(meta.get("recalled"), list) else None
    return ChatMessage(m.role, m.content, m.timestamp, message_id=m.id,
                       note="stopped" if m.interrupted else "",
                       recalled=[r for r in recalled or [] if isinstance(r, dict) and r.get("id")])
