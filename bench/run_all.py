"""Run every benchmark in bench/ and write bench/results/*.json and BENCHMARKS.md.

    python bench/run_all.py [--quick] [--only NAME ...] [--skip NAME ...] [--report-only]

Every `bench/bench_*.py` is run in its own process, in a fixed order (storage
builds the 1M-message data set that search then reuses), with `--quick`
passed through. bench_embedded.py runs only if llama_cpp is importable; it
has no --quick, so a quick run passes it --skip-compression instead, and it
is given --out since it does not write a results file by itself.

A full run writes bench/results/<area>.json and BENCHMARKS.md at the repo
root; a quick run writes bench/results/quick/ and its BENCHMARKS.md there, so
a smoke run never overwrites the published figures. `--report-only` rebuilds
the markdown from the JSON files already there (e.g. after the TUI owner
writes bench/results/tui.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, REPO, RESULTS, log, machine_info, now_iso  # noqa: E402

ORDER = ["storage", "search", "compression", "embedded", "tui"]
SPECIAL: dict[str, dict[str, list[str]]] = {
    # bench_embedded.py has no --quick and writes no file unless given --out
    "embedded": {"quick": ["--skip-compression"], "out": ["--out", "{results}/embedded.json"]},
}


def discover() -> list[str]:
    names = [p.stem[len("bench_"):] for p in BENCH.glob("bench_*.py")]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def run_one(name: str, quick: bool, results: Path, extra: list[str]) -> dict[str, Any]:
    script = BENCH / f"bench_{name}.py"
    source = script.read_text()
    special = SPECIAL.get(name, {})
    args: list[str] = []
    if quick:
        args += ["--quick"] if ("--quick" in source or "base_parser" in source) else special.get("quick", [])
    if "out" in special:
        args += [a.format(results=results) for a in special["out"]]
    elif "--out" in source or "base_parser" in source:  # bench scripts built on _common take --out
        args += ["--out", str(results / f"{name}.json")]
    args += extra
    log(f"== bench_{name}.py {' '.join(args)}")
    out = results / f"{name}.json"
    before = out.stat().st_mtime if out.exists() else None
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    status = {"name": name, "exit": proc.returncode, "wall_s": round(wall, 1), "args": args}
    if proc.returncode != 0:
        log(f"bench_{name}.py failed with exit code {proc.returncode}")
        return status
    if not out.exists() or out.stat().st_mtime == before:  # a benchmark that only prints: keep its JSON
        try:
            out.write_text(json.dumps(json.loads(proc.stdout), indent=2) + "\n")
        except ValueError:
            status["exit"] = "no JSON on stdout"
    return status


# --------------------------------------------------------------------------- markdown


def load(results: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((results / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def met(flag: Any) -> str:
    return "**met**" if flag else "**NOT met**"


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.2f} ms"


def fmt_n(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


SIDE_BY_SIDE: list[list[Any]] = []


def section_storage(d: dict[str, Any], targets: list[list[Any]]) -> list[str]:
    out = ["## Storage (issue \"core engine\") — `bench/bench_storage.py`", ""]
    if d.get("quick"):
        out += ["_Quick run: small sizes; figures not comparable with a full run._", ""]
    r = d.get("session_read")
    if r:
        ours, orig, smart = r["ours_index_offsets"], r["original_full_scan"], r["smarter_scan_substring_prefilter"]
        out += [f"Reading one {r['session_messages']}-message session from a workstream whose messages.jsonl holds "
                f"{r['jsonl_messages']:,} messages ({r['jsonl_bytes'] / 1e9:.2f} GB, real ShareGPT text), "
                f"{r['cache']}; medians of {ours['n']} (ours) and {orig['n']} (scans) reads.", ""]
        out += table(["method", "median", "p90", "ratio to ours"], [
            ["ours: `ArawnCore.session_messages` (index + byte offsets)", fmt_ms(ours["median_ms"]),
             fmt_ms(ours["p90_ms"]), "1x"],
            ["**original arawn**: json-parse every line, keep the session's", fmt_ms(orig["median_ms"]),
             fmt_ms(orig["p90_ms"]), f"**{fmt_n(r['speedup_vs_original_median'])}x**"],
            ["(reference) scan parsing only lines containing the id", fmt_ms(smart["median_ms"]),
             fmt_ms(smart["p90_ms"]), f"{fmt_n(r['speedup_vs_smarter_scan_median'])}x"],
        ])
        SIDE_BY_SIDE.append([f"read one {r['session_messages']}-message session, {r['jsonl_messages']:,}-message JSONL",
                             f"index + offsets: {fmt_ms(ours['median_ms'])}",
                             f"json-parse the whole file: {fmt_ms(orig['median_ms'])}",
                             f"**{fmt_n(r['speedup_vs_original_median'])}x** faster"])
        targets.append(["session read vs full-file scan", f">= {r['target_ratio']:.0f}x",
                        f"{fmt_n(r['speedup_vs_original_median'])}x", met(r["target_met"])])
    a = d.get("appends")
    if a:
        c, raw = a["core_append_message"], a["raw_jsonl_append_line"]
        out += [f"Appends with fsync on ({a['appends']} messages of {a['mean_message_chars']} chars on average):", ""]
        out += table(["path", "appends/s", "median latency", "p99 latency"], [
            ["`ArawnCore.append_message` (JSONL + fsync, then SQLite index + FTS)", fmt_n(c["per_s"]),
             fmt_ms(c["latency"]["median_ms"]), fmt_ms(c["latency"]["p99_ms"])],
            ["raw `jsonl.append_line` (flock + write + fsync)", fmt_n(raw["per_s"]),
             fmt_ms(raw["latency"]["median_ms"]), fmt_ms(raw["latency"]["p99_ms"])],
        ])
        out += [f"The JSONL write + fsync is {c['share_in_jsonl_append_and_fsync'] * 100:.0f}% of "
                "`append_message`'s wall time; the rest is the SQLite transaction (index, FTS, counters) and the "
                "event loop / thread hops.", ""]
    w = d.get("ws_list")
    if w:
        out += [f"`arawn --headless ws list` over {w['workstreams']:,} workstreams and {w['sessions']:,} sessions "
                f"({w['messages']:,} messages), a real subprocess, median of {len(w['text']['runs_s'])} "
                f"({w['environment']}):", ""]
        rows = [["`ws list`", f"{w['text']['median_s']:.3f} s"], ["`ws list --json`", f"{w['json']['median_s']:.3f} s"],
                ["(reference) `python -c pass`", f"{w['python_startup_median_s']:.3f} s"],
                ["(reference) `python -c 'import arawn_tui.headless'`",
                 f"{w['python_plus_import_headless_median_s']:.3f} s"]]
        wi = w.get("what_if_no_backend_selection")
        if wi:
            rows.append(["(what-if 1) same command, no LLM backend chosen (do-nothing backend passed in)",
                         f"{wi['median_s']:.3f} s"])
        wb = w.get("what_if_no_backend_and_batched_recover")
        if wb:
            rows.append(["(what-if 2) as 1, and start-up recovery checks all JSONL files in one query + one thread",
                         f"{wb['median_s']:.3f} s ({met(wb['target_met'])})"])
        out += table(["command", "median wall"], rows)
        wb = w.get("what_if_no_backend_and_batched_recover")
        fixed = f"; with fixes (1)+(3) simulated: {wb['median_s']:.3f} s" if wb and not w["target_met"] else ""
        targets.append([f"`ws list` ({w['workstreams']:,} ws / {w['sessions']:,} sessions)", f"<= {w['target_s']} s",
                        f"{w['text']['median_s']:.3f} s (json {w['json']['median_s']:.3f} s){fixed}",
                        met(w["target_met"])])
        ph = w.get("phases_in_process_median_s")
        if ph:
            out += ["Where the time goes (each phase of the command timed in-process, median of 3; imports are "
                    "timed in sequence so each line is what that import adds):", ""]
            out += table(["phase", "seconds"], [[k.removesuffix("_s").replace("_", " "), f"{v:.3f}"]
                                                for k, v in ph.items() if isinstance(v, (int, float))])
            out += [f"Backend chosen: {ph.get('backend_chosen')}.", ""]
        it = w.get("importtime")
        if it:
            out += ["Top-level imports (`-X importtime`, cumulative): " + ", ".join(
                f"{t['module']} {t['cumulative_s']:.2f} s" for t in it["top_level"][:5]) + ".", ""]
    return out


def section_compression(d: dict[str, Any], targets: list[list[Any]]) -> list[str]:
    out = ["## Compression (issue \"compression\") — `bench/bench_compression.py`", ""]
    if d.get("quick"):
        out += ["_Quick run: small sizes; figures not comparable with a full run._", ""]
    r = d.get("reduce_tokens")
    if r:
        out += [f"LLM input tokens per session end (FakeBackend reporting prompt tokens; num_ctx {r['num_ctx']}, "
                f"max_summary_tokens {r['max_summary_tokens']}, fan_in {r['fan_in']}; the fake model {r['fake_model']}; "
                f"session summaries ~{r['session_summary_chars_median']} chars). Ours folds the new session summary "
                "into the previous workstream summary; the **original arawn** re-reduces every session summary "
                "each time (`Summarizer.rebuild(all)`). Same summaries, same run:", ""]
        rows = [[x["session"], fmt_n(x["incremental_fold"]["input_tokens"]), x["incremental_fold"]["llm_calls"],
                 fmt_n(x["full_rereduce_original"]["input_tokens"]), x["full_rereduce_original"]["llm_calls"],
                 f"**{x['ratio_full_over_incremental']}x**"] for x in r["per_session_end"]]
        cum = r["cumulative_over_all_session_ends"]
        rows.append([f"all {cum['sessions']} ends", fmt_n(cum["incremental_fold"]["input_tokens"]),
                     cum["incremental_fold"]["llm_calls"], fmt_n(cum["full_rereduce_original"]["input_tokens"]),
                     cum["full_rereduce_original"]["llm_calls"], f"**{cum['ratio_full_over_incremental']}x**"])
        out += table(["session end", "ours: tokens", "calls", "original: tokens", "calls", "original / ours"], rows)
        last = r["per_session_end"][-1]
        SIDE_BY_SIDE.append([f"LLM input tokens at session end {last['session']}",
                             f"fold: {fmt_n(last['incremental_fold']['input_tokens'])}",
                             f"re-reduce all: {fmt_n(last['full_rereduce_original']['input_tokens'])}",
                             f"**{last['ratio_full_over_incremental']}x** fewer (all {cum['sessions']} ends: "
                             f"{cum['ratio_full_over_incremental']}x)"])
    m = d.get("map_concurrency")
    if m:
        out += [f"Map concurrency: one session of {m['transcript_chars']:,} chars planned into **{m['chunks']} map "
                f"chunks** (num_ctx {m['num_ctx']}), {m['backend']}:", ""]
        out += table(["max_concurrency", "map phase", "whole summary (map + merges)", "calls", "max in flight"], [
            [1, f"{m['sequential']['map_phase_s']:.2f} s", f"{m['sequential']['wall_s']:.2f} s",
             m["sequential"]["all_calls"], m["sequential"]["max_in_flight"]],
            [4, f"{m['concurrent']['map_phase_s']:.2f} s", f"{m['concurrent']['wall_s']:.2f} s",
             m["concurrent"]["all_calls"], m["concurrent"]["max_in_flight"]],
        ])
        out += [f"Map speed-up **{m['map_speedup']}x** (ideal {m['ideal_map_speedup']}x); whole session "
                f"{m['whole_session_speedup']}x.", ""]
        lat = re.search(r"latency_s=([\d.]+)", m["backend"])
        targets.append([f"map speed-up, concurrency 4 vs 1 ({m['chunks']} chunks, "
                        f"{float(lat.group(1)) * 1000 if lat else '?':.0f} ms calls)", f">= {m['target_ratio']}x",
                        f"{m['map_speedup']}x", met(m["target_met"])])
    p = d.get("pipeline_overhead")
    if p:
        w, o, g = p["wall_per_llm_call"], p["outside_backend_per_llm_call"], p["idle_gaps_between_calls"]
        out += [f"Pipeline time per LLM call, instant backend: the whole job path (`end_session` -> `work_queue`: "
                f"session map/reduce + workstream fold) for {p['session_ends']} sessions of "
                f"{p['messages_per_session']} messages (~{p['session_chars_median']:,} chars, median "
                f"{p['llm_calls_per_session_end']['median']} calls each), {p['settings']}:", ""]
        out += table(["per LLM call", "median", "p99"], [
            ["job-path wall / calls", fmt_ms(w["median_ms"]), fmt_ms(w["p99_ms"])],
            ["time outside backend calls / calls", fmt_ms(o["median_ms"]), fmt_ms(o["p99_ms"])],
            ["idle gap between calls (nothing in flight)", fmt_ms(g["median_ms"]), fmt_ms(g["p99_ms"])],
            ["inside the (instant) backend", fmt_ms(p["inside_backend_per_call"]["median_ms"]),
             fmt_ms(p["inside_backend_per_call"]["p99_ms"])],
        ])
        du = p.get("durable_appends_in_job_path")
        if du:
            out += [f"Of the job path, {du['share_of_job_path_wall'] * 100:.0f}% is durable events.jsonl appends "
                    f"(write + fsync, {du['per_session_end']} per session end, median "
                    f"{fmt_ms(du['latency']['median_ms'])}); against a real model (seconds per call) the pipeline's "
                    "own few ms per call is noise.", ""]
    c = d.get("one_call_vs_ours")
    if c:
        out += [f"One-call session summary (**original arawn**: the whole session in one request) vs ours, a long "
                f"session of {c['session_chars']:,} chars ({c['session_messages']} real messages) with "
                f"{c['markers_planted']} planted markers; the fake truncates like Ollama (keeps the prompt's end):", ""]
        rows = []
        for cfg in c["configs"]:
            one, ours = cfg["one_call_original"], cfg["ours_map_reduce"]
            rows.append([cfg["num_ctx"], f"{fmt_n(one['prompt_tokens'])} tokens ({one['times_num_ctx']}x num_ctx)",
                         f"**{one['input_chars_lost_pct']}%**", f"{one['markers_lost_pct']}%",
                         f"{ours['llm_calls']} calls, max prompt {fmt_n(ours['max_prompt_tokens'])} tokens",
                         f"{ours['truncated_requests']}", f"{ours['markers_lost_pct']}%"])
        out += table(["num_ctx", "one call: prompt", "one call: input lost", "one call: markers lost",
                      "ours", "ours: truncated requests", "ours: markers lost"], rows)
        first = c["configs"][0]
        SIDE_BY_SIDE.append([f"summary of a {c['session_chars']:,}-char session at num_ctx {first['num_ctx']}",
                             f"map/reduce: {first['ours_map_reduce']['llm_calls']} calls, 0 truncated, "
                             f"{first['ours_map_reduce']['markers_lost_pct']}% markers lost",
                             f"one call: {first['one_call_original']['times_num_ctx']}x num_ctx, silently cut",
                             f"original loses **{first['one_call_original']['input_chars_lost_pct']}%** of the input"])
        targets.append(["long session summary fits num_ctx (one call: input lost)", "nothing lost",
                        f"ours 0 truncated; one call loses {c['configs'][0]['one_call_original']['input_chars_lost_pct']}%",
                        met(all(x["ours_map_reduce"]["fits"] for x in c["configs"]))])
    return out


def section_search(d: dict[str, Any], targets: list[list[Any]]) -> list[str]:
    out = ["## Search (issue \"search\") — `bench/bench_search.py`", ""]
    if d.get("quick"):
        out += ["_Quick run: small sizes; figures not comparable with a full run._", ""]
    q = d.get("queries")
    if q:
        a, nv = q["all"], q["all_but_very_common_words"]
        out += [f"`ArawnCore.search` over {q['messages_indexed']:,} messages (real text), {q['queries']} queries "
                f"({q['timed_runs']} timed runs after a warm-up pass), limit {q['limit']}:", ""]
        rows = [["**all**", a["n"], fmt_ms(a["median_ms"]), fmt_ms(a["p90_ms"]), f"**{fmt_ms(a['p99_ms'])}**",
                 fmt_ms(a["max_ms"]), "-"],
                ["all but the very common words", nv["n"], fmt_ms(nv["median_ms"]), fmt_ms(nv["p90_ms"]),
                 fmt_ms(nv["p99_ms"]), fmt_ms(nv["max_ms"]), "-"]]
        mc = q.get("matches_per_category", {})
        for k, v in q["by_category"].items():
            m = mc.get(k, {})
            rows.append([k, v["n"], fmt_ms(v["median_ms"]), fmt_ms(v["p90_ms"]), fmt_ms(v["p99_ms"]),
                         fmt_ms(v["max_ms"]), fmt_n(m.get("median", "-"))])
        out += table(["queries", "runs", "p50", "p90", "p99", "max", "matches (median)"], rows)
        targets.append([f"search p99 over {q['messages_indexed']:,} messages", f"<= {q['target_p99_ms']:.0f} ms",
                        f"{fmt_ms(a['p99_ms'])} (p50 {fmt_ms(a['median_ms'])})", met(q["target_met"])])
        slow = q.get("slowest_queries", [])[:6]
        if slow:
            out += ["Slowest queries, with the same FTS expression run bare on the newest shard (`MATCH ? ORDER BY "
                    "rank LIMIT 20`, no join) and counted over every shard:", ""]
            out += table(["query", "filters", "engine", "matches", "bare rank+limit, newest shard",
                          "bare count, all shards"], [
                [f"`{s['query']}`", ", ".join(f"{k}={v[:10]}" for k, v in s["filters"].items()) or "-",
                 fmt_ms(s["median_ms"]), fmt_n(s["matches"]), fmt_ms(s.get("bare_newest_shard_rank_limit20_ms")),
                 fmt_ms(s.get("bare_count_all_shards_ms"))] for s in slow])
    s = d.get("index_size")
    if s:
        out += [f"Index size ({s['method']}): FTS5 tables {s['fts_bytes'] / 1e6:,.0f} MB for "
                f"{s['jsonl_bytes'] / 1e6:,.0f} MB of JSONL = **{s['fts_over_jsonl'] * 100:.1f}%** "
                f"(in {s.get('fts_shards', 1)} rowid shards) "
                f"({s['fts_bytes_per_message']:.0f} bytes a message); the message index itself (offsets, ids) "
                f"{sum(s['message_index_bytes'].values()) / 1e6:,.0f} MB ({s['message_index_over_jsonl'] * 100:.1f}%); "
                f"arawn.db {s['db_file_bytes'] / 1e6:,.0f} MB.", ""]
    i = d.get("import_throughput")
    if i:
        b = d.get("dataset", {}).get("build", {})
        out += [f"Import throughput ({i['messages']:,} messages, {i['batch']}), same messages, alternating, median "
                f"of {len(i['runs']['with_fts'])}: with FTS **{fmt_n(i['with_fts_messages_per_s'])} messages/s**, "
                f"without **{fmt_n(i['without_fts_messages_per_s'])} messages/s** (FTS indexing makes import "
                f"{i['slowdown_from_fts']}x slower). Without = {i['without_method']}."
                + (f" The whole {b['messages']:,}-message bulk load (with FTS, at scale) ran at "
                   f"{fmt_n(b['messages_per_s'])} messages/s." if b else ""), ""]
    return out


def section_embedded(d: dict[str, Any]) -> list[str]:
    out = ["## Embedded model — `bench/bench_embedded.py` (its owner's figures, from bench/results/embedded.json)", ""]
    rows = [[c.get("num_ctx"), c.get("load_s"), c.get("prompt_tokens_per_s"), c.get("generated_tokens_per_s"),
             c.get("peak_rss_mb")] for c in d.get("contexts", [])]
    if rows:
        out += table(["num_ctx", "load s", "prompt tokens/s", "generated tokens/s", "peak RSS MB"], rows)
    c = d.get("compression")
    if c:
        out += [f"Compression of a {c.get('chars', 0):,}-char conversation with {d.get('model')} at num_ctx "
                f"{c.get('num_ctx')}: {c.get('llm_calls')} calls, {c.get('wall_s')} s, "
                f"{(c.get('share_outside_backend_calls') or 0) * 100:.2f}% of the time outside backend calls.", ""]
    return out


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts -> ("a.b.c", value) rows; lists shown as (cut) JSON."""
    if isinstance(d, dict):
        return [row for k, v in d.items() for row in _flatten(v, f"{prefix}{k}.")]
    if isinstance(d, list):
        return [(prefix.rstrip("."), json.dumps(d)[:120])]
    return [(prefix.rstrip("."), d)]


def section_generic(title: str, d: dict[str, Any]) -> list[str]:
    rows = [[k, v] for k, v in _flatten(d) if k not in ("machine",) and not k.startswith("machine.")]
    return [title, ""] + table(["figure", "value"], rows[:80])


def section_speed(d: dict[str, Any], targets: list[list[Any]]) -> list[str]:
    """Issue 17: the status line after the first frame, headless commands against Python's start, start-up
    at 1,000 workstreams against an empty store (all ratios within one run)."""
    out = ["## Fast everywhere (issue 17) — `bench/bench_speed.py`", ""]
    loads = "; ".join(f"{k} {v['before']} -> {v['after']}" for k, v in d.get("load", {}).items())
    if loads:
        out += [f"1-minute load average per part: {loads}.", ""]
    s = d.get("status")
    if s:
        ours, old = s["ours_probe"], s["previous_full_client_check"]
        out += [s["what"] + ":", ""]
        out += table(["backend check", "status complete after the list's first frame", "client imported"], [
            ["ours: light probe (plain HTTP)", fmt_ms(ours["status_after_list_frame_ms"]),
             ", ".join(ours["client_modules_loaded"]) or "nothing"],
            ["previous: full client (ollama/httpx imported in a thread)", fmt_ms(old["status_after_list_frame_ms"]),
             ", ".join(old["client_modules_loaded"]) or "nothing"]])
        targets.append(["status line complete after the first frame (Ollama up)", f"<= {s['target_s']} s",
                        fmt_ms(ours["status_after_list_frame_ms"]), met(s["target_met"])])
    c = d.get("cli")
    if c:
        out += [c["what"] + ":", ""]
        out += table(["command", "median", "ratio to `python -c pass`"],
                     [[f"`{k}`" if not k.startswith("(") else k, f"{v['median_s']:.3f} s", f"{v['ratio_to_python_pass']}x"]
                      for k, v in c["commands"].items()])
        heavy = c.get("imported_by_ws_list", {})
        out += [f"`ws list` imports {heavy.get('modules')} modules; of asyncio, aiosqlite, textual, ollama, httpx,"
                f" markdown_it, tomllib and the compression package: {', '.join(heavy.get('heavy_ones_loaded') or []) or 'none'}.", ""]
        targets.append(["`ws list` (1,000 ws / 100,000 sessions) vs `python -c pass`", f"<= {c['target_ratio']}x",
                        f"{c['headline_ratio']}x", met(c["target_met"])])
    st = d.get("start")
    if st:
        out += [st["what"] + ":", ""]
        out += table(["data dir", "first frame with list and status line (median)", "whole list (median)"], [
            [f"{st['big']['workstreams']:,} workstreams", fmt_ms(st["big"]["median_ms"]),
             fmt_ms(st["big"]["list_complete_median_ms"])],
            ["empty", fmt_ms(st["empty"]["median_ms"]), "-"]])
        targets.append(["TUI start, 1,000 ws / 100,000 sessions vs empty store", f"<= {st['target_ratio']}x",
                        f"{st['ratio_big_over_empty']}x", met(st["target_met"])])
    return out


def _ms_pair(d: dict[str, Any] | None) -> tuple[str, str]:
    d = d or {}
    return fmt_ms(d.get("median_ms")), fmt_ms(d.get("p99_ms"))


def section_tui(d: dict[str, Any] | None, targets: list[list[Any]] | None = None) -> list[str]:
    title = "## TUI (issue \"The Textual app\") — `bench/bench_tui.py`"
    if d is None:
        return [title, "", "_No bench/results/tui.json yet: run `python bench/bench_tui.py`._", ""]
    targets = targets if targets is not None else []
    out = [title, ""]
    if d.get("quick"):
        out += ["_Quick run: small sizes; figures not comparable with a full run._", ""]
    ds = d.get("dataset", {})
    m = d.get("machine", {})
    out += [f"Data dir: {fmt_n(ds.get('workstreams'))} workstreams, {fmt_n(ds.get('sessions'))} sessions; terminal "
            f"{d.get('sizes', {}).get('terminal')}; load average {m.get('loadavg')} -> {m.get('loadavg_end')} on "
            f"{m.get('cpus')} CPUs shared with other test runs.", ""]
    si, st = d.get("start_inprocess"), d.get("start_tmux")
    rows = []
    if si:
        ph = si["median_ms"]
        rows.append(["in-process: `create_app` + `run_test(size=(160, 45))` until the first frame with the full "
                     f"list and the status line (median of {len(si['runs'])} fresh interpreters)",
                     f"**{si['median_full_screen_s']:.3f} s**",
                     f"core open done {fmt_ms(ph.get('core_open_done'))}, list read {fmt_ms(ph.get('list_workstreams_done'))}, "
                     f"rows set {fmt_ms(ph.get('set_workstreams_done'))}, first frame with list "
                     f"{fmt_ms(ph.get('first_frame_with_list'))}", met(si["target_met"])])
    if st and "median_full_screen_s" in st:
        bw = st.get("breakdown_wrapper", {}).get("marks_median_s", {})
        rows.append([f"real `arawn` in tmux, Enter to title + status line on screen (median of {len(st['runs'])})",
                     f"**{st['median_full_screen_s']:.3f} s**",
                     f"first frame {st['median_first_frame_s']:.3f} s; inside: interpreter ready "
                     f"{bw.get('interpreter_ready', float('nan')):.2f} s, backend prepared (lazy: no imports) "
                     f"{bw.get('backend_prepared', float('nan')):.2f} s, Textual app imported "
                     f"{bw.get('imported_app', float('nan')):.2f} s, core open "
                     f"{bw.get('phase_core_open_done', float('nan')):.2f} s", met(st["target_met"])])
        wl = st.get("what_if_backend_chosen_after_first_screen", {})
        if wl.get("first_title_s") is not None:
            rows.append(["(what-if) backend chosen after the first screen, its imports in a thread",
                         f"title {wl['first_title_s']:.3f} s", f"status line with backend state {wl['full_screen_s']:.3f} s",
                         "-"])
    if rows:
        out += ["Start to first full screen (target <= 1 s):", ""]
        out += table(["how", "median", "breakdown", "target"], rows)
        measured = " / ".join(x for x in [
            f"in-process {si['median_full_screen_s']:.2f} s" if si else "",
            f"real arawn {st['median_full_screen_s']:.2f} s" if st and "median_full_screen_s" in st else ""] if x)
        targets.append([f"TUI start to first full screen ({fmt_n(ds.get('workstreams'))} ws / "
                        f"{fmt_n(ds.get('sessions'))} sessions)", "<= 1 s", measured,
                        met(all(x["target_met"] for x in (si, st) if x and "target_met" in x))])
    ki, kt = d.get("keys_inprocess"), d.get("keys_tmux")
    rows = []
    if ki:
        for label, key in (("in-process, all keys", "all_keys"), ("in-process, down/up in the workstream list",
                                                                   "arrows_down_up"),
                           ("in-process, typing in the chat input", "typing")):
            idle, busy = _ms_pair(ki["no_compression"].get(key)), _ms_pair(ki["four_compressions"].get(key))
            rows.append([label, *idle, *busy, ki["four_compressions"].get(key, {}).get("n", 0)])
        wf = ki.get("what_if_fixes")
        if wf:
            idle, busy = _ms_pair(wf["no_compression"].get("all_keys")), _ms_pair(wf["four_compressions"].get("all_keys"))
            rows.append(["(what-if) in-process, all keys, with the suggested TUI fixes", *idle, *busy,
                         wf["four_compressions"].get("all_keys", {}).get("n", 0)])
    if kt and "four_compressions" in kt:
        rows.append(["real `arawn` in tmux, typing (send-keys to pane output)", *_ms_pair(kt["no_compression"]),
                     *_ms_pair(kt["four_compressions"]), kt["four_compressions"].get("n", 0)])
    if rows:
        out += ["Key-to-screen latency, none vs 4 compression jobs running (target p99 <= 50 ms with 4 running). "
                + (ki.get("method", "") + "; " + ki.get("backend", "") + "." if ki else ""), ""]
        out += table(["keys", "idle median", "idle p99", "4 jobs median", "4 jobs p99", "samples (4 jobs)"], rows)
        if kt and kt.get("method"):
            out += [f"tmux: {kt['method']}.", ""]
        measured = []
        if ki:
            measured.append(f"in-process p99 {fmt_ms(ki['four_compressions']['all_keys'].get('p99_ms'))}")
        if kt and "four_compressions" in kt:
            measured.append(f"tmux p99 {fmt_ms(kt['four_compressions'].get('p99_ms'))}")
        targets.append(["TUI key-to-screen p99 with 4 compressions running", "<= 50 ms", ", ".join(measured),
                        met(all(x.get("target_met") for x in (ki, kt) if x and "target_met" in x))])
    note = d.get("bottleneck")
    if note:
        out += [note, ""]
    return out


FIXES = {
    "ws_list": (
        "**`ws list` bottleneck and suggested fix (engine files not edited here).** The command's own work "
        "(open SQLite, list 1,000 workstreams, print) is tens of ms; the time is interpreter start plus imports "
        "plus choosing an LLM backend that `ws list` never uses. `ArawnCore.open` always calls `make_backend`, "
        "which imports `arawn_core.llm.select` -> `ollama_backend` -> the `ollama` package (pydantic models, and "
        "at import it builds a module-level default `ollama.Client`, i.e. an httpx client with a certifi SSL "
        "context) and `httpx`/`httpcore` (which import `trio`/`anyio` when installed), then probes Ollama over "
        "HTTP and checks for llama_cpp. Fix: (1) choose the backend lazily, on the first LLM call (a proxy "
        "backend in `ArawnCore`, or the headless CLI passing none for read-only commands: ws list/show, session "
        "list/show, search, summary, export, jobs list); (2) import `ollama` inside `OllamaBackend.__init__` and "
        "`httpx` inside `probe_ollama`, not at module level; (3) in `_recover`, read every workstream's "
        "`log_offset` with one query and stat the files in one worker thread, instead of one awaited query per "
        "workstream (1,000 round trips through aiosqlite's thread, a quarter of a second here). The what-if rows "
        "above measure (1) and (1)+(3) in a subprocess without changing any engine file (the second replaces "
        "`ArawnCore._recover` in that process only); what is left is Python start-up, importing "
        "arawn_core/aiosqlite, and the SQL."),
    "search": (
        "**Search: where the time goes.** FTS5's bm25 counts the documents holding each query term by reading "
        "the term's whole posting list, on every statement, before any row is ranked; then it scores every "
        "match before `ORDER BY score LIMIT`. The message index is therefore sharded by rowid (65,536 messages "
        "a shard, arawn_core/store/fts.py) and searched newest shard first, widening only while there are "
        "fewer than `limit` hits: both costs follow the shard size, not the length of the history. What is "
        "left in the slowest queries is scoring the matches of very common words inside one shard."),
}


def issue_targets(results: Path, targets: list[list[Any]]) -> None:
    """Target rows of the audit (11), recall (13) and backends (16) benchmarks; their figures are
    listed in full in their own generic sections."""
    d = load(results, "audit")
    if d:
        codes = d["codes_in_workstream_summary"]
        worst = min(v for cfg in codes.values() for v in cfg["repair"].values())
        off = ", ".join(f"{cfg.split('=')[1]}: " + "/".join(str(n) for n in v["off"].values())
                        for cfg, v in codes.items())
        targets.append(["kept codes (of 36) in the workstream summary with repair, drop 0.1/0.2/0.4, "
                        "num_ctx 8192 and 4096", "all 36", f"min {worst} (audit off, drop 0/0.1/0.2/0.4: {off})",
                        met(worst == d["data"]["codes_planted"])])
        cost = d["audit_cost"]
        more = max(c["0.2"]["input_tokens_repair_over_off"] for c in cost.values())
        targets.append(["audit+repair input tokens vs audit off at drop 0.2", "<= 1.25x", f"{more}x", met(more <= 1.25)])
        extra = max(c["0.0"]["extra_calls"] for c in cost.values())
        targets.append(["extra LLM calls of the audit at drop 0", "0", extra, met(extra == 0)])
        ratio = d["input_over_transcript_tokens_default_config"]["repair"]
        targets.append(["LLM input over all calls / transcript tokens (default config, repair)", "<= 1.15x",
                        f"{ratio}x (was 1.18x)", met(ratio <= 1.15)])
    d = load(results, "recall")
    if d:
        lat = d["latency_per_turn"]
        targets.append(["recall latency per turn, 1,000,000 messages, p99", f"<= {lat['target_p99_ms']:g} ms",
                        f"wall {lat['recall']['p99_ms']} ms, CPU {lat['recall_cpu_time']['p99_ms']} ms "
                        f"(load {d.get('machine', {}).get('loadavg', ['?'])[0]})", met(lat["meets_target"])])
        for name, q in d["quality"].items():
            if name.startswith("big_"):  # spliced near-copies of real turns (see bench_recall.py): context only
                name += ", synthetic near-copies outrank the original; not real-corpus text"
            targets.append([f"recall quality ({name.replace('_', ' ')}, {q['questions']} questions)",
                            f">= {q['target']:.0%}", f"{q['answer_sentence_in_block']:.1%}", met(q["meets_target"])])
    d = load(results, "backends")
    if d:
        pool = d["pool_compression"]
        targets.append(["compression with 2 / 4 hosts vs 1", "<= 0.6x / <= 0.35x",
                        f"{pool['ratio_2_hosts']}x / {pool['ratio_4_hosts']}x", met(pool["met"])])
        ttft = d["chat_ttft"]
        targets.append(["chat time-to-first-token, OpenAI path minus Ollama path (median / p90)", "within 5 ms",
                        f"{ttft['openai_minus_ollama_ms']['median']} / {ttft['openai_minus_ollama_ms']['p90']} ms",
                        met(ttft["met"])])


def render(results: Path, statuses: list[dict[str, Any]], quick: bool) -> str:
    mach = machine_info()
    lines = ["# Benchmarks", "",
             f"Generated by `python bench/run_all.py{' --quick' if quick else ''}` on {now_iso()}. Every benchmark "
             "compares our approach with the original arawn's side by side **in the same run** (ratios are what "
             "matter; absolute times on a shared 2-core machine are noisy). JSON: "
             f"`{results.relative_to(REPO)}/*.json`. Data sets are built under /tmp (not in the repo).", ""]
    if quick:
        lines += ["**Quick run: reduced sizes, not the published figures.**", ""]
    lines += ["## Machine", ""]
    lines += table(["", ""], [["CPUs", mach["cpus"]], ["CPU model", mach["cpu_model"]],
                              ["memory", f"{mach['memory_gb']} GB"], ["Python", mach["python"]],
                              ["SQLite", mach["sqlite"]], ["platform", mach["platform"]],
                              ["load average when the report was written", mach["loadavg"]]])
    loads = []
    for name in ("storage", "search", "compression", "tui"):
        d = load(results, name)
        if d and d.get("machine"):
            loads.append(f"{name} {d['machine'].get('loadavg')} -> {d['machine'].get('loadavg_end')} "
                         f"({d.get('date')}, {d.get('runtime_s')} s)")
    if loads:
        lines += ["The machine is shared with other engineers' test runs; 1-minute load average at the start -> "
                  "end of each benchmark: " + "; ".join(loads) + ".", ""]
    targets: list[list[Any]] = []
    body: list[str] = []
    fixes: list[str] = []
    d = load(results, "storage")
    if d:
        body += section_storage(d, targets)
        if d.get("ws_list") and not d["ws_list"]["target_met"]:
            fixes.append(FIXES["ws_list"])
    d = load(results, "compression")
    if d:
        body += section_compression(d, targets)
    d = load(results, "search")
    if d:
        body += section_search(d, targets)
        if d.get("queries") and not d["queries"]["target_met"]:
            fixes.append(FIXES["search"])
    d = load(results, "embedded")
    if d:
        body += section_embedded(d)
    d = load(results, "speed")
    if d:
        body += section_speed(d, targets)
    issue_targets(results, targets)
    known = {"storage", "compression", "search", "embedded", "tui", "speed"}
    for p in sorted(results.glob("*.json")):
        if p.stem not in known and (d := load(results, p.stem)):
            body += section_generic(f"## {p.stem}", d)
    body += section_tui(load(results, "tui"), targets)
    lines += ["## Targets", ""]
    lines += table(["target", "wanted", "measured", "status"], targets)
    if SIDE_BY_SIDE:
        lines += ["## Side by side with the original arawn", ""]
        lines += table(["what", "ours", "original arawn", "difference"], SIDE_BY_SIDE)
    if fixes:
        lines += ["Targets not met: see **Engine bottlenecks found** at the end (measured causes and fixes).", ""]
    lines += body
    if fixes:
        lines += ["## Engine bottlenecks found", ""]
        for f in fixes:
            lines += [f, ""]
    failed = [s for s in statuses if s["exit"] != 0]
    if failed:
        lines += ["## Failed in this run", ""]
        lines += table(["benchmark", "exit", "wall", "args"],
                       [[s["name"], s["exit"], f"{s['wall_s']} s", " ".join(s["args"]) or "-"] for s in failed])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes; results go to bench/results/quick/")
    p.add_argument("--only", action="append", default=[], help="run only these benchmarks (e.g. storage)")
    p.add_argument("--skip", action="append", default=[], help="do not run these benchmarks (e.g. embedded)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the markdown from existing JSON")
    p.add_argument("--rebuild", action="store_true", help="rebuild cached data sets (storage, search)")
    args = p.parse_args(argv)
    results = RESULTS / "quick" if args.quick else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    statuses: list[dict[str, Any]] = []
    if not args.report_only:
        for name in discover():
            if (args.only and name not in args.only) or name in args.skip:
                continue
            if name == "embedded" and importlib.util.find_spec("llama_cpp") is None:
                log("skipping bench_embedded.py: llama_cpp is not importable")
                continue
            extra = ["--rebuild"] if args.rebuild and name in ("storage", "search") else []
            if name == "search" and args.rebuild and "storage" not in args.skip:
                extra = []  # storage rebuilt the shared data set already
            statuses.append(run_one(name, args.quick, results, extra))
    md = render(results, statuses, args.quick)
    md_path = results / "BENCHMARKS.md" if args.quick else REPO / "BENCHMARKS.md"
    md_path.write_text(md)
    log(f"wrote {md_path.relative_to(REPO)}")
    failed = [s for s in statuses if s["exit"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
