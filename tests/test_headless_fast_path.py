"""Read-only headless commands take the shortest path to SQLite: no event loop, no aiosqlite,
nothing of the UI, the model clients, Markdown or compression; and they show exactly what
the full engine shows, falling back to it whenever the store needs a repair first."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from arawn_core.core import ArawnCore
from arawn_core.models import Message, new_id, utc_now
from arawn_core.store import jsonl
from tests.conftest import make_settings
from tests.fakes import FakeBackend

REPO = Path(__file__).resolve().parent.parent
NEVER = ("textual", "ollama", "httpx", "httpcore", "markdown_it", "arawn_core.compression", "arawn_core.core")
FAST = ("asyncio", "aiosqlite")  # what the read path does without

RUN = """
import contextlib, io, json, sys
from arawn_tui.__main__ import main
argv = json.loads(sys.argv[1])
if len(sys.argv) > 2:  # force the full path, to compare
    import arawn_core.readonly as r
    r.ReadOnlyCore.open = classmethod(lambda cls, settings: None)
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main(argv)
print(json.dumps({"code": code, "out": buf.getvalue(), "modules": sorted(sys.modules)}))
"""


def run_cli(tmp_path: Path, *argv: str, full: bool = False) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    cmd = [sys.executable, "-c", textwrap.dedent(RUN), json.dumps(["--headless", *argv])] + (["full"] if full else [])
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loaded(result: dict, names: tuple[str, ...]) -> list[str]:
    return [m for m in result["modules"] if any(m == n or m.startswith(n + ".") for n in names)]


async def make_store(data_dir: Path) -> tuple[ArawnCore, str, str]:
    core = await ArawnCore.open(make_settings(data_dir), FakeBackend())
    a = await core.create_workstream("Thesis", ["phd"])
    b = await core.create_workstream("Garden")
    for text in ("first", "second"):
        await core.append_message(a.id, "user", text)
        await core.end_session(a.id)  # queues a compression job
    await core.append_message(b.id, "user", "live")
    return core, a.id, b.id


async def test_ws_list_and_jobs_list_load_none_of_the_engine(tmp_path: Path) -> None:
    data = tmp_path / "data"
    core, a, b = await make_store(data)
    await core.close(end_sessions=False)

    listing = run_cli(tmp_path, "--data-dir", str(data), "ws", "list")
    assert listing["code"] == 0
    rows = {line.split()[0]: line.split()[1:3] for line in listing["out"].splitlines()[1:]}
    assert rows == {a: ["2", "pending"], b: ["1", "none"]}
    as_json = run_cli(tmp_path, "--data-dir", str(data), "--json", "ws", "list")
    jobs = run_cli(tmp_path, "--data-dir", str(data), "--json", "jobs", "list")
    assert {j["session_id"] for j in json.loads(jobs["out"])} and len(json.loads(jobs["out"])) == 2
    for result in (listing, as_json, jobs):
        assert loaded(result, NEVER) == []
        assert loaded(result, FAST) == []


async def test_the_read_path_shows_what_the_full_engine_shows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    core, a, _ = await make_store(data)
    assert all(o.ok for o in await core.work_queue(a))  # summaries (and done jobs) to show
    sessions = [s.id for s in await core.list_sessions(a)]
    await core.archive_workstream(a)
    await core.close(end_sessions=False)
    for argv in (["--json", "ws", "list"], ["--json", "ws", "list", "--all"], ["--json", "jobs", "list"],
                 ["jobs", "list", "--state", "pending"], ["ws", "list"], ["--json", "ws", "show", "thesis"],
                 ["ws", "show", a], ["--json", "session", "list", "Thesis"], ["session", "list", a],
                 ["--json", "summary", "Thesis"], ["--json", "summary", a, "--session", sessions[0]]):
        fast = run_cli(tmp_path, "--data-dir", str(data), *argv)
        full = run_cli(tmp_path, "--data-dir", str(data), *argv, full=True)
        assert loaded(fast, FAST) == [] and "aiosqlite" in full["modules"]
        assert fast["out"] == full["out"] and fast["code"] == full["code"] == 0, argv


async def test_a_store_that_needs_repair_goes_through_the_full_open(tmp_path: Path) -> None:
    """A writer died between its JSONL append and SQLite: the next `ws list` repairs (full
    path) and counts the recovered session; the one after reads the repaired store directly."""
    data = tmp_path / "data"
    core, a, _ = await make_store(data)
    path = core.repo.messages_path(a)
    await core.close(end_sessions=False)
    orphan = Message(new_id(), a, new_id(), "user", "only in the JSONL", utc_now())
    jsonl.append_lines(path, [orphan.to_json_line()])

    first = run_cli(tmp_path, "--data-dir", str(data), "--json", "ws", "list")
    assert {w["id"]: w["session_count"] for w in json.loads(first["out"])}[a] == 3
    assert "aiosqlite" in first["modules"]  # it had to repair
    second = run_cli(tmp_path, "--data-dir", str(data), "--json", "ws", "list")
    assert second["out"] == first["out"] and loaded(second, FAST) == []


def test_a_missing_data_dir_is_created_by_the_full_path(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--data-dir", str(tmp_path / "new"), "ws", "list")
    assert result["code"] == 0 and result["out"].splitlines() == [result["out"].splitlines()[0]]
    assert (tmp_path / "new" / "arawn.db").is_file()


async def test_show_session_list_and_summary_read_directly_and_fail_the_same_way(tmp_path: Path) -> None:
    data = tmp_path / "data"
    core, a, b = await make_store(data)
    await core.create_workstream("Garden")  # a second "Garden": the title is ambiguous
    await core.close(end_sessions=False)
    for argv in (["ws", "show", "Thesis"], ["session", "list", a], ["--json", "summary", a]):
        result = run_cli(tmp_path, "--data-dir", str(data), *argv)
        assert loaded(result, NEVER) == [] and loaded(result, FAST) == [], argv
    shown = json.loads(run_cli(tmp_path, "--data-dir", str(data), "--json", "ws", "show", "thesis")["out"])
    assert shown["id"] == a and shown["session_count"] == 2 and len(shown["sessions"]) == 2
    for argv, code in ((["ws", "show", "nothing"], 2), (["session", "list", "Garden"], 2), (["summary", a], 1)):
        fast = _run_failing(tmp_path, "--data-dir", str(data), *argv)
        full = _run_failing(tmp_path, "--data-dir", str(data), *argv, full=True)
        assert fast == full and fast[0] == code, (argv, fast, full)


def _run_failing(tmp_path: Path, *argv: str, full: bool = False) -> tuple[int, str]:
    """(exit code, stderr) of a command expected to fail with one line."""
    code = RUN.replace("print(json.dumps(", "sys.exit(code)\nprint(json.dumps(")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    cmd = [sys.executable, "-c", textwrap.dedent(code), json.dumps(["--headless", *argv])] + (["full"] if full else [])
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr.strip()
