"""Benchmark full-text search; prints one JSON document, writes bench/results/search.json.

    python bench/bench_search.py [--quick] [--data-root /tmp/arawn-bench] [--rebuild]

1. Query latency of `ArawnCore.search` over 1,010,000 real messages (the data
   set bench_storage reads from: workstream "big", 1,000,000 messages, and
   "small", 10,000; ShareGPT text, see _common.corpus): ~200 queries, a mix of
   single words (rare, medium, common and very common, picked by document
   frequency from the index's own vocabulary), unquoted multi-word queries and
   quoted phrases (real consecutive words), prefixes, and each of those with a
   filter (role, since, workstream). One untimed pass warms the caches, then
   every query is timed twice. Target: p99 <= 50 ms. The slowest queries are
   re-run as a bare FTS5 query (MATCH ... ORDER BY rank LIMIT 20, no join) to
   show where their time goes.
2. Index size: the FTS5 tables' pages (dbstat) against the JSONL bytes.
3. Import throughput (messages/s through Repository.import_sessions, 2,000
   messages a batch) with the FTS index and without it, same messages, fresh
   data dirs, alternating. "Without": the engine's one call that writes the
   index (arawn_core.store.fts.insert) is replaced by a no-op for that run;
   every other statement runs unchanged, so the difference is the cost of
   FTS5 indexing itself.

The message index is sharded by rowid (arawn_core.store.fts, 65,536 messages
a shard): the "bare" figures of the slowest queries are the same MATCH on the
newest shard alone (ORDER BY rank LIMIT 20, no join) and the match count over
every shard.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from arawn_core.store import fts  # noqa: E402
from _common import (  # noqa: E402
    base_parser,
    build_message_corpus,
    corpus,
    db_object_bytes,
    dir_bytes,
    dist_ms,
    finish,
    import_stream,
    log,
    machine_info,
    now_iso,
    open_core,
    ratio,
    sharegpt_messages,
    ts,
)

P99_TARGET_MS = 50.0
_ALPHA = re.compile(r"^[a-z]+$")

# --------------------------------------------------------------------------- queries


def shard_tables(conn: sqlite3.Connection) -> list[str]:
    """The message index's FTS5 tables, oldest shard first."""
    return [fts.table(k) for k in fts.shards_from(conn.execute(fts.LIST_SQL).fetchall())]


def vocabulary(db_path: Path) -> list[tuple[str, int]]:
    """(term, documents) for every alphabetic term of the message index, from fts5vocab (summed over shards)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    docs: dict[str, int] = {}
    try:
        for i, name in enumerate(shard_tables(conn)):
            conn.execute(f"CREATE VIRTUAL TABLE temp.v{i} USING fts5vocab(main, {name}, 'row')")
            for t, d in conn.execute(f"SELECT term, doc FROM temp.v{i}"):
                if _ALPHA.match(t):
                    docs[t] = docs.get(t, 0) + d
        return sorted(docs.items())
    finally:
        conn.close()


def count_matches(conn: sqlite3.Connection, expression: str) -> int:
    return sum(conn.execute(f"SELECT count(*) FROM {t} WHERE {t} MATCH ?", (expression,)).fetchone()[0]
               for t in shard_tables(conn))


def build_queries(vocab: list[tuple[str, int]], docs: int, ws: dict[str, str], since: dict[str, str],
                  rng: random.Random) -> list[dict[str, Any]]:
    """About 200 queries: (category, text, filters)."""
    def bucket(lo: float, hi: float, min_len: int = 4) -> list[str]:
        return sorted(t for t, d in vocab if lo <= d < hi and len(t) >= min_len)

    # document-frequency bands, relative to the corpus (at 1M messages: 10-100, 1k-10k, 20k-100k, >200k)
    rare = bucket(max(2, 1e-5 * docs), max(10, 1e-4 * docs))
    medium = bucket(1e-3 * docs, 1e-2 * docs)
    common = bucket(2e-2 * docs, 1e-1 * docs)
    very_common = bucket(0.2 * docs, docs + 1, 1)
    # real consecutive words for phrases and multi-word queries
    texts = sharegpt_messages()
    phrases: list[list[str]] = []
    while len(phrases) < 120:
        words = re.findall(r"[A-Za-z]+", texts[rng.randrange(len(texts))][1])
        if len(words) < 6:
            continue
        n = rng.choice((2, 2, 3))
        i = rng.randrange(len(words) - n)
        phrase = [w.lower() for w in words[i:i + n]]
        if all(len(w) >= 2 for w in phrase) and any(len(w) >= 5 for w in phrase):  # not stop words only
            phrases.append(phrase)

    queries: list[dict[str, Any]] = []

    def add(category: str, text: str, **filters: str) -> None:
        queries.append({"category": category, "query": text, "filters": filters})

    for t in rng.sample(rare, 15):
        add("word_rare", t)
    for t in rng.sample(medium, 15):
        add("word_medium", t)
    for t in rng.sample(common, 15):
        add("word_common", t)
    for t in rng.sample(very_common, min(5, len(very_common))):
        add("word_very_common", t)
    for p in phrases[:35]:
        add("multi_word", " ".join(p))
    for p in phrases[35:65]:
        add("phrase_quoted", '"' + " ".join(p) + '"')
    prefix_src = rng.sample(medium, 15) + rng.sample(common, 15)
    for t in prefix_src:
        add("prefix", t[: max(3, min(5, len(t) - 1))] + "*")
    # filtered: a mix of the shapes above, each with one filter
    shapes = ([("word_medium", t) for t in rng.sample(medium, 14)] + [("word_common", t) for t in rng.sample(common, 14)]
              + [("multi_word", " ".join(p)) for p in phrases[65:79]] + [("prefix", t[:4] + "*") for t in rng.sample(common, 8)])
    filters = [{"role": "user"}, {"role": "assistant"}, {"since": since["recent_10pct"]}, {"since": since["early"]},
               {"workstream_id": ws["small"]}, {"workstream_id": ws["big"]}]
    for i, (shape, text) in enumerate(shapes):
        f = filters[i % len(filters)]
        add(f"filtered_{next(iter(f))}", text, **f)
    return queries


async def run_queries(core: Any, queries: list[dict[str, Any]], passes: int) -> list[dict[str, Any]]:
    for q in queries:  # warm-up pass, untimed
        q["hits"] = len(await core.search(q["query"], **q["filters"]))
    for q in queries:
        q["times"] = []
    for _ in range(passes):
        for q in queries:
            t0 = time.perf_counter()
            await core.search(q["query"], **q["filters"])
            q["times"].append(time.perf_counter() - t0)
    return queries


def bare_fts(db_path: Path, expression: str, runs: int = 3) -> dict[str, Any]:
    """The same MATCH without the joins: ORDER BY rank LIMIT 20 on the newest shard alone, and the match count."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        newest = shard_tables(conn)[-1]
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            conn.execute(f"SELECT rowid FROM {newest} WHERE {newest} MATCH ? ORDER BY rank LIMIT 20",
                         (expression,)).fetchall()
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        matches = count_matches(conn, expression)
        count_s = time.perf_counter() - t0
    finally:
        conn.close()
    return {"matches": matches, "bare_newest_shard_rank_limit20_ms": round(statistics.median(times) * 1000, 2),
            "bare_count_all_shards_ms": round(count_s * 1000, 2)}


def _match_counts(db_path: Path, queries: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Median and max number of messages each category's FTS expressions match (before filters)."""
    from arawn_core.search import parse_query

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    counts: dict[str, list[int]] = {}
    try:
        for q in queries:
            n = count_matches(conn, parse_query(q["query"]).fts)
            q["matches"] = n
            counts.setdefault(q["category"], []).append(n)
    finally:
        conn.close()
    return {k: {"median": int(statistics.median(v)), "max": max(v)} for k, v in sorted(counts.items())}


async def measure_queries(info: dict[str, Any], passes: int) -> dict[str, Any]:
    from arawn_core.search import parse_query

    data_dir = Path(info["data_dir"])
    db_path = data_dir / "arawn.db"
    docs = info["big_messages"] + info["small_messages"]
    log("reading the index vocabulary (fts5vocab)")
    vocab = vocabulary(db_path)
    hours = info["time_span_hours"]
    since = {"recent_10pct": ts(0.9 * hours * 3600)[:10], "early": ts(0.1 * hours * 3600)[:10]}
    queries = build_queries(vocab, docs, {"big": info["big_id"], "small": info["small_id"]}, since,
                            random.Random(20261128))
    core = await open_core(data_dir)
    try:
        log(f"{len(queries)} queries x {passes} timed passes")
        await run_queries(core, queries, passes)
    finally:
        await core.close(end_sessions=False)
    all_times = [t for q in queries for t in q["times"]]
    by_cat: dict[str, list[float]] = {}
    for q in queries:
        by_cat.setdefault(q["category"], []).extend(q["times"])
    slowest = sorted(queries, key=lambda q: statistics.median(q["times"]), reverse=True)[:10]
    slow_rows = []
    for q in slowest:
        parsed = parse_query(q["query"])
        row = {"category": q["category"], "query": q["query"], "filters": q["filters"],
               "median_ms": round(statistics.median(q["times"]) * 1000, 1), "hits_returned": q["hits"],
               "fts_expression": parsed.fts}
        row.update(bare_fts(db_path, parsed.fts))
        if parsed.phrase:
            row["phrase_query"] = bare_fts(db_path, parsed.phrase, runs=1)
        slow_rows.append(row)
    overall = dist_ms(all_times, 2)
    without_vc = [t for q in queries if q["category"] != "word_very_common" for t in q["times"]]
    return {
        "messages_indexed": docs,
        "queries": len(queries),
        "timed_runs": len(all_times),
        "limit": 20,
        "vocabulary_terms_alpha": len(vocab),
        "all": overall,
        "by_category": {k: dist_ms(v, 2) for k, v in sorted(by_cat.items())},
        "all_but_very_common_words": dist_ms(without_vc, 2),
        "share_over_target": round(sum(1 for t in all_times if t * 1000 > P99_TARGET_MS) / len(all_times), 3),
        "slowest_queries": slow_rows,
        "target_p99_ms": P99_TARGET_MS,
        "target_met": overall["p99_ms"] <= P99_TARGET_MS,
        "matches_per_category": _match_counts(db_path, queries),
        "query_set": [{"category": q["category"], "query": q["query"], "filters": q["filters"],
                       "matches": q.get("matches"), "median_ms": round(statistics.median(q["times"]) * 1000, 2)}
                      for q in queries],
    }


# --------------------------------------------------------------------------- index size


def measure_index_size(info: dict[str, Any]) -> dict[str, Any]:
    data_dir = Path(info["data_dir"])
    db_path = data_dir / "arawn.db"
    objects = db_object_bytes(db_path)
    jsonl_bytes = dir_bytes(data_dir / "workstreams", "messages.jsonl")
    fts_objects = {k: v for k, v in objects.items() if k.startswith("messages_fts")}
    fts_bytes = sum(fts_objects.values())
    msg_index = {k: v for k, v in objects.items() if k in ("messages", "messages_by_session")
                 or k.startswith("sqlite_autoindex_messages")}
    return {
        "method": "dbstat (SUM(pgsize) per table/index)" if objects else "dbstat unavailable",
        "messages": info["big_messages"] + info["small_messages"],
        "jsonl_bytes": jsonl_bytes,
        "fts_shards": len({k.split("_")[2] for k in fts_objects}),
        "fts_tables_bytes": fts_objects,
        "fts_bytes": fts_bytes,
        "fts_over_jsonl": round(fts_bytes / jsonl_bytes, 3) if jsonl_bytes else None,
        "fts_bytes_per_message": round(fts_bytes / (info["big_messages"] + info["small_messages"]), 1),
        "message_index_bytes": msg_index,
        "message_index_over_jsonl": round(sum(msg_index.values()) / jsonl_bytes, 3) if jsonl_bytes else None,
        "db_file_bytes": db_path.stat().st_size,
    }


# --------------------------------------------------------------------------- import throughput

async def _index_nothing(conn: Any, rows: Any) -> None:
    """Stands in for arawn_core.store.fts.insert in the "without the index" runs."""


async def import_once(root: Path, n: int, with_fts: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="import-", dir=root))
    try:
        core = await open_core(work / "data")
        real_insert = fts.insert
        try:
            if not with_fts:
                fts.insert = _index_nothing
            ws = await core.create_workstream("import")
            messages = list(corpus(n, start=300_000))  # materialized before the clock starts
            t0 = time.perf_counter()
            got = await import_stream(core, ws.id, messages, 100, iter(range(10**9)))
            wall = time.perf_counter() - t0
            fts_rows = await fts.count(core.db.conn)
        finally:
            fts.insert = real_insert
            await core.close(end_sessions=False)
        db_bytes = sum(p.stat().st_size for p in (work / "data").glob("arawn.db*"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"messages": got["messages"], "wall_s": round(wall, 2), "messages_per_s": round(got["messages"] / wall, 1),
            "fts_rows": fts_rows, "db_bytes": db_bytes}


async def measure_import(root: Path, n: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"with_fts": [], "without_fts": []}
    for r in range(rounds):
        for key, with_fts in (("with_fts", True), ("without_fts", False)):
            res = await import_once(root, n, with_fts)
            runs[key].append(res)
            log(f"import round {r + 1} {key}: {res['messages_per_s']:.0f} messages/s")
    med = {k: statistics.median(x["messages_per_s"] for x in v) for k, v in runs.items()}
    return {
        "messages": n,
        "batch": "import_sessions, 20 sessions x 100 messages a call (one JSONL append + fsync, one transaction)",
        "without_method": "arawn_core.store.fts.insert (the one call that writes the index) replaced by a no-op",
        "with_fts_messages_per_s": round(med["with_fts"], 1),
        "without_fts_messages_per_s": round(med["without_fts"], 1),
        "slowdown_from_fts": ratio(med["without_fts"], med["with_fts"], 2),
        "runs": runs,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--skip", action="append", default=[], choices=["queries", "size", "import"])
    args = p.parse_args(argv)
    root = Path(args.data_root)
    root.mkdir(parents=True, exist_ok=True)
    q = args.quick
    sizes = {"messages": 100_000 if q else 1_000_000, "small_messages": 1_000 if q else 10_000,
             "timed_passes": 1 if q else 2, "import_messages": 20_000 if q else 100_000, "import_rounds": 1 if q else 2}
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "search", "issue": "search", "quick": q, "date": now_iso(),
                              "machine": machine_info(), "sizes": sizes}
    info = build_message_corpus(root, sizes["messages"], sizes["small_messages"], rebuild=args.rebuild)
    report["dataset"] = {"data_dir": info["data_dir"], "reused": info["reused"], "build": info["build"],
                         "note": "build = the whole bulk load through import_sessions with FTS, at scale"}
    if "queries" not in args.skip:
        report["queries"] = asyncio.run(measure_queries(info, sizes["timed_passes"]))
    if "size" not in args.skip:
        report["index_size"] = measure_index_size(info)
    if "import" not in args.skip:
        report["import_throughput"] = asyncio.run(measure_import(root, sizes["import_messages"], sizes["import_rounds"]))
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    finish("search", report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
