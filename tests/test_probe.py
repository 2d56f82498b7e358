"""The light backend probe: version and models over plain HTTP, to the configured host only,
without importing the ollama client (which is loaded at the first chat or compression)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arawn_core.llm.probe import probe
from tests.ollama_server import VERSION, OllamaServer, ScriptedEngine

REPO = Path(__file__).resolve().parent.parent
PROBE_PATHS = ("/api/version", "/api/tags")


@pytest.fixture
def canary():
    """A second server: nothing may ever reach it."""
    server = OllamaServer(ScriptedEngine()).start()
    try:
        yield server
    finally:
        server.stop()


async def test_version_and_models_from_a_real_server(ollama_server: OllamaServer, canary: OllamaServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, canary.url)  # a proxy from the environment would see every request
    result = await probe(ollama_server.url)
    assert result.reachable and result.version == VERSION
    assert result.models == ["scripted:latest"]
    assert sorted(r.path for r in ollama_server.bodies()) == sorted(PROBE_PATHS)
    assert canary.requests == []


async def test_host_without_scheme_and_with_a_path_prefix(ollama_server: OllamaServer) -> None:
    assert (await probe(f"127.0.0.1:{ollama_server.port}")).reachable
    behind = await probe(f"{ollama_server.url}/ollama")  # a prefix is kept: this server has none
    assert not behind.reachable and "HTTP 404" in behind.detail and "/ollama/api/" in behind.detail


async def test_refused_port_is_unreachable_at_once(dead_ollama_url: str) -> None:
    started = time.monotonic()
    result = await probe(dead_ollama_url)
    assert not result.reachable and result.models == []
    assert result.detail == f"cannot connect to {dead_ollama_url}: connection refused"
    assert time.monotonic() - started < 2.0  # refused, not timed out (generous: shared machine)


async def test_a_redirect_is_reported_not_followed(ollama_server: OllamaServer) -> None:
    ollama_server.fail_next(n=None, status=307, error="moved", paths=PROBE_PATHS)
    result = await probe(ollama_server.url)
    assert not result.reachable and "HTTP 307" in result.detail and "not followed" in result.detail


async def test_a_server_that_does_not_answer_is_given_up_on(ollama_server: OllamaServer) -> None:
    ollama_server.delay_next(5.0, n=None, paths=PROBE_PATHS)
    result = await probe(ollama_server.url, timeout_s=0.3)
    assert not result.reachable and result.detail == f"no answer from {ollama_server.url} within 0.3s"


async def test_something_else_listening_is_not_taken_for_ollama(ollama_server: OllamaServer) -> None:
    ollama_server.fail_next(n=None, status=200, error="hello", paths=PROBE_PATHS)  # JSON, but not Ollama's
    result = await probe(ollama_server.url)
    assert not result.reachable and "did not answer like Ollama" in result.detail


def _run(code: str, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                       "PYTHONPATH": str(REPO),
                                                       "XDG_CONFIG_HOME": str(tmp_path / "config"),
                                                       "XDG_DATA_HOME": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_doctor_info_comes_from_the_probe_without_the_client(ollama_server: OllamaServer, tmp_path: Path) -> None:
    """`core.backend_info()` (doctor, the status line) before any chat: the probe, no ollama/httpx import."""
    out = _run(f"""
        import asyncio, json, sys
        from arawn_core.config import parse_settings
        from arawn_core.core import ArawnCore
        async def main():
            settings = parse_settings('[llm]\\nbackend = "ollama"\\nhost = "{ollama_server.url}"\\n', "t.toml")
            core = await ArawnCore.open(settings.with_data_dir({str(tmp_path / 'd')!r}))
            info = await core.backend_info()
            await core.close(end_sessions=False)
            return info
        info = asyncio.run(main())
        print(json.dumps({{"reachable": info.reachable, "models": info.models, "detail": info.detail,
                          "loaded": sorted(m for m in ("ollama", "httpx", "httpcore") if m in sys.modules)}}))
    """, tmp_path)
    assert out["reachable"] and out["models"] == ["scripted:latest"]
    assert 'chosen by [llm] backend = "ollama"' in out["detail"]
    assert out["loaded"] == []


def test_tui_status_line_is_complete_without_the_client(ollama_server: OllamaServer, tmp_path: Path) -> None:
    """The status line says the backend is up, which model, its context and the queue, and the
    ollama client (and httpx) were never imported: the first chat imports them."""
    out = _run(f"""
        import asyncio, json, sys
        from arawn_core.config import parse_settings
        from arawn_tui.factory import create_app
        settings = parse_settings('[llm]\\nbackend = "ollama"\\nhost = "{ollama_server.url}"\\nmodel = "scripted"\\n',
                                  "t.toml").with_data_dir({str(tmp_path / 'd')!r})
        async def main():
            app = create_app(settings)
            async with app.run_test(size=(160, 40)) as pilot:
                for _ in range(1500):
                    screen = getattr(app, "main_screen", None)
                    if screen is not None and screen.is_attached and screen.status.info is not None \\
                            and screen.status.info.reachable:
                        break
                    await asyncio.sleep(0.01)
                await pilot.pause()
                line = str(screen.status.render())
                await app.action_quit()
            return line
        line = asyncio.run(main())
        print(json.dumps({{"line": line,
                          "loaded": sorted(m for m in ("ollama", "httpx", "httpcore") if m in sys.modules)}}))
    """, tmp_path)
    # the server's context too (POST /api/show, read the way the full backend reads it)
    assert f"● ollama · {ollama_server.url} · model scripted · ctx 8192 (configured; server's 131072) · queue 0" \
        in out["line"], out["line"]
    assert "not installed" not in out["line"]
    assert out["loaded"] == []


async def test_the_server_context_is_read_like_the_full_backend_reads_it(ollama_server: OllamaServer) -> None:
    from arawn_core.llm.probe import show_context
    from arawn_core.llm.server_context import from_ollama_show

    found = await show_context(ollama_server.url, "scripted")
    assert found is not None and found.size == ollama_server.engine.context_length
    assert found == from_ollama_show({"scripted.context_length": ollama_server.engine.context_length}, None)
    assert [r.path for r in ollama_server.bodies()] == ["/api/show"]
    assert ollama_server.bodies()[0]["model"] == "scripted"
    assert await show_context(ollama_server.url, "no-such-model") is None  # 404: not said
