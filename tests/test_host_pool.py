"""The host pool over real HTTP: compression spread over free slots, a down host skipped and retried, chats sticky."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from arawn_core.config import parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.base import ChatOptions
from arawn_core.llm.errors import BackendUnavailable
from arawn_core.llm.openai_backend import OpenAIBackend
from arawn_core.llm.pool import HostPool
from arawn_core.llm.select import make_backend
from arawn_tui.headless import run
from tests.ollama_server import OllamaServer
from tests.openai_server import Gauge, OpenAIServer, ScriptedEngine, free_port

MODEL = "m"
HELLO = [{"role": "user", "content": "hello MARKER-p"}]
OPTS = ChatOptions(model=MODEL, num_ctx=8192, num_predict=32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def servers(n: int, **kw) -> list[OpenAIServer]:
    return [OpenAIServer(ScriptedEngine(name=MODEL, delay_s=kw.pop("delay_s", 0.0)), slots=1, **kw).start()
            for _ in range(n)]


async def test_compression_calls_use_every_free_slot_and_never_overload_a_host() -> None:
    up = [OpenAIServer(ScriptedEngine(name=MODEL, delay_s=0.05), slots=1).start() for _ in range(3)]
    pool = HostPool([OpenAIBackend(s.url, 5.0) for s in up], slots=1)
    try:
        replies = await asyncio.gather(*(pool.complete(HELLO, OPTS) for _ in range(12)))
        assert all(r.text == "Noted. MARKER-p" for r in replies)
        assert [s.served for s in up] == [4, 4, 4]  # spread evenly
        assert all(s.max_in_flight == 1 for s in up)  # one at a time on each host, as its slots say
        assert pool.capacity == 3
    finally:
        await pool.aclose()
        for s in up:
            s.stop()


async def test_a_down_host_is_skipped_shown_as_down_and_retried_later() -> None:
    clock = Clock()
    live = servers(2)
    dead_port = free_port()
    dead_url = f"http://127.0.0.1:{dead_port}/v1"
    pool = HostPool([OpenAIBackend(dead_url, 5.0), *(OpenAIBackend(s.url, 5.0) for s in live)],
                    retry_after_s=10.0, clock=clock)
    revived = None
    try:
        replies = await asyncio.gather(*(pool.complete(HELLO, OPTS) for _ in range(6)))
        assert len(replies) == 6 and sum(s.served for s in live) == 6
        health = {h.host: h for h in pool.health()}
        assert not health[dead_url].up and "connect" in health[dead_url].detail.lower()
        assert health[dead_url].retry_in_s == 10.0
        assert all(health[s.url].up for s in live)
        info = await pool.info()
        assert info.reachable and "2 of 3 hosts up" in info.detail and dead_url in info.detail
        assert [h.up for h in info.hosts] == [False, True, True]

        # Still down and not yet due: not even tried.
        await pool.complete(HELLO, OPTS)
        # The host comes back; once its retry time has passed a call goes to it again.
        revived = OpenAIServer(ScriptedEngine(name=MODEL), port=dead_port).start()
        await pool.complete(HELLO, OPTS)
        assert revived.served == 0
        clock.now += 11
        await asyncio.gather(*(pool.complete(HELLO, OPTS) for _ in range(3)))
        assert revived.served >= 1
        assert all(h.up for h in pool.health())
    finally:
        await pool.aclose()
        for s in live:
            s.stop()
        if revived:
            revived.stop()


async def test_every_host_down_is_one_error_naming_them_all() -> None:
    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    pool = HostPool([OpenAIBackend(u, 5.0) for u in urls])
    try:
        with pytest.raises(BackendUnavailable) as info:
            await pool.complete(HELLO, OPTS)
        assert info.value.transient and all(u in str(info.value) for u in urls)
        with pytest.raises(BackendUnavailable):  # and the chat too, before any text
            [c async for c in pool.chat(HELLO, OPTS)]
        assert not (await pool.info()).reachable
    finally:
        await pool.aclose()


async def test_a_chat_sticks_to_one_healthy_host_and_moves_when_it_goes_down() -> None:
    live = servers(3)
    pool = HostPool([OpenAIBackend(s.url, 5.0) for s in live])
    try:
        for _ in range(4):
            text = "".join([c.text async for c in pool.chat(HELLO, OPTS)])
            assert text == "Noted. MARKER-p"
        assert [s.served for s in live] == [4, 0, 0]
        assert [h.chat for h in pool.health()] == [True, False, False]
        live[0].stop()
        text = "".join([c.text async for c in pool.chat(HELLO, OPTS)])
        assert text == "Noted. MARKER-p" and live[1].served == 1
        for _ in range(2):
            [c async for c in pool.chat(HELLO, OPTS)]
        assert (live[1].served, live[2].served) == (3, 0)
        assert [h.up for h in pool.health()] == [False, True, True]
    finally:
        await pool.aclose()
        for s in live[1:]:
            s.stop()


async def test_compression_prefers_hosts_no_chat_is_using() -> None:
    slow = [OpenAIServer(ScriptedEngine(name=MODEL, token_delay_s=0.05), slots=2).start() for _ in range(2)]
    pool = HostPool([OpenAIBackend(s.url, 5.0) for s in slow], slots=2)
    try:
        stream = pool.chat(HELLO, ChatOptions(MODEL, 8192, 32))
        first = await anext(stream)  # the chat is under way on host 0
        assert first.text
        await pool.complete(HELLO, OPTS)
        assert slow[1].served == 1
        [c async for c in stream]
    finally:
        await pool.aclose()
        for s in slow:
            s.stop()


async def test_the_pool_from_config_compresses_with_one_host_down(tmp_path: Path) -> None:
    gauge = Gauge()
    live = [OpenAIServer(ScriptedEngine(name=MODEL), slots=1, latency_s=0.05, gauge=gauge).start() for _ in range(2)]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    hosts = json.dumps([live[0].url, dead, live[1].url])
    settings = parse_settings(
        f'[llm]\nbackend = "openai"\nhosts = {hosts}\nmodel = "{MODEL}"\nnum_ctx = 4096\n'
        "[workstream.compression]\nmax_summary_tokens = 64\nmin_messages = 0\nverbatim_max_chars = 0\n"
        "max_concurrency = 1\nretry_base_s = 0.01\n").with_data_dir(tmp_path / "d")
    core = await ArawnCore.open(settings)
    try:
        ws = await core.create_workstream("pool")
        for i in range(40):
            await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant",
                                      f"turn {i} MARKER-k{i} " + "words to summarize here " * 15)
        session = await core.end_session(ws.id)
        outcomes = await core.work_queue(ws.id)
        assert outcomes and all(o.ok for o in outcomes), [str(o.error) for o in outcomes]
        summary = await core.session_summary(session.id)
        assert summary.provenance.llm_calls >= 3
        info = await core.backend_info()
        assert [h.up for h in info.hosts] == [True, False, True]
    finally:
        await core.close(end_sessions=False)
    assert live[0].served > 0 and live[1].served > 0
    assert gauge.peak == 2  # max_concurrency 1, but the pool's live slots are all used at once ...
    assert max(s.max_in_flight for s in live) == 1  # ... and never two on one host
    for s in live:
        s.stop()


async def test_make_backend_pools_ollama_hosts_too() -> None:
    with OllamaServer() as a, OllamaServer() as b:
        settings = parse_settings(f'[llm]\nbackend = "ollama"\nhost = "{a.url}"\nhosts = ["{b.url}"]\n')
        pool = await make_backend(settings)
        try:
            assert isinstance(pool, HostPool) and pool.kind == "ollama" and pool.hosts == [a.url, b.url]
            await asyncio.gather(*(pool.complete(HELLO, ChatOptions("scripted", 2048, 16)) for _ in range(4)))
        finally:
            await pool.aclose()
        # both hosts took work (which one gets a freed slot first is up to timing)
        served = (len(a.bodies("/api/chat")), len(b.bodies("/api/chat")))
        assert sum(served) == 4 and min(served) >= 1, served


def test_doctor_lists_every_host(tmp_path: Path, capsys) -> None:
    live = servers(1)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[llm]\nbackend = "openai"\nmodel = "{MODEL}"\nhosts = ["{live[0].url}", "{dead}"]\n')
    try:
        code = run(["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "--json", "doctor"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 0 and doc["reachable"]
        assert [(h["host"], h["up"]) for h in doc["hosts"]] == [(live[0].url, True), (dead, False)]
        run(["--config", str(cfg), "--data-dir", str(tmp_path / "d"), "doctor"])
        out = capsys.readouterr().out
    finally:
        live[0].stop()
    assert f"host:        {live[0].url}: up" in out and f"host:        {dead}: DOWN" in out
