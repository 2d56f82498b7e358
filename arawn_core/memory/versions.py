"""Workstream summary versions, the lines a user's edit protects, and their restore.

Every workstream summary is kept as a numbered version (1, 2, 3 ... per workstream)
with its author: `model` (a reduce or rebuild), `user` (an edit), `revert` (an older
version made current again, as a new version so the revert can be undone) or `fork`
(the origin's summary a forked workstream starts from).

Edits stick: the lines a user adds or changes are *protected*. Protection carries
over to every later version; the next reduce is asked to keep them verbatim, and
`restore_protected` puts back, deterministically, any the model dropped anyway.
A user removes protection by deleting the line in a later edit.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

AUTHORS = ("model", "user", "revert", "fork")


@dataclass
class VersionMeta:
    """What a new version records beyond the summary itself (also kept in events.jsonl)."""

    author: str = "model"
    protected: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # protected lines the model dropped, put back
    focus: str | None = None
    reverted_from: int | None = None

    def to_event(self) -> dict[str, Any]:
        return {"author": self.author, "protected": list(self.protected), "restored": list(self.restored),
                "focus": self.focus, "reverted_from": self.reverted_from}

    @classmethod
    def from_event(cls, data: Any) -> VersionMeta | None:
        if not isinstance(data, dict):
            return None
        author = data.get("author")
        return cls(
            author=author if author in AUTHORS else "model",
            protected=[str(x) for x in data.get("protected") or []],
            restored=[str(x) for x in data.get("restored") or []],
            focus=data.get("focus") if isinstance(data.get("focus"), str) else None,
            reverted_from=data.get("reverted_from") if isinstance(data.get("reverted_from"), int) else None,
        )


@dataclass
class SummaryVersion:
    workstream_id: str
    number: int
    summary_id: str
    author: str
    text: str
    created_at: str
    provenance: dict[str, Any]
    covers: list[str]
    protected: list[str]
    restored: list[str]
    focus: str | None
    reverted_from: int | None

    def to_dict(self, with_text: bool = True) -> dict[str, Any]:
        d = {
            "workstream_id": self.workstream_id, "number": self.number, "summary_id": self.summary_id,
            "author": self.author, "created_at": self.created_at,
            "provenance": {**self.provenance, "focus": self.focus, "restored_lines": list(self.restored),
                           "reverted_from": self.reverted_from},
            "sessions_covered": list(self.covers), "protected_lines": list(self.protected),
        }
        if with_text:
            d["text"] = self.text
        return d

    @classmethod
    def from_row(cls, row: Any) -> SummaryVersion:
        return cls(
            workstream_id=row["workstream_id"], number=row["number"], summary_id=row["summary_id"],
            author=row["author"], text=row["text"], created_at=row["created_at"],
            provenance=json.loads(row["provenance"] or "{}"), covers=json.loads(row["covers"] or "[]"),
            protected=json.loads(row["protected"] or "[]"), restored=json.loads(row["restored"] or "[]"),
            focus=row["focus"], reverted_from=row["reverted_from"],
        )


def _key(line: str) -> str:
    """Lines compare without their surrounding whitespace (a model re-indents freely)."""
    return line.strip()


def _meaningful(line: str) -> bool:
    return bool(_key(line))


def edited_lines(old: str | None, new: str) -> list[str]:
    """The lines of `new` a user added or changed relative to `old` (in order, non-blank, once each)."""
    old_lines = (old or "").splitlines()
    new_lines = new.splitlines()
    matcher = difflib.SequenceMatcher(None, [_key(x) for x in old_lines], [_key(x) for x in new_lines],
                                      autojunk=False)
    out: list[str] = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag in ("insert", "replace"):
            out.extend(x for x in new_lines[j1:j2] if _meaningful(x))
    return list(dict.fromkeys(out))


def protected_after_edit(previous_protected: list[str], old: str | None, new: str) -> list[str]:
    """Protection after a user edit: the earlier protected lines still in the text, plus what was edited."""
    present = {_key(x) for x in new.splitlines()}
    kept = [p for p in previous_protected if _key(p) in present]
    return list(dict.fromkeys(kept + edited_lines(old, new)))


def missing_lines(text: str, protected: list[str]) -> list[str]:
    present = {_key(x) for x in text.splitlines()}
    return [p for p in protected if _key(p) not in present]


def restore_protected(text: str, protected: list[str], previous: str | None) -> tuple[str, list[str]]:
    """Put back every protected line missing from `text`, verbatim; returns (text, lines put back).

    Deterministic: a missing line goes right after the nearest line that preceded it in
    `previous` (the version it was protected in) and is still in `text`, else right before
    the nearest one that followed it; with neither it is appended at the end, in the order
    of `previous`.
    """
    missing = missing_lines(text, protected)
    if not missing:
        return text, []
    lines = text.splitlines()
    prev_lines = (previous or "").splitlines()
    prev_keys = [_key(x) for x in prev_lines]
    order = {k: i for i, k in reversed(list(enumerate(prev_keys)))}
    missing.sort(key=lambda p: order.get(_key(p), len(prev_keys)))
    tail: list[str] = []
    for line in missing:
        i = order.get(_key(line))
        placed = False
        if i is not None:
            placed = _insert_near(lines, line, prev_keys, i)
        if not placed:
            tail.append(line)
    if tail:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend(tail)
    out = "\n".join(lines)
    if text.endswith("\n"):
        out += "\n"
    return out, missing


def _insert_near(lines: list[str], line: str, prev_keys: list[str], i: int) -> bool:
    """Put `line` (line `i` of the previous version) next to its nearest surviving neighbour there."""
    def find(anchor: str) -> int | None:
        return next((n for n, x in enumerate(lines) if _key(x) == anchor), None)

    for j in range(i - 1, -1, -1):
        if prev_keys[j] and (at := find(prev_keys[j])) is not None:
            lines.insert(at + 1, line)
            return True
    for j in range(i + 1, len(prev_keys)):
        if prev_keys[j] and (at := find(prev_keys[j])) is not None:
            lines.insert(at, line)
            return True
    return False


def unified_diff(a: SummaryVersion, b: SummaryVersion) -> str:
    """`diff -u` of two versions' texts, named by number and author."""
    lines = difflib.unified_diff(
        a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
        fromfile=f"version {a.number} ({a.author})", tofile=f"version {b.number} ({b.author})")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
