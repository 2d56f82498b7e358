"""OllamaBackend through the real `ollama.AsyncClient` over real HTTP to tests/ollama_server.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from arawn_core.llm.base import ChatChunk, ChatOptions, LLMBackend
from arawn_core.llm.errors import (
    BackendError,
    BackendUnavailable,
    ContextOverflow,
    LLMTimeout,
    ModelNotFound,
)
from arawn_core.llm.ollama_backend import OllamaBackend, context_filled

try:
    from tests.conftest_ollama import dead_ollama_url, ollama_server  # noqa: F401
    from tests.ollama_server import OllamaServer
except ModuleNotFoundError:  # tests/ is not a package
    from conftest_ollama import dead_ollama_url, ollama_server  # type: ignore[no-redef]  # noqa: F401
    from ollama_server import OllamaServer  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
MODEL = "scripted"
HELLO = [{"role": "user", "content": "hello MARKER-abc there"}]  # 4 prompt tokens: <user> hello MARKER-abc there


def opts(num_ctx: int = 4096, num_predict: int = 256, temperature: float | None = None, model: str = MODEL) -> ChatOptions:
    return ChatOptions(model=model, num_ctx=num_ctx, num_predict=num_predict, temperature=temperature)


@pytest.fixture
async def backend(ollama_server: OllamaServer):
    b = OllamaBackend(ollama_server.url, timeout_s=5.0)
    yield b
    await b.aclose()


async def collect(b: OllamaBackend, messages=HELLO, options: ChatOptions | None = None) -> list[ChatChunk]:
    return [c async for c in b.chat(messages, options or opts())]


# ---------------------------------------------------------------- happy paths


async def test_backend_satisfies_protocol(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    assert isinstance(backend, LLMBackend)
    assert backend.kind == "ollama"
    assert backend.host == ollama_server.url


async def test_chat_streams_text_and_final_usage(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    chunks = await collect(backend)

    assert "".join(c.text for c in chunks) == "Noted. MARKER-abc"
    assert len(chunks) >= 3  # two text pieces, then the done chunk: really streamed
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.usage is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.done_reason) == (4, 2, "stop")
    (req,) = ollama_server.bodies("/api/chat")
    assert req["stream"] is True
    assert req["messages"] == HELLO


async def test_complete_is_not_streamed(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    ollama_server.engine.script = ["a summary of three words"]  # type: ignore[attr-defined]

    result = await backend.complete(HELLO, opts())

    assert result.text == "a summary of three words"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 5)
    assert result.usage.done_reason == "stop"
    (req,) = ollama_server.bodies("/api/chat")
    assert req["stream"] is False


async def test_every_request_carries_num_ctx_and_num_predict(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    await collect(backend, options=opts(num_ctx=1234, num_predict=77))
    await backend.complete(HELLO, opts(num_ctx=999, num_predict=55, temperature=0.25))
    await collect(backend, options=opts(num_ctx=512, num_predict=8, temperature=0.0))

    sent = [r["options"] for r in ollama_server.bodies("/api/chat")]
    assert sent == [
        {"num_ctx": 1234, "num_predict": 77},
        {"num_ctx": 999, "num_predict": 55, "temperature": 0.25},
        {"num_ctx": 512, "num_predict": 8, "temperature": 0.0},
    ]


async def test_num_predict_caps_the_reply(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    ollama_server.engine.script = "one two three four five six"  # type: ignore[attr-defined]

    chunks = await collect(backend, options=opts(num_predict=3))
    result = await backend.complete(HELLO, opts(num_predict=2))

    assert "".join(c.text for c in chunks) == "one two three"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.completion_tokens, chunks[-1].usage.done_reason) == (3, "length")
    assert (result.text, result.usage.done_reason) == ("one two", "length")


async def test_info_and_list_models_on_a_live_server(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    info = await backend.info()

    assert info.reachable is True
    assert (info.kind, info.host) == ("ollama", ollama_server.url)
    assert info.models == ["scripted:latest"]
    assert await backend.list_models() == ["scripted:latest"]


# ---------------------------------------------------------------- unreachable


@pytest.mark.parametrize("streaming", [True, False])
async def test_refused_connection_is_backend_unavailable(dead_ollama_url: str, streaming: bool) -> None:
    b = OllamaBackend(dead_ollama_url, timeout_s=2.0)
    try:
        with pytest.raises(BackendUnavailable) as err:
            if streaming:
                await collect(b)
            else:
                await b.complete(HELLO, opts())
    finally:
        await b.aclose()

    assert err.value.transient is True
    assert err.value.host == dead_ollama_url
    assert dead_ollama_url in str(err.value)
    assert "ollama serve" in str(err.value)


async def test_info_on_a_down_server_reports_unreachable(dead_ollama_url: str) -> None:
    b = OllamaBackend(dead_ollama_url, timeout_s=2.0)
    try:
        info = await b.info()
    finally:
        await b.aclose()

    assert info.reachable is False
    assert info.models == []
    assert info.host == dead_ollama_url
    assert dead_ollama_url in info.detail


# ---------------------------------------------------------------- HTTP errors


@pytest.mark.parametrize("streaming", [True, False])
async def test_unknown_model_is_model_not_found(backend: OllamaBackend, streaming: bool) -> None:
    with pytest.raises(ModelNotFound) as err:
        if streaming:
            await collect(backend, options=opts(model="nosuch:7b"))
        else:
            await backend.complete(HELLO, opts(model="nosuch:7b"))

    assert err.value.model == "nosuch:7b"
    assert err.value.transient is False
    assert "ollama pull nosuch:7b" in str(err.value)


async def test_model_name_without_tag_matches_latest(backend: OllamaBackend) -> None:
    result = await backend.complete(HELLO, opts(model="scripted:latest"))
    assert result.text == "Noted. MARKER-abc"


@pytest.mark.parametrize("streaming", [True, False])
async def test_server_error_is_transient_and_clears(backend: OllamaBackend, ollama_server: OllamaServer, streaming: bool) -> None:
    ollama_server.fail_next(1, status=500, error="llama runner process has terminated")

    with pytest.raises(BackendError) as err:
        if streaming:
            await collect(backend)
        else:
            await backend.complete(HELLO, opts())

    assert err.value.transient is True
    assert err.value.status_code == 500
    assert "llama runner process has terminated" in str(err.value)
    # The fault was for one request only: a retry succeeds.
    assert (await backend.complete(HELLO, opts())).text == "Noted. MARKER-abc"


@pytest.mark.parametrize("streaming", [True, False])
async def test_400_about_context_is_context_overflow(backend: OllamaBackend, ollama_server: OllamaServer, streaming: bool) -> None:
    ollama_server.fail_next(1, status=400, error="input length exceeds the context length")

    with pytest.raises(ContextOverflow) as err:
        if streaming:
            await collect(backend)
        else:
            await backend.complete(HELLO, opts())

    assert err.value.transient is False
    assert "exceeds the context length" in str(err.value)


async def test_other_4xx_is_not_transient(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    ollama_server.fail_next(1, status=400, error="invalid message role")

    with pytest.raises(BackendError) as err:
        await backend.complete(HELLO, opts())

    assert not isinstance(err.value, ContextOverflow)
    assert (err.value.transient, err.value.status_code) == (False, 400)


# ---------------------------------------------------------------- timeouts and broken connections


@pytest.mark.parametrize("streaming", [True, False])
async def test_slow_server_is_llm_timeout(ollama_server: OllamaServer, streaming: bool) -> None:
    ollama_server.delay_next(3.0)  # the server wakes at teardown; the client gives up after 0.2 s
    b = OllamaBackend(ollama_server.url, timeout_s=0.2)
    try:
        with pytest.raises(LLMTimeout) as err:
            if streaming:
                await collect(b)
            else:
                await b.complete(HELLO, opts())
    finally:
        await b.aclose()

    assert err.value.transient is True
    assert err.value.timeout_s == 0.2
    assert ollama_server.url in str(err.value)


@pytest.mark.parametrize("clean_eof", [False, True], ids=["abrupt", "clean-eof"])
async def test_stream_cut_mid_line_is_transient_backend_error(
    backend: OllamaBackend, ollama_server: OllamaServer, clean_eof: bool
) -> None:
    ollama_server.cut_stream_next(after=1, partial=True, clean_eof=clean_eof)
    received: list[ChatChunk] = []

    with pytest.raises(BackendError) as err:
        async for chunk in backend.chat(HELLO, opts()):
            received.append(chunk)

    assert err.value.transient is True
    assert [c.text for c in received] == ["Noted."]  # the whole first line arrived before the cut


async def test_stream_without_done_message_is_transient_backend_error(
    backend: OllamaBackend, ollama_server: OllamaServer
) -> None:
    ollama_server.cut_stream_next(after=None, partial=False, clean_eof=True)  # every line but the last
    received: list[ChatChunk] = []

    with pytest.raises(BackendError) as err:
        async for chunk in backend.chat(HELLO, opts()):
            received.append(chunk)

    assert err.value.transient is True
    assert "final" in str(err.value)
    assert "".join(c.text for c in received) == "Noted. MARKER-abc"
    assert not any(c.done for c in received)


async def test_body_cut_short_in_complete_is_transient_backend_error(
    backend: OllamaBackend, ollama_server: OllamaServer
) -> None:
    ollama_server.cut_stream_next()
    with pytest.raises(BackendError) as err:
        await backend.complete(HELLO, opts())
    assert err.value.transient is True


@pytest.mark.parametrize("streaming", [True, False])
async def test_connection_closed_without_reply_is_transient_backend_error(
    backend: OllamaBackend, ollama_server: OllamaServer, streaming: bool
) -> None:
    ollama_server.close_next()
    with pytest.raises(BackendError) as err:
        if streaming:
            await collect(backend)
        else:
            await backend.complete(HELLO, opts())
    assert err.value.transient is True


async def test_error_object_mid_stream_is_transient_backend_error(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    def crash(prompt: list[str]) -> str:
        raise RuntimeError("CUDA out of memory")

    ollama_server.engine.script = crash  # type: ignore[attr-defined]
    with pytest.raises(BackendError) as err:
        await collect(backend)
    assert err.value.transient is True
    assert "CUDA out of memory" in str(err.value)


# ---------------------------------------------------------------- silent truncation


async def test_complete_raises_when_server_cut_the_prompt(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    words = " ".join(f"w{i}" for i in range(20))
    messages = [{"role": "user", "content": f"MARKER-old {words} MARKER-new"}]  # 23 tokens

    with pytest.raises(ContextOverflow) as err:
        await backend.complete(messages, opts(num_ctx=10))

    assert (err.value.prompt_tokens, err.value.num_ctx) == (10, 10)
    # The server really kept only the newest 10 tokens, as Ollama does.
    assert ollama_server.engine.prompts[-1] == [f"w{i}" for i in range(11, 20)] + ["MARKER-new"]  # type: ignore[attr-defined]


async def test_chat_reports_a_cut_prompt_in_usage_without_raising(backend: OllamaBackend) -> None:
    messages = [{"role": "user", "content": "MARKER-old " + "x " * 20 + "MARKER-new"}]

    chunks = await collect(backend, messages, opts(num_ctx=10))

    assert "".join(c.text for c in chunks) == "Noted. MARKER-new"  # the oldest marker was dropped
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens == 10
    assert context_filled(usage, 10)


async def test_complete_raises_on_a_reported_filled_context(backend: OllamaBackend, ollama_server: OllamaServer) -> None:
    ollama_server.fill_context_next()

    with pytest.raises(ContextOverflow) as err:
        await backend.complete(HELLO, opts(num_ctx=64))

    assert (err.value.prompt_tokens, err.value.num_ctx) == (64, 64)
    assert (await backend.complete(HELLO, opts(num_ctx=64))).usage.prompt_tokens == 4


async def test_prompt_that_fits_is_not_flagged(backend: OllamaBackend) -> None:
    result = await backend.complete(HELLO, opts(num_ctx=5))  # 4 tokens in a context of 5
    assert result.usage.prompt_tokens == 4
    assert not context_filled(result.usage, 5)


# ---------------------------------------------------------------- the server's own Ollama fidelity


async def test_server_speaks_ollamas_plain_endpoints(ollama_server: OllamaServer) -> None:
    async with httpx.AsyncClient(base_url=ollama_server.url) as http:
        root = await http.get("/")
        version = (await http.get("/api/version")).json()
        tags = (await http.get("/api/tags")).json()
        show = await http.post("/api/show", json={"model": "scripted"})
        show_missing = await http.post("/api/show", json={"model": "nope"})
        ps_before = (await http.get("/api/ps")).json()
        await http.post("/api/generate", json={"model": "scripted", "prompt": "hi", "stream": False})
        ps_after = (await http.get("/api/ps")).json()
        missing = await http.post("/api/chat", json={"model": "x", "messages": []})

    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert isinstance(version["version"], str)
    assert [m["name"] for m in tags["models"]] == ["scripted:latest"]
    assert show.status_code == 200 and show.json()["model_info"]["scripted.context_length"] > 0
    assert show_missing.status_code == 404
    assert ps_before == {"models": []}
    assert [(m["name"], m["context_length"]) for m in ps_after["models"]] == [("scripted:latest", 2048)]
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "x" not found, try pulling it first'}


async def test_server_truncation_defaults_and_truncate_false(ollama_server: OllamaServer) -> None:
    long_prompt = " ".join(["w"] * 3000)
    async with httpx.AsyncClient(base_url=ollama_server.url) as http:
        default_ctx = await http.post("/api/generate", json={"model": "scripted", "prompt": long_prompt, "stream": False})
        refused = await http.post(
            "/api/chat",
            json={"model": "scripted", "messages": [{"role": "user", "content": long_prompt}],
                  "options": {"num_ctx": 100}, "truncate": False, "stream": False},
        )
        streamed = await http.post("/api/generate", json={"model": "scripted", "prompt": "MARKER-q"})

    assert default_ctx.status_code == 200
    assert default_ctx.json()["prompt_eval_count"] == 2048  # num_ctx defaults to 2048
    assert default_ctx.json()["done"] is True
    assert refused.status_code == 400
    assert refused.json() == {"error": "input length exceeds the context length"}
    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert "".join(obj["response"] for obj in lines) == "Noted. MARKER-q"
    assert [obj["done"] for obj in lines] == [False, False, True]
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == 2


# ---------------------------------------------------------------- subprocess entry point


async def test_server_runs_as_a_subprocess() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.ollama_server", "--port", "0", "--engine", "scripted", "--model", "tiny:1b",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()  # type: ignore[union-attr]
        match = re.search(r"listening on (http://\S+)", line)
        assert match, f"unexpected first line: {line!r}"
        url = match.group(1)
        b = OllamaBackend(url, timeout_s=5.0)
        try:
            info = await b.info()
            assert (info.reachable, info.models) == (True, ["tiny:1b"])
            chunks = await collect(b, options=opts(model="tiny:1b"))
            assert "".join(c.text for c in chunks) == "Noted. MARKER-abc"

            async with httpx.AsyncClient(base_url=url) as http:  # runtime fault control over HTTP
                assert (await http.post("/_fault", json={"kind": "fail", "n": 1, "status": 503})).status_code == 200
            with pytest.raises(BackendError) as err:
                await b.complete(HELLO, opts(model="tiny:1b"))
            assert (err.value.transient, err.value.status_code) == (True, 503)
            async with httpx.AsyncClient(base_url=url) as http:
                recorded = (await http.get("/_requests")).json()
            assert [r["path"] for r in recorded] == ["/api/tags", "/api/chat", "/api/chat"]
            assert recorded[1]["body"]["options"] == {"num_ctx": 4096, "num_predict": 256}
        finally:
            await b.aclose()
    finally:
        if proc.returncode is None:
            proc.terminate()
        rc = await asyncio.wait_for(proc.wait(), timeout=10)
    assert rc == 0, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
