"""OpenAIBackend through the real `openai` client over real HTTP to tests/openai_server.py.

Also: the server's context for each server kind (Ollama /api/show, vLLM
/v1/models, llama-server /props, llama-cpp-python's refusal), planning with
min(configured, server's), and the learned size surviving a restart.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from arawn_core.config import parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.base import ChatOptions, LLMBackend
from arawn_core.llm.errors import BackendError, BackendUnavailable, ContextOverflow, LLMTimeout, ModelNotFound
from arawn_core.llm.openai_backend import OpenAIBackend
from arawn_core.llm.ollama_backend import OllamaBackend
from arawn_core.llm.select import make_backend
from arawn_core.llm.server_context import LEARNED, ContextMemory, ContextPlan, parse_refusal
from arawn_tui.headless import run
from tests.ollama_server import OllamaServer
from tests.ollama_server import ScriptedEngine as OllamaEngine
from tests.openai_server import OpenAIServer, ScriptedEngine, context_message, free_port

MODEL = "m"
HELLO = [{"role": "user", "content": "hello MARKER-abc there"}]  # 4 prompt tokens: <user> hello MARKER-abc there


def opts(num_ctx: int = 8192, num_predict: int = 64, model: str = MODEL) -> ChatOptions:
    return ChatOptions(model=model, num_ctx=num_ctx, num_predict=num_predict)


@pytest.fixture
def server():
    s = OpenAIServer(ScriptedEngine(name=MODEL, context_length=100)).start()
    yield s
    s.stop()


@pytest.fixture
async def backend(server: OpenAIServer):
    b = OpenAIBackend(server.url, 5.0)
    yield b
    await b.aclose()


# ---------------------------------------------------------------- the protocol


async def test_chat_streams_tokens_and_reports_usage(backend: OpenAIBackend, server: OpenAIServer) -> None:
    assert isinstance(backend, LLMBackend) and backend.kind == "openai"
    chunks = [c async for c in backend.chat(HELLO, opts(num_predict=7))]
    assert [c.text for c in chunks[:-1]] == ["Noted.", " MARKER-abc"]  # token by token, not one blob
    last = chunks[-1]
    assert last.done and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.done_reason) == (4, 2, "stop")
    request = server.bodies()[-1]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] == 7 and request["model"] == MODEL
    assert "authorization" not in request.headers  # no key configured, none in the environment


async def test_complete_uses_max_tokens_and_returns_usage(backend: OpenAIBackend, server: OpenAIServer) -> None:
    done = await backend.complete(HELLO, ChatOptions(MODEL, 8192, 33, temperature=0.2))
    assert done.text == "Noted. MARKER-abc"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.done_reason) == (4, 2, "stop")
    request = server.bodies()[-1]
    assert request["max_tokens"] == 33 and request["temperature"] == 0.2 and not request.get("stream")


async def test_a_reply_cut_at_max_tokens_says_length(backend: OpenAIBackend, server: OpenAIServer) -> None:
    server.engines[0].script = "one two three four five six"
    done = await backend.complete(HELLO, opts(num_predict=3))
    assert done.text == "one two three" and done.usage.done_reason == "length"


async def test_api_key_from_config_then_environment(server: OpenAIServer, monkeypatch) -> None:
    b = OpenAIBackend(server.url, 5.0, api_key="sk-config")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    env = OpenAIBackend(server.url, 5.0)
    try:
        await b.complete(HELLO, opts())
        assert server.bodies()[-1].headers["authorization"] == "Bearer sk-config"
        await env.complete(HELLO, opts())
        assert server.bodies()[-1].headers["authorization"] == "Bearer sk-env"
        assert await env.list_models() == [MODEL]
        assert server.bodies("/v1/models")[-1].headers["authorization"] == "Bearer sk-env"
    finally:
        await b.aclose()
        await env.aclose()


async def test_stop_sequences_are_sent(server: OpenAIServer) -> None:
    b = OpenAIBackend(server.url, 5.0, stop=["\n"])
    try:
        await b.complete(HELLO, opts())
        [c async for c in b.chat(HELLO, opts())]
    finally:
        await b.aclose()
    assert [r["stop"] for r in server.bodies()] == [["\n"], ["\n"]]


# ---------------------------------------------------------------- errors


async def test_refused_connection_names_the_host() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    b = OpenAIBackend(url, 5.0)
    try:
        for call in (lambda: b.complete(HELLO, opts()), lambda: _drain(b.chat(HELLO, opts()))):
            with pytest.raises(BackendUnavailable) as info:
                await call()
            assert url in str(info.value) and info.value.transient and "ollama" not in str(info.value)
        status = await b.info()
        assert not status.reachable and url in status.detail
    finally:
        await b.aclose()


async def test_unknown_model_lists_what_the_server_has() -> None:
    with OpenAIServer(ScriptedEngine(name="qwen2.5"), ScriptedEngine(name="llama3.1"), flavor="vllm") as s:
        b = OpenAIBackend(s.url, 5.0)
        try:
            with pytest.raises(ModelNotFound) as info:
                await b.complete(HELLO, opts(model="gpt-4"))
        finally:
            await b.aclose()
    assert not info.value.transient
    assert info.value.available == ["qwen2.5", "llama3.1"]
    assert "'gpt-4' not found" in str(info.value) and "qwen2.5, llama3.1" in str(info.value)


@pytest.mark.parametrize("status, transient", [(429, True), (500, True), (503, True), (400, False), (422, False)])
async def test_http_errors_are_transient_or_not(backend: OpenAIBackend, server: OpenAIServer, status: int,
                                                transient: bool) -> None:
    server.fail_next(status=status, message="busy" if status == 429 else "nope")
    with pytest.raises(BackendError) as info:
        await backend.complete(HELLO, opts())
    assert info.value.transient is transient and info.value.status_code == status
    assert str(status) in str(info.value) and server.url in str(info.value)


async def test_a_rejected_key_says_which_setting(backend: OpenAIBackend, server: OpenAIServer) -> None:
    server.fail_next(status=401, message="invalid api key")
    with pytest.raises(BackendError, match=r"api_key or \$OPENAI_API_KEY") as info:
        await backend.complete(HELLO, opts())
    assert not info.value.transient


async def test_a_stalled_server_times_out_transiently(server: OpenAIServer) -> None:
    b = OpenAIBackend(server.url, 0.3)
    server.delay_next(3.0)
    try:
        with pytest.raises(LLMTimeout) as info:
            await b.complete(HELLO, opts())
    finally:
        await b.aclose()
    assert info.value.transient and server.url in str(info.value)


async def test_a_hang_up_is_transient(backend: OpenAIBackend, server: OpenAIServer) -> None:
    server.close_next()
    with pytest.raises(BackendError) as info:
        await backend.complete(HELLO, opts())
    assert info.value.transient


class _Redirect(BaseHTTPRequestHandler):
    target = ""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(307)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST  # noqa: N815


async def test_redirects_and_environment_proxies_are_not_followed(server: OpenAIServer, monkeypatch) -> None:
    """The conversation goes to [llm] host only: not to a proxy from the environment, not where a 307 points."""
    canary = OpenAIServer(ScriptedEngine(name=MODEL)).start()
    handler = type("Redirect", (_Redirect,), {"target": canary.root})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, canary.root)
    monkeypatch.setenv("NO_PROXY", "")
    direct = OpenAIBackend(server.url, 5.0)
    redirected = OpenAIBackend(f"http://127.0.0.1:{httpd.server_address[1]}/v1", 5.0)
    try:
        assert (await direct.complete(HELLO, opts())).text == "Noted. MARKER-abc"
        with pytest.raises(BackendError) as info:
            await redirected.complete([{"role": "user", "content": "secret"}], opts())
        assert "307" in str(info.value) and not info.value.transient
    finally:
        await direct.aclose()
        await redirected.aclose()
        httpd.shutdown()
        httpd.server_close()
        canary.stop()
    assert canary.requests == []
    assert len(server.bodies()) == 1


# ---------------------------------------------------------------- the server's context


async def test_llama_cpp_python_refusal_teaches_the_size(backend: OpenAIBackend, server: OpenAIServer) -> None:
    long = [{"role": "user", "content": "word " * 150}]
    assert await backend.server_context(MODEL) is None  # this server kind says nothing
    with pytest.raises(ContextOverflow) as info:
        await backend.complete(long, opts(num_ctx=8192))
    assert (info.value.num_ctx, info.value.prompt_tokens, info.value.replan) == (100, 151, False)
    learned = await backend.server_context(MODEL)
    assert learned is not None and (learned.size, learned.source) == (100, LEARNED)
    # A call still planned for the old, larger context is turned back without being sent.
    with pytest.raises(ContextOverflow) as again:
        await backend.complete(HELLO, opts(num_ctx=8192))
    assert again.value.replan and again.value.num_ctx == 100
    assert server.refusals() == 1 and len(server.bodies()) == 1
    # Planned for the learned size, it is sent and served.
    assert (await backend.complete(HELLO, opts(num_ctx=100))).text == "Noted. MARKER-abc"


async def test_a_reply_cut_short_of_max_tokens_reveals_the_context(server: OpenAIServer) -> None:
    """llama-cpp-python serves a prompt that fits but shrinks max_tokens to what is left of the context."""
    b = OpenAIBackend(server.url, 5.0)
    server.engines[0].script = " ".join(f"w{i}" for i in range(200))
    try:
        with pytest.raises(ContextOverflow) as info:
            await b.complete([{"role": "user", "content": "word " * 80}], opts(num_ctx=8192, num_predict=64))
        assert (await b.server_context(MODEL)).size == 100
    finally:
        await b.aclose()
    assert info.value.num_ctx == 100  # 81 prompt tokens + the 19 the server let it generate


@pytest.mark.parametrize("flavor, source", [("vllm", "v1/models max_model_len"), ("llama-server", "props n_ctx")])
async def test_servers_that_state_their_context(flavor: str, source: str) -> None:
    with OpenAIServer(ScriptedEngine(name=MODEL, context_length=3072), flavor=flavor) as s:
        b = OpenAIBackend(s.url, 5.0)
        try:
            found = await b.server_context(MODEL)
            again = await b.server_context(MODEL)
        finally:
            await b.aclose()
        asked = [r.path for r in s.requests]
    assert found is not None and (found.size, found.source) == (3072, source)
    assert again == found
    assert len(asked) == len(set(asked))  # read once a run, not before every call


async def test_llama_server_refusal_body_is_understood() -> None:
    with OpenAIServer(ScriptedEngine(name=MODEL, context_length=50), flavor="llama-server") as s:
        b = OpenAIBackend(s.url, 5.0)
        try:
            with pytest.raises(ContextOverflow) as info:
                await b.complete([{"role": "user", "content": "x " * 80}], opts())
        finally:
            await b.aclose()
    assert (info.value.num_ctx, info.value.prompt_tokens) == (50, 81)


def test_refusal_wordings() -> None:
    r = parse_refusal(context_message(2048, 2300, 100))
    assert (r.num_ctx, r.prompt_tokens) == (2048, 2300)
    r = parse_refusal("This model's maximum context length is 4096 tokens, however you requested 5000 tokens "
                      "(4900 in your prompt; 100 for the completion).")
    assert (r.num_ctx, r.prompt_tokens) == (4096, 4900)
    assert parse_refusal("model not found") is None


class ModelfileEngine(OllamaEngine):
    """An Ollama model whose Modelfile sets num_ctx (what the server runs), trained for more."""

    def __init__(self, name: str, parameters: str, context_length: int) -> None:
        super().__init__(name=name, context_length=context_length)
        self.parameters = parameters


async def test_ollama_show_num_ctx_parameter_and_context_length() -> None:
    engines = (ModelfileEngine("small", "num_ctx 4096\nstop \"<end>\"", 131072),
               ModelfileEngine("plain", "", 32768))
    with OllamaServer(*engines) as s:
        b = OllamaBackend(s.url, 5.0)
        try:
            small, plain = await b.server_context("small"), await b.server_context("plain")
            missing = await b.server_context("absent")
        finally:
            await b.aclose()
    assert (small.size, small.source) == (4096, "api/show num_ctx")
    assert (plain.size, plain.source) == (32768, "api/show context_length")
    assert missing is None


def test_plan_is_the_smaller_and_zero_means_the_servers() -> None:
    assert (ContextPlan(8192, 2048, LEARNED).used, ContextPlan(8192, 2048).which) == (2048, "server")
    assert (ContextPlan(4096, 32768).used, ContextPlan(4096, 32768).which) == (4096, "configured")
    assert (ContextPlan(0, 32768).used, ContextPlan(0, 32768).which) == (32768, "server")
    assert (ContextPlan(0, None).used, ContextPlan(0, None).which) == (2048, "fallback")
    assert ContextPlan(8192, None).used == 8192


def test_memory_keeps_only_learned_sizes_and_drops_garbage() -> None:
    m = ContextMemory()
    m.learn("http://a/v1", "m", 2048)
    from arawn_core.llm.server_context import ServerContext

    m.put("http://a/v1", "n", ServerContext(4096, "v1/models max_model_len"))
    state = json.loads(json.dumps(m.to_dict()))
    back = ContextMemory.from_dict(state)
    assert back.get("http://a/v1", "m").size == 2048 and back.get("http://a/v1", "n") is None
    assert ContextMemory.from_dict({"learned": [{"host": 1}, "x", {"host": "h", "model": "m", "size": -5}]}).to_dict() \
        == {"version": 1, "learned": []}


async def test_num_ctx_zero_sends_the_servers_context_to_ollama(tmp_path: Path) -> None:
    with OllamaServer(ModelfileEngine("small", "num_ctx 3000", 131072)) as s:
        settings = parse_settings(f'[llm]\nbackend = "ollama"\nhost = "{s.url}"\nmodel = "small"\nnum_ctx = 0\n'
                                  ).with_data_dir(tmp_path / "d")
        core = await ArawnCore.open(settings)
        try:
            ws = await core.create_workstream("ctx")
            assert "".join([p async for p in core.send(ws.id, "hi MARKER-q")]) == "Noted. MARKER-q"
            plan = (await core.backend_info()).context
        finally:
            await core.close(end_sessions=False)
        chat = s.bodies("/api/chat")[-1]
    assert chat["options"]["num_ctx"] == 3000
    assert (plan.configured, plan.server, plan.used, plan.which) == (0, 3000, 3000, "server")


async def test_compression_learns_the_context_once_and_remembers_it(tmp_path: Path) -> None:
    """A server that states nothing: one refusal teaches its size, the job re-plans, nothing else is refused,
    and after a restart the size is known before any request."""
    engine = ScriptedEngine(name=MODEL, context_length=2048)
    toml = (f'[llm]\nbackend = "openai"\nmodel = "{MODEL}"\nnum_ctx = 8192\n'
            "[workstream.compression]\nmax_summary_tokens = 64\nsafety_margin_tokens = 16\nmax_concurrency = 3\n"
            "min_messages = 0\nverbatim_max_chars = 0\nretry_base_s = 0.01\nretry_max_s = 0.05\n")
    with OpenAIServer(engine) as s:
        settings = parse_settings(toml.replace('[llm]\n', f'[llm]\nhost = "{s.url}"\n')).with_data_dir(tmp_path / "d")
        core = await ArawnCore.open(settings)
        try:
            ws = await core.create_workstream("long")
            for i in range(60):
                await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant",
                                          f"turn {i} MARKER-t{i} " + "lorem ipsum dolor sit amet " * 12)
            session = await core.end_session(ws.id)
            outcomes = await core.work_queue(ws.id)
            assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
            summary = await core.session_summary(session.id)
            assert summary.provenance.llm_calls > 3  # ~3,800 words cannot fit one 2048-token call
            plan = (await core.backend_info()).context
        finally:
            await core.close(end_sessions=False)
        assert s.refusals() == 1
        assert (plan.server, plan.source, plan.used) == (2048, LEARNED, 2048)
        served = [r for r in s.bodies() if not getattr(r, "refused", False)]
        assert served and all(len(engine.render(r["messages"])) + r["max_tokens"] <= 2048 for r in served)

        before = len(s.bodies())
        again = await ArawnCore.open(settings)
        try:
            plan = await again.context_plan()
            ws2 = await again.create_workstream("after restart")
            assert "MARKER-z" in "".join([p async for p in again.send(ws2.id, "hello MARKER-z")])
        finally:
            await again.close(end_sessions=False)
        assert (plan.server, plan.used) == (2048, 2048)
        assert s.refusals() == 1 and len(s.bodies()) == before + 1


# ---------------------------------------------------------------- selection, doctor


async def test_make_backend_openai_and_auto_still_prefers_ollama(tmp_path: Path, server: OpenAIServer) -> None:
    chosen = await make_backend(parse_settings(f'[llm]\nbackend = "openai"\nhost = "{server.url}"\n'))
    try:
        assert isinstance(chosen, OpenAIBackend) and chosen.host == server.url
        assert 'backend = "openai"' in (await chosen.info()).detail
    finally:
        await chosen.aclose()
    with OllamaServer() as ollama:
        auto = await make_backend(parse_settings(f'[llm]\nhost = "{ollama.url}"\n'))
        try:
            assert auto.kind == "ollama"
        finally:
            await auto.aclose()


def test_doctor_shows_both_contexts(tmp_path: Path, capsys) -> None:
    with OpenAIServer(ScriptedEngine(name=MODEL, context_length=4096), flavor="vllm") as s:
        cfg = tmp_path / "a.toml"
        cfg.write_text(f'[llm]\nbackend = "openai"\nhost = "{s.url}"\nmodel = "{MODEL}"\nnum_ctx = 8192\n')
        code = run(["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "--json", "doctor"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 0
        assert doc["backend"] == "openai" and doc["reachable"] and doc["model_present"]
        assert doc["context"] == {"configured": 8192, "server": 4096, "source": "v1/models max_model_len",
                                  "used": 4096, "which": "server"}
        code = run(["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "doctor"])
        out = capsys.readouterr().out
    assert code == 0
    assert "context:     4096 used (server): configured 8192, server's 4096 (v1/models max_model_len)" in out


def test_doctor_on_a_down_openai_server_says_what_to_start(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "a.toml"
    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg.write_text(f'[llm]\nbackend = "openai"\nhost = "{url}"\n')
    code = run(["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "doctor"])
    out = capsys.readouterr().out
    assert code == 3 and "UNREACHABLE" in out and "OpenAI-compatible server" in out and url in out


async def _drain(stream) -> list:
    return [c async for c in stream]


async def test_a_refused_chat_is_planned_again_and_sent_once_more(tmp_path: Path) -> None:
    """The first chat to a server that states nothing is too long: its refusal teaches the size and the
    reply still comes, from a context that fits (older turns left out)."""
    engine = ScriptedEngine(name=MODEL, context_length=400)
    with OpenAIServer(engine) as s:
        settings = parse_settings(f'[llm]\nbackend = "openai"\nhost = "{s.url}"\nmodel = "{MODEL}"\n'
                                  "num_ctx = 8192\nmax_reply_tokens = 16\n").with_data_dir(tmp_path / "d")
        core = await ArawnCore.open(settings)
        try:
            ws = await core.create_workstream("chat")
            for i in range(20):
                await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 40)
            reply = "".join([p async for p in core.send(ws.id, "and now MARKER-n")])
        finally:
            await core.close(end_sessions=False)
        refused, sent = s.bodies()[0], s.bodies()[-1]
    assert reply == "Noted. MARKER-n"
    assert s.refusals() == 1 and len(s.bodies()) == 2
    assert len(engine.render(sent["messages"])) + 16 <= 400 < len(engine.render(refused["messages"]))


# ---- one deadline for the whole request (issue 15), on the OpenAI path too ----------------------


@pytest.mark.parametrize("streamed", [True, False])
async def test_a_server_trickling_tokens_is_cut_at_the_request_deadline(streamed: bool) -> None:
    """A token every 0.3 s keeps every read alive; `request_timeout_s` bounds the whole request."""
    import time

    from arawn_core.errors import LLMTimeout

    reply = " ".join(f"word{i}" for i in range(40))  # 40 tokens: 12 s at this pace
    server = OpenAIServer(ScriptedEngine(name="m", script=reply, token_delay_s=0.3)).start()
    backend = OpenAIBackend(server.url, 1.0)
    options = ChatOptions(model="m", num_ctx=8192, num_predict=64)
    messages = [{"role": "user", "content": "hello"}]
    t0 = time.monotonic()
    try:
        with pytest.raises(LLMTimeout) as err:
            if streamed:
                async for _ in backend.chat(messages, options):
                    pass
            else:
                await backend.complete(messages, options)
        elapsed = time.monotonic() - t0
    finally:
        await backend.aclose()
        server.stop()
    assert elapsed < 6.0, elapsed  # the deadline (1 s) plus slack on a loaded machine, not the reply's 12 s
    assert err.value.transient  # a stalled job is retried like any timeout
