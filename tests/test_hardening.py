"""Hostile and unlucky inputs (issue 15), each through the real CLI in a subprocess.

Every case runs `python -m arawn_tui --headless ...` with this checkout on
PYTHONPATH against real files (and, for the LLM cases, the real Ollama-protocol
server of tests/ollama_server.py over HTTP), and asserts what the user depends
on: one `arawn: ...` line naming the thing and what to do, no traceback, the
exit code, an end within a (generous) subprocess timeout where a hang was the
bug, and that the stored JSONL bytes did not change.

Classes: recovery of a damaged, missing or stale index and of damaged message
logs; whole-request deadlines; one line instead of a traceback for bad hosts,
configs, data dirs, read-only dirs, a locked index and out-of-range arguments;
no links followed inside the data dir and modes tightened; external text made
inert; replies that are not what they claim; small importer cases.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from arawn_core.config import parse_settings
from arawn_core.core import ArawnCore
from arawn_core.llm.base import ChatOptions
from arawn_core.llm.deadline import Deadline
from arawn_core.llm.errors import LLMTimeout
from tests.fakes import FakeBackend
from tests.lost_wal import lost_wal_copy
from tests.ollama_server import OllamaServer, ScriptedEngine

REPO = Path(__file__).resolve().parents[1]
RAW_CONTROL = "".join(chr(c) for c in [*range(0, 9), *range(11, 32), *range(0x7F, 0xA0)])


# ------------------------------------------------------------------ helpers


def arawn(tmp_path: Path, *argv: str, data: Path | None = None, config: Path | None = None,
          env: dict[str, str] | None = None, timeout: float = 90, prefix: list[str] | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, with this checkout's code, an empty home and no inherited config."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_HOST", "ARAWN_CONFIG")}
    base.update({"PYTHONPATH": str(REPO), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                 "XDG_DATA_HOME": str(home / "data")})
    base.update(env or {})
    cmd = [sys.executable, "-m", "arawn_tui", "--headless"]
    if config is not None:
        cmd += ["--config", str(config)]
    if data is not None:
        cmd += ["--data-dir", str(data)]
    p = subprocess.run([*(prefix or []), *cmd, *argv], capture_output=True, text=True, cwd=home, env=base,
                       timeout=timeout, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def one_line(p: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The process failed with `code` and exactly one stderr line, naming each of `needles`."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("arawn: "), p.stderr
    for needle in needles:
        assert needle in p.stderr, (needle, p.stderr)
    assert not any(ch in p.stderr[:-1] for ch in RAW_CONTROL), repr(p.stderr)
    return p.stderr


def stored(data: Path) -> dict[str, bytes]:
    """Every JSONL byte arawn keeps (the source of truth), by path."""
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*.jsonl"))}


def build(data: Path, spec: dict[str, list[list[str]]]) -> dict[str, str]:
    """Workstreams (title -> sessions -> message texts), made in process; returns title -> id."""
    async def go() -> dict[str, str]:
        core = await ArawnCore.open(parse_settings("").with_data_dir(data), FakeBackend())
        ids = {}
        try:
            for title, sessions in spec.items():
                ws = await core.create_workstream(title)
                ids[title] = ws.id
                for texts in sessions:
                    for i, text in enumerate(texts):
                        await core.append_message(ws.id, "user" if i % 2 == 0 else "assistant", text)
                    await core.end_session(ws.id)
        finally:
            await core.close(end_sessions=False)
        return ids

    return asyncio.run(go())


def ws_json(tmp_path: Path, data: Path, *extra: str) -> list[dict]:
    p = arawn(tmp_path, "--json", "ws", "list", "--all", *extra, data=data)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def transcript(tmp_path: Path, data: Path, title: str) -> tuple[list[str], str]:
    show = arawn(tmp_path, "--json", "ws", "show", title, data=data)
    assert show.returncode == 0, show.stderr
    texts = []
    err = show.stderr
    for s in json.loads(show.stdout)["sessions"]:
        p = arawn(tmp_path, "--json", "session", "show", s["id"], data=data)
        assert p.returncode == 0, p.stderr
        texts += [m["content"] for m in json.loads(p.stdout)]
        err += p.stderr
    return texts, err


def server_config(tmp_path: Path, host: str, *, timeout: float = 30.0, name: str = "arawn.toml",
                  extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(f'[llm]\nbackend = "ollama"\nhost = "{host}"\nmodel = "scripted"\nnum_ctx = 2048\n'
                    f"request_timeout_s = {timeout}\nmax_reply_tokens = 256\n"
                    "[workstream.compression]\nretry_base_s = 0.01\nretry_max_s = 0.05\nmax_attempts = 2\n"
                    f"max_summary_tokens = 256\nmin_messages = 0\nverbatim_max_chars = 0\n{extra}")
    return path


# ------------------------------------------------------------------ 1. recovery


def test_bad_event_lines_are_skipped_per_workstream_and_the_rest_rebuilt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1", "a2"]], "Beta": [["b1", "b2"], ["b3"]], "Gamma": [["g1"]]})
    events = data / "workstreams" / ids["Beta"] / "events.jsonl"
    with events.open("ab") as fh:
        fh.write(b"garbage {\n")
        fh.write(b'{"type": "session_end"}\n')  # the keys a session end needs are missing
        fh.write(json.dumps({"type": "workstream", "id": ids["Beta"], "title": 5}).encode() + b"\n")
        fh.write(json.dumps({"type": "summary", "id": "x"}).encode() + b"\n")
    bad_from = events.read_bytes().count(b"\n") - 3
    before = stored(data)
    p = arawn(tmp_path, "reindex", data=data)
    assert p.returncode == 0, p.stderr
    for n in range(bad_from, bad_from + 4):
        assert f"events.jsonl: line {n}:" in p.stderr, p.stderr
    assert "3 workstreams" in p.stdout
    assert sorted(w["title"] for w in ws_json(tmp_path, data)) == ["Alpha", "Beta", "Gamma"]
    assert transcript(tmp_path, data, "Beta")[0] == ["b1", "b2", "b3"]
    assert stored(data) == before


def test_a_workstream_without_a_readable_snapshot_keeps_its_messages_listed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1"]], "Lost": [["l1", "l2"]]})
    (data / "workstreams" / ids["Lost"] / "events.jsonl").write_bytes(b"\x00\x01 not json\n")
    p = arawn(tmp_path, "reindex", data=data)
    assert p.returncode == 0 and "no readable workstream record" in p.stderr, p.stderr
    titles = {w["id"]: w["title"] for w in ws_json(tmp_path, data)}
    assert titles[ids["Alpha"]] == "Alpha" and titles[ids["Lost"]].startswith("(recovered ")
    assert transcript(tmp_path, data, ids["Lost"])[0] == ["l1", "l2"]


def test_a_workstream_that_cannot_be_indexed_is_reported_and_ws_list_does_not_exit_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1"]], "Beta": [["b1"]]})
    messages = data / "workstreams" / ids["Beta"] / "messages.jsonl"
    messages.unlink()
    messages.mkdir()  # unreadable as a file: indexing this workstream fails, the other must not
    p = arawn(tmp_path, "reindex", data=data)
    assert p.returncode == 1 and f"workstream {ids['Beta']} could not be indexed" in p.stderr, p.stderr
    listing = arawn(tmp_path, "ws", "list", data=data)
    assert "Alpha" in listing.stdout
    assert listing.returncode == 1 and "could not be indexed" in listing.stderr  # never silently incomplete


def test_a_deleted_index_is_noticed_and_rebuilt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]], "Beta": [["b1"]]})
    before = stored(data)
    for suffix in ("", "-wal", "-shm"):
        Path(str(data / "arawn.db") + suffix).unlink(missing_ok=True)
    p = arawn(tmp_path, "ws", "list", data=data)
    assert p.returncode == 0 and "Alpha" in p.stdout and "Beta" in p.stdout, p
    assert "missing 2 workstream" in p.stderr
    assert transcript(tmp_path, data, "Alpha")[0] == ["a1", "a2"]
    assert stored(data) == before


def test_an_index_older_than_its_files_catches_up(tmp_path: Path) -> None:
    """A lost WAL: the index is the last checkpoint; whatever was written after it is in the files only."""
    copy = lost_wal_copy(tmp_path)
    titles = sorted(w["title"] for w in ws_json(tmp_path, copy))
    assert titles == ["Alpha renamed", "Born later"]
    assert transcript(tmp_path, copy, "Alpha renamed")[0] == ["a1", "after the checkpoint"]


def test_an_indexed_workstream_whose_directory_is_gone_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1"]], "Gone": [["g1"]]})
    shutil.rmtree(data / "workstreams" / ids["Gone"])
    p = arawn(tmp_path, "ws", "list", data=data)
    assert p.returncode == 0 and "have no directory" in p.stderr and "reindex" in p.stderr, p.stderr
    assert arawn(tmp_path, "reindex", data=data).returncode == 0
    assert [w["title"] for w in ws_json(tmp_path, data)] == ["Alpha"]


@pytest.mark.parametrize("damage", ["whole_file", "inner_pages", "dropped_table"])
def test_a_malformed_index_is_moved_aside_and_rebuilt(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]], "Beta": [["b" + str(i) for i in range(200)]]})
    db = data / "arawn.db"
    raw = bytearray(db.read_bytes())
    if damage == "whole_file":
        raw[:] = b"this is not a database " * (len(raw) // 23 + 1)
    elif damage == "dropped_table":
        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE sessions")
        conn.commit()
        conn.close()
        raw = bytearray(db.read_bytes())
    else:
        page = int.from_bytes(raw[16:18], "big") or 65536
        for at in range(page, len(raw), page):  # every page but the header page
            raw[at:at + 64] = b"\xff" * 64
    db.write_bytes(bytes(raw))
    before = stored(data)
    p = arawn(tmp_path, "ws", "list", data=data)
    assert p.returncode == 0 and "Alpha" in p.stdout and "Beta" in p.stdout, (p.stdout, p.stderr)
    assert "was damaged; moved it to arawn.db.corrupt-" in p.stderr
    assert list(data.glob("arawn.db.corrupt-*"))
    assert transcript(tmp_path, data, "Beta")[0] == ["b" + str(i) for i in range(200)]
    assert stored(data) == before


def test_a_garbage_line_in_a_message_log_is_named_and_the_rest_is_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["m0", "m1", "m2", "m3"]]})
    path = data / "workstreams" / ids["Alpha"] / "messages.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"#" * (len(lines[1]) - 1) + b"\n"  # same length: the index still points at it
    path.write_bytes(b"".join(lines))
    texts, err = transcript(tmp_path, data, "Alpha")
    assert texts == ["m0", "m2", "m3"]
    assert f"{path}: line 2:" in err


def test_a_deleted_line_in_a_message_log_leaves_the_others_readable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["m0", "m1", "m2", "m3"]]})
    path = data / "workstreams" / ids["Alpha"] / "messages.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1] + lines[2:]))  # offsets after it all shift
    texts, err = transcript(tmp_path, data, "Alpha")
    assert texts == ["m0", "m2", "m3"]
    assert "messages.jsonl: line 2:" in err and "reindex" in err
    p = arawn(tmp_path, "reindex", data=data)
    assert p.returncode == 0
    texts, err = transcript(tmp_path, data, "Alpha")
    assert texts == ["m0", "m2", "m3"] and "line" not in err


def test_a_duplicated_message_line_counts_once_after_reindex(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["m0", "m1", "m2"]]})
    path = data / "workstreams" / ids["Alpha"] / "messages.jsonl"
    first = path.read_bytes().splitlines(keepends=True)[0]
    with path.open("ab") as fh:
        fh.write(first)
    assert arawn(tmp_path, "reindex", data=data).returncode == 0
    [session] = json.loads(arawn(tmp_path, "--json", "ws", "show", "Alpha", data=data).stdout)["sessions"]
    assert (session["message_count"], session["turn_count"]) == (3, 2)
    assert transcript(tmp_path, data, "Alpha")[0] == ["m0", "m1", "m2"]


# ------------------------------------------------------------------ 2. requests are bounded


async def test_a_deadline_bounds_a_whole_stream_of_quick_steps() -> None:
    async def ticks():
        while True:
            await asyncio.sleep(0.05)  # never slow enough for a per-read timeout
            yield "tick"

    deadline = Deadline(0.5, "http://slow")
    got = []
    with pytest.raises(LLMTimeout, match="timed out"):
        async for item in deadline.stream(ticks()):
            got.append(item)
    assert 3 < len(got) < 40


def test_a_server_sending_a_token_a_second_is_cut_at_the_deadline(tmp_path: Path,
                                                                  ollama_server: OllamaServer) -> None:
    data = tmp_path / "data"
    cfg = server_config(tmp_path, ollama_server.url, timeout=2.0)
    assert arawn(tmp_path, "ws", "create", "Slow", data=data, config=cfg).returncode == 0
    ollama_server.trickle_next(1, interval=0.25, forever=True)
    p = arawn(tmp_path, "chat", "Slow", "hello there", data=data, config=cfg, timeout=60)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "timed out" in p.stderr, p.stderr
    assert "request_timeout_s" in p.stderr
    assert "tick" in p.stdout  # what streamed before the deadline was shown
    texts, _ = transcript(tmp_path, data, "Slow")
    assert texts[0] == "hello there" and texts[1].startswith("tick")  # kept, marked interrupted


def test_a_body_a_byte_at_a_time_is_cut_and_the_job_retried_like_a_timeout(tmp_path: Path,
                                                                          ollama_server: OllamaServer) -> None:
    data = tmp_path / "data"
    cfg = server_config(tmp_path, ollama_server.url, timeout=1.5)
    build(data, {"Slow": [["MARKER-one said this", "and that", "MARKER-two"]]})
    ollama_server.trickle_next(None, interval=0.2)
    p = arawn(tmp_path, "compress", "Slow", data=data, config=cfg, timeout=90)
    assert p.returncode == 1 and "will retry" in p.stderr and "timed out" in p.stderr.splitlines()[-1], p.stderr
    jobs = json.loads(arawn(tmp_path, "--json", "jobs", "list", data=data, config=cfg).stdout)
    assert any(j["attempts"] == j["max_attempts"] >= 2 and j["state"] == "failed" and "timed out" in j["last_error"] for j in jobs), jobs
    ollama_server.clear_faults()
    p = arawn(tmp_path, "compress", "Slow", data=data, config=cfg, timeout=90)
    assert p.returncode == 0 and "MARKER-one" in p.stdout and "MARKER-two" in p.stdout, p.stderr


# ------------------------------------------------------------------ 3. one line, not a traceback


@pytest.mark.parametrize("value", ["http://127.0.0.1:99999", "localhost:abc", "http://[::1", "gopher://x:1",
                                   "http:// spaced:1", "http://:11434", "http://h:1/?q=1"])
def test_a_malformed_ollama_host_is_one_line(tmp_path: Path, value: str) -> None:
    p = arawn(tmp_path, "ws", "list", data=tmp_path / "data", env={"OLLAMA_HOST": value})
    one_line(p, 2, "$OLLAMA_HOST", "is not a valid host", "unset it")
    assert not (tmp_path / "data").exists()


def test_a_malformed_ollama_host_is_ignored_when_the_config_names_the_host(tmp_path: Path,
                                                                         ollama_server: OllamaServer) -> None:
    """The ollama package reads $OLLAMA_HOST at import time; a bad one must not break a configured host."""
    data = tmp_path / "data"
    cfg = server_config(tmp_path, ollama_server.url)
    env = {"OLLAMA_HOST": "http://127.0.0.1:99999"}
    assert arawn(tmp_path, "ws", "create", "W", data=data, config=cfg, env=env).returncode == 0
    p = arawn(tmp_path, "chat", "W", "hi MARKER-x", data=data, config=cfg, env=env)
    assert p.returncode == 0 and "MARKER-x" in p.stdout, p.stderr


def test_a_data_dir_that_is_a_file_or_under_one_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    one_line(arawn(tmp_path, "ws", "list", data=blocker), 2, str(blocker), "is a file, not a directory")
    one_line(arawn(tmp_path, "ws", "list", data=blocker / "sub" / "data"), 2, f"because {blocker} is a file")
    assert blocker.read_text() == "a file"


def test_a_directory_given_as_config_is_one_line(tmp_path: Path) -> None:
    one_line(arawn(tmp_path, "ws", "list", data=tmp_path / "data", config=tmp_path), 2, "is a directory",
             "--config")


@pytest.mark.parametrize("limit", ["-5", "0", str(10 ** 12), "many", "1e3"])
def test_out_of_range_numbers_on_the_command_line_are_one_line(tmp_path: Path, limit: str) -> None:
    data = tmp_path / "data"
    build(data, {"A": [["needle"]]})
    one_line(arawn(tmp_path, "search", "needle", "--limit", limit, data=data), 2, "--limit")


def _read_only(data: Path) -> list[str] | None:
    """A prefix that runs the CLI with `data` read-only: a read-only bind mount (as root, where
    permissions do not bind), else plain modes. None if neither can be arranged here."""
    if os.geteuid() != 0:
        for p in [data, *data.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        return []
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind '{data}' '{data}' && "
                            f"mount -o remount,bind,ro '{data}'"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", f"mount --bind '{data}' '{data}' && mount -o remount,bind,ro '{data}'"
            ' && exec "$0" "$@"']


def test_reads_work_on_a_read_only_data_dir_and_writes_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]]})
    for p in data.rglob("*"):  # loose modes arawn would tighten if it could
        p.chmod(0o644 if p.is_file() else 0o755)
    before = stored(data)
    prefix = _read_only(data)
    if prefix is None:
        pytest.skip("cannot make a read-only directory here (root without mount namespaces)")
    p = arawn(tmp_path, "ws", "list", data=data, prefix=prefix)
    assert p.returncode == 0 and "Alpha" in p.stdout, (p.stdout, p.stderr)
    p = arawn(tmp_path, "--json", "ws", "show", "Alpha", data=data, prefix=prefix)
    assert p.returncode == 0, p.stderr
    [session] = json.loads(p.stdout)["sessions"]
    p = arawn(tmp_path, "session", "show", session["id"], data=data, prefix=prefix)
    assert p.returncode == 0 and "a2" in p.stdout
    one_line(arawn(tmp_path, "ws", "create", "New", data=data, prefix=prefix), 2, "read-only")
    one_line(arawn(tmp_path, "ws", "rename", "Alpha", "B", data=data, prefix=prefix), 2, "read-only")
    assert stored(data) == before


def test_an_index_locked_past_the_busy_timeout_is_one_line_and_reads_go_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    holder = sqlite3.connect(data / "arawn.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # as a long reindex would
        env = {"ARAWN_BUSY_TIMEOUT_S": "1"}
        p = arawn(tmp_path, "ws", "list", data=data, env=env, timeout=60)
        assert p.returncode == 0 and "Alpha" in p.stdout, p.stderr
        one_line(arawn(tmp_path, "ws", "rename", "Alpha", "B", data=data, env=env, timeout=60), 1,
                 "kept the index locked", "try again")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert arawn(tmp_path, "ws", "rename", "Alpha", "B", data=data).returncode == 0
    assert stored(data) != before  # now it went through (the event is written once)


def test_a_num_ctx_too_small_for_the_reply_names_max_reply_tokens(tmp_path: Path) -> None:
    cfg = tmp_path / "tight.toml"
    cfg.write_text("[llm]\nnum_ctx = 512\nmax_reply_tokens = 500\n")
    one_line(arawn(tmp_path, "ws", "list", data=tmp_path / "data", config=cfg), 2, "llm.max_reply_tokens",
             "raise llm.num_ctx")


# ------------------------------------------------------------------ 4. files outside the data dir


def test_a_symlinked_message_log_is_refused_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1"]]})
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b"")
    os.chmod(outside, 0o644)
    log = data / "workstreams" / ids["Alpha"] / "messages.jsonl"
    log.unlink()
    log.symlink_to(outside)
    conv = tmp_path / "conv.jsonl"
    conv.write_text(json.dumps({"messages": [{"role": "user", "content": "secret"}]}) + "\n")
    p = arawn(tmp_path, "import", str(conv), "--workstream", "Alpha", data=data)
    assert p.returncode == 2 and p.stderr.splitlines()[-1].startswith(f"arawn: {log} is a symbolic link"), p.stderr
    assert p.stderr.count("arawn:") == 1  # the import's progress line, then the one error line
    assert outside.read_bytes() == b"" and stat.S_IMODE(outside.stat().st_mode) == 0o644
    events = data / "workstreams" / ids["Alpha"] / "events.jsonl"
    target = tmp_path / "outside-events.jsonl"
    shutil.move(events, target)
    events.symlink_to(target)
    one_line(arawn(tmp_path, "ws", "rename", "Alpha", "B", data=data), 2, "is a symbolic link")


def test_a_fifo_planted_in_the_data_dir_or_given_to_import_never_blocks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1"]], "Beta": [["b1"]]})
    log = data / "workstreams" / ids["Beta"] / "messages.jsonl"
    log.unlink()
    os.mkfifo(log)  # every open of it would wait for a writer forever
    p = arawn(tmp_path, "ws", "list", data=data, timeout=60)
    assert p.returncode == 0 and "Alpha" in p.stdout and "Beta" in p.stdout, p.stderr
    [session] = json.loads(arawn(tmp_path, "--json", "ws", "show", "Beta", data=data).stdout)["sessions"]
    one_line(arawn(tmp_path, "session", "show", session["id"], data=data, timeout=60), 2, "is not a regular file")
    p = arawn(tmp_path, "reindex", data=data, timeout=60)
    assert p.returncode == 1 and "is not a regular file" in p.stderr, p.stderr
    p = arawn(tmp_path, "ws", "list", data=data, timeout=60)
    assert p.returncode == 1 and "Alpha" in p.stdout and "could not be indexed" in p.stderr, p.stderr
    assert "rebuilt" not in p.stderr
    fifo = tmp_path / "conv.jsonl"
    os.mkfifo(fifo)
    one_line(arawn(tmp_path, "import", str(fifo), data=tmp_path / "fresh", timeout=60), 2, "not a regular file")


def test_a_linked_workstream_directory_is_skipped_not_followed(tmp_path: Path) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    ids = build(data, {"Alpha": [["a1"]]})
    other = build(elsewhere, {"Foreign": [["f1"]]})
    (data / "workstreams" / other["Foreign"]).symlink_to(elsewhere / "workstreams" / other["Foreign"])
    p = arawn(tmp_path, "reindex", data=data)
    assert "is a symbolic link" in p.stderr, p.stderr
    assert [w["title"] for w in ws_json(tmp_path, data)] == ["Alpha"]
    assert ids


def test_every_dir_and_file_of_a_loose_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1"]], "Beta": [["b1"]]})
    (data / "workstreams" / ids["Alpha"] / "messages.jsonl.torn").write_bytes(b"half a line\n")
    for p in [data, *data.rglob("*")]:
        os.chmod(p, 0o777 if p.is_dir() else 0o666)
    assert arawn(tmp_path, "ws", "list", data=data).returncode == 0
    loose = {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in [data, *data.rglob("*")]
             if stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)}
    assert loose == {}


# ------------------------------------------------------------------ 5. external text is inert


def test_an_import_file_name_with_escapes_is_shown_inert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    name = "conv\x1b]0;owned\x07\x1b[2J\u202e.jsonl"
    conv = tmp_path / name
    conv.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    p = arawn(tmp_path, "import", str(conv), data=data)
    assert p.returncode == 0, p.stderr
    assert "importing conv" in p.stderr and not any(ch in p.stderr.replace("\n", "") for ch in RAW_CONTROL)
    assert "\u202e" not in p.stderr


def test_a_servers_error_text_and_model_names_reach_the_terminal_inert_on_one_line(
        tmp_path: Path, ollama_server: OllamaServer) -> None:
    data = tmp_path / "data"
    cfg = server_config(tmp_path, ollama_server.url)
    build(data, {"W": [["MARKER-a", "b"]]})
    evil = "boom\x1b]52;c;ZXZpbA==\x07\nsecond line\r\x9b2J"
    ollama_server.fail_next(None, status=400, error=evil)
    p = arawn(tmp_path, "chat", "W", "hello", data=data, config=cfg)
    one_line(p, 1, "boom", "second line")
    p = arawn(tmp_path, "compress", "W", data=data, config=cfg)
    assert p.returncode == 1 and not any(ch in p.stderr.replace("\n", "") for ch in RAW_CONTROL)
    jobs = arawn(tmp_path, "jobs", "list", data=data, config=cfg)
    n = len(json.loads(arawn(tmp_path, "--json", "jobs", "list", data=data, config=cfg).stdout))
    assert jobs.returncode == 0 and n >= 1 and len(jobs.stdout.splitlines()) == 1 + n, jobs.stdout  # a line a job
    assert not any(ch in jobs.stdout.replace("\n", "") for ch in RAW_CONTROL)


# ------------------------------------------------------------------ 6. replies that are not what they claim


def test_an_unfinished_non_streamed_reply_is_never_stored_as_a_summary(tmp_path: Path,
                                                                      ollama_server: OllamaServer) -> None:
    data = tmp_path / "data"
    cfg = server_config(tmp_path, ollama_server.url)
    build(data, {"W": [["MARKER-a", "b", "MARKER-c"]]})
    ollama_server.patch_reply_next(None, fields={"done": False, "done_reason": None})
    p = arawn(tmp_path, "compress", "W", data=data, config=cfg)
    assert p.returncode == 1 and "unfinished reply (done: false)" in p.stderr, p.stderr
    p = arawn(tmp_path, "summary", "W", data=data, config=cfg)
    assert p.returncode == 1 and "no summary" in p.stderr
    events = b"".join(v for k, v in stored(data).items() if k.endswith("events.jsonl"))
    assert b'"type": "summary"' not in events


@pytest.mark.parametrize("reply, words", [
    ({"body": {"error": "model is still loading,\nplease wait"}}, "model is still loading, please wait"),
    ({"fields": {"prompt_eval_count": "many", "eval_count": [1]}}, "prompt_eval_count"),
    ({"body": [1, 2]}, "not a JSON object"),
])
def test_a_reply_in_the_wrong_shape_is_one_line_with_the_servers_words(
        tmp_path: Path, ollama_server: OllamaServer, reply: dict, words: str) -> None:
    data = tmp_path / "data"
    cfg = server_config(tmp_path, ollama_server.url)
    build(data, {"W": [["MARKER-a", "b"]]})
    ollama_server.patch_reply_next(None, **reply)
    p = arawn(tmp_path, "chat", "W", "hello", data=data, config=cfg)
    one_line(p, 1, words)
    p = arawn(tmp_path, "compress", "W", data=data, config=cfg)
    assert p.returncode == 1 and words in p.stderr.splitlines()[-1], p.stderr
    jobs = arawn(tmp_path, "jobs", "list", data=data, config=cfg)
    n = len(json.loads(arawn(tmp_path, "--json", "jobs", "list", data=data, config=cfg).stdout))
    assert n >= 1 and len(jobs.stdout.splitlines()) == 1 + n, jobs.stdout


@pytest.mark.parametrize("count", [10 ** 9, -5])
def test_absurd_token_counts_are_distrusted_not_learned_or_blamed(tmp_path: Path, count: int) -> None:
    from arawn_core.llm.ollama_backend import OllamaBackend

    async def one_reply(url: str) -> int:
        backend = OllamaBackend(url, 10)
        try:
            done = await backend.complete([{"role": "user", "content": "hi"}],
                                          ChatOptions(model="scripted", num_ctx=2048, num_predict=64))
            return done.usage.prompt_tokens
        finally:
            await backend.aclose()

    with OllamaServer(ScriptedEngine()) as server:
        server.patch_reply_next(1, fields={"prompt_eval_count": count})
        assert asyncio.run(one_reply(server.url)) == 0  # "not reported": no ContextOverflow raised either
        cfg = server_config(tmp_path, server.url)
        data = tmp_path / "data"
        build(data, {"W": [["MARKER-a " + "word " * 200, "b", "MARKER-c"]]})
        server.patch_reply_next(None, fields={"prompt_eval_count": count})
        p = arawn(tmp_path, "compress", "W", data=data, config=cfg)
        assert p.returncode == 0 and "MARKER-a" in p.stdout and "MARKER-c" in p.stdout, p.stderr
        assert "num_ctx" not in p.stderr  # not blamed on the user's config
    db = sqlite3.connect(data / "arawn.db")
    try:
        row = db.execute("SELECT value FROM kv WHERE key = 'token_estimator'").fetchone()
    finally:
        db.close()
    assert row is None or "scripted" not in json.loads(row[0]).get("models", {})  # nothing learned from it


# ------------------------------------------------------------------ 7. smaller


def test_one_pretty_printed_conversation_is_refused_saying_why(tmp_path: Path) -> None:
    conv = tmp_path / "one.json"
    conv.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}, indent=2))
    one_line(arawn(tmp_path, "import", str(conv), data=tmp_path / "data"), 2, "pretty-printed", "JSON Lines")


def test_a_tool_role_keeps_the_openai_style_conversation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    conv = tmp_path / "tools.jsonl"
    conv.write_text(json.dumps({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "w"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."}]}) + "\n")
    p = arawn(tmp_path, "--json", "import", str(conv), data=data)
    assert p.returncode == 0 and json.loads(p.stdout)["conversations_imported"] == 1, p.stderr
    ws_id = json.loads(p.stdout)["workstream_id"]
    [session] = json.loads(arawn(tmp_path, "--json", "ws", "show", ws_id, data=data).stdout)["sessions"]
    msgs = json.loads(arawn(tmp_path, "--json", "session", "show", session["id"], data=data).stdout)
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool_result", "assistant"]
    assert msgs[2]["content"] == "sunny"


# ------------------------------------------------------------------ the helpers other backends call


@pytest.mark.parametrize("value", ["127.0.0.1", "localhost:11434", "http://h:1/ollama", "https://[::1]:8443/v1",
                                   "http://user:pw@h:80"])
def test_validate_host_accepts_what_the_clients_accept(value: str) -> None:
    from arawn_core.config import validate_host

    assert validate_host(value, "arawn.toml: key llm.hosts[0]") == value


def test_validate_host_names_where_the_value_came_from() -> None:
    from arawn_core.config import ConfigError, validate_host

    with pytest.raises(ConfigError, match=r"^arawn.toml: key llm.hosts\[2\]: 'http://h:0' is not a valid host"):
        validate_host("http://h:0", "arawn.toml: key llm.hosts[2]")


async def test_a_deadline_already_passed_does_not_start_the_step() -> None:
    started = []

    async def step() -> None:
        started.append(1)

    deadline = Deadline(0.0, "http://h")
    with pytest.raises(LLMTimeout):
        await deadline.within(step())
    assert started == []
