"""Hostile inputs found by attacking the CLI class by class (issue 15: "fix the class, not the example").

Each case runs the real CLI in a subprocess (`tests.test_hardening.arawn`: this checkout, an
empty home, real files under tmp_path, a real HTTP server where one is needed) and asserts
what the user depends on: exactly one `arawn: ...` line naming the thing (file, key, host,
variable), the exit code, an end within the subprocess timeout, no raw control character on
the terminal, and that the stored JSONL bytes did not change.

Classes: configs the TOML parser or the file system refuse in ways of their own (deep
nesting, names too long, link loops, empty arguments); hosts the HTTP client would refuse
later (labels too long, dotted numbers that are no IPv4 address, bad IPv6 literals); a
planted non-file where the index lives; index rows and spans no arawn wrote; bidi controls
in JSON output; misbehaving servers.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.test_hardening import arawn, build, one_line, stored

RAW = "".join(chr(c) for c in [*range(0, 9), *range(11, 32), *range(0x7F, 0xA0)]) + "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def no_raw(text: str) -> None:
    assert not any(ch in text.replace("\n", "").replace("\t", "") for ch in RAW), repr(text)


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("name,content,needle", [
    ("deep_array", "a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("deep_inline_table", "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
])
def test_a_config_nested_past_the_parsers_recursion_is_one_line(tmp_path: Path, name: str, content: str,
                                                               needle: str) -> None:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(content)
    err = one_line(arawn(tmp_path, "ws", "list", config=cfg, data=tmp_path / "data"), 2, str(cfg), needle)
    assert "bug" not in err
    assert not (tmp_path / "data").exists()


def test_a_config_path_the_file_system_refuses_is_one_line(tmp_path: Path) -> None:
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    one_line(arawn(tmp_path, "ws", "list", config=loop, data=tmp_path / "data"), 2, str(loop),
             "symbolic links", "--config")
    long = tmp_path / ("a" * 300 + ".toml")  # NAME_MAX is 255: ENAMETOOLONG, not "not found"
    one_line(arawn(tmp_path, "ws", "list", config=long, data=tmp_path / "data"), 2, "too long", "--config")
    one_line(arawn(tmp_path, "ws", "list", env={"ARAWN_CONFIG": str(long)}, data=tmp_path / "data"), 2,
             "too long", "$ARAWN_CONFIG")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("option", ["--config", "--data-dir"])
def test_an_empty_config_or_data_dir_argument_is_refused_not_taken_as_the_default(tmp_path: Path,
                                                                                 option: str) -> None:
    # `--data-dir "$DIR"` with DIR unset would otherwise write into the user's real data dir
    home_data = tmp_path / "home" / "data"
    one_line(arawn(tmp_path, option, "", "ws", "create", "x"), 2, option, "empty")
    assert not home_data.exists()


# ------------------------------------------------------------------ hosts


BAD_HOSTS = [
    ("label_too_long", "x" * 300, "labels of 1 to 63"),
    ("name_too_long", ".".join(["abcdefghij"] * 30), "253"),
    ("empty_label", "http://a..b:11434", "labels of 1 to 63"),
    ("bad_ipv4", "http://999.999.999.999:11434", "not an IPv4 address"),
    ("short_dotted_number", "http://1.2.3:11434", "not an IPv4 address"),
    ("bad_ipv6", "http://[12345::zz]:11434", "IPv6"),
]


@pytest.mark.parametrize("host,needle", [(h, n) for _, h, n in BAD_HOSTS], ids=[i for i, _, _ in BAD_HOSTS])
def test_a_host_the_http_client_would_refuse_is_one_line_before_anything_runs(tmp_path: Path, host: str,
                                                                              needle: str) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]]})
    before = stored(data)
    one_line(arawn(tmp_path, "ws", "list", data=data, env={"OLLAMA_HOST": host}), 2, "$OLLAMA_HOST", needle)
    one_line(arawn(tmp_path, "chat", "Alpha", "hi", data=data, env={"OLLAMA_HOST": host}), 2, "$OLLAMA_HOST", needle)
    cfg = tmp_path / "arawn.toml"
    cfg.write_text(f'[llm]\nbackend = "ollama"\nhost = "{host}"\n')
    one_line(arawn(tmp_path, "chat", "Alpha", "hi", data=data, config=cfg), 2, str(cfg), "llm.host", needle)
    assert stored(data) == before


@pytest.mark.parametrize("host", ["localhost:11434", "http://[::1]:11434", "http://[fe80::1%25eth0]:11434",
                                  "10.0.0.1", "my-host.example.org.", "http://gpu_2:11434"])
def test_good_hosts_still_pass(host: str) -> None:
    from arawn_core.config import host_problem

    assert host_problem(host) is None


@pytest.mark.parametrize("value", ["inf", "1e999", "-inf", "nan"])
def test_a_non_finite_busy_timeout_falls_back_to_the_default(tmp_path: Path, value: str) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    p = arawn(tmp_path, "ws", "create", "Beta", data=data, env={"ARAWN_BUSY_TIMEOUT_S": value})
    assert p.returncode == 0, p.stderr
    assert "Beta" in arawn(tmp_path, "ws", "list", data=data).stdout


# ------------------------------------------------------------------ the index files


def _plant_dir(p: Path) -> None:
    if p.exists():
        p.unlink()
    p.mkdir()


def _plant_fifo(p: Path) -> None:
    if p.exists():
        p.unlink()
    os.mkfifo(p)


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
@pytest.mark.parametrize("plant", [_plant_dir, _plant_fifo], ids=["directory", "fifo"])
def test_a_non_file_planted_where_the_index_lives_is_one_line(tmp_path: Path, suffix: str, plant) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]]})
    before = stored(data)
    target = data / f"arawn.db{suffix}"
    plant(target)
    for argv in (["ws", "list"], ["ws", "show", "Alpha"], ["search", "a1"], ["reindex"], ["ws", "create", "B"]):
        one_line(arawn(tmp_path, *argv, data=data, timeout=60), 2, str(target), "move it aside")
    assert stored(data) == before


@pytest.mark.parametrize("column,value", [("tags", "not json"), ("state", "no-such-state"),
                                          ("tags", '{"a": 1}')])
def test_an_index_row_no_arawn_wrote_is_one_line_saying_reindex(tmp_path: Path, column: str, value: str) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]]})
    before = stored(data)
    c = sqlite3.connect(data / "arawn.db")
    c.execute(f"UPDATE workstreams SET {column} = ?", (value,))
    c.commit()
    c.close()
    for argv in (["ws", "show", "Alpha"], ["export", "Alpha"]):
        one_line(arawn(tmp_path, *argv, data=data), 1, "damaged workstream row", "arawn --headless reindex")
    assert arawn(tmp_path, "reindex", data=data).returncode == 0  # what the line says to run works
    p = arawn(tmp_path, "--json", "ws", "show", "Alpha", data=data)
    assert p.returncode == 0 and json.loads(p.stdout)["state"] == "active", p.stderr
    assert stored(data) == before


@pytest.mark.parametrize("offset,length", [(-5, None), (None, -1), (None, 10 ** 15), (10 ** 12, None)])
def test_message_spans_no_arawn_wrote_are_read_around(tmp_path: Path, offset, length) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2", "a3"]]})
    before = stored(data)
    c = sqlite3.connect(data / "arawn.db")
    (mid,) = c.execute("SELECT id FROM messages ORDER BY timestamp LIMIT 1 OFFSET 1").fetchone()
    if offset is not None:
        c.execute("UPDATE messages SET offset = ? WHERE id = ?", (offset, mid))
    if length is not None:
        c.execute("UPDATE messages SET length = ? WHERE id = ?", (length, mid))
    c.commit()
    c.close()
    show = arawn(tmp_path, "--json", "ws", "show", "Alpha", data=data)
    [session] = json.loads(show.stdout)["sessions"]
    p = arawn(tmp_path, "--json", "session", "show", session["id"], data=data, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [m["content"] for m in json.loads(p.stdout)] == ["a1", "a2", "a3"]  # read from the file itself
    assert "Invalid argument" not in p.stderr and "bug" not in p.stderr
    p = arawn(tmp_path, "export", "Alpha", "--format", "markdown", data=data, timeout=60)
    assert p.returncode == 0 and "a2" in p.stdout, p.stderr
    assert stored(data) == before


# ------------------------------------------------------------------ terminal


BIDI = "left \u202eright\u202c \u2066iso\u2069 \u200f"


def test_bidi_controls_are_escaped_in_json_and_jsonl_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"T" + BIDI: [["m" + BIDI, "r"]]})
    p = arawn(tmp_path, "--json", "ws", "list", data=data)
    assert p.returncode == 0
    no_raw(p.stdout)
    assert json.loads(p.stdout)[0]["title"] == "T" + BIDI  # the same data, escaped
    p = arawn(tmp_path, "export", "T" + BIDI, data=data)
    assert p.returncode == 0, p.stderr
    no_raw(p.stdout)
    assert json.loads(p.stdout.splitlines()[0])["content"] == "m" + BIDI


# ------------------------------------------------------------------ command-line arguments


def test_text_arguments_that_are_not_utf8_are_one_line_naming_the_argument(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    bad = os.fsdecode(b"bad \xff\xfe title")  # how undecodable argv bytes reach Python (PEP 383)
    for argv, name in ((["ws", "create", bad], "title"), (["ws", "rename", "Alpha", bad], "title"),
                       (["ws", "tag", "Alpha", "ok", bad], "tags"), (["pin", "Alpha", bad], "text")):
        one_line(arawn(tmp_path, *argv, data=data), 2, f"argument {name}", "not valid UTF-8")
    assert stored(data) == before


@pytest.mark.parametrize("argv", [["--version", "99999999999999999999"], ["--revert", "99999999999999999999"],
                                  ["--diff", "1", "99999999999999999999"], ["--version", "-1"]])
def test_out_of_range_version_numbers_are_one_line(tmp_path: Path, argv: list[str]) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    one_line(arawn(tmp_path, "summary", "Alpha", *argv, data=data), 2, argv[0], "out of range")
    assert stored(data) == before


def test_summary_set_from_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    one_line(arawn(tmp_path, "summary", "Alpha", "--set", str(fifo), data=data, timeout=30), 2,
             "--set", str(fifo), "not a regular file")
    assert stored(data) == before


def test_an_unknown_search_role_is_refused_not_an_empty_result(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["needle"]]})
    one_line(arawn(tmp_path, "search", "needle", "--role", "usr\x1b[2J", data=data), 2, "--role", "assistant")
    p = arawn(tmp_path, "search", "needle", "--role", "user", data=data)
    assert p.returncode == 0 and "needle" in p.stdout


def test_an_import_file_whose_name_is_not_utf8_imports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    src = tmp_path / os.fsdecode(b"chat-\xff\xfe.jsonl")
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                            {"role": "assistant", "content": "r"}]}) + "\n")
    p = arawn(tmp_path, "--json", "import", str(src), data=data)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["conversations_imported"] == 1
    no_raw(p.stderr)
    titles = [w["title"] for w in json.loads(arawn(tmp_path, "--json", "ws", "list", data=data).stdout)]
    assert "Imported: chat-\ufffd\ufffd.jsonl" in titles
    after = stored(data)
    assert all(after[k] == v for k, v in before.items())  # what was there is untouched


# ------------------------------------------------------------------ the data dir's layout


@pytest.mark.parametrize("how", ["file", "link"])
def test_a_workstreams_dir_that_is_a_file_or_a_link_is_one_line_for_every_command(tmp_path: Path, how: str) -> None:
    import shutil

    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    root = data / "workstreams"
    real = tmp_path / "elsewhere"
    shutil.move(str(root), str(real))
    if how == "file":
        root.write_text("not a directory")
    else:
        root.symlink_to(real)
    before = stored(real)
    needle = "not a directory" if how == "file" else "symbolic link"
    for argv in (["ws", "list"], ["ws", "show", "Alpha"], ["reindex"], ["ws", "create", "B"], ["search", "a1"]):
        one_line(arawn(tmp_path, *argv, data=data), 2, str(root), needle)
    assert stored(real) == before  # nothing written through the link


def test_a_deleted_message_log_is_one_line_saying_reindex(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ids = build(data, {"Alpha": [["a1", "a2"]], "Beta": [["b1"]]})
    log = data / "workstreams" / ids["Alpha"] / "messages.jsonl"
    [session] = json.loads(arawn(tmp_path, "--json", "ws", "show", "Alpha", data=data).stdout)["sessions"]
    log.unlink()
    before = stored(data)
    for argv in (["session", "show", session["id"]], ["export", "Alpha"], ["search", "a1"]):
        one_line(arawn(tmp_path, *argv, data=data), 1, str(log), "missing", "arawn --headless reindex")
    assert arawn(tmp_path, "reindex", data=data).returncode == 0
    p = arawn(tmp_path, "search", "b1", data=data)
    assert p.returncode == 0 and "b1" in p.stdout, p.stderr
    assert stored(data) == before


# ------------------------------------------------------------------ misbehaving servers


def _serve(chat_reply: bytes):
    """A real HTTP server: Ollama's model list and show, and `chat_reply` (a raw response) for /api/chat."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _json(self, doc) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/api/tags"):
                self._json({"models": [{"name": "m:latest", "model": "m:latest", "size": 1, "digest": "x",
                                        "modified_at": "2026-01-01T00:00:00Z", "details": {}}]})
            else:
                self._json({"version": "0.5.0"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/api/chat") or self.path.startswith("/api/generate"):
                self.wfile.write(chat_reply)
                self.close_connection = True
            else:
                self._json({"model_info": {"f.context_length": 8192}, "details": {}, "template": "", "parameters": ""})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _raw(headers: str, body: bytes) -> bytes:
    return f"HTTP/1.1 200 OK\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.mark.parametrize("reply,needle", [
    (_raw("Content-Type: application/json\r\nContent-Encoding: gzip\r\n", b"\x1f\x8bnot gzip at all"), "malformed reply"),
    (_raw("Content-Type: application/x-ndjson\r\n", b'{"message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"),
     "nested too deeply"),
], ids=["bad_gzip", "deep_json"])
def test_a_reply_the_client_cannot_decode_is_one_line_and_the_message_kept(tmp_path: Path, reply: bytes,
                                                                           needle: str) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1", "a2"]]})
    before = stored(data)
    server = _serve(reply)
    try:
        cfg = tmp_path / "arawn.toml"
        cfg.write_text(f'[llm]\nbackend = "ollama"\nhost = "http://127.0.0.1:{server.server_address[1]}"\n'
                       'model = "m"\nrequest_timeout_s = 20.0\n')
        err = one_line(arawn(tmp_path, "chat", "Alpha", "the question", data=data, config=cfg, timeout=60), 1,
                       "127.0.0.1", needle)
        assert "bug" not in err
    finally:
        server.shutdown()
    after = stored(data)
    assert all(after[k].startswith(v) for k, v in before.items())
    assert any(b"the question" in v for v in after.values())  # the user's message is stored anyway


@pytest.mark.parametrize("given", ["option", "config"])
@pytest.mark.parametrize("value,needle", [("~no-such-user-arawn/data", "cannot be expanded"),
                                          ("/tmp/" + "d" * 300, "File name too long")], ids=["tilde_user", "too_long"])
def test_a_data_dir_the_file_system_cannot_have_is_one_line(tmp_path: Path, given: str, value: str,
                                                            needle: str) -> None:
    if given == "option":
        run = lambda *argv: arawn(tmp_path, "--data-dir", value, *argv)  # noqa: E731
        where = "--data-dir" if "~" in value else value[:40]
    else:
        cfg = tmp_path / "arawn.toml"
        cfg.write_text(f'[workstream]\ndata_dir = "{value}"\n')
        run = lambda *argv: arawn(tmp_path, *argv, config=cfg)  # noqa: E731
        where = "workstream.data_dir" if "~" in value else value[:40]
    for argv in (["ws", "list"], ["ws", "create", "x"]):
        one_line(run(*argv), 2, where, needle)


def test_a_closed_stdout_is_one_line_not_a_bug_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    closed = ["sh", "-c", 'exec "$@" >&-', "sh"]  # the CLI starts with file descriptor 1 closed
    for argv in (["ws", "list"], ["export", "Alpha"], ["ws", "create", "B"]):
        one_line(arawn(tmp_path, *argv, data=data, prefix=closed), 2, "standard output is closed")
    assert stored(data) == before


@pytest.mark.parametrize("fmt,doc,needle", [
    ("chatgpt", [{"mapping": {"a": {"parent": None, "message": {"author": {"role": ["user"]},
                                                                "content": {"content_type": "text", "parts": ["p"]}}}},
                  "current_node": "a", "title": "t"}], "no visible messages"),
    ("openwebui", [{"chat": {"history": {"messages": {"a": {"parentId": None, "role": ["user"], "content": "c"}},
                                         "currentId": "a"}}, "title": "t"}], "role ['user']"),
])
def test_an_import_record_with_a_list_where_a_role_belongs_is_skipped_and_named(tmp_path: Path, fmt: str, doc,
                                                                                   needle: str) -> None:
    data = tmp_path / "data"
    build(data, {"Alpha": [["a1"]]})
    before = stored(data)
    good = {"chatgpt": {"mapping": {"b": {"parent": None, "message": {"author": {"role": "user"},
                                                                      "content": {"content_type": "text", "parts": ["ok"]}}}},
                        "current_node": "b", "title": "fine"},
            "openwebui": {"chat": {"history": {"messages": {"b": {"parentId": None, "role": "user", "content": "ok"}},
                                               "currentId": "b"}}, "title": "fine"}}[fmt]
    src = tmp_path / "export.json"
    src.write_text(json.dumps([*doc, good]))
    p = arawn(tmp_path, "--json", "import", str(src), "--format", fmt, data=data)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["conversations_imported"] == 1
    [problem] = [line for line in p.stderr.splitlines() if line.startswith("arawn: ")]
    assert "record 0" in problem and needle in problem and "bug" not in problem
    after = stored(data)
    assert all(after[k] == v for k, v in before.items())
