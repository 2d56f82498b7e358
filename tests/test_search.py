"""Full-text search over messages and summaries: real SQLite FTS5, real JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arawn_core.core import ArawnCore, UsageError
from arawn_core import search
from arawn_core.search import QueryError, parse_query
from arawn_core.store import fts
from arawn_tui.headless import run


async def seed(core: ArawnCore) -> tuple[str, str]:
    a = await core.create_workstream("Database work")
    b = await core.create_workstream("Garden")
    texts = [
        (a.id, "user", "We decided the connection pool size should be 16 for the API"),
        (a.id, "assistant", "The pool of connections for the size limit was discussed"),
        (a.id, "user", "size matters: the pool and the connection"),
        (b.id, "user", "Tomatoes need a connection to the sun, not a pool"),
        (b.id, "assistant", "Plant the tomatoes in spring; water daily"),
    ]
    for ws_id, role, text in texts:
        await core.append_message(ws_id, role, text)
    return a.id, b.id


async def test_exact_phrase_ranks_first_with_snippets(core: ArawnCore) -> None:
    await seed(core)
    hits = await core.search("connection pool size")
    assert hits, "no hits"
    assert hits[0].exact and "connection pool size" in hits[0].snippet.replace("[", "").replace("]", "")
    assert "[connection]" in hits[0].snippet and "[pool]" in hits[0].snippet
    assert [h.exact for h in hits].count(True) == 1
    assert all(h.kind == "message" for h in hits)


async def test_filters_workstream_role_since_limit(core: ArawnCore) -> None:
    a, b = await seed(core)
    hits = await core.search("pool", workstream_id=b)
    assert [h.workstream_id for h in hits] == [b]
    hits = await core.search("pool", role="assistant")
    assert [h.role for h in hits] == ["assistant"] and hits[0].workstream_id == a
    assert await core.search("pool", since="2999-01-01") == []
    assert len(await core.search("pool", limit=2)) == 2
    assert len(await core.search("tomat*")) == 2  # prefix


async def test_summaries_are_searchable_after_compression(core: ArawnCore) -> None:
    ws = await core.create_workstream("Compressed")
    for i in range(6):
        await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"turn {i} about MARKER-zebra")
    await core.end_session(ws.id)
    await core.work_queue()
    hits = await core.search("zebra")
    kinds = {h.kind for h in hits}
    assert "message" in kinds and ("session_summary" in kinds or "workstream_summary" in kinds)


async def test_index_stays_consistent_after_import_and_reindex(core: ArawnCore, tmp_path: Path) -> None:
    src = tmp_path / "convs.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"question {i} about quasar{i}"},
        {"role": "assistant", "content": "an answer"}]}) for i in range(20)) + "\n")
    await core.import_file(src)
    assert len(await core.search("quasar7")) == 1
    await core.import_file(src)  # a second import adds nothing, and no duplicate hits
    assert len(await core.search("quasar7")) == 1
    msgs = await core.db.fetchone("SELECT COUNT(*) FROM messages")
    assert await fts.count(core.db.conn) == msgs[0] == 40
    await core.reindex()
    assert len(await core.search("quasar7")) == 1
    assert await fts.count(core.db.conn) == 40
    assert await fts.misplaced(core.db.conn) == 0


@pytest.mark.parametrize("query, message", [
    ('"unbalanced phrase', "unbalanced quote"),
    ("AND", "needs a term on each side"),
    ("pool OR", "needs a term on each side"),
    ("NOT NOT pool", "needs a term on each side"),
    ("   ", "empty"),
    ("*** ---", "no words"),
])
def test_malformed_queries_get_one_clear_line(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(query)


@pytest.mark.parametrize("query", [
    "pool; DROP TABLE messages; --", "col:umn", "NEAR(a b)", "a\"b\"c", "'quoted'", "x^y", "(pool", "{a b}",
])
async def test_hostile_queries_never_reach_sqlite_raw(core: ArawnCore, query: str) -> None:
    await seed(core)
    try:
        await core.search(query)
    except UsageError as exc:
        assert "fts5" not in str(exc).lower() and "sqlite" not in str(exc).lower()
    assert (await core.db.fetchone("SELECT COUNT(*) FROM messages"))[0] == 5


def test_cli_search_json_and_bad_query(capsys, data_dir: Path, fake_backend) -> None:
    run(["--data-dir", str(data_dir), "ws", "create", "S"], backend=fake_backend)
    run(["--data-dir", str(data_dir), "chat", "S", "the quick brown fox"], backend=fake_backend)
    capsys.readouterr()
    assert run(["--data-dir", str(data_dir), "--json", "search", "brown fox", "--role", "user"],
               backend=fake_backend) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 1 and hits[0]["exact"] and hits[0]["role"] == "user"
    code = run(["--data-dir", str(data_dir), "search", '"brown'], backend=fake_backend)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unbalanced quote" in err


async def test_the_index_is_sharded_by_rowid_and_search_spans_shards(core: ArawnCore, monkeypatch) -> None:
    monkeypatch.setattr(fts, "SHARD_ROWS", 8)  # 8 messages a shard: 50 messages -> 7 shards
    monkeypatch.setattr(search, "RANK_AT_LEAST", 8)  # stop widening after 8 messages with enough hits
    ws = await core.create_workstream("Long history")
    for i in range(50):
        await core.append_message(ws.id, "user", f"message {i} " + ("about the lighthouse" if i in (3, 47) else "about nothing"))
    assert await fts.shards(core.db.conn) == list(range(7))
    assert await fts.count(core.db.conn) == 50 and await fts.misplaced(core.db.conn) == 0
    # a word in the oldest and the newest shard: both found (too few hits in the newest to stop there)
    hits = await core.search("lighthouse")
    assert sorted(h.snippet.split()[1] for h in hits) == ["3", "47"]
    # a word everywhere: only the newest messages are ranked (the newest 8 here) and the limit holds
    hits = await core.search("nothing", limit=5)
    assert len(hits) == 5 and all(int(h.snippet.split()[1]) >= 42 for h in hits)
    hits = await core.search("about nothing", limit=60)  # fewer hits than the limit: every shard is read
    assert len(hits) == 48 and all(h.exact for h in hits)
    # filters apply inside each shard; an old message of another role is still reached
    await core.append_message(ws.id, "assistant", "the lighthouse keeper answered")
    hits = await core.search("lighthouse", role="assistant")
    assert [h.role for h in hits] == ["assistant"]
    # more matches than the limit in the newest range: the exact phrase is still ranked first
    for text in ("keeper of the light house", "light keeper here", "a keeper, a light, a keeper"):
        await core.append_message(ws.id, "user", text)
    hits = await core.search("light keeper", limit=2)
    assert len(hits) == 2 and hits[0].exact and "light keeper here" in hits[0].snippet.replace("[", "").replace("]", "")
    assert not hits[1].exact
    await core.reindex()
    assert await fts.shards(core.db.conn) == list(range(7))
    assert await fts.count(core.db.conn) == 54 and await fts.misplaced(core.db.conn) == 0
    assert len(await core.search("lighthouse")) == 3


async def test_a_store_from_before_the_shards_is_reindexed_on_open(settings, fake_backend) -> None:
    """Schema 2 kept one messages_fts table; opening such a store rebuilds the index from the JSONL files."""
    import sqlite3

    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Old store")
    for i in range(30):
        await core.append_message(ws.id, "user", f"entry {i} mentions the {'albatross' if i == 7 else 'gull'}")
    await core.close(end_sessions=False)
    conn = sqlite3.connect(settings.data_dir / "arawn.db")  # make it look like schema 2
    conn.execute("DROP TABLE messages_fts_0")
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name GLOB 'messages_fts_*'").fetchone()[0] == 0
    conn.execute("CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='')")
    for trigger in ("sessions_count_insert", "sessions_count_delete", "sessions_count_move"):  # undo schema 4
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("ALTER TABLE workstreams DROP COLUMN session_count")
    conn.execute("ALTER TABLE summaries DROP COLUMN method")  # undo schema 5
    conn.execute("ALTER TABLE summaries DROP COLUMN audit")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()

    core = await ArawnCore.open(settings, fake_backend)
    try:
        assert (await core.db.fetchone("PRAGMA user_version"))[0] >= 3
        assert await core.db.fetchone("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'") is None
        assert await fts.count(core.db.conn) == 30 and await fts.misplaced(core.db.conn) == 0
        assert await core.repo.kv_get("fts_rebuild") is None
        hits = await core.search("albatross")
        assert len(hits) == 1 and "entry 7" in hits[0].snippet
        assert len(await core.session_messages((await core.list_sessions(ws.id))[0].id)) == 30  # nothing lost
    finally:
        await core.close(end_sessions=False)
