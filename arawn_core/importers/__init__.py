"""Import conversations from files: each conversation becomes one ended session.

`import_path(core, path, fmt, workstream_id, progress)` is what
`ArawnCore.import_file` (and so `arawn --headless import`) calls:

- `fmt` is `auto` (detected from the first records), `arawn`, `messages` or
  `sharegpt` (see `arawn_core.importers.formats` for the layouts).
- Target: the given workstream, else a new workstream titled
  `Imported: <file name>`, created once per call and only if something new is
  imported (importing the same file again creates nothing).
- New session and message ids are generated; message order is kept; source
  timestamps are kept where the file has them (else import time, strictly
  increasing so the file's order holds); a session ends at its last message.
  Each message's metadata gets `{"import": {"format", "source", "source_id",
  "original_id", "key"}}` (plus the original ShareGPT speaker when it was not
  human/gpt/system); the source's own metadata is kept beside it.
- Dedupe: a conversation whose key (`records.dedupe_key`) was imported before,
  or earlier in the same file, is skipped and counted in `skipped_duplicates`.
- Bad records are reported in `problems` and skipped; a file that cannot be
  read at all raises `UsageError` naming the file and why.
- Writes go in batches: one JSONL append, one events append and one SQLite
  transaction per few hundred conversations (`Repository.import_sessions`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from arawn_core import events as ev
from arawn_core.importers.formats import FORMATS, ImportSource
from arawn_core.importers.records import Clock, Conversation, FormatError, ImportProblem
from arawn_core.models import Message, new_id
from arawn_core.errors import NotFound, UsageError

if TYPE_CHECKING:
    from arawn_core.core import ArawnCore

__all__ = ["FORMATS", "ImportProblem", "ImportReport", "import_path"]

BATCH_CONVERSATIONS = 500
BATCH_CHARS = 8 << 20

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    source: str
    format: str
    workstream_id: str | None = None  # None: nothing new was imported and no workstream was given
    conversations_imported: int = 0
    messages_imported: int = 0
    skipped_duplicates: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)  # the new sessions, in file order

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "format": self.format, "workstream_id": self.workstream_id,
            "conversations_imported": self.conversations_imported, "messages_imported": self.messages_imported,
            "skipped_duplicates": self.skipped_duplicates, "problems": [p.to_dict() for p in self.problems],
            "session_ids": self.session_ids,
        }


async def import_path(core: ArawnCore, path: Path, fmt: str = "auto", workstream_id: str | None = None,
                      progress: Progress | None = None) -> ImportReport:
    path = Path(path)
    fmt = (fmt or "auto").strip().lower()
    if fmt != "auto" and fmt not in FORMATS:
        raise UsageError(f"unknown import format {fmt!r}: use auto, {', '.join(FORMATS)}")
    target: str | None = None
    if workstream_id:
        try:
            target = (await core.repo.get_workstream(workstream_id)).id
        except NotFound:
            raise UsageError(f"no workstream with id {workstream_id} to import into") from None
    source = await asyncio.to_thread(_open_source, path, fmt, UsageError)
    name = text_of_name(path.name)
    report = ImportReport(text_of_name(str(path)), source.fmt, target)
    report.problems = source.problems  # filled as the file is read
    clock = Clock()
    seen: set[str] = set()
    stream = source.conversations()

    def tell() -> None:
        if progress:
            progress(min(source.counter.done, source.size), source.size)

    tell()
    try:
        while True:
            chunk, more = await asyncio.to_thread(_take, stream)
            fresh: list[Conversation] = []
            for conv in chunk:
                # until there is a workstream to write to, look before creating one;
                # after that, import_sessions skips known keys itself (one query a batch)
                if conv.key in seen or (report.workstream_id is None and await core.repo.imported(conv.key)):
                    report.skipped_duplicates += 1
                    continue
                seen.add(conv.key)
                fresh.append(conv)
            if fresh:
                if report.workstream_id is None:
                    report.workstream_id = (await core.create_workstream(f"Imported: {name}")).id
                batch = [_session(conv, source.fmt, name, report.workstream_id, clock) for conv in fresh]
                written = set(await core.repo.import_sessions(report.workstream_id, batch))
                for key, msgs, _ in batch:
                    if key in written:
                        report.conversations_imported += 1
                        report.messages_imported += len(msgs)
                        report.session_ids.append(msgs[0].session_id)
                    else:
                        report.skipped_duplicates += 1
            tell()
            if not more:
                break
    finally:
        stream.close()
        if report.conversations_imported:
            core.events.publish(ev.WorkstreamUpdated(report.workstream_id or ""))
    return report


def text_of_name(name: str) -> str:
    """A file name as text that can be stored: the bytes of a name that is not UTF-8 reach Python
    as lone surrogates (PEP 383), which no UTF-8 file holds; those are shown as U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def _open_source(path: Path, fmt: str, usage_error: type[Exception]) -> ImportSource:
    """Open and sniff the file; anything that makes the whole file unreadable is a usage error."""
    if not path.exists():
        raise usage_error(f"cannot import {path}: no such file")
    if path.is_dir():
        raise usage_error(f"cannot import {path}: it is a directory, give a file")
    if not path.is_file():  # a FIFO or a device would block the import or never end
        raise usage_error(f"cannot import {path}: not a regular file")
    try:
        return ImportSource(path, fmt)
    except FormatError as exc:
        raise usage_error(f"cannot import {path}: {exc}") from None
    except OSError as exc:
        raise usage_error(f"cannot import {path}: {exc.strerror or exc}") from None


def _take(stream: Iterator[Conversation | None]) -> tuple[list[Conversation], bool]:
    """The next batch (in a worker thread): up to BATCH_CONVERSATIONS or BATCH_CHARS of content.

    A `None` from the stream is a heartbeat (the parser made progress without a
    conversation yet): return early so progress can be shown.
    """
    out: list[Conversation] = []
    chars = 0
    for conv in stream:
        if conv is None:
            return out, True
        out.append(conv)
        chars += sum(len(m.content) for m in conv.messages)
        if len(out) >= BATCH_CONVERSATIONS or chars >= BATCH_CHARS:
            return out, True
    return out, False


def _session(conv: Conversation, fmt: str, source_name: str, workstream_id: str,
             clock: Clock) -> tuple[str, list[Message], str]:
    """One conversation -> (dedupe key, the new session's messages, ended_at)."""
    session_id = new_id()
    messages = []
    for m in conv.messages:
        info: dict[str, Any] = {"format": fmt, "source": source_name, "source_id": conv.source_id,
                                "original_id": m.original_id, "key": conv.key}
        if m.extra:
            info.update(m.extra)
        meta = dict(m.metadata) if m.metadata else {}
        if "import" in meta:  # imported before, exported, imported again: keep the older provenance
            info["previous"] = meta["import"]
        meta["import"] = info
        messages.append(Message(new_id(), workstream_id, session_id, m.role, m.content,
                                m.timestamp or clock(), meta))
    return conv.key, messages, max(m.timestamp for m in messages)
