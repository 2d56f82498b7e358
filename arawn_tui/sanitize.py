"""Content is data: make message and summary text inert before it is rendered.

Text from the model, from imports or from the user may carry terminal escape
sequences, control characters or bidi overrides. Rendered raw they could move
the cursor, change colours, or reorder what the user reads. Every piece of
stored content passes through `inert` before it reaches a widget; widgets then
render it as `Content` or Markdown (never as Rich/Textual markup).

The headless CLI prints through the same `inert` (`arawn_tui.cli_output`), so
the terminal sees the same neutralised text whichever front end printed it:
content, titles, file names, model names and servers' error text alike.
This module imports nothing heavy: the CLI's start path loads it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

# C0 controls except \t and \n, DEL, and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
# Bidi embeddings/overrides/isolates ("Trojan source") and the BOM mid-text.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\ufeff]")


def _control_picture(match: re.Match[str]) -> str:
    ch = match.group(0)
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 CONTROL PICTURES: ESC -> "␛"
    if code == 0x7F:
        return "\u2421"  # "␡"
    return f"<{code:02X}>"  # C1: shown as its code, e.g. <9B>


def _codepoint(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group(0)):04X}>"


def inert(text: str | None) -> str:
    """Return `text` with control characters replaced by visible, harmless stand-ins.

    Line breaks are normalised (CRLF and lone CR become LF) so a carriage
    return cannot overwrite what was already drawn; tabs and newlines stay.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(_control_picture, text)
    return _BIDI.sub(_codepoint, text)


def one_line(text: str | None, limit: int = 200) -> str:
    """`inert`, on one line and cut to `limit` characters (titles, toasts, list rows)."""
    flat = " ".join(inert(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class StreamSanitizer:
    """`inert` for text that arrives in pieces: a CR at the end of one piece and an
    LF at the start of the next still make one line break."""

    def __init__(self) -> None:
        self._held_cr = False

    def feed(self, piece: str) -> str:
        if self._held_cr:
            piece = "\r" + piece
            self._held_cr = False
        if piece.endswith("\r"):
            piece = piece[:-1]
            self._held_cr = True
        return inert(piece)

    def flush(self) -> str:
        held, self._held_cr = self._held_cr, False
        return "\n" if held else ""


def markdown_parser() -> MarkdownIt:
    """The Markdown parser for content: GFM-like, with raw HTML shown as text.

    The usual parsers accept HTML and then the renderers drop it, so a `<div>`
    in a reply would silently vanish; content must stay visible as written.
    """
    from markdown_it import MarkdownIt  # here: only Markdown views need it, and its import is not small

    return MarkdownIt("gfm-like", {"html": False})
