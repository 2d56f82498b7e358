"""Benchmark steerable memory; prints one JSON document, writes bench/results/memory.json.

    python bench/bench_memory.py [--quick] [--out FILE]

Data lives under /tmp/memory-bench (fresh every run; a FakeBackend, no model).

1. Chat context with pins: `ArawnCore.build_context` for a live session of 40
   messages, with 0 pins and with 20 pins of ~200 characters, alternating runs.
2. Protected-line restore after a reduce: `restore_protected` on a 1,000-line
   summary with 50 protected lines of which 30 were dropped.
3. Versions: a workstream with 500 summary versions (user edits, every fifth a
   revert): the cost of writing one, `summary_versions` (history, texts included),
   `diff_versions` of two versions and `revert_summary`, each timed; then `reindex`
   of that workstream with 100 pins added (every version and pin rebuilt from
   events.jsonl).
4. Session titles while indexing: `append_messages` of 20,000 messages in 200
   sessions with the title update and with it replaced by a no-op, alternating
   fresh data dirs (on a loaded machine the two are within noise of each other).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import base_parser, dist_ms, finish, log, machine_info, now_iso, open_core, ratio  # noqa: E402

ROOT = Path("/tmp/memory-bench")


def fresh(name: str) -> Path:
    path = ROOT / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path / "data"


async def bench_context(reps: int) -> dict:
    core = await open_core(fresh("context"))
    try:
        plain = await core.create_workstream("no pins")
        pinned = await core.create_workstream("pins")
        for ws in (plain, pinned):
            for i in range(40):
                await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "words " * 60)
        for i in range(20):
            await core.add_pin(pinned.id, f"note {i}: " + "pinned detail " * 14)
        times: dict[str, list[float]] = {"0_pins": [], "20_pins": []}
        for _ in range(reps):
            for key, ws in (("0_pins", plain), ("20_pins", pinned)):
                t0 = time.perf_counter()
                await core.build_context(ws.id)
                times[key].append(time.perf_counter() - t0)
        fit = await core.pin_fit(pinned.id)
        return {"0_pins": dist_ms(times["0_pins"]), "20_pins": dist_ms(times["20_pins"]),
                "median_ratio_20_vs_0": ratio(statistics.median(times["20_pins"]), statistics.median(times["0_pins"]), 2),
                "pins_in_context": len(fit.included), "pin_tokens": fit.used_tokens}
    finally:
        await core.close(end_sessions=False)


def bench_restore(reps: int) -> dict:
    from arawn_core.memory.versions import restore_protected

    previous = "\n".join(f"- line {i} of the summary with some words" for i in range(1000))
    protected = [f"- line {i} of the summary with some words" for i in range(0, 1000, 20)]
    dropped = set(protected[:30])
    text = "\n".join(x for x in previous.splitlines() if x not in dropped)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out, restored = restore_protected(text, protected, previous)
        times.append(time.perf_counter() - t0)
    assert len(restored) == 30 and out == previous
    return {"summary_lines": 1000, "protected": 50, "dropped_and_restored": 30, "restore": dist_ms(times)}


async def bench_versions(n_versions: int, reps: int) -> dict:
    core = await open_core(fresh("versions"))
    try:
        ws = await core.create_workstream("versions")
        base = "\n".join(f"- fact {i}: " + "detail " * 8 for i in range(60))
        t0 = time.perf_counter()
        await core.set_summary(ws.id, base)
        for i in range(1, n_versions):
            if i % 5 == 4:
                await core.revert_summary(ws.id, i - 1)
            else:
                await core.set_summary(ws.id, base + f"\n- edit {i}: keep this")
        write_s = time.perf_counter() - t0
        hist, diff, revert = [], [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            versions = await core.summary_versions(ws.id)
            hist.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await core.diff_versions(ws.id, 2, len(versions) - 1)
            diff.append(time.perf_counter() - t0)
        for _ in range(min(reps, 20)):
            t0 = time.perf_counter()
            await core.revert_summary(ws.id, 1)
            revert.append(time.perf_counter() - t0)
            await core.revert_summary(ws.id, 2)
        for i in range(100):
            await core.add_pin(ws.id, f"pin {i}")
        t0 = time.perf_counter()
        counts = await core.reindex()
        reindex_s = time.perf_counter() - t0
        after = await core.summary_versions(ws.id)
        return {"versions": len(after), "write_versions_s": round(write_s, 3),
                "per_version_write_ms": round(write_s * 1000 / n_versions, 3),
                "history": dist_ms(hist), "diff": dist_ms(diff), "revert": dist_ms(revert),
                "reindex_with_versions_and_100_pins_s": round(reindex_s, 3), "reindexed": counts,
                "pins_after_reindex": len(await core.list_pins(ws.id))}
    finally:
        await core.close(end_sessions=False)


async def bench_titles(n_sessions: int, per_session: int, rounds: int) -> dict:
    from arawn_core.models import Message, new_id
    from arawn_core.store import memory

    real = memory.set_titles

    async def noop(c, firsts) -> None:  # noqa: ANN001
        return None

    times: dict[str, list[float]] = {"with_titles": [], "without_titles": []}
    for r in range(rounds):
        for key in ("with_titles", "without_titles") if r % 2 == 0 else ("without_titles", "with_titles"):
            memory.set_titles = real if key == "with_titles" else noop
            core = await open_core(fresh(f"titles-{key}"))
            try:
                ws = await core.create_workstream("titles")
                batches = []
                for s in range(n_sessions):
                    sid = new_id()
                    batches.append([Message(new_id(), ws.id, sid, "user" if i % 2 == 0 else "assistant",
                                            f"question {s}.{i} about something\nmore text", f"2026-01-01T00:{s % 60:02d}:{i % 60:02d}.000000Z")
                                    for i in range(per_session)])
                t0 = time.perf_counter()
                for batch in batches:
                    await core.repo.append_messages(ws.id, batch)
                times[key].append(time.perf_counter() - t0)
                if key == "with_titles":
                    titled = sum(1 for s in await core.list_sessions(ws.id) if s.title)
                    assert titled == n_sessions
            finally:
                await core.close(end_sessions=False)
    memory.set_titles = real
    n = n_sessions * per_session
    w, wo = statistics.median(times["with_titles"]), statistics.median(times["without_titles"])
    return {"messages": n, "sessions": n_sessions, "rounds": rounds,
            "with_titles_msgs_per_s": round(n / w), "without_titles_msgs_per_s": round(n / wo),
            "median_ratio_with_vs_without": ratio(w, wo, 3)}


async def main() -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args()
    quick = args.quick
    doc = {"area": "memory", "when": now_iso(), "machine": machine_info(), "quick": quick}
    log("context with pins")
    doc["context"] = await bench_context(20 if quick else 200)
    log("restore")
    doc["restore"] = bench_restore(20 if quick else 200)
    log("versions")
    doc["versions"] = await bench_versions(50 if quick else 500, 10 if quick else 50)
    log("titles")
    doc["titles"] = await bench_titles(20 if quick else 200, 100, 2 if quick else 4)
    finish("memory", doc, args.out)


if __name__ == "__main__":
    asyncio.run(main())
