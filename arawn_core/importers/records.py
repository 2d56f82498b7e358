"""What every importer yields and shares: source messages, conversations, problems, and the record checks.

Each format's parser (here in `generic`, and the other apps' in `chatgpt`,
`openwebui`, `oterm`, `elia`) turns a record into `SourceMessage`s or raises
`RecordError`, which the reader reports as an `ImportProblem` and skips.
Separate so that those modules depend on these shapes alone, not on the
format registry that imports them (`formats`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class FormatError(Exception):
    """The file as a whole cannot be read in the asked format (the caller turns it into a UsageError)."""


class RecordError(ValueError):
    """One record has the wrong shape; it is reported and skipped."""


@dataclass
class ImportProblem:
    where: str  # "line 12" (JSON Lines, 1-based) or "record 7" (JSON array, 0-based index)
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "reason": self.reason}


@dataclass
class SourceMessage:
    role: str
    content: str
    timestamp: str | None = None  # normalized UTC, or None: the importer stamps it
    original_id: str | None = None
    metadata: dict[str, Any] | None = None  # the source's own metadata (kept)
    extra: dict[str, Any] | None = None  # facts for the import metadata (original speaker, ...)


@dataclass
class Conversation:
    where: str  # where it starts in the file, for messages about it
    source_id: str | None
    messages: list[SourceMessage]
    key: str  # see `dedupe_key`


def dedupe_key(fmt: str, source_id: str | None, messages: list[SourceMessage]) -> str:
    """sha256 over the format, the conversation id (if any) and the content.

    The content is part of the key even when there is an id, so two different
    files that both number their conversations "1", "2", ... do not shadow each
    other; importing the same file again yields the same keys and adds nothing.
    """
    h = hashlib.sha256()
    h.update(fmt.encode())
    h.update(b"\0id\0" if source_id is not None else b"\0noid\0")
    h.update((source_id or "").encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    for m in messages:
        h.update(m.role.encode())
        h.update(b"\0")
        h.update(m.content.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class ByteCounter:
    total: int
    done: int = 0


# ---- timestamps ------------------------------------------------------------------
def normalize_timestamp(value: Any) -> str:
    """An ISO-8601 timestamp -> the storage layout (UTC, microseconds, Z); naive means UTC."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"timestamp {value!r} is not an ISO-8601 string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"timestamp {value!r} is not an ISO-8601 date and time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        dt = dt.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise RecordError(f"timestamp {value!r} is out of range") from None
    # isoformat, not strftime: strftime writes year 999 as "999", which no ISO parser reads back
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class Clock:
    """Strictly increasing 'now' stamps, so imported messages and sessions keep the file's order."""

    def __init__(self) -> None:
        self._base = datetime.now(timezone.utc)
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return (self._base + timedelta(microseconds=self._n)).strftime(TS_FORMAT)



_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # left by a JSON escape like \\ud800 without its pair


def check_unicode(ids: list[str | None], messages: list[SourceMessage]) -> None:
    """A lone surrogate cannot be written as UTF-8: reject the record here, not halfway through storing it."""
    why = "is not valid Unicode (an unpaired surrogate escape such as \\ud800)"
    for value in ids:
        if value and _LONE_SURROGATE.search(value):
            raise RecordError(f"an id {why}")
    for i, m in enumerate(messages):
        texts = [m.content, m.original_id]
        texts += [json.dumps(d, ensure_ascii=False) for d in (m.metadata, m.extra) if d]
        if any(t and _LONE_SURROGATE.search(t) for t in texts):
            raise RecordError(f"message {i}: its text {why}")

