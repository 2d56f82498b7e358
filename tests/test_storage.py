"""Storage: JSONL is the truth, SQLite the index; real files, a real database."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from arawn_core import events as ev
from arawn_core.core import ArawnCore, UsageError
from arawn_core.store import jsonl
from arawn_core.store.repository import NotFound


async def snapshot(core: ArawnCore) -> dict:
    """Everything a user sees of workstreams, sessions and messages."""
    out = {}
    for ws in await core.list_workstreams(include_archived=True):
        sessions = await core.list_sessions(ws.id)
        out[ws.id] = {
            "ws": ws.to_dict(),
            "summary": (s.to_dict() if (s := await core.workstream_summary(ws.id)) else None),
            "sessions": [
                {**s.to_dict(), "messages": [m.to_record() for m in await core.session_messages(s.id)],
                 "summary_obj": (x.to_dict() if (x := await core.session_summary(s.id)) else None)}
                for s in sessions
            ],
        }
    return out


async def test_first_message_starts_a_session_and_counts(core: ArawnCore) -> None:
    ws = await core.create_workstream("Project X", ["a"])
    assert await core.active_session(ws.id) is None
    await core.append_message(ws.id, "user", "hello")
    await core.append_message(ws.id, "assistant", "hi there")
    s = await core.active_session(ws.id)
    assert s is not None and s.turn_count == 1 and s.message_count == 2 and s.char_count == len("hellohi there")
    msgs = await core.session_messages(s.id)
    assert [m.content for m in msgs] == ["hello", "hi there"]
    ended = await core.end_session(ws.id)
    assert ended is not None and ended.ended_at and ended.end_reason == "explicit"
    await core.append_message(ws.id, "user", "next")
    s2 = await core.active_session(ws.id)
    assert s2 and s2.id != s.id
    assert [x.id for x in await core.list_sessions(ws.id)] == [s.id, s2.id]


async def test_jsonl_layout_is_the_original_servers(core: ArawnCore) -> None:
    ws = await core.create_workstream("Layout")
    m = await core.append_message(ws.id, "user", "héllo \x1b[31m")
    path = core.repo.messages_path(ws.id)
    rec = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert list(rec) == ["id", "workstream_id", "session_id", "role", "content", "timestamp", "metadata"]
    assert rec["id"] == m.id and rec["content"] == "héllo \x1b[31m" and rec["timestamp"].endswith("Z")


async def test_files_are_owner_only_and_titles_never_paths(core: ArawnCore, data_dir: Path) -> None:
    ws = await core.create_workstream("../../etc/passwd")
    await core.append_message(ws.id, "user", "x")
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    for p in data_dir.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    dirs = [p.name for p in (data_dir / "workstreams").iterdir()]
    assert dirs == [ws.id]
    assert not (data_dir.parent / "etc").exists()
    with pytest.raises(NotFound):
        core.repo.ws_dir("../x")


async def test_lifecycle_rename_tag_archive_scratch(core: ArawnCore) -> None:
    ws = await core.create_workstream("one")
    await core.rename_workstream(ws.id, "two")
    await core.set_tags(ws.id, ["t1", "t2"])
    await core.append_message(ws.id, "user", "hi")
    await core.archive_workstream(ws.id)
    assert [w.id for w in await core.list_workstreams()] == []
    got = (await core.list_workstreams(include_archived=True))[0]
    assert got.title == "two" and got.tags == ["t1", "t2"] and got.state.value == "archived"
    assert (await core.active_session(ws.id)) is None  # archiving ended the session
    scratch = await core.scratch_workstream()
    assert scratch.is_scratch and (await core.scratch_workstream()).id == scratch.id
    with pytest.raises(UsageError):
        await core.create_workstream("   ")


async def test_resolve_by_id_or_unambiguous_title(core: ArawnCore) -> None:
    a = await core.create_workstream("Alpha")
    await core.create_workstream("Dup")
    await core.create_workstream("Dup")
    assert (await core.resolve_workstream(a.id)).id == a.id
    assert (await core.resolve_workstream("alpha")).id == a.id
    with pytest.raises(UsageError, match="ambiguous"):
        await core.resolve_workstream("Dup")
    with pytest.raises(UsageError, match="no workstream"):
        await core.resolve_workstream("nope")


async def test_idle_timeout_and_quit_end_sessions(settings, fake_backend) -> None:
    from datetime import datetime, timedelta, timezone

    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("idle")
    for i in range(4):
        await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
    later = datetime.now(timezone.utc) + timedelta(minutes=settings.workstream.session_timeout_minutes + 1)
    ended = await core.end_idle_sessions(now=later)
    assert [s.end_reason for s in ended] == ["idle"]
    jobs = await core.list_jobs()
    assert [j.kind.value for j in jobs] == ["session"]  # ending queued compression, nothing ran
    await core.append_message(ws.id, "user", "again")
    await core.close()  # end_sessions_on_quit = true by default
    core = await ArawnCore.open(settings, fake_backend)
    sessions = await core.list_sessions(ws.id)
    assert [s.end_reason for s in sessions] == ["idle", "quit"]
    await core.close(end_sessions=False)


async def test_torn_last_line_is_set_aside(core: ArawnCore) -> None:
    ws = await core.create_workstream("torn")
    m1 = await core.append_message(ws.id, "user", "complete one")
    path = core.repo.messages_path(ws.id)
    with open(path, "ab") as fh:
        fh.write(b'{"id": "half-written", "workstream_id": "')
    m2 = await core.append_message(ws.id, "assistant", "after the crash")
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [m1.id, m2.id]
    torn = path.with_name(path.name + ".torn").read_bytes()
    assert b"half-written" in torn
    s = await core.active_session(ws.id)
    assert [m.id for m in await core.session_messages(s.id)] == [m1.id, m2.id]


async def test_catch_up_indexes_lines_sqlite_missed(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("catch")
    m1 = await core.append_message(ws.id, "user", "indexed")
    # simulate a crash after the JSONL write and before the SQLite commit
    from arawn_core.models import Message, utc_now

    ghost = Message("11111111-1111-4111-8111-111111111111", ws.id, m1.session_id, "assistant", "only in jsonl",
                    utc_now(), None)
    jsonl.append_line(core.repo.messages_path(ws.id), ghost.to_json_line())
    await core.close(end_sessions=False)
    core = await ArawnCore.open(settings, fake_backend)
    msgs = await core.session_messages(m1.session_id)
    assert [m.content for m in msgs] == ["indexed", "only in jsonl"]
    assert (await core.get_session(m1.session_id)).message_count == 2
    await core.close(end_sessions=False)


async def test_reindex_from_jsonl_alone_restores_everything(settings, fake_backend, data_dir: Path) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    a = await core.create_workstream("Alpha", ["x"])
    b = await core.create_workstream("Beta")
    for ws in (a, b):
        for s in range(3):
            for i in range(5):
                await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"{ws.title} s{s} m{i}")
            await core.end_session(ws.id)
    await core.work_queue()
    await core.append_message(a.id, "user", "still active")
    await core.rename_workstream(b.id, "Beta renamed")
    await core.archive_workstream(b.id)
    before = await snapshot(core)
    assert before[a.id]["summary"] is not None
    await core.close(end_sessions=False)

    for suffix in ("", "-wal", "-shm"):
        p = Path(str(data_dir / "arawn.db") + suffix)
        if p.exists():
            p.unlink()
    core = await ArawnCore.open(settings, fake_backend)
    # a missing index is noticed at open and rebuilt from the files, before anything is listed
    assert await snapshot(core) == before
    assert any("missing 2 workstream" in n for n in core.notices)
    counts = await core.reindex()
    assert counts["workstreams"] == 2 and counts["sessions"] == 7 and counts["messages"] == 31
    after = await snapshot(core)
    assert after == before
    await core.close(end_sessions=False)


async def test_slow_subscriber_does_not_stall_the_engine(core: ArawnCore) -> None:
    q = core.events.subscribe_queue(maxsize=3)
    seen: list[ev.Event] = []
    core.events.subscribe(seen.append)
    ws = await core.create_workstream("events")
    for i in range(10):
        await core.append_message(ws.id, "user", f"m{i}")
    assert q.dropped > 0 and q.queue.qsize() == 3
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "WorkstreamUpdated" and "SessionStarted" in kinds and kinds.count("MessageAdded") == 10

    def broken(_e: ev.Event) -> None:
        raise RuntimeError("subscriber bug")

    core.events.subscribe(broken)
    await core.append_message(ws.id, "user", "still works")
    core.events.unsubscribe(broken)


async def test_reading_one_session_does_not_scan_the_file(core: ArawnCore, monkeypatch) -> None:
    ws = await core.create_workstream("big")
    for s in range(5):
        for i in range(4):
            await core.append_message(ws.id, "user", f"s{s} m{i} " + "x" * 1000)
        await core.end_session(ws.id)
    sessions = await core.list_sessions(ws.id)
    read = []
    real = jsonl.read_spans

    def counting(path, spans, *rest):
        read.append(sum(n for _, n in spans))
        return real(path, spans, *rest)

    monkeypatch.setattr(jsonl, "read_spans", counting)
    msgs = await core.session_messages(sessions[2].id)
    assert [m.content[:5] for m in msgs] == ["s2 m0", "s2 m1", "s2 m2", "s2 m3"]
    size = core.repo.messages_path(ws.id).stat().st_size
    assert read[0] < size / 4


async def test_compression_config_without_room_fails_once_with_the_keys_to_change(data_dir: Path, fake_backend) -> None:
    from tests.conftest import make_settings

    settings = make_settings(data_dir, "[llm]\nnum_ctx = 1024\nmax_reply_tokens = 256\n[workstream.compression]\nmax_summary_tokens = 1000\n"
                                       "min_messages = 0\nverbatim_max_chars = 0\n")
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("tight")
    await core.append_message(ws.id, "user", "hello")
    await core.end_session(ws.id)
    outcomes = await core.work_queue()
    assert [o.ok for o in outcomes] == [False] and not outcomes[0].will_retry
    job = (await core.list_jobs())[0]
    assert job.state.value == "failed" and job.attempts == 1
    assert "num_ctx" in job.last_error and "max_summary_tokens" in job.last_error
    assert fake_backend.calls == 0
    await core.close(end_sessions=False)


async def test_cancelled_transaction_leaves_the_connection_usable(core: ArawnCore) -> None:
    """A task cancelled while BEGIN runs must not leave the connection inside a transaction."""
    import asyncio

    ws = await core.create_workstream("cancel")
    for _ in range(20):
        task = asyncio.ensure_future(core.append_message(ws.id, "user", "x"))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert not core.db.conn.in_transaction
    m = await core.append_message(ws.id, "user", "still works")
    assert (await core.session_messages(m.session_id))[-1].id == m.id


async def test_preferences_persist(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    assert await core.get_preference("theme") is None
    await core.set_preference("theme", "nord")
    await core.close(end_sessions=False)
    core = await ArawnCore.open(settings, fake_backend)
    assert await core.get_preference("theme") == "nord"
    await core.close(end_sessions=False)
