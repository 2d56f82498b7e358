"""Reading JSON Lines and JSON arrays a record at a time, and telling which of the two a file is.

Files may be large (ShareGPT dumps are 100+ MB single JSON arrays, sometimes cut
off), so nothing here loads a whole file: JSON Lines are read a line at a time,
JSON arrays a record at a time with `JSONDecoder.raw_decode` over a buffer that
grows block by block. A bad record (invalid JSON, invalid UTF-8, wrong shape) is
reported as an `ImportProblem` with its line number (JSON Lines) or its 0-based
array index ("record N") and skipped; everything else still imports.

Separate from the formats: a container yields parsed JSON values whatever
format their records are in (`formats` picks the parser).
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from arawn_core.importers.records import ByteCounter, FormatError, ImportProblem

BLOCK = 1 << 20  # bytes read at a time from an array file
BOM = codecs.BOM_UTF8
#: A file that starts with "{" but whose first line is not a whole value is read whole (to say why it
#: cannot be imported) only up to this size.
WHOLE_OBJECT_LIMIT = 256 << 20

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
        obj = decode_line(raw, where)
        yield obj if isinstance(obj, ImportProblem) else (where, obj)


def decode_line(raw: bytes, where: str) -> Any:
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



def container_kind(path: Path) -> str:
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
