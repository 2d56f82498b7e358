"""Integration: summaries written by the REAL packaged base model (gemma3-270m) are never an echo.

The model runs behind `tests/ollama_server.py` through `tests/llama_engine.LlamaEngine` (real
tokenizer, real generation, real HTTP through the `ollama` client in `OllamaBackend`). The
packaged model is a base model: given chat instructions it repeats them back ("You maintain the
running summary of a workstream..."), which the last build stored as the workstream summary.

* Chat style: whatever the model does, no stored summary repeats the prompt or carries fence
  markers; a rejected reply is replaced by the labelled extractive fallback.
* Completion style (what the embedded backend gets by default): the request ends with an opened
  "Summary:" assistant turn the model continues; the planted keep request reaches the workstream
  summary (from the model, the repair call, or the verbatim "Key items" section), and the audit is
  stored with it.

Short transcripts, small num_predict: about a minute on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arawn_core.compression import prompts as P
from arawn_core.config import Settings, parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.embedded import ensure_default_model
from arawn_core.llm.ollama_backend import OllamaBackend
from arawn_core.memory import audit as A
from arawn_core.memory.degenerate import echoes
from tests.llama_engine import LlamaEngine, long_sharegpt_conversation
from tests.ollama_server import OllamaServer

pytestmark = pytest.mark.integration

SUMMARY_MODEL = "gemma3:270m-summary"
CODE = "QKD-4821"


@pytest.fixture(scope="module")
def server():
    engine = LlamaEngine(model_path=str(ensure_default_model()), name=SUMMARY_MODEL, n_ctx=2048, stop=["\n\n"])
    srv = OllamaServer(engine).start()
    try:
        yield srv
    finally:
        srv.stop()
        engine.close()


def settings(data_dir: Path, url: str, style: str) -> Settings:
    return parse_settings(f"""
[llm]
backend = "ollama"
host = "{url}"
model = "{SUMMARY_MODEL}"
num_ctx = 2048
request_timeout_s = 300

[workstream.compression]
max_summary_tokens = 96
min_messages = 0
verbatim_max_chars = 0
max_attempts = 1
prompt_style = "{style}"
""", "test.toml").with_data_dir(data_dir)


def transcript() -> list[tuple[str, str]]:
    _, turns = long_sharegpt_conversation(3_000, 6_000)
    turns = [(r, t[:700]) for r, t in turns[:4]]
    return [turns[0], ("user", f"Please remember reference code {CODE}."), ("assistant", "Noted."), *turns[1:]]


async def compress(data_dir: Path, url: str, style: str):
    core = await ArawnCore.open(settings(data_dir, url, style), OllamaBackend(url, 300))
    try:
        ws = await core.create_workstream(f"real model, {style}")
        for role, text in transcript():
            await core.append_message(ws.id, role, text)
        session = await core.end_session(ws.id)
        outcomes = await core.work_queue(ws.id)
        assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
        return await core.session_summary(session.id), await core.workstream_summary(ws.id)
    finally:
        await core.close(end_sessions=False)


def assert_not_an_echo(text: str) -> None:
    for kind in P.SYSTEM_PROMPTS:
        assert not echoes(text, P.system_prompt(kind)), text
    assert "<<<" not in text and "You maintain the running summary" not in text


async def test_chat_style_never_stores_an_echo(server: OllamaServer, tmp_path: Path) -> None:
    session, workstream = await compress(tmp_path, server.url, "chat")
    for s in (session, workstream):
        assert s is not None and s.text.strip()
        assert_not_an_echo(s.text)
        if s.provenance.method == "extractive":
            assert A.is_extractive(s.text) and s.provenance.audit.defects
    assert CODE in workstream.text


async def test_completion_style_for_the_base_model(server: OllamaServer, tmp_path: Path) -> None:
    first = len(server.bodies("/api/chat"))
    session, workstream = await compress(tmp_path, server.url, "completion")
    requests = server.bodies("/api/chat")[first:]
    assert requests and all(r["messages"][-1] == {"role": "assistant", "content": P.COMPLETION_PREFIX}
                            for r in requests)
    assert all(r["messages"][0]["role"] == "user" for r in requests)  # no chat instructions to echo
    for s in (session, workstream):
        assert_not_an_echo(s.text)
        assert s.provenance.audit is not None and s.provenance.method in ("model", "repaired", "extractive")
    assert CODE in session.text and CODE in workstream.text
    assert workstream.provenance.audit.total >= 1
