"""Import parsers: stream conversations out of arawn JSONL, OpenAI-style messages and ShareGPT files.

Files may be large (ShareGPT dumps are 100+ MB single JSON arrays, sometimes cut
off), so nothing here loads a whole file: JSON Lines are read a line at a time,
JSON arrays a record at a time with `JSONDecoder.raw_decode` over a buffer that
grows block by block. A bad record (invalid JSON, invalid UTF-8, wrong shape) is
reported as an `ImportProblem` with its line number (JSON Lines) or its 0-based
array index ("record N") and skipped; everything else still imports.

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

import codecs
import hashlib
import json
import re
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from arawn_core.models import ROLES

FORMATS = ("arawn", "messages", "sharegpt", "chatgpt", "openwebui", "oterm", "elia")
#: Formats read from another app's SQLite store rather than a JSON file (see `sqlite_store`).
SQLITE_FORMATS = ("oterm", "elia")
BLOCK = 1 << 20  # bytes read at a time from an array file
HEARTBEAT_BYTES = 8 << 20  # yield control at least this often while reading
DETECT_RECORDS = 50  # how many records auto-detection looks at before giving up
BOM = codecs.BOM_UTF8
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "model": "assistant",
    "system": "system",
}
_CANONICAL_FROM = {"human", "gpt", "system"}
#: OpenAI-style roles that are not arawn's, mapped (the original role is kept in the import metadata).
OPENAI_ROLES = {"tool": "tool_result", "function": "tool_result", "developer": "system"}
#: A file that starts with "{" but whose first line is not a whole value is read whole (to say why it
#: cannot be imported) only up to this size.
WHOLE_OBJECT_LIMIT = 256 << 20


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


# ---- containers: JSON Lines and JSON arrays ---------------------------------------
Item = tuple[str, Any]  # (where, parsed object)


def iter_json_lines(fh: BinaryIO, counter: ByteCounter) -> Iterator[Item | ImportProblem]:
    """Each non-blank line as a JSON value; undecodable or unparsable lines become problems."""
    line_no = 0
    for raw in fh:
        line_no += 1
        counter.done += len(raw)
        if line_no == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if not raw.strip():
            continue
        where = f"line {line_no}"
        obj = _decode_line(raw, where)
        yield obj if isinstance(obj, ImportProblem) else (where, obj)


def _decode_line(raw: bytes, where: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ImportProblem(where, f"invalid UTF-8 at byte {exc.start} of the line")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        cut = "" if raw.endswith(b"\n") else " (last line has no newline: file cut off?)"
        return ImportProblem(where, f"invalid JSON: {exc.msg} at column {exc.colno}{cut}")
    except (ValueError, RecursionError) as exc:  # an integer of 4300+ digits, nesting deeper than the stack
        return ImportProblem(where, f"invalid JSON: {_json_error(exc)}")


def _json_error(exc: BaseException) -> str:
    """What json's non-JSONDecodeError failures mean, in one short line."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(":")[0][:120]  # "Exceeds the limit (4300 digits) for integer string conversion"


_WS = re.compile(r"[ \t\r\n]*")
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes under surrogateescape
_OUTSIDE = re.compile(r'["\[\]{},]')
_INSIDE = re.compile(r'["\\]')


class JsonArrayReader:
    """Records of a top-level JSON array, one at a time, in bounded memory.

    Blocks are decoded with `surrogateescape`, so an invalid byte only spoils
    the record it is in (found as a lone surrogate in the record's raw text).
    When `raw_decode` fails, a small bracket/string scanner finds where the
    record ends: within the buffer -> the record is invalid and skipped; past
    the end -> read more and retry; past the end of the file -> the record is
    truncated (the file was cut off) and reported.
    """

    def __init__(self, fh: BinaryIO, counter: ByteCounter, block: int = BLOCK) -> None:
        self.fh = fh
        self.counter = counter
        self.block = block
        self.decoder = json.JSONDecoder()
        self.text_decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._scan: list[Any] | None = None  # [start, pos, depth, in_string]
        self.truncated = False

    def _more(self, size: int = 0) -> bool:
        if self.eof:
            return False
        data = self.fh.read(size or self.block)
        self.counter.done += len(data)
        if not data:
            self.eof = True
            self.buf += self.text_decoder.decode(b"", final=True)
            return False
        self.buf += self.text_decoder.decode(data)
        return True

    def _compact(self) -> None:
        if self.pos > self.block:
            self.buf = self.buf[self.pos:]
            self.pos = 0

    def _skip_ws(self) -> bool:
        """Move to the next non-space character; False at the end of the file."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return True
            if not self._more():
                return self.pos < len(self.buf)

    def __iter__(self) -> Iterator[Item | ImportProblem]:
        if not self._skip_ws():
            return
        if self.buf.startswith("\ufeff", self.pos):
            self.pos += 1
            if not self._skip_ws():
                return
        if self.buf[self.pos] != "[":
            raise FormatError("not a JSON array")
        self.pos += 1
        index = 0
        expect_value = True
        while True:
            self._compact()
            if not self._skip_ws():
                if not self.truncated:  # a cut-off record was reported already
                    yield ImportProblem("end of file", "the JSON array is not closed (file cut off?)")
                return
            c = self.buf[self.pos]
            if c == "]":
                self.pos += 1
                return
            if expect_value and c == ",":
                yield ImportProblem(f"record {index}", "missing value between commas")
                self.pos += 1
                index += 1
                continue
            if not expect_value:
                if c == ",":
                    self.pos += 1
                    expect_value = True
                    continue
                yield ImportProblem(f"record {index}", "missing ',' before this record")
            yield self._value(index)
            index += 1
            expect_value = False

    def _value(self, index: int) -> Item | ImportProblem:
        where = f"record {index}"
        start = self.pos
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, start)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, a huge integer, too deep
                end = self._scan_end(start)
                if end is not None:
                    self.pos = max(end, start + 1)
                    self._scan = None
                    if _SURROGATE.search(self.buf, start, self.pos):
                        return ImportProblem(where, "invalid UTF-8")
                    return ImportProblem(where, f"invalid JSON: {_json_error(exc)}")
                if not self._more(max(self.block, len(self.buf) - start)):
                    if self._scan_end(start) is None:
                        self.pos = len(self.buf)
                        self._scan = None
                        self.truncated = True
                        return ImportProblem(where, "truncated: the file ends inside this record (cut off?)")
                continue
            if end >= len(self.buf) and not self.eof and not isinstance(obj, (dict, list, str)):
                self._more()  # a number at the buffer's end may go on
                continue
            self.pos = end
            self._scan = None
            if _SURROGATE.search(self.buf, start, end):
                return ImportProblem(where, "invalid UTF-8")
            return where, obj

    def _scan_end(self, start: int) -> int | None:
        """Where the value starting at `start` ends, or None if the buffer ends first (resumable)."""
        if self._scan is None or self._scan[0] != start:
            self._scan = [start, start, 0, False]
        _, p, depth, in_str = self._scan
        buf = self.buf
        n = len(buf)
        result: int | None = None
        while p < n:
            if in_str:
                m = _INSIDE.search(buf, p)
                if m is None:
                    p = n
                    break
                if m.group() == "\\":
                    if m.end() >= n:  # the escaped character is in the next block
                        p = m.start()
                        break
                    p = m.end() + 1
                    continue
                p = m.end()
                in_str = False
                if depth == 0:
                    result = p
                    break
                continue
            m = _OUTSIDE.search(buf, p)
            if m is None:
                p = n
                break
            ch = m.group()
            if ch == '"':
                in_str = True
                p = m.end()
            elif ch in "[{":
                depth += 1
                p = m.end()
            elif ch in "]}":
                if depth == 0:
                    result = m.start()
                    break
                depth -= 1
                p = m.end()
                if depth == 0:
                    result = p
                    break
            else:  # ","
                if depth == 0:
                    result = m.start()
                    break
                p = m.end()
        self._scan = [start, p, depth, in_str]
        return result


# ---- records -> conversations ------------------------------------------------------
def _source_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"'id' must be a string or a number, not {type(value).__name__}")
    return str(value)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # left by a JSON escape like \\ud800 without its pair


def _check_unicode(ids: list[str | None], messages: list[SourceMessage]) -> None:
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


def _content(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
        return "\n".join(p["text"] for p in value)
    raise RecordError(f"{what}: content must be a string, not {type(value).__name__}")


def _object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, not {type(obj).__name__}")
    return obj


def parse_messages_record(obj: Any) -> tuple[str | None, list[SourceMessage]]:
    obj = _object(obj)
    source_id = _source_id(obj)
    msgs = obj.get("messages")
    if not isinstance(msgs, list):
        raise RecordError("'messages' must be a list")
    if not msgs:
        raise RecordError("the conversation has no messages")
    out = []
    for i, m in enumerate(msgs):
        what = f"message {i}"
        if not isinstance(m, dict):
            raise RecordError(f"{what}: expected an object")
        role = m.get("role")
        meta = m.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise RecordError(f"{what}: metadata must be an object")
        if isinstance(role, str) and role in OPENAI_ROLES:
            # an OpenAI-style tool reply: kept as arawn's tool_result, with what it answered
            extra = {k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)}
            meta = {**(meta or {}), "source_role": role, **extra}
            role = OPENAI_ROLES[role]
        if role not in ROLES:
            raise RecordError(f"{what}: role {role!r} is not one of {', '.join(sorted(ROLES))}")
        ts = normalize_timestamp(m["timestamp"]) if m.get("timestamp") is not None else None
        mid = m.get("id")
        content = m.get("content")
        if content is None and role in ("assistant", "tool_result") and m.get("tool_calls") is not None:
            content = ""  # an assistant turn that only calls tools; the calls are kept in metadata
        if m.get("tool_calls") is not None:
            meta = {**(meta or {}), "tool_calls": m["tool_calls"]}
        out.append(SourceMessage(role, _content(content, what), ts,
                                 str(mid) if mid is not None else None, meta))
    _check_unicode([source_id], out)
    return source_id, out


def parse_sharegpt_record(obj: Any) -> tuple[str | None, list[SourceMessage]]:
    obj = _object(obj)
    source_id = _source_id(obj)
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise RecordError("'conversations' must be a list")
    if not turns:
        raise RecordError("the conversation has no messages")
    out = []
    for i, t in enumerate(turns):
        what = f"message {i}"
        if not isinstance(t, dict):
            raise RecordError(f"{what}: expected an object")
        speaker = t.get("from")
        if not isinstance(speaker, str) or not speaker:
            raise RecordError(f"{what}: 'from' must be a non-empty string")
        value = t.get("value")
        if not isinstance(value, str):
            raise RecordError(f"{what}: 'value' must be a string, not {type(value).__name__}")
        role = SHAREGPT_ROLES.get(speaker.lower(), "user")
        extra = None if speaker in _CANONICAL_FROM else {"from": speaker}
        out.append(SourceMessage(role, value, extra=extra))
    _check_unicode([source_id], out)
    return source_id, out


def parse_arawn_record(obj: Any) -> tuple[str, SourceMessage, str | None]:
    """One stored message -> (source session id, the message, source workstream id)."""
    obj = _object(obj)
    sid = obj.get("session_id")
    if not isinstance(sid, (str, int)) or isinstance(sid, bool) or sid == "":
        raise RecordError("'session_id' must be a non-empty string")
    role = obj.get("role")
    if role not in ROLES:
        raise RecordError(f"role {role!r} is not one of {', '.join(sorted(ROLES))}")
    content = obj.get("content")
    if not isinstance(content, str):
        raise RecordError(f"content must be a string, not {type(content).__name__}")
    ts = normalize_timestamp(obj["timestamp"]) if obj.get("timestamp") is not None else None
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise RecordError("metadata must be an object or null")
    mid = obj.get("id")
    ws = obj.get("workstream_id")
    msg = SourceMessage(role, content, ts, str(mid) if mid is not None else None, meta)
    ws_id = str(ws) if ws is not None else None
    _check_unicode([str(sid), ws_id], [msg])
    return str(sid), msg, ws_id


RECORD_PARSERS: dict[str, Callable[[Any], tuple[str | None, list[SourceMessage]]]] = {
    "messages": parse_messages_record,
    "sharegpt": parse_sharegpt_record,
}


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
        self.container = _container(path)
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
                obj = _decode_line(body, where)
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


def _container(path: Path) -> str:
    """'array' or 'lines', from the first non-space byte."""
    first = b""
    with open(path, "rb") as fh:
        at_start = True
        while block := fh.read(65536):
            if at_start and block.startswith(BOM):
                block = block[len(BOM):]
            at_start = False
            stripped = block.lstrip(b" \t\r\n")
            if stripped:
                first = stripped[:1]
                break
    if not first:
        raise FormatError("the file is empty")
    if first != b"{" and _first_line_is_a_record(path):
        return "lines"  # JSON Lines whose first record is bad ([1, 2], "text"): each line is reported
    if first == b"[":
        return "array"
    if first == b"{":
        _refuse_one_spread_object(path)
        return "lines"
    raise FormatError(f"no recognizable format: it starts with {first!r}, not a JSON array '[' or object '{{'")


def _refuse_one_spread_object(path: Path) -> None:
    """A file that is one JSON object pretty-printed over many lines is not JSON Lines: say so,
    instead of reporting every one of its lines as invalid JSON."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if head.startswith(BOM):
        head = head[len(BOM):]
    first = next((ln for ln in head.splitlines(keepends=True) if ln.strip()), b"")
    try:
        json.loads(first)
        return  # the first line is a whole record: JSON Lines
    except (ValueError, RecursionError):
        pass
    if path.stat().st_size > WHOLE_OBJECT_LIMIT:
        return
    try:
        whole = json.loads(path.read_bytes().removeprefix(BOM))
    except (ValueError, RecursionError):
        return  # not one object either: JSON Lines with a bad first line, reported line by line
    if isinstance(whole, dict):
        lines = head.count(b"\n") + 1 if len(head) < (1 << 20) else "many"
        raise FormatError(f"the file is one JSON object spread over {lines} lines (pretty-printed); import"
                          " wants JSON Lines (one conversation object per line) or a JSON array [...] of"
                          " them: wrap the object in [ ] or write it on one line")


def _first_line_is_a_record(path: Path, limit: int = 1 << 20) -> bool:
    """True when the first non-blank line is a whole JSON value and more lines follow: JSON Lines.

    Else a file starting with `[1, 2]` would be read as that one array and every line after it
    dropped without a word. Only the first `limit` bytes are looked at (an array on one huge line
    is an array).
    """
    with open(path, "rb") as fh:
        head = fh.read(limit)
    if head.startswith(BOM):
        head = head[len(BOM):]
    lines = iter(head.splitlines(keepends=True))
    line = next((ln for ln in lines if ln.strip()), b"")
    if not line.endswith(b"\n"):
        return False
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return any(ln.strip() for ln in lines)
