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
