"""Bad input: the corpus in tests/corpus/, a 100 MB import, a 10 MB message, terminal escapes in content.

* Every bad config -> exit 2, one line on stderr naming the file and the key
  (or the line), no traceback, nothing created.
* Every bad import file -> each bad record reported with its line (JSON
  Lines) or index (JSON array) and skipped, the good ones imported; a file
  that cannot be read at all -> exit 2 with one line; nothing already stored
  is lost and the source file is never touched.
* A 100 MB file (generated here, never committed) imports in bounded memory
  with progress on stderr.
* A 10 MB message is stored, read back, exported and compressed, every LLM
  request within num_ctx.
* Control characters and escape sequences are stored byte-exact; the CLI's
  text output shows them inert, its JSON output escapes them.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from arawn_core.config import Settings
from arawn_core.core import ArawnCore
from arawn_core.llm.errors import BackendError
from arawn_tui.headless import run
from tests.fakes import FakeBackend, markers_in

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "corpus"
CONFIG_EXPECT: dict[str, str] = json.loads((CORPUS / "config" / "EXPECT.json").read_text())
IMPORT_EXPECT: dict[str, dict] = json.loads((CORPUS / "import" / "EXPECT.json").read_text())
#: What must never reach a terminal raw: C0 controls but tab and newline, DEL, C1 controls.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
CONTROL = "esc \x1b[31mRED\x1b[0m bel\x07 nul\x00 cr\rX bs\x08 del\x7f csi\x9b2J osc\x1b]0;pwned\x07 nel\x85 rlo\u202e."


def cli(capsys, data_dir: Path, *argv: str, backend=None) -> tuple[int, str, str]:
    code = run(["--data-dir", str(data_dir), *argv], backend=backend if backend is not None else FakeBackend())
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def cli_json(capsys, data_dir: Path, *argv: str, backend=None):
    code, out, err = cli(capsys, data_dir, "--json", *argv, backend=backend)
    assert code == 0, err
    assert not RAW_CONTROL.search(out.replace("\n", "")), "raw control character in --json output"
    return json.loads(out)


# ------------------------------------------------------------------ configs


def test_corpus_is_complete() -> None:
    assert sorted(p.name for p in (CORPUS / "config").glob("*.toml")) == sorted(CONFIG_EXPECT)
    assert sorted(p.name for p in (CORPUS / "import").iterdir() if p.name != "EXPECT.json") == sorted(IMPORT_EXPECT)
    assert len(CONFIG_EXPECT) >= 30 and len(IMPORT_EXPECT) >= 10


@pytest.mark.parametrize("name", sorted(CONFIG_EXPECT), ids=lambda n: n.removesuffix(".toml"))
def test_bad_config_is_one_line_naming_file_and_key(name: str, tmp_path: Path, capsys) -> None:
    path = CORPUS / "config" / name
    expect = CONFIG_EXPECT[name]
    if name not in ("utf16.toml", "bom.toml"):
        assert path.read_bytes().startswith(f"# expect: {expect}\n".encode())
    code, out, err = cli(capsys, tmp_path / "data", "--config", str(path), "ws", "list")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"arawn: {path}: ") and expect in err, err
    assert not RAW_CONTROL.search(err[:-1]), err
    assert not (tmp_path / "data").exists()  # nothing created from a bad config


def test_bad_config_found_by_lookup_names_that_file(tmp_path: Path, capsys, monkeypatch) -> None:
    """./arawn.toml and $ARAWN_CONFIG: the message names the file that was actually read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "arawn.toml").write_bytes((CORPUS / "config" / "unknown_key.toml").read_bytes())
    code, _, err = cli(capsys, tmp_path / "data", "ws", "list")
    assert code == 2 and f"{tmp_path / 'arawn.toml'}: unknown key llm.modle" in err
    monkeypatch.setenv("ARAWN_CONFIG", str(CORPUS / "config" / "type_host_int.toml"))
    code, _, err = cli(capsys, tmp_path / "data", "ws", "list")
    assert code == 2 and "type_host_int.toml: key llm.host must be a string" in err


def test_bad_configs_through_the_installed_entry_point(tmp_path: Path) -> None:
    for name in ("invalid_utf8.toml", "unknown_key_control_chars.toml", "syntax_nul_byte.toml", "utf16.toml"):
        path = CORPUS / "config" / name
        p = subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--config", str(path),
                            "--data-dir", str(tmp_path / "data"), "ws", "list"],
                           capture_output=True, cwd=REPO, stdin=subprocess.DEVNULL, timeout=60)
        err = p.stderr.decode("utf-8")
        assert p.returncode == 2 and p.stdout == b""
        assert err.count("\n") == 1 and CONFIG_EXPECT[name] in err and "Traceback" not in err, err
        assert not RAW_CONTROL.search(err[:-1])


# ------------------------------------------------------------------ import corpus


@pytest.mark.parametrize("name", sorted(IMPORT_EXPECT))
def test_bad_import_file_reports_each_bad_record_and_keeps_the_good(name: str, tmp_path: Path, capsys) -> None:
    path = CORPUS / "import" / name
    spec = IMPORT_EXPECT[name]
    before = path.read_bytes()
    code, out, err = cli(capsys, tmp_path / "data", "--json", "import", str(path), *spec.get("args", []))
    assert path.read_bytes() == before  # the source is only read
    assert code == spec["exit"], err
    if code == 2:
        assert out == "" and err.count("\n") == 1 and spec["error"] in err and str(path) in err, err
        return
    report = json.loads(out)
    assert report["conversations_imported"] == spec["conversations"]
    assert report["messages_imported"] == spec["messages"]
    assert [p["where"] for p in report["problems"]] == spec["problems"]
    # each problem also on stderr, one line each, naming the file and the place
    lines = [line for line in err.splitlines() if line.endswith("(skipped)")]
    assert [line.split(": ")[2] for line in lines] == spec["problems"]
    assert all(line.startswith(f"arawn: {path}: ") for line in lines)
    assert not RAW_CONTROL.search(err.replace("\n", ""))
    if spec["conversations"]:
        # what the file holds is what is stored: every marker of the good records, none of the bad ones
        ws = cli_json(capsys, tmp_path / "data", "ws", "show", report["workstream_id"])
        stored = "\n".join(
            m["content"] for s in ws["sessions"]
            for m in cli_json(capsys, tmp_path / "data", "session", "show", s["id"]))
        assert len(ws["sessions"]) == spec["conversations"]
        good = sorted(set(markers_in(before.decode("utf-8", "replace"))))
        assert sorted(set(markers_in(stored))) == good


async def test_details_of_the_mixed_file_are_stored_exactly(tmp_path: Path) -> None:
    """BOM, CRLF, NUL and control characters in content, a year-999 timestamp: stored and read back exact."""
    core = await ArawnCore.open(Settings().with_data_dir(tmp_path / "data"), FakeBackend())
    try:
        report = await core.import_file(CORPUS / "import" / "messages_mixed.jsonl")
        contents = {}
        for s in await core.list_sessions(report.workstream_id):
            for m in await core.session_messages(s.id):
                contents[m.content] = m.timestamp
        assert "MARKER-corpus_a hello" in contents  # the BOM is not part of the first record
        assert "crlf line MARKER-corpus_crlf" in contents  # the CR of CRLF is not part of the record
        assert "nul \x00 inside MARKER-corpus_nul" in contents
        assert "second " + CONTROL in contents
        assert contents["year 999 MARKER-corpus_old"] == "0999-06-01T12:00:00.000000Z"
        markdown = "".join([chunk async for chunk in core.export(report.workstream_id, "markdown")])
        assert "999-06-01 12:00" in markdown and "MARKER-corpus_old" in markdown  # exported, not a crash
    finally:
        await core.close(end_sessions=False)


def test_bad_imports_never_lose_what_was_stored(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    fake = FakeBackend()
    cli(capsys, data, "ws", "create", "Keep", backend=fake)
    for text in ("first MARKER-keep_1", "second MARKER-keep_2"):
        assert cli(capsys, data, "chat", "Keep", text, backend=fake)[0] == 0
    code, _, err = cli(capsys, data, "import", str(REPO / "tests" / "data" / "messages_sample.jsonl"),
                       "--workstream", "Keep", backend=fake)
    assert code == 0, err

    def snapshot() -> list[list[tuple[str, str]]]:
        ws = cli_json(capsys, data, "ws", "show", "Keep")
        return [[(m["role"], m["content"]) for m in cli_json(capsys, data, "session", "show", s["id"])]
                for s in ws["sessions"]]

    before = snapshot()
    for name, spec in sorted(IMPORT_EXPECT.items()):
        code, _, err = cli(capsys, data, "import", str(CORPUS / "import" / name), "--workstream", "Keep",
                           *spec.get("args", []))
        assert code == spec["exit"], (name, err)
    after = snapshot()
    # everything stored before is still there (sessions sort by start time: the year-999 one comes first)
    assert [s for s in after if s in before] == before
    added = sum(spec.get("conversations", 0) for spec in IMPORT_EXPECT.values())
    assert len(after) == len(before) + added
    # the files on disk agree with the index: a rebuild from JSONL finds the same, and no bad line
    counts = cli_json(capsys, data, "reindex")
    assert counts["bad_lines"] == 0 and counts["sessions"] == len(after)
    assert snapshot() == after


# ------------------------------------------------------------------ a 100 MB import


def write_big_sharegpt(path: Path, target_bytes: int) -> tuple[int, str]:
    """A ShareGPT JSON array of about target_bytes; returns (conversations, the last message's text)."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
    filler = " ".join(words[(i * 7) % len(words)] for i in range(1200))
    n, size, last = 0, 2, ""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[\n")
        while size < target_bytes:
            turns = [{"from": "human" if i % 2 == 0 else "gpt", "value": f"MARKER-c{n}m{i} {filler}"} for i in range(4)]
            last = turns[-1]["value"]
            text = ("," if n else "") + json.dumps({"id": f"c{n}", "conversations": turns}) + "\n"
            fh.write(text)
            size += len(text)
            n += 1
        fh.write("]\n")
    return n, last


def run_measured(argv: list[str], out: Path, err: Path) -> tuple[int, int]:
    """Run the installed CLI; (exit code, the child's own peak RSS in bytes)."""
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "arawn_tui", "--headless", *argv], stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024  # Linux reports KiB


@pytest.mark.slow
async def test_100mb_import_runs_in_bounded_memory_with_progress(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    n, last = write_big_sharegpt(big, 100_000_000)
    assert big.stat().st_size >= 100_000_000
    code, baseline = run_measured(["--data-dir", str(tmp_path / "small"), "import",
                                   str(REPO / "tests" / "data" / "sharegpt_sample.json")],
                                  tmp_path / "small.out", tmp_path / "small.err")
    assert code == 0
    data = tmp_path / "data"
    code, peak = run_measured(["--data-dir", str(data), "--json", "import", str(big)],
                              tmp_path / "big.out", tmp_path / "big.err")
    err = (tmp_path / "big.err").read_text()
    assert code == 0, err
    report = json.loads((tmp_path / "big.out").read_text())
    assert report["conversations_imported"] == n and report["messages_imported"] == 4 * n
    assert report["problems"] == []
    # bounded memory: far below the file size (json.load of this file alone takes ~200 MB more)
    assert peak < 1 << 30 and peak - baseline < 150 << 20, (peak >> 20, baseline >> 20)
    # progress on stderr: several lines, rising, ending at 100 %
    pcts = [float(m) for m in re.findall(r"importing big\.json:\s+([\d.]+)%", err)]
    assert len(pcts) >= 3 and pcts == sorted(pcts) and pcts[-1] == 100.0, err
    core = await ArawnCore.open(Settings().with_data_dir(data), FakeBackend())
    try:
        sessions = await core.list_sessions(report["workstream_id"])
        assert len(sessions) == n
        messages = await core.session_messages(sessions[-1].id)
        assert messages[-1].content == last
    finally:
        await core.close(end_sessions=False)


# ------------------------------------------------------------------ a 10 MB message


def ten_mb_message() -> str:
    block = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 200 + "\n"
    half = "".join([block] * (5_000_000 // len(block) + 1))
    return f"MARKER-big_start {half} MARKER-big_middle {half} MARKER-big_end"


def test_10mb_message_store_read_export_compress(tmp_path: Path, capsys, monkeypatch) -> None:
    data = tmp_path / "data"
    fake = FakeBackend()
    text = ten_mb_message()
    assert len(text) > 10_000_000
    cli(capsys, data, "ws", "create", "Big", backend=fake)
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code, _, err = cli(capsys, data, "chat", "Big", "-", backend=fake)
    # the turn alone is over the context: the model says so (exit 1), the message is stored all the same
    assert code == 1 and "context overflow" in err
    [session] = cli_json(capsys, data, "session", "list", "Big", backend=fake)
    [stored] = cli_json(capsys, data, "session", "show", session["id"], backend=fake)
    assert stored["content"] == text
    code, out, _ = cli(capsys, data, "export", "Big", backend=fake)
    assert code == 0 and [json.loads(line)["content"] for line in out.splitlines()] == [text]
    code, out, _ = cli(capsys, data, "export", "Big", "--format", "markdown", backend=fake)
    assert code == 0 and all(m in out for m in ("MARKER-big_start", "MARKER-big_middle", "MARKER-big_end"))
    fake.reset()
    cli(capsys, data, "session", "end", "Big", backend=fake)
    summary = cli_json(capsys, data, "compress", "Big", backend=fake)
    assert markers_in(summary["text"]) == ["MARKER-big_start", "MARKER-big_middle", "MARKER-big_end"]
    assert fake.calls > 100 and all(r.error is None for r in fake.requests)
    assert max(r.prompt_tokens for r in fake.requests) <= min(r.options.num_ctx for r in fake.requests)
    assert all(r.done_reason == "stop" for r in fake.requests)  # no summary cut at num_predict


# ------------------------------------------------------------------ text that is not UTF-8


def test_a_message_that_is_not_utf8_is_refused_whole(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in argv or on stdin: exit 2, one line; nothing half-stored."""
    data = tmp_path / "data"

    def arawn(*argv: bytes | str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "arawn_tui", "--headless", "--data-dir", str(data), *argv],
                              capture_output=True, cwd=REPO, input=stdin, timeout=60)

    ws = arawn("ws", "create", "Bytes").stdout.decode().strip()
    for argv, stdin in (((ws, b"caf\xe9 au lait"), b""), ((ws, "-"), b"caf\xe9 \xff\xfe from stdin")):
        p = arawn("chat", *argv, stdin=stdin)
        err = p.stderr.decode()
        assert p.returncode == 2 and "not valid UTF-8" in err and err.count("\n") == 1, err
        assert "Traceback" not in err and p.stdout == b""
    shown = json.loads(arawn("--json", "ws", "show", ws).stdout)
    assert shown["sessions"] == [] or all(s["message_count"] == 0 for s in shown["sessions"])
    assert not (data / "workstreams" / ws / "messages.jsonl").exists() or \
        (data / "workstreams" / ws / "messages.jsonl").read_bytes() == b""


# ------------------------------------------------------------------ control characters and escapes


def echo_reply(messages, options) -> str:
    """The model repeats the escapes it was sent (as a model asked to "repeat this" would)."""
    return "echo: " + CONTROL + " " + " ".join(markers_in("\n".join(m["content"] for m in messages)))


def test_control_characters_stored_exact_shown_inert_and_escaped_in_json(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    fake = FakeBackend(reply=echo_reply)
    title = "T " + CONTROL
    code, out, _ = cli(capsys, data, "ws", "create", title, "--tag", CONTROL, backend=fake)
    ws_id = out.strip()
    content = "user says " + CONTROL + " MARKER-ctl"

    text_outputs: dict[str, str] = {}

    def text(*argv: str) -> str:
        code, out, err = cli(capsys, data, *argv, backend=fake)
        assert code == 0, err
        text_outputs[" ".join(argv[:2])] = out
        assert not RAW_CONTROL.search(err.replace("\n", "")), (argv, err)
        return out

    out = text("chat", ws_id, content)
    assert "␛[31mRED" in out and "<U+202E>" in out  # the model's escapes and bidi overrides, shown as text
    # stored byte-exact: the JSONL line decodes to exactly what was sent and replied
    line = next((data / "workstreams" / ws_id / "messages.jsonl").open("rb"))
    assert json.loads(line)["content"] == content
    [session] = cli_json(capsys, data, "session", "list", ws_id, backend=fake)
    stored = cli_json(capsys, data, "session", "show", session["id"], backend=fake)
    assert [m["content"] for m in stored] == [content, echo_reply([{"content": content}], None)]
    assert cli_json(capsys, data, "ws", "show", ws_id, backend=fake)["title"] == title.strip()

    text("session", "show", session["id"])
    text("session", "end", ws_id)
    fake.fail_next(1, BackendError("server said \x1b]0;owned\x07 \x9b2J", transient=False))
    code, _, err = cli(capsys, data, "compress", ws_id, backend=fake)
    assert code == 1 and "server said" in err and not RAW_CONTROL.search(err.replace("\n", ""))
    text("jobs", "list")
    text("compress", ws_id)  # a manual compress retries the failed job; the summary echoes the escapes
    assert "␛]0;pwned" in text_outputs["compress " + ws_id]
    text("summary", ws_id)
    text("summary", ws_id, "--session", session["id"])
    text("ws", "show", ws_id)
    text("ws", "list")
    text("search", "RED")
    text("ws", "tag", ws_id, CONTROL, "ok")
    text("ws", "rename", ws_id, "R " + CONTROL)
    text("export", ws_id, "--format", "markdown")
    text("ws", "archive", ws_id)
    for argv, out in text_outputs.items():
        assert not RAW_CONTROL.search(out.replace("\n", "")), (argv, out)
    assert set(text_outputs) >= {"chat " + ws_id, "summary " + ws_id, "ws show", "search RED", "export " + ws_id}
    # the jsonl export is data: it parses back to the exact content, with C0 and C1 controls escaped
    code, out, _ = cli(capsys, data, "export", ws_id, backend=fake)
    assert not RAW_CONTROL.search(out.replace("\n", ""))
    assert [json.loads(line)["content"] for line in out.splitlines()][:1] == [content]
    # JSON documents escape them too, and keep the exact text
    summary = cli_json(capsys, data, "summary", ws_id, backend=fake)
    assert CONTROL in summary["text"]
    # an error naming user text does not pass escapes to the terminal either
    code, out, err = cli(capsys, data, "ws", "show", "\x1b[2Jnope", backend=fake)
    assert code == 2 and out == "" and "\x1b" not in err and "\\x1b[2Jnope" in err
