"""Benchmark recall (arawn_core.recall); prints one JSON document, writes bench/results/recall.json.

    python bench/bench_recall.py [--quick] [--data-root /tmp/arawn-bench] [--rebuild]

1. Latency of one turn's recall over 1,010,000 real messages (the data set
   bench_search and bench_storage use: workstream "big", 1,000,000 ShareGPT
   messages in 10,000 sessions, and "small", 10,000; see _common.corpus).
   The queries are 300 real user turns of the ShareGPT file (up to 600
   characters), each run as the new message of a turn in "big":
   `recall()` exactly as `ArawnCore.build_turn` calls it (salient terms, their
   frequencies, ranking over every shard, reading the best messages' text,
   the fenced block within recall_max_tokens = 1024). One untimed pass warms
   the caches, then every query is timed twice (wall clock, and the process's
   CPU time, which the load of a shared machine does not inflate). Target:
   p99 <= 30 ms. Side by
   side, on the same queries and terms: FTS5's own bm25() over every shard
   (`MATCH a OR b ... ORDER BY bm25 LIMIT 32` per shard, one statement), the
   ranking recall replaced, to show the ratio.

2. Quality: questions whose answer is one sentence said in an older session.
   Method, for each question: pick a message at random from the sessions older
   than the newest 10% of the workstream; pick one of its sentences of 8-40
   words that occurs nowhere else (FTS5 phrase query over every shard) and
   holds at least 3 content words (not stop words, 4+ letters). The question
   is built from 3 of those words, not from the sentence: the rarest one
   (by document frequency in the index) and the two rarest that occur in at
   least 3 messages (so the question is not only unique tokens), in shuffled
   order, inside one of several question templates ("What did we say about
   X and Y, the thing with Z?"), a plural form switched (30% of the words).
   It is asked as the new message of a fresh session. Counted: the share of
   questions whose whole answer sentence (whitespace-normalized) is inside the
   recalled block. Target >= 90%. Two workstreams: "realistic", 6,000 real
   consecutive ShareGPT turns as 300 sessions of 20 (built here, under the
   data root), and "big" (1,000,000 messages), the same method on each, except
   that in "big" the answer comes from the real turns (pass 0 of
   _common.corpus; later passes splice halves of real turns into new
   messages, so a real sentence is said up to ~8 times there): a sentence may
   occur in up to BIG_COPIES messages, and any copy in the block counts.
   That splicing makes near-copies that hold a sentence's first half (the
   same terms, newer): they outrank the original, so "big" understates what
   real text gets. Third, the realistic workstream's same questions asked
   inside a copy of the 1M data set (its 6,000 messages one more workstream):
   recall at the index size of a million messages, on real text.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from arawn_core import recall as R  # noqa: E402
from arawn_core.store import fts  # noqa: E402
from _common import (  # noqa: E402
    DEFAULT_DATA_ROOT,
    base_parser,
    build_message_corpus,
    corpus,
    dist_ms,
    finish,
    import_stream,
    load_dataset,
    log,
    machine_info,
    now_iso,
    open_core,
    ratio,
    save_dataset,
    sharegpt_messages,
)

P99_TARGET_MS = 30.0
QUALITY_TARGET = 0.90
BUDGET_TOKENS = 1024
BIG_COPIES = 10  # the 1M set repeats each real turn's halves in later passes (see _common.corpus)
RARE_SHARE = 0.005  # a "rare" word of a distinctive sentence: in at most 0.5% of the workstream's messages
TEMPLATES = [
    "What did we say about {a} and {b}, the thing with {c}?",
    "Remind me what was said on {a}, {b} and {c}.",
    "Earlier we talked about {a} with {b} and {c}: what was it again?",
    "Can you recall our discussion of {c}, {a} and {b}?",
    "Something about {b} and {a}, also {c} - what did we conclude?",
    "Go back to the part about {a}, {c} and {b}; what did we have there?",
]
_WORD = re.compile(r"[A-Za-z]{4,}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def estimate(text: str) -> int:
    """The engine's default estimate (2.5 chars a token + 8 a message) before anything is learned."""
    from arawn_core.compression.budget import TokenEstimator

    return TokenEstimator().estimate("bench", text)


# --------------------------------------------------------------------------- data


def find_corpus(root: Path, quick: bool, rebuild: bool) -> dict[str, Any]:
    """The 1M data set: reused from root, else from the shared cache, else built under root."""
    n_big, n_small = (100_000, 1_000) if quick else (1_000_000, 10_000)
    params = {"kind": "messages", "n_big": n_big, "n_small": n_small, "session_len": 100, "version": 2}
    for where in (root, DEFAULT_DATA_ROOT):
        info = load_dataset(Path(where) / f"corpus-{n_big}-{n_small}-100", params)
        if info is not None and not rebuild:
            info["reused"] = True
            return info
    return build_message_corpus(root, n_big, n_small, rebuild=rebuild)


def build_realistic(root: Path, rebuild: bool) -> dict[str, Any]:
    """6,000 real consecutive ShareGPT turns (from turn 50,000 on) as 300 sessions of 20, an hour apart."""
    params = {"kind": "recall-realistic", "messages": 6_000, "start": 50_000, "session_len": 20, "version": 1}
    path = root / "recall-realistic-6000"
    if not rebuild and (info := load_dataset(path, params)) is not None:
        return info
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)

    async def build() -> dict[str, Any]:
        core = await open_core(path, toml="[workstream.compression]\nenabled = false\n")
        try:
            ws = await core.create_workstream("realistic")
            got = await import_stream(core, ws.id, corpus(6_000, start=50_000), 20, iter(range(10**6)))
        finally:
            await core.close(end_sessions=False)
        return {"data_dir": str(path), "ws_id": ws.id, "sessions": got["sessions"], "messages": got["messages"]}

    return save_dataset(path, params, asyncio.run(build()))


def build_mixed(root: Path, big: dict[str, Any], rebuild: bool) -> dict[str, Any]:
    """A copy of the 1M data set plus the realistic workstream's 6,000 messages as one more workstream:
    the same real questions, asked where the index (shards, frequencies) is a million messages."""
    params = {"kind": "recall-mixed", "base": big["params"], "messages": 6_000, "start": 50_000, "version": 1}
    path = root / f"recall-mixed-{big['big_messages'] + big['small_messages']}-6000"
    if not rebuild and (info := load_dataset(path, params)) is not None:
        return info
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(big["data_dir"], path)

    async def build() -> dict[str, Any]:
        core = await open_core(path, toml="[workstream.compression]\nenabled = false\n")
        try:
            ws = await core.create_workstream("realistic")
            spread = max(1, big["time_span_hours"] // 300)
            got = await import_stream(core, ws.id, corpus(6_000, start=50_000), 20,
                                      (h * spread + 0.25 for h in range(10**6)), key_prefix="mixed")
        finally:
            await core.close(end_sessions=False)
        return {"data_dir": str(path), "ws_id": ws.id, "sessions": got["sessions"], "messages": got["messages"]}

    return save_dataset(path, params, asyncio.run(build()))


# --------------------------------------------------------------------------- latency


def real_user_turns(n: int, seed: int = 13) -> list[str]:
    turns = [t for role, t in sharegpt_messages() if role == "user" and 8 <= len(t) <= 600]
    return random.Random(seed).sample(turns, n)


async def measure_latency(info: dict[str, Any], n: int) -> dict[str, Any]:
    data_dir = Path(info["data_dir"])
    core = await open_core(data_dir)
    ws_id = info["big_id"]
    queries = real_user_turns(n)
    runs: list[float] = []
    cpu: list[float] = []  # the process's CPU time (every thread): what a turn costs, whatever the machine's load
    blocks, hit_counts, term_counts = 0, [], []
    naive: list[float] = []
    try:
        async def once(q: str) -> R.Recall:
            return await R.recall(core.db, core.repo.messages_path, ws_id, q, exclude_session=None,
                                  exclude_from_rowid=None, budget_tokens=BUDGET_TOKENS, estimate=estimate)

        for q in queries:  # warm the caches
            await once(q)
        for rep in range(2):
            for q in queries:
                c0, t0 = time.process_time(), time.perf_counter()
                got = await once(q)
                runs.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                if rep == 0:
                    blocks += got.block is not None
                    hit_counts.append(len(got.messages))
                    term_counts.append(len(got.terms))
        # the same queries' kept terms, ranked by FTS5 bm25() over every shard instead
        shards = await fts.shards(core.db.conn)
        for q in queries[: max(20, n // 3)]:
            terms = (await once(q)).terms
            if not terms:
                continue
            expr = " OR ".join(t.fts for t in terms)
            parts = [f"SELECT * FROM (SELECT f.rowid, bm25({fts.table(s)}) AS score FROM {fts.table(s)} f"
                     f" JOIN messages m ON m.rowid = f.rowid WHERE {fts.table(s)} MATCH ? AND m.workstream_id = ?"
                     f" ORDER BY score LIMIT {R.CANDIDATES})" for s in reversed(shards)]
            params = [x for _ in shards for x in (expr, ws_id)]
            await core.db.fetchall(" UNION ALL ".join(parts), params)  # warm
            t0 = time.perf_counter()
            await core.db.fetchall(" UNION ALL ".join(parts), params)
            naive.append(time.perf_counter() - t0)
    finally:
        await core.close(end_sessions=False)
    dist = dist_ms(runs)
    naive_dist = dist_ms(naive)
    return {
        "messages_in_workstream": info["big_messages"],
        "messages_in_store": info["big_messages"] + info["small_messages"],
        "queries": len(queries), "timed_runs": len(runs),
        "recall": dist,
        "recall_cpu_time": dist_ms(cpu),
        "target_p99_ms": P99_TARGET_MS,
        "meets_target": dist["p99_ms"] <= P99_TARGET_MS,
        "turns_with_a_block": round(blocks / len(queries), 3),
        "mean_messages_recalled": round(sum(hit_counts) / len(hit_counts), 2),
        "mean_query_terms": round(sum(term_counts) / len(term_counts), 2),
        "fts5_bm25_every_shard_ranking_only": naive_dist,
        "ratio_fts5_bm25_ranking_to_whole_recall_median": ratio(naive_dist.get("median_ms", 0), dist["median_ms"]),
        "ratio_fts5_bm25_ranking_to_whole_recall_p99": ratio(naive_dist.get("p99_ms", 0), dist["p99_ms"]),
    }


# --------------------------------------------------------------------------- quality


class Index:
    """One workstream's document frequencies and phrase counts, from the FTS5 shards (read-only)."""

    def __init__(self, db_path: Path, ws_id: str) -> None:
        self.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        self.ws_id = ws_id
        self.tables = [fts.table(s) for s in fts.shards_from(self.conn.execute(fts.LIST_SQL).fetchall())]
        self._df: dict[str, int] = {}

    def count(self, expr: str) -> int:
        return sum(self.conn.execute(
            f"SELECT count(*) FROM {t} f JOIN messages m ON m.rowid = f.rowid WHERE {t} MATCH ?"
            " AND m.workstream_id = ?", (expr, self.ws_id)).fetchone()[0] for t in self.tables)

    def df(self, word: str) -> int:
        if word not in self._df:
            self._df[word] = self.count(f'"{word}"')
        return self._df[word]


def _rephrase(word: str, rnd: random.Random) -> str:
    if rnd.random() < 0.3:
        if len(word) > 5 and word.endswith("s") and not word.endswith("ss"):
            return word[:-1]
        if not word.endswith("s") and word.isalpha():
            return word + "s"
    return word


def build_questions(data_dir: Path, ws_id: str, sessions: list[str], n: int, seed: int,
                    pool: int | None = None, max_copies: int = 1) -> list[dict[str, Any]]:
    """n (question, answer sentence, message id) triples; see the module docstring for the method."""
    index = Index(data_dir / "arawn.db", ws_id)
    rnd = random.Random(seed)
    older = sessions[: min(pool or len(sessions), int(len(sessions) * 0.9))]
    total = index.conn.execute("SELECT sum(message_count) FROM sessions WHERE workstream_id = ?",
                               (ws_id,)).fetchone()[0]
    rare_df = max(3, int(total * RARE_SHARE))
    out: list[dict[str, Any]] = []
    tried = 0
    path = data_dir / "workstreams" / ws_id / "messages.jsonl"
    from arawn_core.store import jsonl

    with open(path, "rb") as fh:
        while len(out) < n and tried < n * 200:
            tried += 1
            sid = rnd.choice(older)
            rows = index.conn.execute("SELECT id, offset, length FROM messages WHERE session_id = ?", (sid,)).fetchall()
            mid, off, ln = rnd.choice(rows)
            content = str(jsonl.read_span(fh, off, ln).get("content", ""))
            sentences = [s.strip() for s in _SENTENCE.split(content) if 8 <= len(s.split()) <= 40]
            rnd.shuffle(sentences)
            for sentence in sentences[:3]:
                words = list(dict.fromkeys(w.lower() for w in re.findall(r"[^\W_]+", sentence)
                                           if w.isalpha() and len(w) >= 4))
                words = [w for w in words if w not in R.STOP_WORDS]
                if len(words) < 3:
                    continue
                if sum(index.df(w) <= rare_df for w in words) < 2:
                    continue  # not distinctive: fewer than two of its words are rare in the workstream
                phrase = " ".join(re.findall(r"[^\W_]+", sentence))
                if not phrase or not 1 <= index.count('"' + phrase.replace('"', '""') + '"') <= max_copies:
                    continue  # the sentence is said more often (or not indexed as one phrase)
                by_df = sorted(words, key=lambda w: (index.df(w), w))
                rarest = by_df[0]
                medium = [w for w in by_df[1:] if index.df(w) >= 3][:2]
                if len(medium) < 2:
                    medium = by_df[1:3]
                picked = [rarest, *medium]
                rnd.shuffle(picked)
                picked = [_rephrase(w, rnd) for w in picked]
                question = rnd.choice(TEMPLATES).format(a=picked[0], b=picked[1], c=picked[2])
                out.append({"question": question, "answer": sentence, "message_id": mid, "session_id": sid,
                            "terms": picked, "answer_df": {w: index.df(w) for w in [rarest, *medium]}})
                break
    index.conn.close()
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


async def measure_quality(data_dir: Path, ws_id: str, sessions: list[str], n: int, seed: int,
                          pool: int | None = None, max_copies: int = 1) -> dict[str, Any]:
    questions = await asyncio.to_thread(build_questions, data_dir, ws_id, sessions, n, seed, pool, max_copies)
    core = await open_core(data_dir, toml="[workstream.compression]\nenabled = false\n")
    found, message_found, examples, misses = 0, 0, [], []
    times: list[float] = []
    try:
        for q in questions:
            t0 = time.perf_counter()
            got = await R.recall(core.db, core.repo.messages_path, ws_id, q["question"], exclude_session=None,
                                 exclude_from_rowid=None, budget_tokens=BUDGET_TOKENS, estimate=estimate)
            times.append(time.perf_counter() - t0)
            block = _norm(got.block["content"]) if got.block else ""
            ok = _norm(q["answer"]) in block
            found += ok
            message_found += q["message_id"] in got.ids
            if len(examples) < 3 and ok:
                examples.append({"question": q["question"], "answer": q["answer"][:200]})
            if not ok and len(misses) < 5:
                misses.append({"question": q["question"], "answer": q["answer"][:200],
                               "message_recalled": q["message_id"] in got.ids,
                               "terms_used": [" ".join(t.words) for t in got.terms]})
    finally:
        await core.close(end_sessions=False)
    share = found / len(questions) if questions else 0.0
    with sqlite3.connect(f"file:{data_dir / 'arawn.db'}?mode=ro", uri=True) as conn:
        index_messages = conn.execute("SELECT max(rowid) FROM messages").fetchone()[0]
    return {
        "index_messages": index_messages,
        "questions": len(questions),
        "answer_sentence_in_block": round(share, 3),
        "answer_message_recalled": round(message_found / len(questions), 3) if questions else 0.0,
        "target": QUALITY_TARGET,
        "meets_target": share >= QUALITY_TARGET,
        "recall_latency": dist_ms(times),
        "examples": examples,
        "misses": misses,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args()
    root = Path(args.data_root)
    root.mkdir(parents=True, exist_ok=True)
    n_latency, n_quality = (60, 20) if args.quick else (300, 60)
    log("data sets")
    big = find_corpus(root, args.quick, args.rebuild)
    realistic = build_realistic(root, args.rebuild)
    log(f"latency: {n_latency} queries over {big['big_messages']:,} messages")
    latency = asyncio.run(measure_latency(big, n_latency))
    log(f"quality: {n_quality} questions on the realistic workstream")
    quality_small = asyncio.run(measure_quality(Path(realistic["data_dir"]), realistic["ws_id"],
                                                realistic["sessions"], n_quality, seed=7))
    mixed = build_mixed(root, big, args.rebuild)
    log(f"quality: {n_quality} questions on the realistic workstream inside the 1M-message index")
    quality_mixed = asyncio.run(measure_quality(Path(mixed["data_dir"]), mixed["ws_id"], mixed["sessions"],
                                                n_quality, seed=7))
    log(f"quality: {n_quality} questions on the 1M workstream")
    real_sessions = len(sharegpt_messages()) // big["session_len"]  # pass 0: the real turns as they are
    quality_big = asyncio.run(measure_quality(Path(big["data_dir"]), big["big_id"], big["big_sessions"],
                                              n_quality, seed=11, pool=real_sessions, max_copies=BIG_COPIES))
    finish("recall", {
        "benchmark": "recall",
        "when": now_iso(),
        "machine": machine_info(),
        "quick": args.quick,
        "settings": {"recall_max_tokens": BUDGET_TOKENS, "common_fraction": R.COMMON_FRACTION,
                     "query_matches": R.QUERY_MATCHES, "candidates": R.CANDIDATES, "max_hits": R.MAX_HITS},
        "latency_per_turn": latency,
        "quality": {"realistic_6000_messages": quality_small,
                    "realistic_6000_inside_the_1M_message_index": quality_mixed,
                    "big_1000000_synthetic_messages": quality_big},
    }, args.out)


if __name__ == "__main__":
    main()
