"""Markdown for content, rendered in one `Static`.

Textual's `Markdown` widget mounts a widget per block: about 30 ms a message,
so a 200-message transcript would freeze the screen for seconds. Rich's
Markdown renderable in a single `Static` is several times cheaper and still
reflows on resize. It is parsed with raw HTML kept as text (see
`sanitize.markdown_parser`) and links shown with their URL rather than as
hidden terminal hyperlinks: content is data.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from textual.widgets import Static

from arawn_tui.sanitize import inert, markdown_parser


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return markdown_parser()  # building a parser costs more than parsing a message: one for all


class InertMarkdown(RichMarkdown):
    def __init__(self, text: str) -> None:
        # Rich's __init__ builds a parser of its own and parses the text with it, only for
        # the result to be replaced by ours: set what it sets, parsed once, by our parser
        # (same renderer; HTML is shown as written instead of dropped).
        self.markup = text
        self.parsed = _parser().parse(text)
        self.code_theme = "monokai"
        self.justify = None
        self.style = "none"
        self.hyperlinks = False
        self.inline_code_lexer = None
        self.inline_code_theme = self.code_theme


class RenderedOnce:
    """A renderable that renders `renderable` once per width and replays the segments.

    Textual renders a `Static`'s content once to measure its height and again to
    paint it; for Markdown (code blocks highlighted by Pygments) that is the bulk of
    showing a message, on every layout that measures it."""

    def __init__(self, renderable: RichMarkdown) -> None:
        self.renderable = renderable
        self._cache: dict[tuple, list[Segment]] = {}

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        key = (options.max_width, options.min_width, options.justify, options.overflow, options.no_wrap,
               options.highlight, options.markup, options.ascii_only, options.legacy_windows, console.color_system)
        segments = self._cache.get(key)
        if segments is None:
            if len(self._cache) > 4:  # widths seen while resizing
                self._cache.clear()
            segments = self._cache[key] = list(console.render(self.renderable, options.update(height=None)))
        yield from segments


class MarkdownText(Static):
    """A Markdown document; `source` is the (inert) text shown."""

    def __init__(self, source: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.source = ""
        self.set_source(source)

    def set_source(self, source: str) -> None:
        self.source = inert(source)
        self.update(RenderedOnce(InertMarkdown(self.source)) if self.source else "")
