"""A child process for crash tests: does real work in a data dir until it is SIGKILLed.

    python -m tests.crash_child DATA_DIR MODE [ARGS...]

Modes:
  append WS_ID [TAG] [COUNT]  append messages forever (or COUNT of them, then idle); prints "ok <message id>"
                              after each append returned (with TAG, message i also carries the word
                              "<TAG>x<i>", for search checks)
  import PATH WS_ID [BATCH] [STALL]
                              import PATH into WS_ID, BATCH conversations per write (0: the importer's
                              own); prints "ok import <imported> <skipped>" when it returned. STALL stops
                              the process in the first batch and prints where:
                                messages   its messages are in messages.jsonl, its session_end events
                                           not yet in events.jsonl ("messages <n conversations>")
                                events     its lines are in both JSONL files, not committed to SQLite
                                           ("events <n conversations>")
                                committed  it is committed, the next batch not started ("committed <n>")
  work LATENCY [STALL]        work the compression queue with a FakeBackend that answers after LATENCY
                              seconds; prints "ok job <id> <kind> <ok>" after each job's outcome was recorded.
                              STALL stops the process at a chosen point of the first job and prints where:
                                prepare  after its summary is in events.jsonl, before the SQLite commit
                                         ("prepared <job id>")
                                commit   after a session job's commit, before its reduce is queued
                                         ("committed <job id>")
  reindex                     rebuild the index from the files forever; prints "ok reindex <messages>" each time
  hold SECONDS                open the data dir and keep it open (a second live process)

A mode that runs out of work prints "idle" and waits to be killed. Each line is
flushed, so the parent knows exactly which operations completed. "ready" is
printed once the data dir is open (recovery done).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from arawn_core.config import Settings
from arawn_core.core import ArawnCore


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def idle() -> None:
    say("idle")
    while True:
        await asyncio.sleep(3600)


async def append_forever(core: ArawnCore, ws_id: str, tag: str | None = None, count: int | None = None) -> None:
    i = 0
    while count is None or i < count:
        role = "user" if i % 2 == 0 else "assistant"
        word = f"{tag}x{i} " if tag else ""
        m = await core.append_message(ws_id, role, f"message {i} " + word + "lorem ipsum " * (i % 50))
        say(f"ok {m.id}")
        i += 1
    await idle()


async def import_once(core: ArawnCore, path: str, ws_id: str, batch: int, stall: str | None) -> None:
    if batch:
        import arawn_core.importers as importers

        importers.BATCH_CONVERSATIONS = batch
    if stall in ("messages", "events"):
        from arawn_core.store import jsonl

        append_lines = jsonl.append_lines

        def stop_at_events(path, lines):
            if Path(path).name != "events.jsonl":
                return append_lines(path, lines)
            if stall == "events":
                append_lines(path, lines)
            say(f"{stall} {len(lines)}")
            threading.Event().wait()  # this worker thread never returns: the process is killed here

        jsonl.append_lines = stop_at_events
    elif stall == "committed":
        original = core.repo.import_sessions

        async def commit_then_stop(workstream_id, batch):
            keys = await original(workstream_id, batch)
            say(f"committed {len(keys)}")
            while True:
                await asyncio.sleep(3600)

        core.repo.import_sessions = commit_then_stop  # type: ignore[method-assign]
    elif stall:
        raise SystemExit(f"unknown stall point {stall}")
    report = await core.import_file(Path(path), "auto", ws_id)
    say(f"ok import {report.conversations_imported} {report.skipped_duplicates}")
    await idle()


async def _stop_here(core: ArawnCore, word: str) -> None:
    running = await core.db.fetchone("SELECT id FROM jobs WHERE state = 'running' AND owner_pid = ?",
                                     (core.queue.pid,))
    say(f"{word} {running[0] if running else '-'}")
    while True:
        await asyncio.sleep(3600)


async def work(core: ArawnCore, stall: str | None) -> None:
    if stall == "prepare":
        original = core.repo.prepare_summary

        async def prepare_then_stop(summary, *args, **kwargs):
            await original(summary, *args, **kwargs)
            await _stop_here(core, "prepared")

        core.repo.prepare_summary = prepare_then_stop  # type: ignore[method-assign]
    elif stall == "commit":
        original_commit = core.runner._commit

        async def commit_then_stop(job, summary, *args, **kwargs):
            await original_commit(job, summary, *args, **kwargs)
            say(f"committed {job.id}")
            while True:
                await asyncio.sleep(3600)

        core.runner._commit = commit_then_stop  # type: ignore[method-assign]
    elif stall:
        raise SystemExit(f"unknown stall point {stall}")
    while True:
        outcome = await core.run_next()
        if outcome is None:
            break
        say(f"ok job {outcome.job.id} {outcome.job.kind.value} {outcome.ok}")
    await idle()


async def reindex_forever(core: ArawnCore) -> None:
    while True:
        counts = await core.reindex()
        say(f"ok reindex {counts['messages']}")


async def main(argv: list[str]) -> None:
    from tests.fakes import FakeBackend

    data_dir, mode, *rest = argv
    latency = float(rest[0]) if mode == "work" else 0.0
    core = await ArawnCore.open(Settings().with_data_dir(data_dir), FakeBackend(latency_s=latency))
    say("ready")
    if mode == "append":
        await append_forever(core, rest[0], rest[1] if len(rest) > 1 else None,
                             int(rest[2]) if len(rest) > 2 else None)
    elif mode == "import":
        await import_once(core, rest[0], rest[1], int(rest[2]) if len(rest) > 2 else 0,
                          rest[3] if len(rest) > 3 else None)
    elif mode == "work":
        await work(core, rest[1] if len(rest) > 1 else None)
    elif mode == "reindex":
        await reindex_forever(core)
    elif mode == "hold":
        await asyncio.sleep(float(rest[0]))
        await core.close(end_sessions=False)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
