"""Import formats: which there are, which one a file is in, and the stream of its conversations.

This is the registry (`FORMATS`, detection by `classify`, `ImportSource`);
what is read lives beside it: `records` (the shapes every parser yields),
`containers` (JSON Lines and JSON arrays in bounded memory, bad records
reported and skipped), `generic` (the arawn, messages and ShareGPT parsers)
and a module for each other app's export.

Formats (`FORMATS`):
  arawn     JSON Lines of messages in the storage layout (`id, workstream_id,
            session_id, role, content, timestamp, metadata`); grouped by
            `session_id`, each source session is one conversation. Read in two
            passes (index the lines, then read each session's lines) so sessions
            may interleave without holding the file in memory.
  messages  JSON Lines (or a JSON array) of `{"id": ..., "messages": [{"role",
            "content"}, ...]}`; roles must be arawn roles, content a string (a
            list of `{"type": "text", "text": ...}` parts is joined). A message
            may carry `id`, `timestamp` and `metadata`, which are kept.
  sharegpt  a JSON array or JSON Lines of `{"id": ..., "conversations":
            [{"from", "value"}, ...]}`; `from` maps human/user -> user,
            gpt/assistant/chatgpt/bing/bard/model -> assistant, system -> system;
            any other speaker becomes `user` and the original `from` is kept in
            the message's import metadata.
  chatgpt   ChatGPT's data export `conversations.json` (`importers/chatgpt.py`).
  openwebui Open WebUI's chat export (`importers/openwebui.py`).
  oterm     oterm's SQLite store (`importers/oterm.py`).
  elia      elia's SQLite store (`importers/elia.py`).
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from arawn_core.importers.containers import BOM, Item, JsonArrayReader, container_kind, decode_line, iter_json_lines
from arawn_core.importers.generic import RECORD_PARSERS, parse_arawn_record
from arawn_core.importers.records import (
    ByteCounter,
    Conversation,
    FormatError,
    ImportProblem,
    RecordError,
    SourceMessage,
    dedupe_key,
)

FORMATS = ("arawn", "messages", "sharegpt", "chatgpt", "openwebui", "oterm", "elia")
#: Formats read from another app's SQLite store rather than a JSON file (see `sqlite_store`).
SQLITE_FORMATS = ("oterm", "elia")
HEARTBEAT_BYTES = 8 << 20  # yield control at least this often while reading
DETECT_RECORDS = 50  # how many records auto-detection looks at before giving up


def _record_parser(fmt: str) -> Callable[[Any], tuple[str | None, list[SourceMessage]]]:
    """The record parser of a JSON format; the other apps' exports live in their own modules."""
    if fmt == "chatgpt":
        from arawn_core.importers.chatgpt import parse_chatgpt_record

        return parse_chatgpt_record
    if fmt == "openwebui":
        from arawn_core.importers.openwebui import parse_openwebui_record

        return parse_openwebui_record
    return RECORD_PARSERS[fmt]


def classify(obj: Any) -> str | None:
    """Which format one record looks like."""
    if not isinstance(obj, dict):
        return None
    from arawn_core.importers import chatgpt, openwebui

    if chatgpt.looks_like(obj):
        return "chatgpt"
    if openwebui.looks_like(obj):
        return "openwebui"
    if isinstance(obj.get("conversations"), list):
        return "sharegpt"
    if isinstance(obj.get("messages"), list):
        return "messages"
    if "role" in obj and "session_id" in obj and "content" in obj:
        return "arawn"
    return None


# ---- files ----------------------------------------------------------------------------
class ImportSource:
    """One file opened for import: its format, container, size and a conversation stream."""

    def __init__(self, path: Path, fmt: str = "auto") -> None:
        from arawn_core.importers import sqlite_store

        self.path = path
        self.size = path.stat().st_size
        self.counter = ByteCounter(self.size)
        self.problems: list[ImportProblem] = []
        if sqlite_store.is_sqlite(path):
            self.container = "sqlite"
            found = sqlite_store.detect(path)
            if found is None:
                raise FormatError("a SQLite database, but not an oterm or elia store (no chat/message tables"
                                  " with their columns)")
            if fmt not in ("auto", found):
                raise FormatError(f"this is {found}'s SQLite store, not a {fmt} file")
            self.fmt = found
            return
        self.container = container_kind(path)
        if fmt in SQLITE_FORMATS:
            raise FormatError(f"the {fmt} format is a SQLite store, this file is JSON")
        if fmt == "auto":
            fmt = self._detect()
        if fmt == "arawn" and self.container == "array":
            raise FormatError("the arawn format is JSON Lines (one message a line), this file is a JSON array")
        self.fmt = fmt

    def _items(self, fh: BinaryIO, counter: ByteCounter) -> Iterator[Item | ImportProblem]:
        if self.container == "array":
            return iter(JsonArrayReader(fh, counter))
        return iter_json_lines(fh, counter)

    def _detect(self) -> str:
        with open(self.path, "rb") as fh:
            for n, item in enumerate(self._items(fh, ByteCounter(self.size))):
                if n >= DETECT_RECORDS:
                    break
                if isinstance(item, ImportProblem):
                    continue
                fmt = classify(item[1])
                if fmt:
                    return fmt
        kind = "JSON array" if self.container == "array" else "JSON Lines file"
        raise FormatError(f"no recognizable format: the first records of this {kind} are not arawn messages,"
                          " {\"messages\": [...]}, ShareGPT {\"conversations\": [...]}, ChatGPT export or"
                          " Open WebUI export objects; give --format to say which it is")

    def conversations(self) -> Iterator[Conversation | None]:
        """Every valid conversation in file order; problems go to `self.problems`.

        `None` is a heartbeat: a long stretch was read without a conversation
        (the arawn format's first pass, a run of bad records), so the caller
        can report progress.
        """
        if self.fmt == "arawn":
            yield from self._arawn()
            return
        if self.container == "sqlite":
            yield from self._sqlite()
            return
        parse = _record_parser(self.fmt)
        beat = HEARTBEAT_BYTES
        with open(self.path, "rb") as fh:
            for item in self._items(fh, self.counter):
                if self.counter.done >= beat:
                    beat = self.counter.done + HEARTBEAT_BYTES
                    yield None
                if isinstance(item, ImportProblem):
                    self.problems.append(item)
                    continue
                where, obj = item
                try:
                    source_id, msgs = parse(obj)
                except RecordError as exc:
                    self.problems.append(ImportProblem(where, str(exc)))
                    continue
                yield Conversation(where, source_id, msgs, dedupe_key(self.fmt, source_id, msgs))

    def _sqlite(self) -> Iterator[Conversation | None]:
        """oterm's or elia's store: one conversation per chat (see those modules)."""
        if self.fmt == "oterm":
            from arawn_core.importers.oterm import read_oterm as read
        else:
            from arawn_core.importers.elia import read_elia as read
        for item in read(self.path, self.problems):
            if item is None:
                yield None
                continue
            where, source_id, msgs = item
            yield Conversation(where, source_id, msgs, dedupe_key(self.fmt, source_id, msgs))
        self.counter.done = self.size

    def _arawn(self) -> Iterator[Conversation | None]:
        """Two passes: index each session's lines (offsets only), then read one session at a time."""
        sessions: dict[str, tuple[int, array, array]] = {}
        beat = HEARTBEAT_BYTES
        with open(self.path, "rb") as fh:
            offset = 0
            line_no = 0
            for raw in fh:
                line_no += 1
                length = len(raw)
                self.counter.done = (offset + length) // 2
                if offset >= beat:
                    beat = offset + HEARTBEAT_BYTES
                    yield None
                body = raw[len(BOM):] if line_no == 1 and raw.startswith(BOM) else raw
                start = offset + (length - len(body))
                offset += length
                if not body.strip():
                    continue
                where = f"line {line_no}"
                obj = decode_line(body, where)
                if isinstance(obj, ImportProblem):
                    self.problems.append(obj)
                    continue
                try:
                    sid, _, _ = parse_arawn_record(obj)
                except RecordError as exc:
                    self.problems.append(ImportProblem(where, str(exc)))
                    continue
                entry = sessions.get(sid)
                if entry is None:
                    entry = sessions[sid] = (line_no, array("q"), array("q"))
                entry[1].append(start)
                entry[2].append(len(body))
            read = 0
            for sid, (first_line, offsets, lengths) in sessions.items():
                msgs: list[SourceMessage] = []
                for off, ln in zip(offsets, lengths):
                    fh.seek(off)
                    raw = fh.read(ln)
                    read += ln
                    try:
                        _, msg, ws = parse_arawn_record(json.loads(raw.decode("utf-8")))
                    except (ValueError, RecordError) as exc:  # the file changed under us
                        self.problems.append(ImportProblem(f"session {sid}", f"re-reading a line failed: {exc}"))
                        continue
                    if ws is not None:
                        msg.extra = {"source_workstream_id": ws}
                    msgs.append(msg)
                self.counter.done = min(self.size, self.size // 2 + read // 2)
                if msgs:
                    yield Conversation(f"line {first_line}", sid, msgs, dedupe_key("arawn", sid, msgs))
        self.counter.done = self.size

