"""Markdown for content, rendered in one `Static`.

Textual's `Markdown` widget mounts a widget per block: about 30 ms a message,
so a 200-message transcript would freeze the screen for seconds. Rich's
Markdown renderable in a single `Static` is several times cheaper and still
reflows on resize. It is parsed with raw HTML kept as text (see
`sanitize.markdown_parser`) and links shown with their URL rather than as
hidden terminal hyperlinks: content is data.
"""

from __future__ import annotations

from rich.markdown import Markdown as RichMarkdown
from textual.widgets import Static

from arawn_tui.sanitize import inert, markdown_parser


class InertMarkdown(RichMarkdown):
    def __init__(self, text: str) -> None:
        super().__init__(text, hyperlinks=False)
        # Same renderer, our parser: HTML is shown as written instead of dropped.
        self.parsed = markdown_parser().parse(text)


class MarkdownText(Static):
    """A Markdown document; `source` is the (inert) text shown."""

    def __init__(self, source: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.source = ""
        self.set_source(source)

    def set_source(self, source: str) -> None:
        self.source = inert(source)
        self.update(InertMarkdown(self.source) if self.source else "")
