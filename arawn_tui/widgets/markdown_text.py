"""Markdown for content, rendered in one `Static`.

Textual's `Markdown` widget mounts a widget per block: about 30 ms a message,
so a 200-message transcript would freeze the screen for seconds. Rich's
Markdown renderable in a single `Static` is several times cheaper and still
reflows on resize. It is parsed with raw HTML kept as text (see
`sanitize.markdown_parser`) and links shown with their URL rather than as
hidden terminal hyperlinks: content is data.
"""

from __future__ import annotations

import copy
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


@lru_cache(maxsize=1)
def _template() -> RichMarkdown:
    """Rich's Markdown as Rich's own constructor sets it up (links shown with their URL, not
    as hidden terminal hyperlinks), over an empty document."""
    return RichMarkdown("", code_theme="monokai", hyperlinks=False)


def inert_markdown(text: str) -> RichMarkdown:
    """`text` as Rich's Markdown renderable, parsed once, by our parser (raw HTML shown as
    written instead of dropped).

    Rich's constructor would build a parser of its own for every document and parse the text
    with it, only for the result to be replaced by ours: a copy of one constructed instance
    gets our parse in its public `markup` and `parsed` attributes instead."""
    md = copy.copy(_template())
    md.markup = text
    md.parsed = _parser().parse(text)
    return md


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
        self.update(RenderedOnce(inert_markdown(self.source)) if self.source else "")
