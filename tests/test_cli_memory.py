"""The memory commands of `arawn --headless`: output, --json and exit codes, on real files."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from tests.test_headless import cli, cli_json


def make_ws(capsys, data_dir: Path, backend, title: str = "Mem") -> str:
    code, out, err = cli(capsys, data_dir, "ws", "create", title, backend=backend)
    assert code == 0, err
    return out.strip()


def one_session(capsys, data_dir: Path, backend, ws: str, text: str) -> None:
    assert cli(capsys, data_dir, "chat", ws, text, backend=backend)[0] == 0
    assert cli(capsys, data_dir, "session", "end", ws, "--wait", backend=backend)[0] == 0


def test_pin_pins_unpin(capsys, data_dir: Path, fake_backend, monkeypatch) -> None:
    ws = make_ws(capsys, data_dir, fake_backend)
    code, out, err = cli(capsys, data_dir, "pin", "Mem", "Remember the ACME-42 account", backend=fake_backend)
    assert code == 0 and err == ""
    pin_id = out.strip()
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\nsecond line\n"))
    second = cli_json(capsys, data_dir, "pin", ws, "-", backend=fake_backend)
    assert second["text"] == "from stdin\nsecond line" and second["budget"]["over_budget"] is False
    listing = cli_json(capsys, data_dir, "pins", "Mem", backend=fake_backend)
    assert [p["id"] for p in listing["pins"]] == [pin_id, second["id"]]
    code, out, _ = cli(capsys, data_dir, "pins", "Mem", backend=fake_backend)
    assert "ACME-42" in out and "second line" in out
    assert cli_json(capsys, data_dir, "unpin", "Mem", pin_id[:8], backend=fake_backend)["id"] == pin_id
    code, out, err = cli(capsys, data_dir, "unpin", "Mem", pin_id, backend=fake_backend)
    assert code == 2 and out == "" and err.count("\n") == 1 and "no pin" in err
    code, _, err = cli(capsys, data_dir, "pin", "Mem", "   ", backend=fake_backend)
    assert code == 2 and "cannot be empty" in err
    shown = cli_json(capsys, data_dir, "ws", "show", "Mem", backend=fake_backend)
    assert [p["text"] for p in shown["pins"]] == ["from stdin\nsecond line"]


def test_chat_warns_when_pins_exceed_their_budget(capsys, tmp_path: Path, data_dir: Path, fake_backend) -> None:
    config = tmp_path / "arawn.toml"
    config.write_text("[workstream]\npin_budget_tokens = 80\n")
    base = ["--config", str(config)]
    assert cli(capsys, data_dir, *base, "ws", "create", "Tight", backend=fake_backend)[0] == 0
    cli(capsys, data_dir, *base, "pin", "Tight", "small", backend=fake_backend)
    code, _, err = cli(capsys, data_dir, *base, "pin", "Tight", "big " * 200, backend=fake_backend)
    assert code == 0 and "1 of 2 pinned notes left out" in err
    code, out, err = cli(capsys, data_dir, *base, "chat", "Tight", "hello", backend=fake_backend)
    assert code == 0 and out.strip() and "left out of the context" in err
    assert "big big" not in fake_backend.requests[-1].system and "small" in fake_backend.requests[-1].system


def test_summary_set_history_diff_revert(capsys, tmp_path: Path, data_dir: Path, fake_backend, monkeypatch) -> None:
    make_ws(capsys, data_dir, fake_backend)
    one_session(capsys, data_dir, fake_backend, "Mem", "first MARKER-one")
    v1 = cli_json(capsys, data_dir, "summary", "Mem", backend=fake_backend)["text"]
    edit = tmp_path / "edit.md"
    edit.write_text(v1 + "\n- mine: keep this line\n", encoding="utf-8")
    code, out, err = cli(capsys, data_dir, "summary", "Mem", "--set", str(edit), backend=fake_backend)
    assert code == 0 and "version 2 (yours); 1 line(s) protected" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("typed in\n"))
    v3 = cli_json(capsys, data_dir, "summary", "Mem", "--set", "-", backend=fake_backend)
    assert (v3["number"], v3["author"], v3["text"]) == (3, "user", "typed in\n")
    history = cli_json(capsys, data_dir, "summary", "Mem", "--history", backend=fake_backend)
    assert [(h["number"], h["author"]) for h in history] == [(1, "model"), (2, "user"), (3, "user")]
    assert "text" not in history[0] and len(history[0]["sessions_covered"]) == 1
    code, out, _ = cli(capsys, data_dir, "summary", "Mem", "--history", backend=fake_backend)
    assert code == 0 and "user" in out and out.splitlines()[0].split()[:2] == ["N", "AUTHOR"]

    code, out, _ = cli(capsys, data_dir, "summary", "Mem", "--diff", "2", "3", backend=fake_backend)
    assert code == 0 and "\x1b[" not in out  # not a terminal: no colour
    assert out.startswith("--- version 2 (user)\n+++ version 3 (user)\n") and "+typed in\n" in out
    assert "-- mine: keep this line\n" in out
    assert cli_json(capsys, data_dir, "summary", "Mem", "--diff", "2", "3", backend=fake_backend)["diff"] == out

    reverted = cli_json(capsys, data_dir, "summary", "Mem", "--revert", "1", backend=fake_backend)
    assert (reverted["number"], reverted["author"], reverted["provenance"]["reverted_from"]) == (4, "revert", 1)
    code, out, _ = cli(capsys, data_dir, "summary", "Mem", backend=fake_backend)
    assert out == v1 + "\n"
    assert cli_json(capsys, data_dir, "summary", "Mem", "--version", "2", backend=fake_backend)["text"] == edit.read_text()

    for argv, needle in [(["--diff", "1", "9"], "no summary version 9"),
                         (["--revert", "4"], "already the current summary"),
                         (["--set", str(tmp_path / "missing.md")], "no such file"),
                         (["--history", "--revert", "1"], "not allowed with"),
                         (["--history", "--session", "x"], "not with --session")]:
        code, out, err = cli(capsys, data_dir, "summary", "Mem", *argv, backend=fake_backend)
        assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, (argv, err)
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"caf\xe9\n")
    code, _, err = cli(capsys, data_dir, "summary", "Mem", "--set", str(bad), backend=fake_backend)
    assert code == 2 and "not UTF-8" in err and str(bad) in err
    assert len(cli_json(capsys, data_dir, "summary", "Mem", "--history", backend=fake_backend)) == 4  # nothing lost


def test_compress_with_focus_records_it(capsys, data_dir: Path, fake_backend) -> None:
    make_ws(capsys, data_dir, fake_backend)
    one_session(capsys, data_dir, fake_backend, "Mem", "the budget MARKER-b")
    fake_backend.reset()
    summary = cli_json(capsys, data_dir, "compress", "Mem", "--focus", "budget numbers", backend=fake_backend)
    assert summary is not None and any("budget numbers" in r.user for r in fake_backend.ok_requests)
    history = cli_json(capsys, data_dir, "summary", "Mem", "--history", backend=fake_backend)
    assert history[-1]["provenance"]["focus"] == "budget numbers"
    code, _, err = cli(capsys, data_dir, "compress", "Mem", "--focus", "  ", backend=fake_backend)
    assert code == 2 and "--focus cannot be empty" in err


def test_ws_fork_and_session_rename(capsys, data_dir: Path, fake_backend) -> None:
    origin = make_ws(capsys, data_dir, fake_backend, "Origin")
    one_session(capsys, data_dir, fake_backend, "Origin", "Plan the garden\nwith detail")
    cli(capsys, data_dir, "pin", "Origin", "a pin", backend=fake_backend)
    code, out, _ = cli(capsys, data_dir, "ws", "fork", "Origin", "Branch", backend=fake_backend)
    assert code == 0
    fork_id = out.strip()
    shown = cli_json(capsys, data_dir, "ws", "show", fork_id, backend=fake_backend)
    assert shown["origin"]["origin_id"] == origin and shown["summary"]["text"] == cli_json(
        capsys, data_dir, "summary", "Origin", backend=fake_backend)["text"]
    assert [p["text"] for p in shown["pins"]] == ["a pin"]
    code, out, _ = cli(capsys, data_dir, "ws", "show", "Branch", backend=fake_backend)
    assert out.startswith(f"forked from Origin ({origin}) at summary version 1\n")

    sessions = cli_json(capsys, data_dir, "session", "list", "Origin", backend=fake_backend)
    assert sessions[0]["title"] == "Plan the garden"
    code, out, _ = cli(capsys, data_dir, "session", "list", "Origin", backend=fake_backend)
    assert "Plan the garden" in out
    renamed = cli_json(capsys, data_dir, "session", "rename", sessions[0]["id"], "Garden plan", backend=fake_backend)
    assert renamed["title"] == "Garden plan"
    hits = cli_json(capsys, data_dir, "search", "garden", backend=fake_backend)
    assert any(h["session_title"] == "Garden plan" for h in hits)
    code, _, err = cli(capsys, data_dir, "session", "rename", sessions[0]["id"], " ", backend=fake_backend)
    assert code == 2 and "cannot be empty" in err
    code, _, err = cli(capsys, data_dir, "ws", "fork", "Nope", "X", backend=fake_backend)
    assert code == 2 and "no workstream matches 'Nope'" in err
    counts = cli_json(capsys, data_dir, "reindex", backend=fake_backend)
    assert counts["workstreams"] == 2
    after = cli_json(capsys, data_dir, "ws", "show", fork_id, backend=fake_backend)
    assert after["origin"] == shown["origin"] and after["pins"] == shown["pins"]
    assert cli_json(capsys, data_dir, "session", "list", "Origin", backend=fake_backend)[0]["title"] == "Garden plan"


def test_pins_edits_and_focus_over_real_http_through_the_installed_entry(data_dir: Path, ollama_server) -> None:
    """The CLI in its own processes against the Ollama-protocol server: the pin is in the chat request,
    the focus and the protected line are in the compression requests, the line is in the summary."""
    from tests.test_headless import _subprocess_cli

    cfg = data_dir.parent / "cfg.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nmodel = "{ollama_server.engine.name}"\nnum_ctx = 2048\n'
                   "[workstream.compression]\nmax_summary_tokens = 256\nverbatim_max_chars = 0\n")

    def run(*argv: str, stdin: str | None = None):
        p = _subprocess_cli(data_dir, ollama_server.url, "--config", str(cfg), *argv, stdin=stdin)
        assert p.returncode == 0, p.stderr
        return p

    run("ws", "create", "HTTP")
    pin_id = run("pin", "HTTP", "-", stdin="PINNED-NOTE budget is 40k\n").stdout.strip()
    run("chat", "HTTP", "hello MARKER-one")
    chats = [r for r in ollama_server.requests if r.path == "/api/chat"]
    assert "PINNED-NOTE budget is 40k" in chats[-1]["messages"][0]["content"]
    run("session", "end", "HTTP", "--wait")
    summary = json.loads(run("--json", "summary", "HTTP").stdout)["text"]
    run("summary", "HTTP", "--set", "-", stdin=summary + "\n- USER-LINE keep the 40k budget\n")
    run("chat", "HTTP", "second session MARKER-two")
    run("session", "end", "HTTP")
    before = len(ollama_server.requests)
    run("compress", "HTTP", "--focus", "FOCUS-ON-BUDGET")
    sent = [r for r in ollama_server.requests[before:] if r.path == "/api/chat"]
    steered = [r for r in sent if "<<<DRAFT-" not in r["messages"][-1]["content"]]  # not an audit repair
    assert steered and all("FOCUS-ON-BUDGET" in r["messages"][-1]["content"] for r in steered)
    assert any("USER-LINE keep the 40k budget" in r["messages"][-1]["content"] for r in sent)  # named to keep
    final = json.loads(run("--json", "summary", "HTTP").stdout)["text"]
    assert "- USER-LINE keep the 40k budget" in final.splitlines()
    history = json.loads(run("--json", "summary", "HTTP", "--history").stdout)
    assert [h["author"] for h in history] == ["model", "user", "model"]
    assert history[-1]["provenance"]["focus"] == "FOCUS-ON-BUDGET"
    run("unpin", "HTTP", pin_id)
