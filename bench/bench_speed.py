"""Benchmark issue 17 ("fast everywhere"); prints one JSON document, writes bench/results/speed.json.

    python bench/bench_speed.py [--quick] [--runs 7] [--cli-runs 15]

Every figure is a ratio taken in one run, the two sides interleaved (A B A B ...), because
the machine is shared; the load average is recorded before and after each part.

1. Status line after the first frame, with an Ollama-protocol server up
   (`python -m tests.ollama_server --engine scripted`, its own process, like Ollama):
   in-process app (`create_app` + `run_test(size=(160, 45))`, a fresh interpreter per
   run, imports before the clock), data dir with 1,000 workstreams. Time from the first
   frame showing the workstream list to the first frame whose status line is complete
   (backend reachable, the model's presence known, the queue length). Ours (the light
   probe, `arawn_core.llm.probe`) against the previous way in the same run: the backend
   check through the full client (`LazyBackend.info` resolving the ollama backend, its
   imports in a thread). Target: <= 0.15 s.
2. `python -m arawn_tui --headless --data-dir D ws list` (and the installed `arawn`
   script) over 1,000 workstreams / 100,000 sessions against `python -c pass`, pairwise
   interleaved, median of the pairwise ratios. Reference in the same run: the same
   command forced through the full engine (`ArawnCore` on asyncio/aiosqlite). Target: <= 3x.
3. TUI start, 1,000 workstreams / 100,000 sessions against an empty store, interleaved,
   same method as bench_tui 1a (fresh interpreter, until the first frame with the list
   and the status line; Ollama host on a port with nothing listening). Target: <= 1.1x.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, base_parser, finish, log, machine_info, now_iso, settings_for  # noqa: E402
from bench_tui import SIZE, free_port, hook_display, start_toml  # noqa: E402

STATUS_TARGET_S = 0.15
CLI_TARGET_RATIO = 3.0
START_TARGET_RATIO = 1.1
MODEL = "scripted"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def env_for(home: Path) -> dict[str, str]:
    """A fresh user (no config, no OLLAMA_HOST) running this checkout's code."""
    env = {k: v for k, v in os.environ.items() if k not in ("ARAWN_CONFIG", "OLLAMA_HOST")}
    env.update(PYTHONPATH=str(REPO), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               HOME=str(home))
    return env


# --------------------------------------------------------------------------- child: one app start


async def start_once(data_dir: str, toml: str, expect: int, old_check: bool, reachable: bool) -> dict[str, Any]:
    from arawn_tui.__main__ import prepare_backend
    from arawn_tui.factory import create_app

    if old_check:  # the previous way: the status line waits for the full client
        from arawn_core.llm.lazy import LazyBackend

        async def full_client_info(self: Any) -> Any:
            return await (await self.resolve()).info()

        LazyBackend.info = full_client_info  # type: ignore[method-assign]
    settings = settings_for(data_dir, toml)
    backend = await prepare_backend(settings)
    marks: dict[str, float] = {}
    done = asyncio.Event()
    t0 = time.perf_counter()
    app = create_app(settings, backend)

    def on_frame(t: float, size: int) -> None:
        marks.setdefault("first_frame", t)
        screen = getattr(app, "main_screen", None)
        if screen is None or not screen.is_attached or not screen.loaded:
            return
        marks.setdefault("first_frame_with_list", t)
        info = screen.status.info
        if info is not None:
            marks.setdefault("first_frame_with_status", t)
            if info.reachable:
                marks.setdefault("status_reachable", t)
            if info.reachable or not reachable:
                done.set()

    hook_display(app, on_frame)
    async with app.run_test(size=SIZE):
        deadline = time.monotonic() + 60
        try:
            await asyncio.wait_for(done.wait(), 60)
        except asyncio.TimeoutError:
            raise RuntimeError(f"no complete status line within 60 s: {marks}") from None
        wl = app.main_screen.workstream_list
        while not (wl.complete and wl.option_count == expect):  # the first screenful, then the rest
            if time.monotonic() > deadline:
                raise RuntimeError(f"the list did not reach {expect} rows within 60 s")
            await asyncio.sleep(0.002)
        marks["list_complete"] = time.perf_counter()
        options = wl.option_count
        line = str(app.main_screen.status.render())
        loaded = sorted(m for m in ("ollama", "httpx") if m in sys.modules)
        await app.action_quit()
    if options != expect:
        raise RuntimeError(f"the list has {options} options, expected {expect}")
    out = {k: round((v - t0) * 1000, 1) for k, v in marks.items()}
    out["status_line"] = line
    out["client_modules_loaded"] = loaded
    return out


def child(args: Any) -> dict[str, Any]:
    import arawn_core.core  # noqa: F401 - imports before the clock starts
    import arawn_tui.app  # noqa: F401
    import arawn_tui.factory  # noqa: F401

    return asyncio.run(start_once(args.data_dir, Path(args.toml).read_text(), args.expect, args.old_check,
                                  args.reachable))


def run_child(data_dir: Path, toml: str, expect: int, old_check: bool = False,
              reachable: bool = False) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(toml)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--data-dir", str(data_dir),
               "--toml", fh.name, "--expect", str(expect)] + (["--old-check"] if old_check else []) \
            + (["--reachable"] if reachable else [])
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(fh.name)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- parts


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.ollama_server", "--port", "0", "--engine", "scripted"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"the test server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip()


def part_status(data_dir: Path, n_ws: int, runs: int) -> dict[str, Any]:
    server, url = start_server()
    try:
        toml = f'[llm]\nbackend = "ollama"\nhost = "{url}"\nmodel = "{MODEL}"\n'
        run_child(data_dir, toml, n_ws, reachable=True)  # warm-up (page cache, .pyc)
        ours, old = [], []
        for i in range(runs):
            ours.append(run_child(data_dir, toml, n_ws, reachable=True))
            old.append(run_child(data_dir, toml, n_ws, old_check=True, reachable=True))
            log(f"  run {i + 1}: status after list frame: probe {gap(ours[-1]):.0f} ms, full client {gap(old[-1]):.0f} ms")
    finally:
        server.kill()
        server.wait()
    ours_gap = statistics.median(gap(r) for r in ours)
    old_gap = statistics.median(gap(r) for r in old)
    return {
        "what": "time from the first frame showing the workstream list to the first frame whose status line says"
                " the backend is reachable (model presence and queue known); data dir with"
                f" {n_ws} workstreams; server: tests.ollama_server --engine scripted in its own process",
        "ours_probe": {"status_after_list_frame_ms": round(ours_gap, 1),
                       "status_after_first_frame_ms": round(statistics.median(
                           r["status_reachable"] - r["first_frame"] for r in ours), 1),
                       "runs_ms": [round(gap(r), 1) for r in ours],
                       "client_modules_loaded": ours[0]["client_modules_loaded"],
                       "status_line": ours[0]["status_line"]},
        "previous_full_client_check": {"status_after_list_frame_ms": round(old_gap, 1),
                                       "runs_ms": [round(gap(r), 1) for r in old],
                                       "client_modules_loaded": old[0]["client_modules_loaded"]},
        "ratio_previous_over_ours": round(old_gap / ours_gap, 1) if ours_gap else None,
        "target_s": STATUS_TARGET_S,
        "target_met": ours_gap / 1000 <= STATUS_TARGET_S,
    }


def gap(r: dict[str, Any]) -> float:
    return r["status_reachable"] - r["first_frame_with_list"]


FORCE_FULL = """
import sys
import arawn_core.readonly as r
r.ReadOnlyCore.open = classmethod(lambda cls, settings: None)
from arawn_tui.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {proc.stderr[-800:]}")
    return wall


def part_cli(data_dir: Path, runs: int, home: Path) -> dict[str, Any]:
    env = env_for(home)
    args = ["--headless", "--data-dir", str(data_dir), "ws", "list"]
    script = shutil.which("arawn")
    commands: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m arawn_tui --headless ws list": [sys.executable, "-m", "arawn_tui", *args],
        "python -m arawn_tui --headless --json ws list": [sys.executable, "-m", "arawn_tui", *args[:3], "--json",
                                                          *args[3:]],
        "(reference) same command through the full engine": [sys.executable, "-c", FORCE_FULL, *args],
        "python -m arawn_tui --headless ws show 'project 0050'": [sys.executable, "-m", "arawn_tui", *args[:3], "ws",
                                                                 "show", "project 0050"],
        "python -m arawn_tui --headless session list 'project 0050'": [
            sys.executable, "-m", "arawn_tui", *args[:3], "session", "list", "project 0050"],
    }
    if script:
        commands["arawn --headless ws list (the installed script)"] = [script, *args]
    for cmd in commands.values():  # warm-up
        _timed(cmd, env, home)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):  # interleaved: each round runs every command once
        for name, cmd in commands.items():
            times[name].append(_timed(cmd, env, home))
    base = times["python -c pass"]
    out: dict[str, Any] = {"what": "whole-process wall time of each command, all commands run in turn in each of"
                                   f" {runs} rounds; ratio = median over rounds of (command / python -c pass in the"
                                   " same round)", "commands": {}}
    for name, ts in times.items():
        out["commands"][name] = {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4),
                                 "ratio_to_python_pass": round(statistics.median(t / b for t, b in zip(ts, base)), 2)}
    ours = out["commands"]["python -m arawn_tui --headless ws list"]["ratio_to_python_pass"]
    out["target_ratio"] = CLI_TARGET_RATIO
    out["target_met"] = all(v["ratio_to_python_pass"] <= CLI_TARGET_RATIO for k, v in out["commands"].items()
                            if not k.startswith("(reference)"))
    out["headline_ratio"] = ours
    imp = subprocess.run([sys.executable, "-X", "importtime", "-m", "arawn_tui", *args], env=env, cwd=home,
                         capture_output=True, text=True)
    modules = [line.split("|")[-1].strip() for line in imp.stderr.splitlines() if line.startswith("import time:")]
    out["imported_by_ws_list"] = {
        "modules": len(modules),
        "heavy_ones_loaded": sorted({m.split(".")[0] for m in modules} & {"asyncio", "aiosqlite", "textual", "ollama",
                                                                         "httpx", "markdown_it", "tomllib"})
        + (["arawn_core.compression"] if any(m.startswith("arawn_core.compression") for m in modules) else []),
    }
    return out


def part_start(big: Path, empty: Path, n_ws: int, runs: int) -> dict[str, Any]:
    port = free_port()
    toml = start_toml(port)
    run_child(big, toml, n_ws)
    run_child(empty, toml, 0)
    big_runs, empty_runs = [], []
    for i in range(runs):
        big_runs.append(run_child(big, toml, n_ws))
        empty_runs.append(run_child(empty, toml, 0))
        log(f"  run {i + 1}: big {big_runs[-1]['first_frame_with_status']} ms, empty "
            f"{empty_runs[-1]['first_frame_with_status']} ms")
    key = "first_frame_with_status"
    ratios = [b[key] / e[key] for b, e in zip(big_runs, empty_runs)]
    return {
        "what": "fresh interpreter per run (imports before the clock); from just before create_app to the first frame"
                " after the list is shown (its first screenful) with the status line's backend check; [llm] backend ="
                " \"ollama\" on a port with nothing listening; big and empty runs interleaved",
        "big": {"workstreams": n_ws, "median_ms": round(statistics.median(b[key] for b in big_runs), 1),
                "list_complete_median_ms": round(statistics.median(b["list_complete"] for b in big_runs), 1),
                "runs_ms": [b[key] for b in big_runs]},
        "empty": {"median_ms": round(statistics.median(e[key] for e in empty_runs), 1),
                  "runs_ms": [e[key] for e in empty_runs]},
        "ratio_big_over_empty": round(statistics.median(ratios), 3),
        "target_ratio": START_TARGET_RATIO,
        "target_met": statistics.median(ratios) <= START_TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7, help="app starts per side (parts 1 and 3)")
    p.add_argument("--cli-runs", type=int, default=15, help="rounds of the CLI commands (part 2)")
    p.add_argument("--skip", action="append", default=[], choices=["status", "cli", "start"])
    p.add_argument("--child", action="store_true", help="(internal) one app start")
    p.add_argument("--data-dir")
    p.add_argument("--toml")
    p.add_argument("--expect", type=int)
    p.add_argument("--old-check", action="store_true")
    p.add_argument("--reachable", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    from bench_storage import build_ws_list_dataset

    root = Path(args.data_root)
    root.mkdir(parents=True, exist_ok=True)
    n_ws = 100 if args.quick else 1_000
    runs = 3 if args.quick else args.runs
    info = build_ws_list_dataset(root, n_ws, 100, 2, args.rebuild)
    work = Path(tempfile.mkdtemp(prefix="arawn-bench-speed-", dir=root))
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "speed", "issue": "17: fast everywhere", "quick": args.quick,
                              "date": now_iso(), "machine": machine_info(),
                              "dataset": {k: info[k] for k in ("data_dir", "workstreams", "sessions", "messages")},
                              "load": {}}
    try:
        big = work / "big"
        subprocess.run(["cp", "-a", info["data_dir"], str(big)], check=True)  # upgraded (schema 4) in the copy
        empty = work / "empty"

        async def prepare() -> None:
            from arawn_core.core import ArawnCore
            from tests.fakes import FakeBackend

            for d in (big, empty):
                core = await ArawnCore.open(settings_for(d), FakeBackend())  # migrate once, outside the clock
                await core.close(end_sessions=False)

        asyncio.run(prepare())
        home = work / "home"
        home.mkdir()
        parts = [("status", lambda: part_status(big, n_ws, runs)),
                 ("cli", lambda: part_cli(big, 5 if args.quick else args.cli_runs, home)),
                 ("start", lambda: part_start(big, empty, n_ws, runs))]
        for name, fn in parts:
            if name in args.skip:
                continue
            log(name)
            before = load()
            report[name] = fn()
            report["load"][name] = {"before": before, "after": load()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["machine"]["loadavg_end"] = load()
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    finish("speed", report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
