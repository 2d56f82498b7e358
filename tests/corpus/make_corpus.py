"""Regenerate the bad-input corpus (the files are committed; run this only to change them).

    python tests/corpus/make_corpus.py

config/*.toml   one bad arawn.toml each; line 1 is `# expect: TEXT` (utf16.toml: see EXPECT.json), a
                piece of the one-line error the CLI must print (naming the key, or the line counted
                in the file as written, header included), with exit code 2.
import/*        bad import files; import/expect.json says, per file, the exit code, what is
                imported, and where each reported problem is (line N / record N).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent

CONFIGS: dict[str, tuple[str, bytes]] = {
    # malformed TOML: the message names the line
    "syntax_unclosed_string": ("at line 3,", b'[llm]\nmodel = "llama3.2\nnum_ctx = 4096\n'),
    "syntax_missing_equals": ("at line 3,", b'[llm]\nmodel "llama3.2"\n'),
    "syntax_bad_header": ("at line 2,", b'[llm\nmodel = "x"\n'),
    "syntax_duplicate_key": ("at line 4,", b'[llm]\nmodel = "a"\nmodel = "b"\n'),
    "syntax_duplicate_table": ("at line 4,", b'[llm]\nmodel = "a"\n[llm]\nnum_ctx = 4096\n'),
    "syntax_nul_byte": ("at line 3,", b'[llm]\nmodel = "a\x00b"\n'),
    "syntax_bare_value": ("at line 3,", b"[llm]\nnum_ctx = 08\n"),
    "syntax_crlf_in_string": ("at line 3,", b'[llm]\nmodel = "a\rb"\n'),
    "invalid_utf8": ("line 4: config is not valid UTF-8", b'[llm]\nnum_ctx = 4096\nmodel = "caf\xe9"\n'),
    "invalid_utf8_overlong": ("line 3: config is not valid UTF-8", b'[llm]\nmodel = "\xc0\xaf"\n'),
    "utf16": ("line 1: config is not valid UTF-8", "[llm]\nmodel = 'x'\n".encode("utf-16")),
    # wrong types: the message names the key and what was expected
    "type_num_ctx_string": ("llm.num_ctx must be an integer, found string '8192'", b'[llm]\nnum_ctx = "8192"\n'),
    "type_num_ctx_float": ("llm.num_ctx must be an integer, found number 8192.5", b"[llm]\nnum_ctx = 8192.5\n"),
    "type_num_ctx_bool": ("llm.num_ctx must be an integer, found boolean True", b"[llm]\nnum_ctx = true\n"),
    "type_enabled_int": ("workstream.compression.enabled must be true or false, found integer 1",
                         b"[workstream.compression]\nenabled = 1\n"),
    "type_host_int": ("llm.host must be a string, found integer 11434", b"[llm]\nhost = 11434\n"),
    "type_model_array": ("llm.model must be a string, found array", b'[llm]\nmodel = ["a", "b"]\n'),
    "type_model_inline_table": ("llm.model must be a string, found table", b"[llm]\nmodel = { name = 'x' }\n"),
    "type_timeout_string": ("llm.request_timeout_s must be a number, found string '300'",
                            b'[llm]\nrequest_timeout_s = "300"\n'),
    "type_data_dir_date": ("workstream.data_dir must be a string", b"[workstream]\ndata_dir = 2026-11-28\n"),
    "type_section_scalar": ("[llm] must be a table, found integer 3", b"llm = 3\n"),
    "type_array_of_tables": ("[llm] must be a table, found array", b'[[llm]]\nmodel = "x"\n'),
    "type_leaf_as_table": ("llm.num_ctx must be an integer, found table", b"[llm.num_ctx]\nvalue = 1\n"),
    "type_dotted_key": ("llm.num_ctx must be an integer, found string 'big'", b'llm.num_ctx = "big"\n'),
    # values out of range or not a choice
    "range_negative": ("llm.num_ctx must be between 256 and 1048576, found -1", b"[llm]\nnum_ctx = -1\n"),
    "range_huge_int": ("llm.num_ctx must be between 256 and 1048576", b"[llm]\nnum_ctx = 99999999999999999999999\n"),
    "range_nan": ("llm.request_timeout_s must be between", b"[llm]\nrequest_timeout_s = nan\n"),
    "range_inf": ("workstream.compression.retry_base_s must be between",
                  b"[workstream.compression]\nretry_base_s = inf\n"),
    "range_zero_concurrency": ("workstream.compression.max_concurrency must be between 1 and 64",
                               b"[workstream.compression]\nmax_concurrency = 0\n"),
    "choice_backend": ("llm.backend must be one of auto, ollama, openai, embedded, found 'vllm'",
                       b'[llm]\nbackend = "vllm"\n'),
    # unknown keys and sections
    "unknown_key": ("unknown key llm.modle (did you mean llm.model?)", b'[llm]\nmodle = "x"\n'),
    "unknown_top_key": ("unknown key debug", b"debug = true\n"),
    "unknown_section": ("unknown section [compresion]", b"[compresion]\nenabled = false\n"),
    "unknown_nested_section": ("unknown section [workstream.compresion] (did you mean workstream.compression?)",
                               b"[workstream.compresion]\nenabled = false\n"),
    "unknown_key_wrong_section": ("unknown key llm.data_dir", b'[llm]\ndata_dir = "/tmp/x"\n'),
    "unknown_key_empty": ("unknown key llm.", b'[llm]\n"" = 1\n'),
    "unknown_key_control_chars": ("unknown key llm.a\\nb\\x1b[31m", b'[llm]\n"a\\nb\\u001b[31m" = 1\n'),
    # values that pass their type but would break the first request (issue 15): named at load
    "host_port_out_of_range": ("key llm.host: 'http://127.0.0.1:99999' is not a valid host (Port out of range",
                               b'[llm]\nhost = "http://127.0.0.1:99999"\n'),
    "host_port_not_a_number": ("key llm.host: 'localhost:abc' is not a valid host", b'[llm]\nhost = "localhost:abc"\n'),
    "host_scheme": ("key llm.host: 'ftp://127.0.0.1:11434' is not a valid host (the scheme 'ftp'",
                    b'[llm]\nhost = "ftp://127.0.0.1:11434"\n'),
    "host_space": ("is not a valid host (it contains spaces", b'[llm]\nhost = "http://local host:11434"\n'),
    "host_ipv6_unclosed": ("is not a valid host (Invalid IPv6 URL)", b'[llm]\nhost = "http://[::1:11434"\n'),
    "host_no_name": ("is not a valid host (it has no host name)", b'[llm]\nhost = "http://:11434"\n'),
    "host_control_chars": ("is not a valid host (it contains spaces or control characters)",
                           b'[llm]\nhost = "http://127.0.0.1:11434\\u001b[2J"\n'),
    "host_in_pool": ("key llm.hosts[1]: 'http://gpu2:99999' is not a valid host",
                     b'[llm]\nhosts = ["http://gpu1:11434", "http://gpu2:99999"]\n'),
    "model_empty": ("key llm.model is empty", b'[llm]\nmodel = ""\n'),
    "model_blank": ("key llm.model is empty", b'[llm]\nmodel = "   "\n'),
    "num_ctx_below_reply": ("llm.num_ctx = 1024 leaves 0 tokens for the conversation after llm.max_reply_tokens = 1024",
                            b"[llm]\nnum_ctx = 1024\nmax_reply_tokens = 1024\n"),
    "bom": ("line 1: the file starts with a UTF-8 byte order mark (BOM)", b'\xef\xbb\xbf[llm]\nmodel = "x"\n'),
}
#: Files whose first bytes are the point of the case (no "# expect" line in front of them).
HEADLESS = {"utf16", "bom"}


def write_configs() -> None:
    out = HERE / "config"
    out.mkdir(exist_ok=True)
    for name, (expect, body) in CONFIGS.items():
        head = b"" if name in HEADLESS else f"# expect: {expect}\n".encode()
        (out / f"{name}.toml").write_bytes(head + body)
    (out / "EXPECT.json").write_text(json.dumps({f"{n}.toml": e for n, (e, _) in CONFIGS.items()}, indent=1) + "\n")


def jl(*records: object) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode()) + b"\n"
                    for r in records)


def conv(cid: str, *texts: str) -> dict:
    return {"id": cid, "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                                    for i, t in enumerate(texts)]}


CONTROL = "esc \x1b[31mRED\x1b[0m bel\x07 nul\x00 cr\rX bs\x08 del\x7f csi\x9b2J osc\x1b]0;pwned\x07 nel\x85 rlo\u202e."

IMPORTS: dict[str, tuple[dict, bytes]] = {
    "messages_mixed.jsonl": (
        {"format": "messages", "exit": 0, "conversations": 5, "messages": 7,
         "problems": ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "line 10", "line 11",
                      "line 14", "line 15", "line 16", "line 17", "line 18", "line 21"]},
        b"",
    ),
    "messages_invalid_utf8.jsonl": (
        {"format": "messages", "exit": 0, "conversations": 2, "messages": 2,
         "problems": ["line 2", "line 3", "line 4", "line 5"]},
        b"",
    ),
    "sharegpt_truncated.json": (
        {"format": "sharegpt", "exit": 0, "conversations": 2, "messages": 4, "problems": ["record 2"]},
        b"",
    ),
    "sharegpt_garbage.json": (
        {"format": "sharegpt", "exit": 0, "conversations": 3, "messages": 6,
         "problems": ["record 1", "record 2", "record 3", "record 5", "record 6", "record 7", "record 8"]},
        b"",
    ),
    "arawn_torn.jsonl": (
        {"format": "arawn", "exit": 0, "conversations": 2, "messages": 4,
         "problems": ["line 3", "line 4", "line 5", "line 8"]},
        b"",
    ),
    "only_bad_records.jsonl": ({"format": "messages", "exit": 0, "conversations": 0, "messages": 0,
                                "problems": ["line 1", "line 2"], "args": ["--format", "messages"]}, b""),
    "empty.jsonl": ({"exit": 2, "error": "the file is empty"}, b""),
    "whitespace_only.json": ({"exit": 2, "error": "the file is empty"}, b"  \n\t\n\r\n"),
    "not_json.txt": ({"exit": 2, "error": "no recognizable format"}, b"User: hello\nAssistant: hi\n"),
    "utf16.json": ({"exit": 2, "error": "no recognizable format"},
                   json.dumps([{"id": 1, "conversations": [{"from": "human", "value": "x"}]}]).encode("utf-16")),
    "unrecognized_records.jsonl": ({"exit": 2, "error": "no recognizable format"},
                                   jl({"foo": 1}, {"bar": [1, 2]}, [1, 2, 3])),
    "arawn_as_array.json": ({"exit": 2, "error": "the arawn format is JSON Lines", "args": ["--format", "arawn"]},
                            b'[{"session_id": "s", "role": "user", "content": "x"}]'),
}


def messages_mixed() -> bytes:
    lines = [
        b"\xef\xbb\xbf" + jl(conv("ok-1", "MARKER-corpus_a hello", "hi")),   # 1 ok (after a BOM)
        jl(conv("ok-2", "second " + CONTROL)),                               # 2 ok, control characters kept
        b'{"id": "bad-json", "messages": [\n',                               # 3 invalid JSON
        jl({"id": "no-list", "messages": "hello"}),                          # 4 messages not a list
        jl({"id": "empty", "messages": []}),                                 # 5 no messages
        jl({"id": "role", "messages": [{"role": "wizard", "content": "x"}]}),  # 6 unknown role
        jl({"id": "content", "messages": [{"role": "user", "content": 42}]}),  # 7 content not a string
        jl([1, 2, 3]),                                                       # 8 not an object
        jl({"id": True, "messages": [{"role": "user", "content": "x"}]}),    # 9 id is a boolean
        b'{"id": ' + b"7" * 5000 + b', "messages": [{"role": "user", "content": "x"}]}\n',  # 10 4300+ digits
        b'{"messages": ' + b"[" * 50000 + b"]" * 50000 + b"}\n",             # 11 nested 50000 deep
        b"\r\n",                                                             # 12 blank (CRLF): skipped silently
        jl({"id": "sur", "messages": [{"role": "user", "content": "lone \\ud800"}]}).replace(b"\\\\", b"\\"),  # 14 \ud800
        jl({"id": "ts", "messages": [{"role": "user", "content": "x", "timestamp": "yesterday"}]}),  # 15
        jl({"id": "ts-range", "messages": [{"role": "user", "content": "x",
                                            "timestamp": "0001-01-01T00:00:00+01:00"}]}),  # 16 < year 1
        jl({"id": "meta", "messages": [{"role": "user", "content": "x", "metadata": "nope"}]}),  # 17
        b"\x00\x00\x00\x00\n",                                               # 18 NUL bytes
        jl({"id": "old", "messages": [{"role": "user", "content": "year 999 MARKER-corpus_old",  # 20 ok
                                       "timestamp": "0999-06-01T12:00:00Z"}]}),
        b'{"id": "cut", "messages": [{"role": "user", "content": "cut off mid-wri',  # 21 torn last line
    ]
    # file lines: 1-12 above, 13 a good conversation with CRLF line ending, 14-18 the next five above,
    # 19 a good conversation with a NUL character (JSON \u0000) in its content, 20-21 the last two above
    ok_crlf = jl(conv("ok-3", "crlf line MARKER-corpus_crlf", "reply")).replace(b"\n", b"\r\n")
    nul = jl(conv("ok-4", "nul \x00 inside MARKER-corpus_nul"))
    return b"".join(lines[:12]) + ok_crlf + b"".join(lines[12:17]) + nul + b"".join(lines[17:])


def messages_invalid_utf8() -> bytes:
    return b"".join([
        jl(conv("u-1", "valid café MARKER-utf8_a")),                        # 1 ok
        b'{"id": "u-2", "messages": [{"role": "user", "content": "caf\xe9"}]}\n',  # 2 latin-1 byte
        b'{"id": "u-3", "messages": [{"role": "user", "content": "\xc0\xaf"}]}\n',  # 3 overlong
        b'{"id": "u-4", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}\n',  # 4 encoded surrogate
        b'{"id": "u-5", "messages": [{"role": "user", "content": "\xf0\x9f\x98"}]}\n',  # 5 cut 4-byte sequence
        jl(conv("u-6", "emoji \U0001f600 MARKER-utf8_b")),                  # 6 ok
    ])


def sg(cid: str, *texts: str) -> dict:
    return {"id": cid, "conversations": [{"from": "human" if i % 2 == 0 else "gpt", "value": t}
                                         for i, t in enumerate(texts)]}


def sharegpt_truncated() -> bytes:
    body = json.dumps([sg("t-1", "first MARKER-sg_a", "reply"), sg("t-2", "second", "reply MARKER-sg_b"),
                       sg("t-3", "third, cut off", "never seen")], indent=1).encode()
    return body[: body.index(b"cut off") + 3]


def sharegpt_garbage() -> bytes:
    good = [json.dumps(sg(f"g-{i}", f"good {i} MARKER-sg_g{i}", "ok")).encode() for i in range(3)]
    return b"[\n" + b",\n".join([
        good[0][:-1] + b', "extra": {"deep": [1, 2, {"x": null}]}}',          # record 0 ok (unknown field)
        b'{"id": "g-bad-utf8", "conversations": [{"from": "human", "value": "\xff\xfe"}]}',  # 1 invalid UTF-8
        b'"just a string"',                                                   # 2 not an object
        b'{"id": "g-no-value", "conversations": [{"from": "human"}]}',        # 3 no value
        good[1],                                                              # 4 ok
        b'{"id": "g-from", "conversations": [{"from": 7, "value": "x"}]}',    # 5 from not a string
        b"",                                                                  # 6 missing value (",,")
        b'{"id": "g-broken" "conversations": []}',                            # 7 invalid JSON
        b'{"id": "g-sur", "conversations": [{"from": "gpt", "value": "\\udfff"}]}',  # 8 lone surrogate
        good[2],                                                              # 9 ok
    ]) + b"\n]\n"


def arawn_torn() -> bytes:
    def rec(sid: str, role: str, content: str, **kw: object) -> dict:
        return {"id": f"m-{content[:8]}", "workstream_id": "w", "session_id": sid, "role": role,
                "content": content, "timestamp": "2026-11-28T18:44:58.123456Z", "metadata": None, **kw}
    return b"".join([
        jl(rec("s1", "user", "s1 first MARKER-arawn_a")),                    # 1 ok
        jl(rec("s2", "user", "s2 first MARKER-arawn_b")),                    # 2 ok (sessions interleave)
        jl({**rec("", "user", "no session"), "session_id": ""}),             # 3 empty session_id
        jl(rec("s1", "robot", "bad role")),                                  # 4 unknown role
        jl({**rec("s1", "user", "x"), "content": None}),                     # 5 content null
        jl(rec("s1", "assistant", "s1 reply")),                              # 6 ok
        jl(rec("s2", "assistant", "s2 reply")),                              # 7 ok
        json.dumps(rec("s1", "user", "torn off")).encode()[:40],             # 8 torn last line (crash mid-write)
    ])


def only_bad() -> bytes:
    return jl({"id": "x", "messages": "nope"}, {"id": "y", "messages": [{"role": "user"}]})


def write_imports() -> None:
    out = HERE / "import"
    out.mkdir(exist_ok=True)
    bodies = {
        "messages_mixed.jsonl": messages_mixed(),
        "messages_invalid_utf8.jsonl": messages_invalid_utf8(),
        "sharegpt_truncated.json": sharegpt_truncated(),
        "sharegpt_garbage.json": sharegpt_garbage(),
        "arawn_torn.jsonl": arawn_torn(),
        "only_bad_records.jsonl": only_bad(),
    }
    expect = {}
    for name, (spec, body) in IMPORTS.items():
        (out / name).write_bytes(bodies.get(name, body))
        expect[name] = spec
    (out / "EXPECT.json").write_text(json.dumps(expect, indent=1) + "\n")


if __name__ == "__main__":
    write_configs()
    write_imports()
