"""Benchmark compression; prints one JSON document, writes bench/results/compression.json.

    python bench/bench_compression.py [--quick]

All with `tests.fakes.FakeBackend` (deterministic tokenizer: 3 chars a token,
4 tokens a message; reports prompt tokens like Ollama) and real ShareGPT text:

1. LLM input tokens per session end, sessions 1..200: the incremental reduce
   (`Summarizer.fold(previous, [new])`) against the original arawn's full
   re-reduce of every session summary at every session end
   (`Summarizer.rebuild(all)`), same summaries, same run. The fake "model"
   obeys the length the prompt asks for ("under N words": it writes 0.7 N real
   words), so summary sizes follow the engine's own targets.
2. Map speed-up from concurrency: one session planned into exactly 64 map
   chunks (num_ctx 2048; the chunk count is checked against the requests the
   backend saw), a backend taking 200 ms a call and serving at most 4 calls at
   once, `max_concurrency` 4 against 1. Target: >= 3x (map phase).
3. The pipeline's own time per LLM call with an instant backend: the whole job
   path (`ArawnCore.end_session` -> `work_queue`: session map/reduce job, then
   the workstream fold job) over many sessions; wall / calls per session end
   (median, p99), and the time outside backend calls from a wrapper that times
   every call (the idle gaps between calls, too).
4. One-call session summary (the original arawn: the whole session in one
   request) against ours for a long session with planted markers: the one call
   exceeds num_ctx and Ollama would silently keep only its end (share of the
   input lost, markers lost), while every request of ours fits and every
   marker reaches the final summary.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    base_parser,
    corpus,
    dist_ms,
    finish,
    log,
    machine_info,
    now_iso,
    open_core,
    ratio,
    sharegpt_messages,
)

from arawn_core.compression import prompts as P  # noqa: E402
from arawn_core.compression.budget import TokenEstimator  # noqa: E402
from arawn_core.compression.chunking import plan_chunks  # noqa: E402
from arawn_core.compression.mapreduce import Summarizer  # noqa: E402
from arawn_core.compression.values import SummarizerConfig  # noqa: E402
from arawn_core.llm.base import ChatOptions  # noqa: E402
from tests.fakes import FakeBackend, markers_in  # noqa: E402

MAP_TARGET_RATIO = 3.0
MODEL = "bench-model"
FILL = 0.7  # share of the requested words the fake model writes
_WORDS_RE = re.compile(r"(?:under|Keep the whole reply under) (\d+) words")


# --------------------------------------------------------------------------- helpers


class ObedientReply:
    """A fake model that writes FILL x the words it is asked for, real words in corpus order."""

    def __init__(self) -> None:
        words: list[str] = []
        for _, text in itertools.islice(corpus(20_000, start=50_000), 20_000):
            words.extend(w for w in text.split() if w.isalpha() and len(w) < 14)
        self.words = words
        self.pos = 0

    def __call__(self, messages, options) -> str:  # noqa: ANN001 - the FakeBackend ReplyFn
        system = "\n".join(m.get("content", "") for m in messages if m.get("role") == "system")
        found = _WORDS_RE.findall("\n".join(m.get("content", "") for m in messages))  # the length note moved to the user turn
        n = max(10, int(int(found[-1]) * FILL)) if found else 100
        if self.pos + n > len(self.words):
            self.pos = 0
        out = self.words[self.pos:self.pos + n]
        self.pos += n
        return " ".join(out)


class CallRecorder:
    """Wraps a backend: start/end/kind of every call, the calls in flight, and an optional cap on them."""

    def __init__(self, inner: Any, serve_at_once: int | None = None) -> None:
        self.inner = inner
        self.kind, self.host = "recorder", inner.host
        self.calls: list[tuple[float, float, str]] = []
        self._cap = asyncio.Semaphore(serve_at_once) if serve_at_once else None
        self.in_flight = 0
        self.max_in_flight = 0

    @staticmethod
    def kind_of(messages) -> str:  # noqa: ANN001
        system = messages[0].get("content", "") if messages else ""
        if "of a longer session" in "\n".join(m.get("content", "") for m in messages):  # the part note is in the user turn
            return "map"
        if system.startswith(P.SESSION_PROMPT[:40]):
            return "session-one-call"
        if "combine consecutive partial summaries" in system:
            return "merge"
        return "other"

    async def complete(self, messages, options):  # noqa: ANN001 - the LLMBackend protocol
        kind = self.kind_of(messages)
        if self._cap:
            await self._cap.acquire()
        t0 = time.perf_counter()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.inner.complete(messages, options)
        finally:
            self.in_flight -= 1
            self.calls.append((t0, time.perf_counter(), kind))
            if self._cap:
                self._cap.release()

    async def chat(self, messages, options):  # noqa: ANN001
        async for chunk in self.inner.chat(messages, options):
            yield chunk

    async def info(self):
        return await self.inner.info()

    async def aclose(self) -> None:
        await self.inner.aclose()


def busy_union(calls: list[tuple[float, float, str]]) -> float:
    """Time at least one call was in flight."""
    total, end = 0.0, float("-inf")
    for s, e, _ in sorted(calls):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def idle_gaps(calls: list[tuple[float, float, str]], start: float, stop: float) -> list[float]:
    """Stretches with no call in flight, from `start` to `stop` (before the first, between, after the last)."""
    gaps, end = [], start
    for s, e, _ in sorted(calls):
        if s > end:
            gaps.append(s - end)
        end = max(end, e)
    if stop > end:
        gaps.append(stop - end)
    return gaps


def summarizer(backend: Any, num_ctx: int, max_summary_tokens: int, concurrency: int = 2,
               estimator: TokenEstimator | None = None, safety: int = 256) -> Summarizer:
    cfg = SummarizerConfig(model=MODEL, num_ctx=num_ctx, max_summary_tokens=max_summary_tokens,
                           safety_margin_tokens=safety, max_concurrency=concurrency, fan_in=4)
    return Summarizer(backend, cfg, estimator or TokenEstimator())


def real_items(n_chars: int, start: int = 0) -> list[tuple[str, str]]:
    out, total = [], 0
    for role, text in corpus(10**7, start=start):
        if total >= n_chars:
            break
        out.append((role, text))
        total += len(text)
    return out


# --------------------------------------------------------------------------- 1. tokens per session end


async def measure_reduce_tokens(n_sessions: int, checkpoints: list[int]) -> dict[str, Any]:
    num_ctx, mst = 8192, 1024
    # session summaries made by the same fake model from real sessions (~15k chars each: one call)
    maker = FakeBackend(reply=ObedientReply())
    s_maker = summarizer(maker, num_ctx, mst)
    summaries = []
    for i in range(n_sessions):
        res = await s_maker.summarize_session(real_items(15_000, start=i * 40))
        summaries.append(res.text)
    log(f"{n_sessions} session summaries, median {statistics.median(len(s) for s in summaries):.0f} chars")

    inc_backend = FakeBackend(reply=ObedientReply())
    full_backend = FakeBackend(reply=ObedientReply())
    inc = summarizer(inc_backend, num_ctx, mst)
    full = summarizer(full_backend, num_ctx, mst)
    previous: str | None = None
    rows = []
    totals = {"incremental": [0, 0, 0.0], "full": [0, 0, 0.0]}  # tokens, calls, seconds
    for k in range(1, n_sessions + 1):
        t0 = time.perf_counter()
        r_inc = await inc.fold(previous, [summaries[k - 1]])
        t1 = time.perf_counter()
        r_full = await full.rebuild(summaries[:k])
        t2 = time.perf_counter()
        previous = r_inc.text
        for key, r, dt in (("incremental", r_inc, t1 - t0), ("full", r_full, t2 - t1)):
            totals[key][0] += r.input_tokens
            totals[key][1] += r.llm_calls
            totals[key][2] += dt
        if k in checkpoints:
            rows.append({
                "session": k,
                "incremental_fold": {"input_tokens": r_inc.input_tokens, "llm_calls": r_inc.llm_calls,
                                     "output_tokens": r_inc.output_tokens},
                "full_rereduce_original": {"input_tokens": r_full.input_tokens, "llm_calls": r_full.llm_calls,
                                           "output_tokens": r_full.output_tokens},
                "ratio_full_over_incremental": ratio(r_full.input_tokens, r_inc.input_tokens, 1),
            })
            log(f"session {k}: fold {r_inc.input_tokens} tokens, rebuild {r_full.input_tokens} tokens")
    over = [r for r in inc_backend.requests + full_backend.requests if r.prompt_tokens > num_ctx]
    return {
        "num_ctx": num_ctx,
        "max_summary_tokens": mst,
        "fan_in": 4,
        "fake_model": f"writes {FILL} x the words the prompt asks for; 3 chars a token",
        "session_summary_chars_median": round(statistics.median(len(s) for s in summaries)),
        "workstream_summary_chars_final": len(previous or ""),
        "per_session_end": rows,
        "cumulative_over_all_session_ends": {
            "sessions": n_sessions,
            "incremental_fold": {"input_tokens": totals["incremental"][0], "llm_calls": totals["incremental"][1]},
            "full_rereduce_original": {"input_tokens": totals["full"][0], "llm_calls": totals["full"][1]},
            "ratio_full_over_incremental": ratio(totals["full"][0], totals["incremental"][0], 1),
        },
        "requests_over_num_ctx": len(over),
    }


# --------------------------------------------------------------------------- 2. map concurrency


def transcript_for_chunks(s: Summarizer, chunks: int) -> tuple[list[tuple[str, str]], int]:
    """Real messages that the summarizer plans into exactly `chunks` map chunks; and its chunk size."""
    empty = s._piece_builder("map", [], "9999 of 9999", 10_000)  # the summarizer's own sizing
    max_chars = s._max_data_chars(empty)
    items: list[tuple[str, str]] = []
    for role, text in corpus(10**7, start=20_000):
        items.append((role, text))
        n = len(plan_chunks(items, max_chars, item_overhead_chars=P.ITEM_OVERHEAD_CHARS))
        if n > chunks:
            items.pop()
            break
    return items, max_chars


async def measure_map_concurrency(latency: float, chunks: int = 64) -> dict[str, Any]:
    num_ctx, mst = 2048, 256
    items, max_chars = transcript_for_chunks(summarizer(FakeBackend(), num_ctx, mst), chunks)
    runs = {}
    for conc in (1, 4):
        fake = FakeBackend(latency_s=latency)
        rec = CallRecorder(fake, serve_at_once=4)
        s = summarizer(rec, num_ctx, mst, concurrency=conc)
        t0 = time.perf_counter()
        res = await s.summarize_session(items)
        wall = time.perf_counter() - t0
        maps = [c for c in rec.calls if c[2] == "map"]
        map_phase = max(e for _, e, _ in maps) - min(s_ for s_, _, _ in maps)
        truncated = sum(1 for r in fake.requests if r.truncated or r.error)
        runs[conc] = {"max_concurrency": conc, "wall_s": round(wall, 3), "map_phase_s": round(map_phase, 3),
                      "map_calls": len(maps), "all_calls": res.llm_calls, "max_in_flight": rec.max_in_flight,
                      "failed_or_truncated_requests": truncated}
        log(f"concurrency {conc}: {len(maps)} map calls, map phase {map_phase:.2f} s, whole {wall:.2f} s")
    map_speedup = ratio(runs[1]["map_phase_s"], runs[4]["map_phase_s"], 2)
    return {
        "num_ctx": num_ctx,
        "max_summary_tokens": mst,
        "transcript_messages": len(items),
        "transcript_chars": sum(len(t) for _, t in items),
        "chunk_max_chars": max_chars,
        "chunks": runs[1]["map_calls"],
        "backend": f"FakeBackend(latency_s={latency}) behind a 4-slot semaphore (serves 4 calls at once)",
        "sequential": runs[1],
        "concurrent": runs[4],
        "map_speedup": map_speedup,
        "whole_session_speedup": ratio(runs[1]["wall_s"], runs[4]["wall_s"], 2),
        "ideal_map_speedup": 4.0,
        "target_ratio": MAP_TARGET_RATIO,
        "target_met": bool(map_speedup and map_speedup >= MAP_TARGET_RATIO),
    }


# --------------------------------------------------------------------------- 3. pipeline overhead


async def measure_pipeline(sessions: int, msgs_per_session: int) -> dict[str, Any]:
    from arawn_core.store import jsonl

    work = Path(tempfile.mkdtemp(prefix="arawn-bench-pipeline-"))
    fsynced: list[float] = []
    real_append_lines = jsonl.append_lines
    measuring = False

    def timed_append_lines(path, lines):  # noqa: ANN001 - events.jsonl appends (each one fsyncs)
        t0 = time.perf_counter()
        try:
            return real_append_lines(path, lines)
        finally:
            if measuring:
                fsynced.append(time.perf_counter() - t0)

    jsonl.append_lines = timed_append_lines
    fake = FakeBackend()
    rec = CallRecorder(fake)
    per_call, outside_per_call, inside, gaps, calls_per_end, walls = [], [], [], [], [], []
    try:
        core = await open_core(work / "data", rec, "[workstream.compression]\nretry_base_s = 0.01\n")
        try:
            ws = await core.create_workstream("pipeline")
            texts = list(corpus(sessions * msgs_per_session, start=30_000))
            chars = []
            for i in range(sessions):
                part = texts[i * msgs_per_session:(i + 1) * msgs_per_session]
                chars.append(sum(len(t) for _, t in part))
                for role, text in part:
                    await core.append_message(ws.id, role, text)
                rec.calls.clear()
                measuring = True
                t0 = time.perf_counter()
                await core.end_session(ws.id)
                outcomes = await core.work_queue(ws.id)
                t1 = time.perf_counter()
                measuring = False
                assert all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
                n = len(rec.calls)
                busy = busy_union(rec.calls)
                walls.append(t1 - t0)
                calls_per_end.append(n)
                per_call.append((t1 - t0) / n)
                outside_per_call.append((t1 - t0 - busy) / n)
                inside.extend(e - s for s, e, _ in rec.calls)
                gaps.extend(idle_gaps(rec.calls, t0, t1))
        finally:
            await core.close(end_sessions=False)
    finally:
        jsonl.append_lines = real_append_lines
        shutil.rmtree(work, ignore_errors=True)
    total_wall, total_calls = sum(walls), sum(calls_per_end)
    return {
        "backend": "FakeBackend(latency_s=0), instant",
        "settings": "defaults: num_ctx 8192, max_summary_tokens 1024, max_concurrency 2, fan_in 4",
        "session_ends": sessions,
        "messages_per_session": msgs_per_session,
        "session_chars_median": round(statistics.median(chars)),
        "llm_calls_per_session_end": {"median": statistics.median(calls_per_end), "min": min(calls_per_end),
                                      "max": max(calls_per_end)},
        "job_path_wall_per_session_end": dist_ms(walls),
        "wall_per_llm_call": dist_ms(per_call),
        "outside_backend_per_llm_call": dist_ms(outside_per_call),
        "inside_backend_per_call": dist_ms(inside),
        "idle_gaps_between_calls": dist_ms(gaps),
        "share_outside_backend": round(1 - sum(inside) / total_wall, 3) if total_wall else None,
        "durable_appends_in_job_path": {
            "what": "events.jsonl appends (write + fsync: session end, each summary) timed in place",
            "per_session_end": round(len(fsynced) / sessions, 1),
            "latency": dist_ms(fsynced),
            "share_of_job_path_wall": round(sum(fsynced) / total_wall, 3) if total_wall else None,
        },
        "totals": {"wall_s": round(total_wall, 3), "llm_calls": total_calls},
    }


# --------------------------------------------------------------------------- 4. one call vs ours


def plant_markers(items: list[tuple[str, str]], n: int) -> tuple[list[tuple[str, str]], list[str]]:
    step = max(1, len(items) // n)
    out, planted = list(items), []
    for k, i in enumerate(range(0, len(items), step)):
        if len(planted) == n:
            break
        marker = f"MARKER-s{k:03d}"
        role, text = out[i]
        out[i] = (role, f"{text}\n(reference {marker})")
        planted.append(marker)
    return out, planted


async def measure_one_call(session_chars: int, n_markers: int) -> dict[str, Any]:
    items, planted = plant_markers(real_items(session_chars, start=60_000), n_markers)
    chars = sum(len(t) for _, t in items)
    out: dict[str, Any] = {"session_messages": len(items), "session_chars": chars, "markers_planted": len(planted),
                           "configs": []}
    for num_ctx, mst in ((8192, 1024), (2048, 256)):
        # the original: the whole session in one request, Ollama truncating silently
        one = FakeBackend(overflow="truncate")
        words = summarizer(one, num_ctx, mst)._target_words(share=2)
        request = P.session_messages(items, target_words=words)
        completion = await one.complete(request, ChatOptions(MODEL, num_ctx, mst, 0.2))
        req = one.requests[-1]
        kept = sum(len(m.get("content", "")) for m in one._truncate([dict(m) for m in request], num_ctx))
        one_markers = [m for m in markers_in(completion.text) if m in planted]
        # ours: map/reduce within the budget, the same fake model truncating the same way
        fake = FakeBackend(overflow="truncate")
        res = await summarizer(fake, num_ctx, mst).summarize_session(items)
        ours_markers = [m for m in markers_in(res.text) if m in planted]
        out["configs"].append({
            "num_ctx": num_ctx,
            "max_summary_tokens": mst,
            "one_call_original": {
                "prompt_tokens": req.prompt_tokens,
                "exceeds_num_ctx": req.prompt_tokens > num_ctx,
                "times_num_ctx": round(req.prompt_tokens / num_ctx, 1),
                "input_chars_lost_pct": round(100 * (1 - kept / req.prompt_chars), 1),
                "reported_prompt_tokens": req.reported_prompt_tokens,
                "markers_in_summary": len(one_markers),
                "markers_lost_pct": round(100 * (1 - len(one_markers) / len(planted)), 1),
            },
            "ours_map_reduce": {
                "llm_calls": res.llm_calls,
                "input_tokens_total": res.input_tokens,
                "max_prompt_tokens": max(r.prompt_tokens for r in fake.requests),
                "max_prompt_plus_reply_budget": max(r.prompt_tokens for r in fake.requests) + mst,
                "requests_over_num_ctx": sum(1 for r in fake.requests if r.prompt_tokens > num_ctx),
                "truncated_requests": sum(1 for r in fake.requests if r.truncated),
                "markers_in_summary": len(ours_markers),
                "markers_lost_pct": round(100 * (1 - len(ours_markers) / len(planted)), 1),
                "fits": all(not r.truncated and r.prompt_tokens <= num_ctx for r in fake.requests),
            },
        })
        log(f"one call at num_ctx {num_ctx}: {req.prompt_tokens} tokens, ours {res.llm_calls} calls")
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--skip", action="append", default=[], choices=["tokens", "map", "pipeline", "onecall"])
    args = p.parse_args(argv)
    q = args.quick
    sizes = {
        "sessions": 50 if q else 200,
        "checkpoints": [1, 10, 50] if q else [1, 10, 50, 200],
        "map_latency_s": 0.05 if q else 0.2,
        "map_chunks": 64,
        "pipeline_sessions": 8 if q else 40,
        "pipeline_messages_per_session": 60,
        "one_call_session_chars": 200_000,
    }
    started = time.perf_counter()
    sharegpt_messages()
    report: dict[str, Any] = {"benchmark": "compression", "issue": "compression", "quick": q, "date": now_iso(),
                              "machine": machine_info(), "sizes": sizes}
    if "tokens" not in args.skip:
        log("tokens per session end: fold vs rebuild")
        report["reduce_tokens"] = asyncio.run(measure_reduce_tokens(sizes["sessions"], sizes["checkpoints"]))
    if "map" not in args.skip:
        log("map concurrency")
        report["map_concurrency"] = asyncio.run(measure_map_concurrency(sizes["map_latency_s"], sizes["map_chunks"]))
    if "pipeline" not in args.skip:
        log("pipeline overhead")
        report["pipeline_overhead"] = asyncio.run(
            measure_pipeline(sizes["pipeline_sessions"], sizes["pipeline_messages_per_session"]))
    if "onecall" not in args.skip:
        log("one call vs ours")
        report["one_call_vs_ours"] = asyncio.run(measure_one_call(sizes["one_call_session_chars"], 40))
    report["machine"]["loadavg_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    finish("compression", report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
