"""Imports from the apps users have: ChatGPT's export, Open WebUI's export, oterm's and elia's SQLite stores.

The fixtures are written here, by hand, in each app's shape (see each
importer module for where the format description came from), into
real files under tmp_path, and imported through `ArawnCore.import_file`
and the CLI with auto-detection.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from arawn_core.core import ArawnCore, UsageError
from arawn_tui.headless import run

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


# ---------------------------------------------------------------- fixtures


def node(nid: str, parent: str | None, children: list[str], role: str | None = None, text: str | list | None = None,
         t: float | None = None, content_type: str = "text", **meta) -> dict:
    msg = None
    if role is not None:
        parts = text if isinstance(text, list) else [text]
        msg = {"id": f"msg-{nid}", "author": {"role": role, "name": None, "metadata": {}},
               "create_time": t, "update_time": None,
               "content": {"content_type": content_type, "parts": parts},
               "status": "finished_successfully", "end_turn": True, "weight": 1.0,
               "metadata": meta, "recipient": meta.pop("recipient", "all")}
    return {"id": nid, "message": msg, "parent": parent, "children": children}


def chatgpt_export(tmp_path: Path) -> Path:
    garden = {
        "title": "Garden plans", "create_time": T0, "update_time": T0 + 600,
        "conversation_id": "conv-garden", "id": "conv-garden", "current_node": "a2b",
        "mapping": {
            "root": node("root", None, ["sys"]),
            "sys": node("sys", "root", ["u1"], "system", "", T0, is_visually_hidden_from_conversation=True),
            "u1": node("u1", "sys", ["a1"], "user", "When should I plant tomatoes? MARKER-g1", T0 + 10),
            "a1": node("a1", "u1", ["tool1"], "assistant", "search(tomato planting)", T0 + 11, recipient="browser"),
            "tool1": node("tool1", "a1", ["a2a", "a2b"], "tool", "results...", T0 + 12),
            # the first answer was regenerated; current_node is on the second branch
            "a2a": node("a2a", "tool1", [], "assistant", "OLD ANSWER never shown", T0 + 13),
            "a2b": node("a2b", "tool1", [], "assistant",
                        ["After the last frost. MARKER-g2", {"content_type": "image_asset_pointer"}], T0 + 14,
                        content_type="multimodal_text", model_slug="gpt-4o"),
        },
        "moderation_results": [], "safe_urls": [],
    }
    code = {
        "title": "Python", "create_time": T0 + 1000, "conversation_id": "conv-code", "current_node": "c2",
        "mapping": {
            "c0": node("c0", None, ["c1"]),
            "c1": node("c1", "c0", ["c2"], "user", "Write hello world MARKER-c1", None),
            "c2": node("c2", "c1", [], "assistant", "print('hello') MARKER-c2", T0 + 1001),
        },
    }
    broken = {"title": "Broken one", "conversation_id": "conv-broken", "current_node": "gone",
              "mapping": {"x": node("x", None, [])}}
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps([garden, broken, code], indent=1))
    return path


def openwebui_export(tmp_path: Path) -> Path:
    history = {
        "currentId": "m3b",
        "messages": {
            "m1": {"id": "m1", "parentId": None, "childrenIds": ["m2"], "role": "user",
                   "content": "Plan a trip to Lisbon MARKER-w1", "timestamp": int(T0)},
            "m2": {"id": "m2", "parentId": "m1", "childrenIds": ["m3a", "m3b"], "role": "assistant",
                   "content": "Three days: Alfama, Belem, Sintra. MARKER-w2", "timestamp": int(T0) + 5,
                   "model": "llama3.1:8b"},
            "m3a": {"id": "m3a", "parentId": "m2", "childrenIds": [], "role": "user",
                    "content": "A DISCARDED EDIT", "timestamp": int(T0) + 20},
            "m3b": {"id": "m3b", "parentId": "m2", "childrenIds": [], "role": "user",
                    "content": "And for food? MARKER-w3", "timestamp": int(T0) + 30},
        },
    }
    trip = {"id": "chat-trip", "user_id": "u", "title": "Lisbon trip", "created_at": int(T0), "updated_at": int(T0) + 30,
            "archived": False, "pinned": False, "meta": {}, "folder_id": None,
            "chat": {"id": "", "title": "Lisbon trip", "models": ["llama3.1:8b"], "params": {},
                     "history": history, "messages": [], "tags": [], "timestamp": int(T0 * 1000)}}
    older = {"id": "chat-old", "title": "Old export", "created_at": int(T0),
             "chat": {"title": "Old export", "messages": [
                 {"id": "o1", "role": "user", "content": "hi MARKER-o1", "timestamp": int(T0)},
                 {"id": "o2", "role": "assistant", "content": "", "timestamp": int(T0) + 1},
                 {"id": "o3", "role": "assistant", "content": "hello MARKER-o2", "timestamp": int(T0) + 2}]}}
    bad = {"id": "chat-bad", "title": "Bad roles", "chat": {"messages": [{"role": "wizard", "content": "x"}]}}
    path = tmp_path / "chat-export.json"
    path.write_text(json.dumps([trip, bad, older]))
    return path


def oterm_store(tmp_path: Path, old: bool = False) -> Path:
    path = tmp_path / ("old-store.db" if old else "store.db")
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE "chat" ("id" INTEGER, "name" TEXT, "model" TEXT NOT NULL, "system" TEXT, "format" TEXT,
            "parameters" TEXT, "keep_alive" INTEGER DEFAULT 5, PRIMARY KEY("id" AUTOINCREMENT));
    """)
    if old:
        con.execute('CREATE TABLE "message" ("chat_id" INTEGER NOT NULL, "author" TEXT NOT NULL, "text" TEXT NOT NULL)')
        user, bot = "me", "ollama"
    else:
        con.execute('CREATE TABLE "message" ("id" INTEGER PRIMARY KEY AUTOINCREMENT, "chat_id" INTEGER NOT NULL, '
                    '"author" TEXT NOT NULL, "text" TEXT NOT NULL, "images" TEXT)')
        user, bot = "user", "assistant"
    con.execute("INSERT INTO chat (id, name, model, system) VALUES (1, 'Rust help', 'llama3.2', 'You are terse.')")
    con.execute("INSERT INTO chat (id, name, model, system) VALUES (2, 'Haiku', 'gemma2', NULL)")
    con.execute("INSERT INTO chat (id, name, model, system) VALUES (3, 'Weird', 'gemma2', NULL)")
    rows = [(1, user, "What is a borrow? MARKER-r1"), (2, user, "Write a haiku MARKER-h1"),
            (1, bot, "A reference that does not own. MARKER-r2"), (2, bot, "Autumn moon MARKER-h2"),
            (3, "robot", "?"), (1, user, "Thanks MARKER-r3")]
    con.executemany("INSERT INTO message (chat_id, author, text) VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


def elia_store(tmp_path: Path) -> Path:
    path = tmp_path / "elia.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE chat (id INTEGER NOT NULL PRIMARY KEY, model VARCHAR, title VARCHAR, started_at DATETIME,
            archived BOOLEAN DEFAULT 0);
        CREATE TABLE message (id INTEGER NOT NULL PRIMARY KEY, chat_id INTEGER, role VARCHAR NOT NULL,
            content VARCHAR NOT NULL, timestamp DATETIME DEFAULT (CURRENT_TIMESTAMP), status VARCHAR,
            end_turn BOOLEAN, weight FLOAT, meta JSON, model VARCHAR, parent_id INTEGER,
            FOREIGN KEY(chat_id) REFERENCES chat (id));
    """)
    con.execute("INSERT INTO chat VALUES (1, 'gpt-4o', 'Sourdough', '2024-03-01 09:00:00', 0)")
    con.execute("INSERT INTO chat VALUES (2, 'gpt-4o', 'Bad chat', '2024-03-02 09:00:00', 0)")
    rows = [
        (1, 1, "system", "You are a baker.", "2024-03-01 09:00:00.000000", None),
        (2, 1, "user", "How long to proof? MARKER-e1", "2024-03-01 09:00:05.000000", None),
        (3, 1, "assistant", "Overnight in the fridge. MARKER-e2", "2024-03-01 09:00:09.500000+00:00", "gpt-4o"),
        (4, 2, "user", "x", "not a time", None),
    ]
    con.executemany("INSERT INTO message (id, chat_id, role, content, timestamp, model) VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


async def stored(core: ArawnCore, report) -> list[list]:
    """Each imported session's messages, in order."""
    return [await core.session_messages(sid) for sid in report.session_ids]


# ---------------------------------------------------------------- ChatGPT


async def test_chatgpt_export_follows_the_current_branch(core: ArawnCore, tmp_path: Path) -> None:
    report = await core.import_file(chatgpt_export(tmp_path))
    assert report.format == "chatgpt"
    assert report.conversations_imported == 2 and report.messages_imported == 4
    garden, code = await stored(core, report)
    assert [(m.role, m.content) for m in garden] == [
        ("user", "When should I plant tomatoes? MARKER-g1"), ("assistant", "After the last frost. MARKER-g2")]
    assert garden[0].timestamp == "2023-11-14T22:13:30.000000Z"
    assert garden[1].timestamp == "2023-11-14T22:13:34.000000Z"
    meta = garden[1].metadata["import"]
    assert meta["title"] == "Garden plans" and meta["model"] == "gpt-4o" and meta["source_id"] == "conv-garden"
    assert meta["original_id"] == "msg-a2b" and meta["format"] == "chatgpt"
    # a message without a time takes the conversation's
    assert code[0].timestamp == "2023-11-14T22:30:00.000000Z" and code[0].metadata["import"]["title"] == "Python"
    [problem] = report.problems
    assert problem.where == "record 1" and "'Broken one' (conv-broken)" in problem.reason
    assert "current_node 'gone'" in problem.reason
    again = await core.import_file(chatgpt_export(tmp_path))
    assert again.conversations_imported == 0 and again.skipped_duplicates == 2


# ---------------------------------------------------------------- Open WebUI


async def test_openwebui_export_follows_current_id_and_reads_old_exports(core: ArawnCore, tmp_path: Path) -> None:
    report = await core.import_file(openwebui_export(tmp_path))
    assert report.format == "openwebui"
    trip, older = await stored(core, report)
    assert [m.content for m in trip] == ["Plan a trip to Lisbon MARKER-w1",
                                        "Three days: Alfama, Belem, Sintra. MARKER-w2", "And for food? MARKER-w3"]
    assert [m.timestamp for m in trip] == ["2023-11-14T22:13:20.000000Z", "2023-11-14T22:13:25.000000Z",
                                           "2023-11-14T22:13:50.000000Z"]
    assert trip[1].metadata["import"]["model"] == "llama3.1:8b"
    assert trip[0].metadata["import"]["title"] == "Lisbon trip"
    assert [m.content for m in older] == ["hi MARKER-o1", "hello MARKER-o2"]  # the empty one skipped
    [problem] = report.problems
    assert problem.where == "record 1" and "'Bad roles' (chat-bad)" in problem.reason and "wizard" in problem.reason


async def test_a_single_chat_export_is_detected_too(core: ArawnCore, tmp_path: Path) -> None:
    data = json.loads(openwebui_export(tmp_path).read_text())[:1]
    path = tmp_path / "chat-export-one.json"
    path.write_text(json.dumps(data))
    report = await core.import_file(path)
    assert report.format == "openwebui" and report.conversations_imported == 1


# ---------------------------------------------------------------- oterm, elia


@pytest.mark.parametrize("old", [False, True])
async def test_oterm_store(core: ArawnCore, tmp_path: Path, old: bool) -> None:
    path = oterm_store(tmp_path, old=old)
    before = path.read_bytes()
    report = await core.import_file(path)
    assert report.format == "oterm"
    rust, haiku = await stored(core, report)
    assert [(m.role, m.content) for m in rust] == [
        ("system", "You are terse."), ("user", "What is a borrow? MARKER-r1"),
        ("assistant", "A reference that does not own. MARKER-r2"), ("user", "Thanks MARKER-r3")]
    assert [m.role for m in haiku] == ["user", "assistant"]
    assert rust[1].metadata["import"]["title"] == "Rust help" and rust[1].metadata["import"]["model"] == "llama3.2"
    [problem] = report.problems
    assert problem.where == "chat 3 ('Weird')" and "'robot'" in problem.reason
    assert path.read_bytes() == before  # opened read-only: the other app's store is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(path.name)) == [path.name]


async def test_elia_store(core: ArawnCore, tmp_path: Path) -> None:
    report = await core.import_file(elia_store(tmp_path))
    assert report.format == "elia"
    [bread] = await stored(core, report)
    assert [(m.role, m.content) for m in bread] == [
        ("system", "You are a baker."), ("user", "How long to proof? MARKER-e1"),
        ("assistant", "Overnight in the fridge. MARKER-e2")]
    assert [m.timestamp for m in bread] == ["2024-03-01T09:00:00.000000Z", "2024-03-01T09:00:05.000000Z",
                                            "2024-03-01T09:00:09.500000Z"]
    assert bread[2].metadata["import"]["model"] == "gpt-4o" and bread[0].metadata["import"]["title"] == "Sourdough"
    [problem] = report.problems
    assert problem.where == "chat 2 ('Bad chat')" and "not a time" in problem.reason


async def test_a_sqlite_file_that_is_neither_store_is_one_clear_error(core: ArawnCore, tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    con.commit()
    con.close()
    with pytest.raises(UsageError, match="not an oterm or elia store"):
        await core.import_file(path)
    with pytest.raises(UsageError, match="oterm's SQLite store, not a elia file|this is oterm's SQLite store"):
        await core.import_file(oterm_store(tmp_path), "elia")
    with pytest.raises(UsageError, match="the oterm format is a SQLite store"):
        await core.import_file(chatgpt_export(tmp_path), "oterm")


def test_cli_auto_detects_each_app(tmp_path: Path, capsys) -> None:
    files = {"chatgpt": chatgpt_export(tmp_path), "openwebui": openwebui_export(tmp_path),
             "oterm": oterm_store(tmp_path), "elia": elia_store(tmp_path)}
    data = tmp_path / "data"
    for fmt, path in files.items():
        code = run(["--data-dir", str(data), "--json", "import", str(path)])
        out = capsys.readouterr()
        report = json.loads(out.out)
        assert code == 0, out.err
        assert report["conversations_imported"] >= 1
        assert len(report["problems"]) == 1  # the bad record of each fixture, named, skipped
    for marker in ("MARKER-g2", "MARKER-w3", "MARKER-r2", "MARKER-e2"):  # one from each app, found
        code = run(["--data-dir", str(data), "--json", "search", marker])
        assert code == 0 and json.loads(capsys.readouterr().out), marker
