"""Split a transcript into chunks that each fit one LLM call.

Why on message boundaries: a summary of whole messages reads better than one
of fragments, and the role of every line stays known. Only a message that is
larger than a chunk on its own is cut, preferably at a newline or a space, and
its parts are labelled "(part i/n)" so the model knows it sees a fragment.

The one invariant that matters: every character of the input lands in exactly
one chunk, in order. Nothing is dropped to make things fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class ChunkItem:
    """One message, or one part of a message, inside a chunk."""

    role: str
    text: str
    index: int  # position of the source message in the input
    label: str = ""  # "" for a whole message, "part i/n" for a piece of one

    @property
    def header(self) -> str:
        return f"{self.role}, {self.label}" if self.label else self.role


@dataclass
class Chunk:
    items: list[ChunkItem] = field(default_factory=list)
    item_overhead_chars: int = 0

    @property
    def chars(self) -> int:
        """Text characters only."""
        return sum(len(it.text) for it in self.items)

    @property
    def size(self) -> int:
        """What the planner counted against `max_chars`: text plus per-item overhead."""
        return self.chars + self.item_overhead_chars * len(self.items)


def split_text(text: str, capacity: int) -> list[str]:
    """Cut `text` into pieces of at most `capacity` chars, preferring newline, then space, boundaries.

    A boundary is only used if it keeps the piece at least half full, so a
    text without good boundaries still splits into few pieces.
    """
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    pieces: list[str] = []
    pos = 0
    n = len(text)
    while n - pos > capacity:
        end = pos + capacity
        cut = -1
        for sep in ("\n", " "):
            i = text.rfind(sep, pos + capacity // 2, end)
            if i != -1:
                cut = i + 1  # the separator stays with the left piece
                break
        if cut <= pos:
            cut = end
        pieces.append(text[pos:cut])
        pos = cut
    pieces.append(text[pos:])
    return pieces


def plan_chunks(
    items: Sequence[tuple[str, str]],
    max_chars: int,
    *,
    item_overhead_chars: int = 0,
) -> list[Chunk]:
    """Group (role, text) items into chunks of at most `max_chars` (text + `item_overhead_chars` per item).

    Items are kept whole when they fit; consecutive items share a chunk while
    they fit; an item too large for an empty chunk is split into parts that
    each fill one chunk (the last part may share its chunk with what follows).
    Empty input gives no chunks.
    """
    capacity = max_chars - item_overhead_chars
    if capacity < 1:
        raise ValueError(
            f"max_chars={max_chars} leaves no room for text after {item_overhead_chars} chars of item overhead"
        )
    chunks: list[Chunk] = []
    current = Chunk(item_overhead_chars=item_overhead_chars)

    def close() -> None:
        nonlocal current
        if current.items:
            chunks.append(current)
        current = Chunk(item_overhead_chars=item_overhead_chars)

    for index, (role, text) in enumerate(items):
        cost = len(text) + item_overhead_chars
        if current.size + cost <= max_chars:
            current.items.append(ChunkItem(role, text, index))
            continue
        close()
        if cost <= max_chars:
            current.items.append(ChunkItem(role, text, index))
            continue
        parts = split_text(text, capacity)
        n = len(parts)
        for i, part in enumerate(parts, 1):
            current.items.append(ChunkItem(role, part, index, f"part {i}/{n}"))
            if i < n:
                close()
    close()
    return chunks


def resplit(items: Sequence[ChunkItem], max_chars: int, *, item_overhead_chars: int = 0) -> list[Chunk]:
    """Split already-chunked items again, smaller (after an overflow), keeping source indexes and labels.

    A part of a part is labelled "part i/n, part j/m", so the model still sees
    where the fragment sits.
    """
    sub = plan_chunks([(it.role, it.text) for it in items], max_chars, item_overhead_chars=item_overhead_chars)
    for chunk in sub:
        mapped: list[ChunkItem] = []
        for it in chunk.items:
            outer = items[it.index]
            label = ", ".join(x for x in (outer.label, it.label) if x)
            mapped.append(ChunkItem(outer.role, it.text, outer.index, label))
        chunk.items = mapped
    return sub

