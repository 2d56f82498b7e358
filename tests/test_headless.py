"""The scripting contract: commands, --json, exit codes, over real files and real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arawn_tui.headless import run

REPO = Path(__file__).resolve().parents[1]


def cli(capsys, data_dir: Path, *argv: str, backend=None) -> tuple[int, str, str]:
    code = run(["--data-dir", str(data_dir), *argv], backend=backend)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_json(capsys, data_dir: Path, *argv: str, backend=None):
    code, out, err = cli(capsys, data_dir, "--json", *argv, backend=backend)
    assert code == 0, err
    return json.loads(out)


def test_ws_create_list_show_archive(capsys, data_dir: Path, fake_backend) -> None:
    code, out, _ = cli(capsys, data_dir, "ws", "create", "Thesis", "--tag", "phd", backend=fake_backend)
    assert code == 0
    ws_id = out.strip()
    listing = cli_json(capsys, data_dir, "ws", "list", backend=fake_backend)
    assert [(w["id"], w["title"], w["tags"], w["session_count"]) for w in listing] == [(ws_id, "Thesis", ["phd"], 0)]
    shown = cli_json(capsys, data_dir, "ws", "show", "thesis", backend=fake_backend)
    assert shown["id"] == ws_id and shown["sessions"] == [] and shown["summary"] is None
    cli_json(capsys, data_dir, "ws", "archive", ws_id, backend=fake_backend)
    assert cli_json(capsys, data_dir, "ws", "list", backend=fake_backend) == []
    assert len(cli_json(capsys, data_dir, "ws", "list", "--all", backend=fake_backend)) == 1


def test_unknown_workstream_is_exit_2_one_line(capsys, data_dir: Path, fake_backend) -> None:
    code, out, err = cli(capsys, data_dir, "ws", "show", "nope", backend=fake_backend)
    assert code == 2 and out == "" and err.count("\n") == 1 and "no workstream matches 'nope'" in err


def test_chat_end_compress_summary_flow(capsys, data_dir: Path, fake_backend, monkeypatch) -> None:
    cli(capsys, data_dir, "ws", "create", "Flow", backend=fake_backend)
    for text in ["first MARKER-alpha", "second", "third MARKER-omega"]:
        code, out, err = cli(capsys, data_dir, "chat", "Flow", text, backend=fake_backend)
        assert code == 0, err
        assert out.strip()  # the streamed reply
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("from stdin\n"))
    assert cli(capsys, data_dir, "chat", "Flow", "-", backend=fake_backend)[0] == 0
    sessions = cli_json(capsys, data_dir, "session", "list", "Flow", backend=fake_backend)
    assert len(sessions) == 1 and sessions[0]["turn_count"] == 4 and sessions[0]["active"]
    ended = cli_json(capsys, data_dir, "session", "end", "Flow", backend=fake_backend)
    assert ended["ended_at"] and ended["compression"] == "none"
    jobs = cli_json(capsys, data_dir, "jobs", "list", backend=fake_backend)
    assert [(j["kind"], j["state"]) for j in jobs] == [("session", "pending")]
    summary = cli_json(capsys, data_dir, "compress", "Flow", backend=fake_backend)
    assert "MARKER-alpha" in summary["text"] and "MARKER-omega" in summary["text"]
    assert summary["provenance"]["llm_calls"] >= 1 and summary["covers"] == [sessions[0]["id"]]
    code, out, _ = cli(capsys, data_dir, "summary", "Flow", "--session", sessions[0]["id"], backend=fake_backend)
    assert code == 0 and "MARKER-alpha" in out
    listing = cli_json(capsys, data_dir, "ws", "list", backend=fake_backend)
    assert listing[0]["compression"] == "done"


def test_session_end_without_active_session(capsys, data_dir: Path, fake_backend) -> None:
    cli(capsys, data_dir, "ws", "create", "Idle", backend=fake_backend)
    code, _, err = cli(capsys, data_dir, "session", "end", "Idle", backend=fake_backend)
    assert code == 2 and "no active session" in err


def test_summary_missing_is_exit_1(capsys, data_dir: Path, fake_backend) -> None:
    cli(capsys, data_dir, "ws", "create", "Empty", backend=fake_backend)
    code, _, err = cli(capsys, data_dir, "summary", "Empty", backend=fake_backend)
    assert code == 1 and "no summary" in err


def test_reindex_and_doctor_json(capsys, data_dir: Path, fake_backend) -> None:
    cli(capsys, data_dir, "ws", "create", "R", backend=fake_backend)
    cli(capsys, data_dir, "chat", "R", "hello", backend=fake_backend)
    counts = cli_json(capsys, data_dir, "reindex", backend=fake_backend)
    assert counts["workstreams"] == 1 and counts["messages"] == 2
    code, out, _ = cli(capsys, data_dir, "--json", "doctor", backend=fake_backend)
    doc = json.loads(out)
    assert code == 1 and doc["reachable"] is True and doc["model_present"] is False  # llama3.2 not served
    assert doc["data_dir_mode"] == "0o700" and doc["num_ctx"] == 8192
    from tests.fakes import FakeBackend

    doc = cli_json(capsys, data_dir, "doctor", backend=FakeBackend(models=["llama3.2:latest"]))
    assert doc["model_present"] is True
    code, out, _ = cli(capsys, data_dir, "doctor", backend=fake_backend)
    assert "ollama pull llama3.2" in out


def _subprocess_cli(data_dir: Path, host: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OLLAMA_HOST": host}
    env.pop("ARAWN_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--data-dir", str(data_dir), *argv],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
                          input=stdin if stdin is not None else "")


def test_real_http_chat_and_compress_through_the_installed_entry(data_dir: Path, ollama_server) -> None:
    """The CLI in its own process, the real ollama client, a real HTTP server."""
    cfg = data_dir.parent / "cfg.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nmodel = "{ollama_server.engine.name}"\nnum_ctx = 2048\n'
                   "[workstream.compression]\nmax_summary_tokens = 256\n")
    host = ollama_server.url
    p = _subprocess_cli(data_dir, host, "--config", str(cfg), "ws", "create", "HTTP")
    assert p.returncode == 0, p.stderr
    for text in ["hello MARKER-one " + "words " * 50, "more", "and more", "last MARKER-two"]:
        p = _subprocess_cli(data_dir, host, "--config", str(cfg), "chat", "HTTP", text)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip()
    p = _subprocess_cli(data_dir, host, "--config", str(cfg), "session", "end", "HTTP", "--wait")
    assert p.returncode == 0, p.stderr
    p = _subprocess_cli(data_dir, host, "--config", str(cfg), "--json", "summary", "HTTP")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert "MARKER-one" in summary["text"] and "MARKER-two" in summary["text"]
    chats = [r for r in ollama_server.requests if r.path == "/api/chat"]
    assert chats and all(r["options"]["num_ctx"] == 2048 and "num_predict" in r["options"] for r in chats)


def test_backend_unreachable_exit_3_and_work_stays_queued(data_dir: Path, dead_ollama_url) -> None:
    cfg = data_dir.parent / "cfg.toml"
    cfg.write_text('[llm]\nbackend = "ollama"\n[workstream.compression]\nmin_messages = 0\nverbatim_max_chars = 0\n')
    p = _subprocess_cli(data_dir, dead_ollama_url, "--config", str(cfg), "ws", "create", "Down")
    assert p.returncode == 0
    p = _subprocess_cli(data_dir, dead_ollama_url, "--config", str(cfg), "chat", "Down", "hello")
    assert p.returncode == 3 and "is `ollama serve` running?" in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0
    p = _subprocess_cli(data_dir, dead_ollama_url, "--config", str(cfg), "session", "end", "Down")
    assert p.returncode == 0
    p = _subprocess_cli(data_dir, dead_ollama_url, "--config", str(cfg), "compress", "Down")
    assert p.returncode == 3, p.stderr
    assert "stays queued" in p.stderr
    p = _subprocess_cli(data_dir, dead_ollama_url, "--config", str(cfg), "--json", "jobs", "list")
    jobs = json.loads(p.stdout)
    assert [j["state"] for j in jobs] == ["pending"] and "unreachable" in jobs[0]["last_error"]
    # the user's message was stored although the reply failed
    p = _subprocess_cli(data_dir, dead_ollama_url, "--config", str(cfg), "--json", "session", "list", "Down")
    assert json.loads(p.stdout)[0]["turn_count"] == 1
