"""The installed `arawn` command in a real terminal (tmux), against a local Ollama-protocol server.

Type, see the reply stream in, end the session, see the summary: the way a person uses it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TMUX = shutil.which("tmux")
ARAWN = shutil.which("arawn")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", "arawn-e2e", *args], check=True, capture_output=True, text=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared on screen; last screen:\n{shown}")


@pytest.fixture
def model_server():
    proc = subprocess.Popen([sys.executable, "-m", "tests.ollama_server", "--port", "0", "--engine", "scripted"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    url = line.split("listening on ")[1].strip()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_type_reply_end_session_summary_in_a_real_terminal(tmp_path: Path, model_server: str) -> None:
    assert TMUX, "tmux is required (apt-get install tmux)"
    assert ARAWN, "the arawn command is not installed (pip install -e .)"
    cfg = tmp_path / "arawn.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nhost = "{model_server}"\nmodel = "scripted"\n')
    data = tmp_path / "data"
    session = "e2e"
    tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "40")
    tmux("set-option", "-t", session, "window-size", "manual")
    tmux("resize-window", "-t", session, "-x", "150", "-y", "40")
    tmux("send-keys", "-t", session, f"clear; TERM=xterm-256color {ARAWN} --config {cfg} --data-dir {data}; echo arawn-exited-$?", "Enter")
    try:
        wait_for(session, "No workstreams yet")
        wait_for(session, "model scripted")  # the status line names backend and model
        tmux("send-keys", "-t", session, "C-n")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "Garden plans", "Enter")
        wait_for(session, "Garden plans")
        time.sleep(0.5)
        tmux("send-keys", "-t", session, "Hello there MARKER-tomato what should I plant", "Enter")
        wait_for(session, "Noted. MARKER-tomato")  # the reply, streamed from the server
        tmux("send-keys", "-t", session, "and when MARKER-spring comes", "Enter")
        shown = wait_for(session, "Noted. MARKER-tomato MARKER-spring")
        assert "Hello there MARKER-tomato what should I plant" in shown  # nothing typed was lost
        tmux("send-keys", "-t", session, "C-e")
        shown = wait_for(session, "compression: done")
        assert "Workstream summary" in shown and "MARKER-spring" in shown
        tmux("send-keys", "-t", session, "C-q")
        wait_for(session, "arawn-exited-0")  # quits cleanly, exit code 0
    finally:
        subprocess.run(["tmux", "-L", "arawn-e2e", "kill-server"], capture_output=True)
    # what the screen showed is what was stored
    out = subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(cfg), "--data-dir",
                          str(data), "--json", "ws", "show", "Garden plans"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    doc = json.loads(out.stdout)
    assert doc["summary"] and "MARKER-tomato" in doc["summary"]["text"]
    assert [s["turn_count"] for s in doc["sessions"]] == [2]
