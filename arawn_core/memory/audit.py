"""Audit a summary against the key items of its inputs; the verbatim "Key items" section; the fallback.

Why: a small model drops identifiers, numbers and paths, and the losses
compound over chunk -> merge -> session -> reduce. Each summary is checked
against the key items of what it summarizes (`audit_text`); what it lacks
gets one repair call (in `compression.step`); what is still missing is
appended verbatim under a "Key items" heading (`append_section`), within a
bounded share of the summary; what does not fit is recorded as dropped,
never lost silently. The summary carries the items it answers for to the
next level (`carried`), so a workstream summary answers for the key items of
every session it covers.

Pure functions over strings and `KeyItem`s: no model, no storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from arawn_core.memory.keyitems import SENTENCE_KINDS, KeyItem, Matcher, is_user_goal, rank, tokens
from arawn_core.models import Provenance

AUDIT_MODES = ("repair", "report", "off")
SECTION_HEADING = "## Key items (kept verbatim)"
FALLBACK_HEADING = "## Summary written without the model"
FALLBACK_NOTE = "_The model's reply was rejected ({defect}); these are the key items as written._"


@dataclass
class ItemAudit:
    """Which of `items` a text kept."""

    items: list[KeyItem]
    kept: list[KeyItem] = field(default_factory=list)
    missing: list[KeyItem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.items)


def audit_text(text: str, items: Sequence[KeyItem]) -> ItemAudit:
    """Split `items` into those `text` contains (normalised matching) and those it lacks."""
    result = ItemAudit(list(items))
    if not items:
        return result
    matcher = Matcher(text)
    for item in items:
        (result.kept if matcher.has(item) else result.missing).append(item)
    return result


def _bullet(item: KeyItem) -> str:
    return f"- {item.text}"


def _compact(item: KeyItem) -> str:
    """"- EPT-5561 (keep)" for a sentence item that names codes, paths ... ("" for others)."""
    if item.kind not in SENTENCE_KINDS or not item.anchors:
        return ""
    names = list(dict.fromkeys(t for _, t in tokens(item.text)))
    return f"- {', '.join(names)} ({item.kind})" if names else ""


def append_section(text: str, missing: Sequence[KeyItem], max_chars: int) -> tuple[str, list[KeyItem], list[KeyItem]]:
    """`text` plus the best of `missing` verbatim under SECTION_HEADING, within `max_chars`.

    Returns (new text, appended, dropped). An existing section (an input's
    section the model copied) is extended, not repeated.
    """
    if not missing:
        return text, [], []
    heading = "" if SECTION_HEADING in text else f"\n\n{SECTION_HEADING}\n"
    room = max_chars - len(heading)
    appended: list[KeyItem] = []
    dropped: list[KeyItem] = []
    lines: list[str] = []
    ranked = rank(missing)
    full = [_bullet(it) for it in ranked]
    if sum(len(line) + 1 for line in full) > room:  # tight: requests naming codes are kept as their codes
        full = [_compact(it) or line for it, line in zip(ranked, full)]
    for item, line in zip(ranked, full):
        if len(line) + 1 <= room:
            lines.append(line)
            appended.append(item)
            room -= len(line) + 1
        else:
            dropped.append(item)
    if not lines:
        return text, [], dropped
    body = text.rstrip() + (heading if heading else "\n") + "\n".join(lines)
    return body, appended, dropped


#: Longest bullet moved under a "Key items" heading to flag the item on it (a longer one is a paragraph).
MAX_FLAGGED_LINE = 400


def flag_lines(texts: Sequence[str], items: Sequence[KeyItem],
               name: Callable[[Sequence[KeyItem]], list[str]]) -> tuple[list[str], list[str]]:
    """`texts` with each bullet line that holds one of `items` moved under SECTION_HEADING, and `name`(the rest).

    An item already in a text's "Key items" section is flagged as it is; an item on no bullet line of
    any text (prose, or a paragraph over MAX_FLAGGED_LINE) is left for the caller to list.
    """
    left = list(items)
    out: list[str] = []
    for text in texts:
        lines = text.splitlines()
        head = next((i for i, line in enumerate(lines) if line.startswith(SECTION_HEADING)), None)
        if head is not None and left:
            section = Matcher("\n".join(lines[head + 1:]))
            left = [it for it in left if not section.has(it)]
        moved: list[int] = []
        for i, line in enumerate(lines[:head]):
            if not left:
                break
            if not line.startswith("- ") or len(line) > MAX_FLAGGED_LINE:
                continue
            m = Matcher(line)
            held = [it for it in left if m.has(it)]
            if held:
                moved.append(i)
                gone = {id(it) for it in held}
                left = [it for it in left if id(it) not in gone]
        if not moved:
            out.append(text)
            continue
        flagged = [lines[i] for i in moved]
        out_of_place = set(moved)
        rest = [line for i, line in enumerate(lines) if i not in out_of_place]
        if head is None:
            body = "\n".join(rest).rstrip() + f"\n\n{SECTION_HEADING}\n" + "\n".join(flagged)
        else:
            at = head - len(moved)  # the heading's index once the moved lines are out
            body = "\n".join([*rest[:at + 1], *flagged, *rest[at + 1:]])
        out.append(body)
    return out, name(left) if left else []


def carried(items: Sequence[KeyItem], dropped: Iterable[KeyItem]) -> list[KeyItem]:
    """The items a summary answers for at the next level: all it was audited against but the dropped."""
    gone = {it.key for it in dropped}
    return [it for it in items if it.key not in gone]


def extractive_summary(items: Sequence[KeyItem], defect: str, max_chars: int, heading: str = "") -> str:
    """The labelled fallback: the user's goals/decisions/questions, then the other key items, verbatim.

    `max_chars` bounds the items (the heading and the note come on top)."""
    goals = [it for it in items if is_user_goal(it)]
    others = [it for it in items if not is_user_goal(it)]
    parts = [FALLBACK_HEADING, FALLBACK_NOTE.format(defect=defect)]
    used = 0
    for title, group in (("### The user's goals, decisions and questions", goals), ("### Key items", others)):
        lines: list[str] = []
        for item in group:
            line = _bullet(item)
            if used + len(title) + len(line) + 3 > max_chars:
                break
            lines.append(line)
            used += len(line) + 1
        if lines:
            parts.append(title + "\n" + "\n".join(lines))
            used += len(title) + 2
    if len(parts) == 2:
        parts.append("(no key items were found in the input)")
    return "\n\n".join(parts)


def is_extractive(text: str) -> bool:
    return text.lstrip().startswith(FALLBACK_HEADING)


def describe(p: Provenance) -> str:
    """What the panel and `ws show` say about how a summary was written: "repaired · kept 41/45 key items"."""
    parts = []
    if p.method == "extractive":
        parts.append("written without the model (its reply was rejected): key items only")
    elif p.method == "repaired":
        parts.append("repaired")
    if p.audit is not None and p.audit.total:
        parts.append(p.audit.line)
    return " · ".join(parts)
