"""How domain values look on screen: badges, times, provenance lines.

Kept in one place so the list rows, the summary panel and the snapshot tests
agree. Everything returns `Content` or plain strings built from inert content,
never markup.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from textual.content import Content

from arawn_core.models import CompressionStatus, JobProgress, Provenance, parse_ts

BADGE_STYLE: dict[CompressionStatus, str] = {
    CompressionStatus.PENDING: "bold $warning",
    CompressionStatus.RUNNING: "bold $accent",
    CompressionStatus.DONE: "$success",
    CompressionStatus.FAILED: "bold $error",
    CompressionStatus.STALE: "$text-muted",
}



def badge_label(status: CompressionStatus, progress: JobProgress | None = None) -> str:
    """The badge words: pending, running n/m, done, failed, stale ("" for nothing yet)."""
    if status is CompressionStatus.NONE:
        return ""
    if status is CompressionStatus.RUNNING and progress is not None and progress.total:
        return f"running {progress.done}/{progress.total}"
    return status.value


def badge(status: CompressionStatus, progress: JobProgress | None = None) -> Content:
    """The badge as theme-coloured `Content` (plain text: no markup is parsed)."""
    label = badge_label(status, progress)
    return Content.styled(label, BADGE_STYLE.get(status, "")) if label else Content("")


def local_time(iso: str | None) -> str:
    """A stored UTC timestamp as local `YYYY-MM-DD HH:MM` ("" when missing or unreadable)."""
    if not iso:
        return ""
    try:
        return parse_ts(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso[:16]


def duration(started: str, ended: str | None) -> str:
    if not ended:
        return ""
    try:
        seconds = (parse_ts(ended) - parse_ts(started)).total_seconds()
    except ValueError:
        return ""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def provenance_line(p: Provenance, covers: int | None = None, stale: bool = False) -> str:
    """Who made a summary, when, from how much: model · date · sessions covered · tokens."""
    parts = [p.model if p.model != "verbatim" else "stored verbatim (too short to summarize)",
             local_time(p.created_at)]
    if covers is not None:
        parts.append(f"{covers} session{'s' if covers != 1 else ''} covered")
    if p.llm_calls:
        parts.append(f"{p.input_tokens}→{p.output_tokens} tokens in {p.llm_calls} call{'s' if p.llm_calls != 1 else ''}")
    if stale:
        parts.append(f"stale (prompt {p.prompt_version} or model changed: ctrl+k redoes it)")
    return " · ".join(part for part in parts if part)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class ListRow(Content):
    """A list row (`Content`) whose height is known without wrapping it when every line fits,
    and is remembered per width.

    OptionList measures every row when it is filled, and again after any row's prompt is
    replaced (its public `replace_option_prompt` drops every measurement): for a thousand
    workstreams, wrapping each row just to learn it is two lines high would be most of the
    cost, on every badge change. A row's text never changes (a changed workstream gets a new
    row), so its height at a given width is computed once."""

    __slots__ = ("_heights",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heights: dict[tuple[int, int, str, str], int] = {}

    @classmethod
    def of(cls, content: Content) -> ListRow:
        return cls(content.plain, list(content.spans), content.cell_length)

    def get_height(self, rules, width: int) -> int:  # noqa: ANN001 - textual's RulesMap
        line_pad = rules.get("line_pad", 0)
        key = (width, line_pad, rules.get("text_overflow", "fold"), rules.get("text_wrap", "wrap"))
        height = self._heights.get(key)
        if height is None:
            height = self._heights[key] = self._measure(rules, width, line_pad)
        return height

    def _measure(self, rules, width: int, line_pad: int) -> int:  # noqa: ANN001
        text = self.plain
        available = width - line_pad * 2
        if available > 0 and "\t" not in text:
            lines = text.split("\n")
            if all(cell_len(line) <= available for line in lines):
                return len(lines)
        return super().get_height(rules, width)
