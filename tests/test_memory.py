"""Steerable memory over real files and SQLite: pins, summary edits that stick, versions with
diff and revert, focus, fork and session titles, each also through `reindex`."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from arawn_core.config import Settings
from arawn_core.core import ArawnCore, UsageError
from arawn_core.memory.versions import edited_lines, protected_after_edit, restore_protected
from tests.conftest import make_settings
from tests.fakes import FakeBackend, fenced_blocks, lossy_reply


async def session(core: ArawnCore, ws_id: str, *turns: str) -> str:
    """One ended session of user/assistant turns (stored directly: no chat call), compressed."""
    for i, text in enumerate(turns):
        await core.append_message(ws_id, "user" if i % 2 == 0 else "assistant", text)
    s = await core.end_session(ws_id)
    assert s is not None
    await core.work_queue(ws_id)
    return s.id


async def reopen(settings: Settings, backend: FakeBackend, *, wipe: bool) -> ArawnCore:
    """Open again; with `wipe`, from the JSONL files alone (the database deleted, then reindex)."""
    if wipe:
        for p in settings.data_dir.glob("arawn.db*"):
            p.unlink()
    core = await ArawnCore.open(settings, backend)
    if wipe:
        await core.reindex()
    return core


# ---- pins --------------------------------------------------------------------------
async def test_pins_go_verbatim_into_every_context_and_survive_reindex(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Thesis")
    a = await core.add_pin(ws.id, "Deadline: 14 March, chapter 3 first.")
    b = await core.add_pin(ws.id, "Use British spelling.\n  Cite with author-year.  ")
    await core.append_message(ws.id, "user", "hello")
    system = (await core.build_context(ws.id))[0]["content"]
    assert "Deadline: 14 March, chapter 3 first." in system
    assert "Use British spelling.\n  Cite with author-year." in system  # inner whitespace kept as typed
    await core.edit_pin(ws.id, a.id[:6], "Deadline: 21 March.")
    await core.remove_pin(ws.id, b.id)
    c = await core.add_pin(ws.id, "Supervisor: Dr Okafor", source_message_id="m-1")
    before = [p.to_dict() for p in await core.list_pins(ws.id)]
    assert [p["text"] for p in before] == ["Deadline: 21 March.", "Supervisor: Dr Okafor"]
    await core.close(end_sessions=False)

    core = await reopen(settings, fake_backend, wipe=True)
    try:
        assert [p.to_dict() for p in await core.list_pins(ws.id)] == before
        assert (await core.list_pins(ws.id))[1].source_message_id == "m-1" and c.id == before[1]["id"]
        system = (await core.build_context(ws.id))[0]["content"]
        assert "Deadline: 21 March." in system and "Use British spelling" not in system
    finally:
        await core.close(end_sessions=False)


async def test_pins_over_budget_are_left_out_whole_and_reported(data_dir: Path, fake_backend) -> None:
    settings = make_settings(data_dir, "[workstream]\npin_budget_tokens = 100\n")
    core = await ArawnCore.open(settings, fake_backend)
    try:
        ws = await core.create_workstream("Tight")
        await core.add_pin(ws.id, "short note PIN-ONE")
        await core.add_pin(ws.id, "long note PIN-TWO " + "x" * 400)
        await core.add_pin(ws.id, "after it PIN-THREE")
        fit = await core.pin_fit(ws.id)
        assert [p.text.split()[-1] for p in fit.included] == ["PIN-ONE"]
        assert len(fit.omitted) == 2 and fit.over_budget and "2 of 3 pinned notes left out" in fit.warning()
        await core.append_message(ws.id, "user", "hi")
        system = (await core.build_context(ws.id))[0]["content"]
        assert "PIN-ONE" in system and "PIN-TWO" not in system and "PIN-THREE" not in system
        assert "x" * 10 not in system  # never a cut-off piece of a pin
    finally:
        await core.close(end_sessions=False)


async def test_bad_pins_are_usage_errors(core) -> None:
    ws = await core.create_workstream("P")
    with pytest.raises(UsageError, match="cannot be empty"):
        await core.add_pin(ws.id, "  \n ")
    with pytest.raises(UsageError, match="no pin 'nope'"):
        await core.remove_pin(ws.id, "nope")


# ---- protected lines ----------------------------------------------------------------
def test_edited_lines_and_restore_are_deterministic() -> None:
    old = "## Goals\n- write chapter 3\n## Facts\n- uses R 4.3\n"
    new = "## Goals\n- write chapter 3\n- USER: keep the survey data private\n## Facts\n- uses R 4.4\n"
    assert edited_lines(old, new) == ["- USER: keep the survey data private", "- uses R 4.4"]
    assert protected_after_edit(["- gone line"], old, new) == edited_lines(old, new)
    dropped = "## Goals\n- write chapter 3\n## Facts\n- new fact\n"
    text, restored = restore_protected(dropped, edited_lines(old, new), new)
    assert restored == ["- USER: keep the survey data private", "- uses R 4.4"]
    assert text == ("## Goals\n- write chapter 3\n- USER: keep the survey data private\n## Facts\n- uses R 4.4\n"
                    "- new fact\n")
    assert restore_protected(text, restored, new) == (text, [])  # nothing missing: unchanged
    assert restore_protected("unrelated", ["- kept"], None) == ("unrelated\n\n- kept", ["- kept"])


async def test_an_edit_survives_several_reductions_by_a_model_that_drops_it(settings) -> None:
    backend = FakeBackend(reply=lossy_reply)
    core = await ArawnCore.open(settings, backend)
    try:
        ws = await core.create_workstream("Sticky")
        await session(core, ws.id, "first topic MARKER-a", "ok")
        first = await core.workstream_summary(ws.id)
        assert first is not None
        edited = first.text + "\n- Always keep: the client is ACME-42 (do not rename)\n"
        v = await core.set_summary(ws.id, edited)
        assert v is not None and v.author == "user" and v.protected == ["- Always keep: the client is ACME-42 (do not rename)"]
        for n in range(3):
            backend.reset()
            await session(core, ws.id, f"session {n} about MARKER-s{n}", "fine")
            summary = await core.workstream_summary(ws.id)
            assert summary is not None
            assert "- Always keep: the client is ACME-42 (do not rename)" in summary.text.splitlines()
            assert f"MARKER-s{n}" in summary.text
            reduce_req = next(r for r in backend.ok_requests if "WORKSTREAM-SUMMARY" in fenced_blocks(r.user))
            assert "ACME-42" in reduce_req.user  # the reduce sees it (and the audit gets it as must_keep)...
            assert "ACME-42" not in (reduce_req.reply or "")  # ...dropped by the model, put back after
            assert not any("ACME-42" in (r.reply or "") for r in backend.ok_requests)  # (and by any repair call)
            current = await core.current_version(ws.id)
            assert current is not None and current.author == "model"
            assert current.restored == ["- Always keep: the client is ACME-42 (do not rename)"]
        assert [x.author for x in await core.summary_versions(ws.id)] == ["model", "user", "model", "model", "model"]
    finally:
        await core.close(end_sessions=False)


# ---- versions, diff, revert ------------------------------------------------------------
async def test_versions_diff_and_revert_are_exact_and_survive_reindex(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Versions")
    await session(core, ws.id, "alpha MARKER-one", "ok")
    await session(core, ws.id, "beta MARKER-two", "ok")
    tricky = "Résumé — ünïcode\ttabs  \n\ntrailing spaces   \r\nno final newline"
    await core.set_summary(ws.id, tricky)
    versions = await core.summary_versions(ws.id)
    assert [(v.number, v.author) for v in versions] == [(1, "model"), (2, "model"), (3, "user")]
    assert len(versions[0].covers) == 1 and len(versions[1].covers) == 2
    assert await core.set_summary(ws.id, tricky) is None  # unchanged: no new version

    lines = difflib.unified_diff(versions[1].text.splitlines(True), tricky.splitlines(True),
                                 "version 2 (model)", "version 3 (user)")
    expected = "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines)
    diff = await core.diff_versions(ws.id, 2, 3)
    assert diff == expected and diff.startswith("--- version 2 (model)\n+++ version 3 (user)\n@@ ")
    assert "+no final newline\n\\ No newline at end of file\n" in diff

    r = await core.revert_summary(ws.id, 1)
    assert (r.number, r.author, r.reverted_from) == (4, "revert", 1)
    assert (await core.workstream_summary(ws.id)).text.encode() == versions[0].text.encode()
    undo = await core.revert_summary(ws.id, 3)  # the revert itself is undone by reverting again
    assert (await core.workstream_summary(ws.id)).text.encode() == tricky.encode() and undo.number == 5
    with pytest.raises(UsageError, match="already the current summary"):
        await core.revert_summary(ws.id, 5)
    with pytest.raises(UsageError, match="no summary version 9"):
        await core.revert_summary(ws.id, 9)
    before = [v.to_dict() for v in await core.summary_versions(ws.id)]
    await core.close(end_sessions=False)

    core = await reopen(settings, fake_backend, wipe=True)
    try:
        assert [v.to_dict() for v in await core.summary_versions(ws.id)] == before
        assert (await core.workstream_summary(ws.id)).text.encode() == tricky.encode()
    finally:
        await core.close(end_sessions=False)


# ---- focus ------------------------------------------------------------------------------
async def test_focus_steers_that_run_and_is_recorded(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    try:
        ws = await core.create_workstream("Focused")
        await session(core, ws.id, "budget talk MARKER-b", "ok")
        fake_backend.reset()
        await core.compress(ws.id, focus="the  budget\nfigures")  # nothing new: a steered rebuild
        await core.work_queue(ws.id)
        steered = [r for r in fake_backend.ok_requests if "<<<DRAFT-" not in r.user]  # not the audit's repair call
        assert steered and all("the budget figures" in r.user for r in steered)
        v = await core.current_version(ws.id)
        assert v is not None and v.focus == "the budget figures" and v.to_dict()["provenance"]["focus"] == v.focus
        assert await core.pending_focus(ws.id) is None  # the run is over
        fake_backend.reset()
        await session(core, ws.id, "next", "ok")
        assert fake_backend.ok_requests and not any("budget figures" in r.user for r in fake_backend.ok_requests)
    finally:
        await core.close(end_sessions=False)


# ---- fork -------------------------------------------------------------------------------
async def test_fork_starts_from_summary_and_pins_and_points_back(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Origin", ["t1"])
    await session(core, ws.id, "origin fact MARKER-o", "ok")
    await core.set_summary(ws.id, "Origin summary\n- user line\n")
    await core.add_pin(ws.id, "pinned in origin")
    fork = await core.fork_workstream(ws.id, "Branch")
    assert fork.id != ws.id and fork.tags == ["t1"]
    assert (await core.workstream_summary(fork.id)).text == "Origin summary\n- user line\n"
    fv = await core.summary_versions(fork.id)
    assert [(v.number, v.author, v.protected) for v in fv] == [(1, "fork", ["Origin summary", "- user line"])]
    assert [p.text for p in await core.list_pins(fork.id)] == ["pinned in origin"]
    origin = await core.workstream_origin(fork.id)
    assert origin is not None and (origin["origin_id"], origin["origin_title"], origin["origin_version"]) == (
        ws.id, "Origin", 2)
    await core.append_message(fork.id, "user", "continue")
    system = (await core.build_context(fork.id))[0]["content"]
    assert "Origin summary" in system and "pinned in origin" in system
    await core.close(end_sessions=False)
    core = await reopen(settings, fake_backend, wipe=True)
    try:
        assert (await core.workstream_origin(fork.id)) == origin
        assert [p.text for p in await core.list_pins(fork.id)] == ["pinned in origin"]
        assert [v.to_dict() for v in await core.summary_versions(fork.id)] == [v.to_dict() for v in fv]
    finally:
        await core.close(end_sessions=False)


# ---- session titles -----------------------------------------------------------------------
async def test_session_titles_from_first_message_renamable_and_through_reindex(settings, fake_backend) -> None:
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Titled")
    await core.append_message(ws.id, "assistant", "a greeting first")
    await core.append_message(ws.id, "user", "\n   How do   I prune roses?  \nMore detail here.")
    s1 = (await core.end_session(ws.id)).id
    await core.append_message(ws.id, "user", "x" * 200)
    s2 = (await core.end_session(ws.id)).id
    titles = {s.id: s.title for s in await core.list_sessions(ws.id)}
    assert titles[s1] == "How do I prune roses?"
    assert len(titles[s2]) == 80 and titles[s2].endswith("…")
    renamed = await core.rename_session(s2, "  Long  one ")
    assert renamed.title == "Long one"
    hits = await core.search("prune")
    assert hits and hits[0].session_title == "How do I prune roses?"
    md = "".join([c async for c in core.export(ws.id, "markdown")])
    assert "## Session 1 · How do I prune roses? ·" in md and "## Session 2 · Long one ·" in md
    await core.close(end_sessions=False)
    core = await reopen(settings, fake_backend, wipe=True)
    try:
        assert {s.id: s.title for s in await core.list_sessions(ws.id)} == {s1: "How do I prune roses?",
                                                                            s2: "Long one"}
    finally:
        await core.close(end_sessions=False)


async def test_a_store_from_before_titles_gets_them_on_open(settings, fake_backend) -> None:
    import sqlite3

    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Old")
    await core.append_message(ws.id, "user", "Old question here")
    await core.close(end_sessions=False)
    with sqlite3.connect(settings.data_dir / "arawn.db") as db:
        db.execute("UPDATE sessions SET title = NULL")
        db.execute("INSERT INTO kv (key, value) VALUES ('titles_backfill', '1')")
    core = await ArawnCore.open(settings, fake_backend)
    try:
        assert [s.title for s in await core.list_sessions(ws.id)] == ["Old question here"]
        assert await core.repo.kv_get("titles_backfill") is None
    finally:
        await core.close(end_sessions=False)


async def test_a_store_from_before_versions_gets_its_history_from_events(settings, fake_backend) -> None:
    """Schema 5 arrives on a store whose events.jsonl already holds several workstream summaries:
    on open they all become versions, numbered as reindex numbers them."""
    import sqlite3

    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Upgraded")
    await session(core, ws.id, "one MARKER-x", "ok")
    await session(core, ws.id, "two MARKER-y", "ok")
    before = [v.to_dict() for v in await core.summary_versions(ws.id)]
    assert len(before) == 2
    await core.close(end_sessions=False)
    with sqlite3.connect(settings.data_dir / "arawn.db") as db:  # as the migration leaves an older store
        db.execute("DELETE FROM summary_versions")
        db.execute("INSERT INTO kv (key, value) VALUES ('versions_backfill', '1')")
    core = await ArawnCore.open(settings, fake_backend)
    try:
        assert [v.to_dict() for v in await core.summary_versions(ws.id)] == before
        assert await core.repo.kv_get("versions_backfill") is None
        await core.reindex()
        assert [v.to_dict() for v in await core.summary_versions(ws.id)] == before
    finally:
        await core.close(end_sessions=False)


def test_a_dropped_first_line_goes_back_before_its_neighbour() -> None:
    previous = "- mine first\n## Goals\n- a\n- mine last"
    text, restored = restore_protected("## Goals\n- a\n- b", ["- mine first", "- mine last"], previous)
    assert restored == ["- mine first", "- mine last"]
    assert text == "- mine first\n## Goals\n- a\n- mine last\n- b"


async def test_memory_events_written_after_the_index_are_replayed_on_open(settings, fake_backend) -> None:
    """A writer that died between events.jsonl and its commit: the next open replays the pin, the
    title and the summary version the file holds."""
    core = await ArawnCore.open(settings, fake_backend)
    ws = await core.create_workstream("Replayed")
    await core.append_message(ws.id, "user", "first line")
    sid = (await core.end_session(ws.id)).id
    path = core.repo.events_path(ws.id)
    await core.close(end_sessions=False)
    lines = [{"type": "pin", "id": "p-1", "text": "from a dead writer", "created_at": "2026-01-01T00:00:00.000000Z"},
             {"type": "session_title", "session_id": sid, "title": "Renamed by the dead writer"}]
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(x) + "\n" for x in lines)
    # written after the index's last change, whatever the clock did while the first core closed
    index = settings.data_dir / "arawn.db"
    later = max(os.stat(p).st_mtime_ns for p in (index, Path(f"{index}-wal")) if p.exists()) + 1_000_000_000
    os.utime(path, ns=(later, later))
    core = await ArawnCore.open(settings, fake_backend)
    try:
        assert [p.text for p in await core.list_pins(ws.id)] == ["from a dead writer"]
        assert (await core.get_session(sid)).title == "Renamed by the dead writer"
    finally:
        await core.close(end_sessions=False)
