"""Hypothesis fuzzing of the parsers that read untrusted or damaged bytes, and of the chunker.

* `jsonl.scan` / `jsonl.repair` (the source of truth, after crashes or hand edits): any bytes ->
  never raises; only complete lines that are JSON objects come back, at their true offsets; every
  other complete line is reported with its line number; `repair` keeps every complete line and sets
  the torn tail aside byte for byte. ArawnCore opens and `reindex` runs over such a file.
* The importers (`arawn_core.importers.formats`) over arbitrary and mutated files: never crash
  (a whole unreadable file is a `FormatError`), every problem has a place, every good record is kept,
  and everything they yield can be stored.
* The chunker: beyond tests/test_compression.py (small alphabets), any Unicode text, greedy packing,
  split pieces at least half full, nested re-splits.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from arawn_core.compression.chunking import plan_chunks, resplit, split_text
from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.importers.formats import ImportSource
from arawn_core.importers.generic import parse_arawn_record, parse_messages_record, parse_sharegpt_record
from arawn_core.importers.records import FormatError, RecordError
from arawn_core.models import ROLES, Message, parse_ts
from arawn_core.store import jsonl
from tests.fakes import FakeBackend

def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------ building blocks

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

#: Lines that are not JSON objects: garbage, other JSON values, the nasty cases.
bad_lines = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ")),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([
        b"{", b"}", b'{"a": ', b"\xff\xfe", b"\xed\xa0\x80", b'{"a": "\xc0\xaf"}', b"[" * 5000 + b"]" * 5000,
        b'{"x": ' + b"[" * 100_000 + b"}", b'{"n": ' + b"9" * 5000 + b"}", b"NaN", b'{"a": 1} trailing',
        b"\x00" * 8, b"\r",
    ]),
)
good_lines = json_objects.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8"))


def lines_file(lines: list[bytes], tail: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines) + tail.replace(b"\n", b" ")


def complete_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, line with its newline) of each complete line."""
    out, pos = [], 0
    while (end := data.find(b"\n", pos)) != -1:
        out.append((pos, data[pos:end + 1]))
        pos = end + 1
    return out


def as_object(raw: bytes):
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------ the JSONL reader


@fuzz(120)
@given(lines=st.lists(st.one_of(good_lines, bad_lines), max_size=12), tail=st.binary(max_size=30))
@example(lines=[b'{"a": 1}', b"[" * 100_000], tail=b'{"torn": ')
@example(lines=[b'{"n": ' + b"1" * 5000 + b"}"], tail=b"")
def test_scan_any_bytes_returns_only_objects_and_reports_the_rest(lines: list[bytes], tail: bytes) -> None:
    data = lines_file(lines, tail)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "messages.jsonl"
        path.write_bytes(data)
        bad: list[jsonl.BadLine] = []
        records = list(jsonl.scan(path, 0, bad))  # must not raise
    complete = complete_lines(data)
    expected = [(off, len(raw), obj) for off, raw in complete if (obj := as_object(raw)) is not None]
    assert [(r.offset, r.length, r.data) for r in records] == expected
    assert all(isinstance(r.data, dict) for r in records)
    good_offsets = {r.offset for r in records}
    assert [(b.offset, b.line_no) for b in bad] == [
        (off, n) for n, (off, _) in enumerate(complete, 1) if off not in good_offsets]
    assert all(b.reason and "\n" not in b.reason for b in bad)


@fuzz(80)
@given(lines=st.lists(st.one_of(good_lines, bad_lines), max_size=8), tail=st.binary(max_size=30),
       extra=good_lines)
def test_repair_keeps_every_complete_line_and_sets_the_tail_aside(lines: list[bytes], tail: bytes,
                                                                   extra: bytes) -> None:
    data = lines_file(lines, tail)
    tail = data[data.rfind(b"\n") + 1:]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "messages.jsonl"
        path.write_bytes(data)
        before = list(jsonl.scan(path, 0, []))
        clean = jsonl.repair(path)
        assert clean == len(data) - len(tail)
        assert path.read_bytes() == data[:clean]  # every complete line, byte for byte
        torn = path.with_name("messages.jsonl.torn")
        assert (torn.read_bytes() == tail + b"\n") if tail else not torn.exists()
        assert [(r.offset, r.data) for r in jsonl.scan(path, 0, [])] == [(r.offset, r.data) for r in before]
        assert jsonl.repair(path) == clean  # idempotent
        # an append after a crash never glues onto half a line
        [(offset, length)] = jsonl.append_lines(path, [extra + b"\n"])
        assert offset == clean and path.read_bytes()[offset:] == extra + b"\n"
        assert list(jsonl.scan(path, offset))[0].data == json.loads(extra)


def _message_line(ws_id: str, i: int) -> bytes:
    m = Message(f"m{i}", ws_id, "s-fuzz", "user", f"kept MARKER-f{i}", f"2026-01-01T00:00:{i:02d}.000000Z", None)
    return m.to_json_line()


@fuzz(20)
@given(junk=st.lists(st.one_of(bad_lines, json_objects.map(lambda d: json.dumps(d).encode())), min_size=1,
                     max_size=6),
       tail=st.binary(max_size=20))
def test_core_opens_and_reindexes_over_a_damaged_message_log(junk: list[bytes], tail: bytes) -> None:
    """Junk appended past the index (an edit, a crash, another tool): start-up and reindex keep working."""

    async def scenario(data_dir: Path) -> None:
        core = await ArawnCore.open(Settings().with_data_dir(data_dir), FakeBackend())
        ws = await core.create_workstream("fuzz")
        await core.append_message(ws.id, "user", "before MARKER-before")
        await core.close(end_sessions=False)
        path = core.repo.messages_path(ws.id)
        with open(path, "ab") as fh:
            for i, line in enumerate(junk):
                fh.write(line.replace(b"\n", b" ") + b"\n")
                fh.write(_message_line(ws.id, i))
            fh.write(tail.replace(b"\n", b" "))
        for _ in range(2):  # start-up catch-up, then a second start-up
            core = await ArawnCore.open(Settings().with_data_dir(data_dir), FakeBackend())
            try:
                contents = [m.content for s in await core.list_sessions(ws.id)
                            for m in await core.session_messages(s.id)]
                assert "before MARKER-before" in contents
                assert all(f"kept MARKER-f{i}" in contents for i in range(len(junk)))
                counts = await core.reindex()
                assert counts["messages"] >= 1 + len(junk)
            finally:
                await core.close(end_sessions=False)

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(Path(d) / "data"))


# ------------------------------------------------------------------ the importers


def _check_yield(source: ImportSource) -> tuple[list, list]:
    """Iterate everything; each conversation must be storable; returns (conversations, problems)."""
    convs = [c for c in source.conversations() if c is not None]
    for c in convs:
        assert c.messages and c.key and c.where
        for m in c.messages:
            assert m.role in ROLES and isinstance(m.content, str)
            if m.timestamp is not None:
                parse_ts(m.timestamp)
            meta = {**(m.metadata or {}), "import": {**(m.extra or {}), "id": m.original_id}}
            Message("id", "w", "s", m.role, m.content, m.timestamp or "t", meta).to_json_line()  # encodes
    for p in source.problems:
        assert re.fullmatch(r"(line [1-9]\d*|record \d+|end of file|session .+)", p.where), p.where
        assert p.reason and "\n" not in p.reason
    return convs, source.problems


def _import(data: bytes, fmt: str, name: str = "in.jsonl"):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        try:
            source = ImportSource(path, fmt)
        except FormatError as exc:  # the whole file: empty, not JSON, format not recognized
            assert str(exc) and "\n" not in str(exc)
            return None
        return _check_yield(source)


@fuzz(200)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["auto", "arawn", "messages", "sharegpt"]),
       opener=st.sampled_from([b"", b"[", b"{", b"\xef\xbb\xbf[", b'{"messages": ', b'[{"conversations": ']))
def test_importers_never_crash_on_arbitrary_bytes(data: bytes, fmt: str, opener: bytes) -> None:
    _import(opener + data, fmt)


def msg_conv(i: int) -> dict:
    return {"id": f"c{i}", "messages": [{"role": "user", "content": f"q{i} MARKER-q{i}"},
                                        {"role": "assistant", "content": f"a{i}"}]}


def sg_conv(i: int) -> dict:
    return {"id": f"c{i}", "conversations": [{"from": "human", "value": f"q{i} MARKER-q{i}"},
                                             {"from": "gpt", "value": f"a{i}"}]}


def arawn_lines(i: int) -> list[dict]:
    return [{"id": f"m{i}{k}", "workstream_id": "w", "session_id": f"c{i}", "role": role,
             "content": f"{role} {i} MARKER-q{i}", "timestamp": f"2026-01-01T00:00:{i % 60:02d}Z", "metadata": None}
            for k, role in enumerate(["user", "assistant"])]


#: One-line record replacements that are bad on their own and cannot swallow their neighbours.
bad_records = st.one_of(
    st.sampled_from([
        b'{"id": "x", "messages": "no"}', b'{"id": "x", "conversations": 5}', b"[1, 2]", b'"text"', b"42",
        b'{"id": true}', b'{"id": "x", "messages": [{"role": "robot", "content": "x"}]}',
        b'{"id": "x", "conversations": [{"from": "human", "value": null}]}', b'{"x": "\xff"}',
        b'{"id": "x", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"id": "x", "conversations": [{"from": "gpt", "value": "\\udc00"}]}',
        b'{"session_id": "", "role": "user", "content": "x"}', b'{"n": ' + b"1" * 5000 + b"}",
        b'{"d": ' + b"[" * 3000 + b"]" * 3000 + b"}", b"{}", b"null",
        b'{"id": "t", "messages": [{"role": "user", "content": "x", "timestamp": "0001-01-01T00:00:00+05:00"}]}',
    ]),
    st.binary(max_size=20).filter(lambda b: not re.search(rb'[\n\[\]{}",\\]', b)).map(lambda b: b"{" + b + b"}"),
)


@fuzz(120)
@given(n=st.integers(1, 8), data=st.data(), fmt=st.sampled_from(["messages", "sharegpt", "sharegpt-lines", "arawn"]))
def test_mutated_records_are_reported_and_every_good_record_kept(n: int, data, fmt: str) -> None:
    bad_at = data.draw(st.sets(st.integers(0, n - 1), max_size=n), label="bad indexes")
    replacements = {i: data.draw(bad_records, label=f"bad record {i}") for i in sorted(bad_at)}
    # a file holding one bad value and nothing else ("[1, 2]", "42") is that value: not JSON Lines
    assume(fmt == "sharegpt" or n > 1 or not bad_at)
    if fmt == "arawn":
        units = [[json.dumps(r).encode() for r in arawn_lines(i)] for i in range(n)]
        lines = [line for i, unit in enumerate(units) for line in ([replacements[i]] if i in replacements else unit)]
        body, name = b"".join(line + b"\n" for line in lines), "in.jsonl"
    elif fmt == "sharegpt":
        recs = [replacements.get(i, json.dumps(sg_conv(i)).encode()) for i in range(n)]
        body, name = b"[\n" + b",\n".join(recs) + b"\n]\n", "in.json"
    else:
        make = msg_conv if fmt == "messages" else sg_conv
        recs = [replacements.get(i, json.dumps(make(i)).encode()) for i in range(n)]
        body, name = b"".join(r + b"\n" for r in recs), "in.jsonl"
    result = _import(body, "sharegpt" if fmt == "sharegpt-lines" else fmt, name)
    assert result is not None
    convs, problems = result
    good = [i for i in range(n) if i not in bad_at]
    assert [c.source_id for c in convs] == [f"c{i}" for i in good]  # every good record, in order
    if fmt == "arawn":
        line_of = {}
        line = 1
        for i in range(n):
            line_of[i] = line
            line += 1 if i in bad_at else 2
        expected = [f"line {line_of[i]}" for i in sorted(bad_at) if as_object(replacements[i]) is None
                    or _arawn_bad(replacements[i])]
    elif fmt == "sharegpt":
        expected = [f"record {i}" for i in sorted(bad_at)]
    else:
        expected = [f"line {i + 1}" for i in sorted(bad_at)]
    assert [p.where for p in problems] == expected


def _arawn_bad(raw: bytes) -> bool:
    try:
        parse_arawn_record(json.loads(raw))
    except (RecordError, ValueError):
        return True
    return False


@fuzz(200)
@given(obj=json_values, wrap=st.sampled_from(["raw", "messages", "conversations", "arawn"]))
def test_record_parsers_accept_or_reject_cleanly(obj, wrap: str) -> None:
    """Any JSON value in any field: a RecordError with a reason, or records that can be stored."""
    if wrap == "messages":
        obj = {"id": "x", "messages": obj if isinstance(obj, list) else [obj]}
    elif wrap == "conversations":
        obj = {"id": "x", "conversations": obj if isinstance(obj, list) else [obj]}
    elif wrap == "arawn":
        obj = {"session_id": "s", "role": "user", "content": obj if isinstance(obj, str) else "x",
               "metadata": obj if isinstance(obj, dict) else None, "id": obj if isinstance(obj, (int, str)) else "i"}
    for parse in (parse_messages_record, parse_sharegpt_record, parse_arawn_record):
        try:
            out = parse(obj)
        except RecordError as exc:
            assert str(exc)
            continue
        msgs = [out[1]] if parse is parse_arawn_record else out[1]
        for m in msgs:
            assert m.role in ROLES and isinstance(m.content, str)
            Message("i", "w", "s", m.role, m.content, "t", m.metadata).to_json_line()


# ------------------------------------------------------------------ the chunker


any_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)


@fuzz(200)
@given(text=any_text | st.text(alphabet=" \n\t", max_size=100), capacity=st.integers(1, 60))
def test_split_text_any_unicode_pieces_fit_join_and_are_at_least_half_full(text: str, capacity: int) -> None:
    pieces = split_text(text, capacity)
    assert "".join(pieces) == text
    assert all(len(p) <= capacity for p in pieces)
    assert all(len(p) >= max(1, capacity // 2) for p in pieces[:-1])  # a boundary never leaves a sliver
    if len(text) > capacity:
        assert len(pieces) <= 2 * len(text) // max(1, capacity // 2) + 1


@fuzz(200)
@given(items=st.lists(st.tuples(st.sampled_from(sorted(ROLES)), any_text), max_size=10),
       max_chars=st.integers(2, 400), overhead=st.integers(0, 64))
def test_plan_chunks_any_unicode_is_exact_and_greedy(items, max_chars: int, overhead: int) -> None:
    assume(max_chars - overhead >= 1)
    chunks = plan_chunks(items, max_chars, item_overhead_chars=overhead)
    flat = [it for c in chunks for it in c.items]
    # every character exactly once, in order, each in a chunk that fits
    assert "".join(it.text for it in flat) == "".join(t for _, t in items)
    assert [(it.index, it.role) for it in flat] == sorted((it.index, it.role) for it in flat)
    assert all(c.items and c.size <= max_chars for c in chunks)
    assert {it.index for it in flat} == set(range(len(items)))
    # greedy: a chunk closed only because the next whole item did not fit (or a split forced it)
    for a, b in zip(chunks, chunks[1:]):
        head = b.items[0]
        if not head.label and not a.items[-1].label:
            assert a.size + len(head.text) + overhead > max_chars


@fuzz(100)
@given(text=any_text.filter(lambda t: len(t) > 10), caps=st.lists(st.integers(3, 40), min_size=2, max_size=3))
def test_nested_resplits_keep_every_char_and_compose_labels(text: str, caps: list[int]) -> None:
    items = [it for c in plan_chunks([("user", "intro"), ("assistant", text)], max(caps[0], 6)) for it in c.items]
    for cap in caps[1:]:
        items = [it for c in resplit(items, cap) for it in c.items]
        assert "".join(it.text for it in items) == "intro" + text
        assert all(len(it.text) <= cap for it in items)
    assert all(re.fullmatch(r"(part \d+/\d+)?(, part \d+/\d+)*", it.label) for it in items)
    assert [it.index for it in items] == sorted(it.index for it in items)
