"""Integration: the embedded backend (the real gemma3-270m through llama-cpp-python) honours the
whole-request deadline, `[llm] request_timeout_s`, like the HTTP backends (issue 15, class 2).

A request to the embedded model is not an HTTP read that a client timeout could bound: it is
the model reading the prompt and generating, token by token, in a worker thread. The deadline
must stop both, free the worker for the next request, keep what streamed, and reach the CLI as
the same one-line timeout. The bound in each test is a generous `asyncio.wait_for` or subprocess
timeout that only a generation running on to thousands of tokens would reach.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arawn_core.llm.base import ChatOptions
from arawn_core.llm.embedded import DEFAULT_MODEL_NAME, EmbeddedBackend, ensure_default_model
from arawn_core.llm.errors import LLMTimeout
from tests.test_hardening import build, one_line, stored

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
#: A prompt a base model continues without end (no blank line, no end of turn for a long while).
ENDLESS = [{"role": "user", "content": "Count on, one number a line: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"}]


@pytest.fixture(scope="module")
def gguf() -> Path:
    return ensure_default_model()


async def test_a_long_generation_is_cut_at_the_deadline_and_the_worker_freed(gguf: Path) -> None:
    backend = EmbeddedBackend(gguf, DEFAULT_MODEL_NAME, stop=(), timeout_s=2.0)
    try:
        await backend.complete(ENDLESS, ChatOptions("any", 512, 1, 0.0))  # load the model outside the deadline test
        got: list[str] = []

        async def consume() -> None:
            async for chunk in backend.chat(ENDLESS, ChatOptions("any", 8192, 100_000, 0.0)):
                got.append(chunk.text)

        with pytest.raises(LLMTimeout, match="timed out"):
            # without the deadline this runs to about 8000 tokens: minutes on two cores
            await asyncio.wait_for(consume(), 90)
        assert got, "tokens streamed before the deadline"
        # the cut generation stopped at its next token: a short request is served, not queued behind it
        reply = await asyncio.wait_for(backend.complete(ENDLESS, ChatOptions("any", 512, 2, 0.0)), 60)
        cut = backend.generations[-2]
        assert cut.done_reason == "cancelled" and 0 < cut.completion_tokens < 8000
        assert reply.usage.completion_tokens <= 2
    finally:
        await backend.aclose()


async def test_the_deadline_also_bounds_reading_a_long_prompt(gguf: Path) -> None:
    backend = EmbeddedBackend(gguf, DEFAULT_MODEL_NAME, timeout_s=60.0)
    long_prompt = [{"role": "user", "content": "Lists of harbours, rivers and capes of the world. " * 110}]
    try:
        # the model loaded outside the deadline test: the cut below is the reading of the prompt, not the
        # load (a load cut by the deadline left its worker busy, and the next request never started)
        await backend.complete(ENDLESS, ChatOptions("any", 512, 1, 0.0))
        backend.timeout_s = 0.3  # reading 1,000+ tokens takes seconds on two cores
        with pytest.raises(LLMTimeout):
            await asyncio.wait_for(backend.complete(long_prompt, ChatOptions("any", 2048, 8, 0.0)), 90)
        backend.timeout_s = 60.0
        await asyncio.wait_for(backend.complete(ENDLESS, ChatOptions("any", 512, 2, 0.0)), 90)
        cut = backend.generations[-2]
        assert cut.prompt_tokens > 1000 and cut.completion_tokens == 0  # stopped while reading the prompt
    finally:
        await backend.aclose()


def test_the_cli_on_the_embedded_model_is_one_timeout_line_and_keeps_the_message(tmp_path: Path, gguf: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["earlier", "reply"]]})
    before = stored(data)
    cfg = tmp_path / "arawn.toml"
    # 0.1 s (the smallest allowed): no reply of the model, however short, is read and written in that time
    cfg.write_text('[llm]\nbackend = "embedded"\nrequest_timeout_s = 0.1\nmax_reply_tokens = 6000\n'
                   'num_ctx = 8192\n[context]\nrecall = false\n')
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "ARAWN_CONFIG")}
    env.update({"PYTHONPATH": str(REPO), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_CACHE_HOME": str(gguf.parents[2])})  # the model already assembled: <cache>/arawn/models/
    p = subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(cfg), "--data-dir", str(data),
                        "chat", "Alpha", ENDLESS[0]["content"]], capture_output=True, text=True, env=env, cwd=home,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr
    one_line(p, 1, "timed out", "request_timeout_s")
    after = stored(data)
    assert all(after[k].startswith(v) for k, v in before.items())  # nothing stored was changed
    log = next(k for k in after if k.endswith("messages.jsonl"))
    added = [json.loads(line) for line in after[log][len(before[log]):].decode().splitlines()]
    assert added[0]["role"] == "user" and added[0]["content"] == ENDLESS[0]["content"]  # the message is kept
