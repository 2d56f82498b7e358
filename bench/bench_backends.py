"""Benchmark the backends; prints one JSON document, writes bench/results/backends.json.

    python bench/bench_backends.py [--quick]

1. Compression of one long real conversation (consecutive ShareGPT turns)
   through the whole job path (`ArawnCore.end_session` -> `work_queue`,
   `[llm] backend = "openai"`) against a pool of 1, 2 and 4 scripted
   OpenAI-protocol servers (`tests/openai_server.py`), each serving one
   request at a time with a fixed time per request (`--latency`, default
   0.25 s: a small model's prefill and a short summary on a GPU box).
   Same conversation, same settings; wall time and its ratio to one host.
   Targets: 2 hosts <= 0.6x the time of one, 4 hosts <= 0.35x.
2. Chat time to first token, OpenAI path (`OpenAIBackend`, the openai
   client, SSE) against the Ollama path (`OllamaBackend`, the ollama
   client, NDJSON), both against scripted servers with the same engine and
   the same latency before the first token; requests interleaved, median
   and p90 of each and of the difference. Target: within 5 ms.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import base_parser, finish, log, machine_info, now_iso, percentile, sharegpt_messages  # noqa: E402


def long_conversation(chars: int) -> list[tuple[str, str]]:
    """Consecutive real turns, at least `chars` characters of them."""
    out: list[tuple[str, str]] = []
    total = 0
    for role, text in sharegpt_messages():
        out.append((role, text))
        total += len(text)
        if total >= chars:
            break
    return out


async def compress_with_hosts(n_hosts: int, turns: list[tuple[str, str]], latency_s: float,
                              data_root: Path) -> dict[str, Any]:
    from arawn_core.core import ArawnCore
    from bench._common import settings_for
    from tests.openai_server import OpenAIServer, ScriptedEngine

    servers = [OpenAIServer(ScriptedEngine(name="m", context_length=4096), slots=1, latency_s=latency_s).start()
               for _ in range(n_hosts)]
    data = data_root / f"hosts-{n_hosts}"
    shutil.rmtree(data, ignore_errors=True)
    try:
        toml = (f'[llm]\nbackend = "openai"\nmodel = "m"\nnum_ctx = 4096\nhosts = {json.dumps([s.url for s in servers])}\n'
                "[workstream.compression]\nmax_summary_tokens = 512\nretry_base_s = 0.01\n")
        core = await ArawnCore.open(settings_for(data, toml))
        try:
            ws = await core.create_workstream("long")
            for role, text in turns:
                await core.append_message(ws.id, role, text)
            t0 = time.perf_counter()
            session = await core.end_session(ws.id)
            outcomes = await core.work_queue(ws.id)
            wall = time.perf_counter() - t0
            assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
            summary = await core.session_summary(session.id)
            fold = await core.workstream_summary(ws.id)
        finally:
            await core.close(end_sessions=False)
        return {"hosts": n_hosts, "wall_s": round(wall, 3),
                "llm_calls": summary.provenance.llm_calls + fold.provenance.llm_calls,
                "served_per_host": [s.served for s in servers],
                "max_in_flight_per_host": [s.max_in_flight for s in servers]}
    finally:
        for s in servers:
            s.stop()


async def measure_pool(turns: list[tuple[str, str]], latency_s: float, data_root: Path) -> dict[str, Any]:
    runs = {}
    for n in (1, 2, 4):
        log(f"compression with {n} host(s)")
        runs[n] = await compress_with_hosts(n, turns, latency_s, data_root)
    one = runs[1]["wall_s"]
    return {
        "conversation_chars": sum(len(t) for _, t in turns), "conversation_turns": len(turns),
        "latency_per_request_s": latency_s, "num_ctx": 4096, "slots_per_host": 1,
        "runs": [runs[n] for n in (1, 2, 4)],
        "ratio_2_hosts": round(runs[2]["wall_s"] / one, 3), "ratio_4_hosts": round(runs[4]["wall_s"] / one, 3),
        "target": "2 hosts <= 0.6x, 4 hosts <= 0.35x",
        "met": runs[2]["wall_s"] / one <= 0.6 and runs[4]["wall_s"] / one <= 0.35,
    }


async def measure_ttft(n: int, latency_s: float) -> dict[str, Any]:
    from arawn_core.llm.base import ChatOptions
    from arawn_core.llm.ollama_backend import OllamaBackend
    from arawn_core.llm.openai_backend import OpenAIBackend
    from tests.ollama_server import OllamaServer
    from tests.ollama_server import ScriptedEngine as Engine
    from tests.openai_server import OpenAIServer

    ollama = OllamaServer(Engine(name="m", delay_s=latency_s)).start()
    openai = OpenAIServer(Engine(name="m", delay_s=latency_s)).start()
    backends = {"ollama": OllamaBackend(ollama.url, 30.0), "openai": OpenAIBackend(openai.url, 30.0)}
    messages = [{"role": "user", "content": "hello there MARKER-a " * 20}]
    opts = ChatOptions("m", 4096, 64)
    times: dict[str, list[float]] = {"ollama": [], "openai": []}
    try:
        for kind, b in backends.items():  # warm both: imports, connections
            for _ in range(3):
                [c async for c in b.chat(messages, opts)]
        for i in range(n):
            order = ("ollama", "openai") if i % 2 == 0 else ("openai", "ollama")
            for kind in order:
                t0 = time.perf_counter()
                stream = backends[kind].chat(messages, opts)
                first = await anext(stream)
                times[kind].append(time.perf_counter() - t0)
                assert first.text
                [c async for c in stream]
    finally:
        for b in backends.values():
            await b.aclose()
        ollama.stop()
        openai.stop()
    deltas = [(a - b) * 1000 for a, b in zip(times["openai"], times["ollama"])]

    def summary(xs: list[float]) -> dict[str, float]:
        ms = [x * 1000 for x in xs]
        return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(percentile(ms, 90), 2)}

    median_delta = statistics.median(deltas)
    return {"requests_each": n, "latency_before_first_token_s": latency_s, "ollama": summary(times["ollama"]),
            "openai": summary(times["openai"]),
            "openai_minus_ollama_ms": {"median": round(median_delta, 2), "p90": round(percentile(deltas, 90), 2)},
            "target": "within 5 ms", "met": abs(median_delta) <= 5.0}


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.25, help="seconds each scripted host takes a request")
    args = p.parse_args(argv)
    q = args.quick
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "backends", "issue": 16, "quick": q, "date": now_iso(),
                              "machine": machine_info()}
    data_root = Path("/tmp/backends-bench")
    data_root.mkdir(parents=True, exist_ok=True)
    try:
        turns = long_conversation(30_000 if q else 120_000)
        report["pool_compression"] = asyncio.run(measure_pool(turns, args.latency, data_root))
        log("chat time to first token")
        report["chat_ttft"] = asyncio.run(measure_ttft(20 if q else 100, 0.02))
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    finish("backends", report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
