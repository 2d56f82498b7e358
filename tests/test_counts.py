"""Session counts are data: kept with the workstream row (schema 4 triggers), right through
every way sessions come and go, and recounted by reindex."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from arawn_core.core import ArawnCore
from arawn_core.models import Message, new_id, utc_now
from arawn_core.store import jsonl
from arawn_core.store.schema import MIGRATIONS
from tests.conftest import make_settings
from tests.fakes import FakeBackend


async def counted(core: ArawnCore) -> dict[str, int]:
    """Sessions per workstream, counted the slow way (what the kept counts must equal)."""
    rows = await core.db.fetchall("SELECT w.id, (SELECT COUNT(*) FROM sessions s WHERE s.workstream_id = w.id)"
                                  " FROM workstreams w")
    return {r[0]: r[1] for r in rows}


async def shown(core: ArawnCore) -> dict[str, int]:
    """What `ws list` and the TUI list show, and what one workstream's page shows."""
    listed = {w.id: w.session_count for w in await core.list_workstreams(include_archived=True)}
    for ws_id, n in listed.items():
        assert (await core.get_workstream(ws_id)).session_count == n
    return listed


async def test_counts_follow_sessions_started_ended_and_imported(core: ArawnCore, tmp_path: Path) -> None:
    a = await core.create_workstream("a")
    b = await core.create_workstream("b")
    assert await shown(core) == {a.id: 0, b.id: 0}
    await core.append_message(a.id, "user", "one")
    await core.append_message(a.id, "assistant", "reply")
    assert (await shown(core))[a.id] == 1  # a second message is not a second session
    await core.end_session(a.id)
    await core.append_message(a.id, "user", "two")
    await core.append_message(b.id, "user", "three")
    assert await shown(core) == {a.id: 2, b.id: 1} == await counted(core)

    conversations = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]}
                     for i in range(5)]
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(conversations))
    report = await core.import_file(path, "sharegpt", b.id)
    assert report.conversations_imported == 5
    again = await core.import_file(path, "sharegpt", b.id)  # already there: nothing new is counted
    assert again.conversations_imported == 0
    assert await shown(core) == {a.id: 2, b.id: 6} == await counted(core)

    await core.rename_workstream(b.id, "b renamed")  # rewriting the row keeps its count
    await core.archive_workstream(a.id)  # ends a's live session; archived rows keep theirs
    assert await shown(core) == {a.id: 2, b.id: 6} == await counted(core)


async def test_reindex_recounts_what_drifted(core: ArawnCore) -> None:
    ws = await core.create_workstream("w")
    for text in ("x", "y", "z"):
        await core.append_message(ws.id, "user", text)
        await core.end_session(ws.id)
    async with core.db.transaction() as c:  # a count gone wrong (an edited database, an old bug)
        await c.execute("UPDATE workstreams SET session_count = 42")
    assert (await shown(core))[ws.id] == 42
    counts = await core.reindex()
    assert counts["sessions"] == 3
    assert await shown(core) == {ws.id: 3} == await counted(core)


async def test_counts_include_sessions_recovered_after_a_crash(settings, data_dir: Path) -> None:
    """A writer died after its JSONL append and before SQLite: the next open indexes the lines,
    and the session they start is counted in the same transaction."""
    core = await ArawnCore.open(settings, FakeBackend())
    ws = await core.create_workstream("w")
    await core.append_message(ws.id, "user", "indexed")
    path = core.repo.messages_path(ws.id)
    await core.close(end_sessions=False)

    orphan = Message(new_id(), ws.id, new_id(), "user", "only in the JSONL", utc_now())
    jsonl.append_lines(path, [orphan.to_json_line()])

    core = await ArawnCore.open(settings, FakeBackend())
    try:
        assert await shown(core) == {ws.id: 2} == await counted(core)
        assert orphan.session_id in {s.id for s in await core.list_sessions(ws.id)}
    finally:
        await core.close(end_sessions=False)


async def test_the_migration_backfills_counts_of_an_older_store(data_dir: Path) -> None:
    """A data dir written before schema 4: its sessions are counted when it is first opened."""
    data_dir.mkdir(parents=True)
    conn = sqlite3.connect(data_dir / "arawn.db")
    for script in MIGRATIONS[:3]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 3")
    now = utc_now()
    ids = [new_id(), new_id()]
    for n, ws_id in zip((3, 0), ids):
        conn.execute("INSERT INTO workstreams (id, title, created_at, updated_at) VALUES (?,?,?,?)",
                     (ws_id, f"w{n}", now, now))
        conn.executemany("INSERT INTO sessions (id, workstream_id, started_at, last_activity_at) VALUES (?,?,?,?)",
                         [(new_id(), ws_id, now, now) for _ in range(n)])
    conn.commit()
    conn.close()

    core = await ArawnCore.open(make_settings(data_dir), FakeBackend())
    try:
        assert await shown(core) == {ids[0]: 3, ids[1]: 0} == await counted(core)
        core.repo.ws_dir(ids[1]).mkdir(parents=True)
        await core.append_message(ids[1], "user", "the triggers count from here on")
        assert await shown(core) == {ids[0]: 3, ids[1]: 1}
    finally:
        await core.close(end_sessions=False)


async def test_a_session_moved_between_workstreams_moves_its_count(core: ArawnCore) -> None:
    a = await core.create_workstream("a")
    b = await core.create_workstream("b")
    await core.append_message(a.id, "user", "hello")
    session = await core.active_session(a.id)
    async with core.db.transaction() as c:  # e.g. a session forked or filed elsewhere
        await c.execute("UPDATE sessions SET workstream_id = ? WHERE id = ?", (b.id, session.id))
    assert await shown(core) == {a.id: 0, b.id: 1} == await counted(core)
