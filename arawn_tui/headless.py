"""`arawn --headless`: the scripting interface over the same ArawnCore as the TUI.

Exit codes: 0 ok; 1 the work failed; 2 bad usage, config or input (one line
on stderr, no traceback); 3 the LLM backend is unreachable.

Scripts call these commands in loops, so the engine (asyncio, aiosqlite, the
facade) is imported only by the commands that use it: `ws list`, `ws show`,
`session list`, `summary` and `jobs list` run their handlers over `ArawnCore`'s
read-only half (`arawn_core.readonly`, plain sqlite3) whenever the store needs
no repair.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from arawn_core.config import load_settings
from arawn_core.errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, ArawnError, BackendUnavailable, UsageError
from arawn_core.errors import CommandFailed as CliError
from arawn_core.models import ROLES, JobState
from arawn_tui import cli_memory as mem
from arawn_tui import cli_output as out
from arawn_tui.cli_output import bounded_int
from arawn_tui.sanitize import StreamSanitizer

if TYPE_CHECKING:
    from arawn_core.config import Settings
    from arawn_core.core import ArawnCore
    from arawn_core.llm.base import LLMBackend
    from arawn_core.models import CompressionJob, Workstream

EXIT_OK = 0


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)


#: The most hits one search returns (a bigger --limit is refused, not silently capped).
MAX_SEARCH_LIMIT = 10_000


def build_parser() -> Parser:
    p = Parser(prog="arawn --headless", description="Drive arawn from scripts.")
    p.add_argument("--config", help="path to arawn.toml")
    p.add_argument("--data-dir", help="data directory (overrides the config)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    ws = sub.add_parser("ws", help="workstreams").add_subparsers(dest="ws_cmd", required=True, parser_class=Parser)
    ws_list = ws.add_parser("list", help="workstreams with session counts and compression status")
    ws_list.add_argument("--all", action="store_true", help="include archived workstreams")
    create = ws.add_parser("create", help="create a workstream; prints its id")
    create.add_argument("title")
    create.add_argument("--tag", action="append", default=[])
    ws.add_parser("show", help="a workstream, its summary and sessions").add_argument("ws")
    ws.add_parser("archive", help="archive a workstream").add_argument("ws")
    rename = ws.add_parser("rename", help="rename a workstream")
    rename.add_argument("ws")
    rename.add_argument("title")
    tag = ws.add_parser("tag", help="set a workstream's tags")
    tag.add_argument("ws")
    tag.add_argument("tags", nargs="*")
    fork = ws.add_parser("fork", help="a new workstream starting from this one's summary and pins; prints its id")
    fork.add_argument("ws")
    fork.add_argument("title")

    chat = sub.add_parser("chat", help="send a message in the active session and stream the reply")
    chat.add_argument("ws")
    chat.add_argument("message", help="the message, or - to read stdin")

    session = sub.add_parser("session", help="sessions").add_subparsers(dest="session_cmd", required=True,
                                                                       parser_class=Parser)
    session.add_parser("list", help="a workstream's sessions").add_argument("ws")
    end = session.add_parser("end", help="end the active session (queues compression)")
    end.add_argument("ws")
    end.add_argument("--wait", action="store_true", help="wait for the compression to finish")
    show = session.add_parser("show", help="a session's transcript")
    show.add_argument("session_id")
    srename = session.add_parser("rename", help="give a session a title")
    srename.add_argument("session_id")
    srename.add_argument("title")

    compress = sub.add_parser("compress", help="compress now and wait; prints the workstream summary")
    compress.add_argument("ws")
    compress.add_argument("--session")
    compress.add_argument("--rebuild", action="store_true", help="recompute from all session summaries")
    compress.add_argument("--focus", metavar="TEXT", help="what this run should keep above all (recorded in the"
                          " summary's provenance)")

    summary = sub.add_parser("summary", help="print a stored summary")
    summary.add_argument("ws")
    summary.add_argument("--session")
    mem.add_summary_options(summary)

    imp = sub.add_parser("import", help="import conversations; each becomes an ended session")
    imp.add_argument("path")
    imp.add_argument("--workstream")
    imp.add_argument("--format", default="auto", choices=["auto", "arawn", "messages", "sharegpt", "chatgpt",
                                                            "openwebui", "oterm", "elia"])
    imp.add_argument("--compress", action="store_true", help="queue and run compression of what was imported")

    exp = sub.add_parser("export", help="write a workstream's history to stdout")
    exp.add_argument("ws")
    exp.add_argument("--format", default="jsonl", choices=["jsonl", "markdown"])

    jobs = sub.add_parser("jobs", help="the compression queue")
    jobs.add_argument("action", nargs="?", default="list", choices=["list", "run", "retry"])
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--state", choices=[s.value for s in JobState])

    search = sub.add_parser("search", help="full-text search over messages and summaries")
    search.add_argument("query")
    search.add_argument("--workstream")
    search.add_argument("--role", choices=sorted(ROLES), help="only messages of this role")
    search.add_argument("--since", help="ISO date, e.g. 2026-11-01")
    search.add_argument("--limit", type=bounded_int(1, MAX_SEARCH_LIMIT), default=20,
                        help=f"most hits to show (1-{MAX_SEARCH_LIMIT}, default 20)")

    mem.add_parsers(sub)
    sub.add_parser("reindex", help="rebuild the SQLite index from the JSONL files")
    sub.add_parser("doctor", help="check config, data dir, backend, model and context size")
    return p


def _is_read_only(args: argparse.Namespace) -> bool:
    return ((args.command == "ws" and args.ws_cmd in ("list", "show")) or args.command == "summary"
            or (args.command == "session" and args.session_cmd == "list")
            or (args.command == "jobs" and args.action == "list"))


def _read_only(args: argparse.Namespace, settings: Settings) -> int | None:
    """`ws list`, `ws show`, `session list`, `summary` and `jobs list` without the event loop: the
    same handlers over `ArawnCore`'s read-only half (`arawn_core.readonly`), when the store needs
    nothing; None: the command takes the full path (which repairs what needs it)."""
    if not _is_read_only(args):
        return None
    import sqlite3

    from arawn_core.readonly import NeedsEngine, ReadOnlyCore, run_without_loop

    core = ReadOnlyCore.open(settings)
    if core is None:
        return None
    try:
        return run_without_loop(HANDLERS[args.command](core, args))  # the handler prints after its reads
    except (sqlite3.Error, NeedsEngine):
        return None  # the file changed under us, or more than reads: the full path (which names any file)
    finally:
        core.close()


def show_ws_list(args: argparse.Namespace, items: list[Workstream]) -> None:
    out.emit(args, lambda: [w.to_dict() for w in items], lambda: out.ws_table(items))


def show_jobs(args: argparse.Namespace, jobs: list[CompressionJob]) -> None:
    out.emit(args, [j.to_dict() for j in jobs], lambda: out.jobs_table(jobs))


async def _run(args: argparse.Namespace, settings: Settings, backend: LLMBackend | None) -> int:
    from arawn_core.core import ArawnCore

    core = await ArawnCore.open(settings, backend)
    try:
        handler = HANDLERS[args.command]
        return await handler(core, args)
    finally:
        _print_notices(core.notices)
        await core.close(end_sessions=False)


def _print_notices(notices: list[str], limit: int = 20) -> None:
    """Problems met reading the files (bad lines, a rebuilt index): one stderr line each."""
    for text in notices[:limit]:
        print(f"arawn: warning: {out.line(text)}", file=sys.stderr)
    if len(notices) > limit:
        print(f"arawn: warning: ... and {len(notices) - limit} more", file=sys.stderr)


# ---- command handlers -------------------------------------------------------

async def cmd_ws(core: ArawnCore, args: argparse.Namespace) -> int:
    if args.ws_cmd == "list":
        show_ws_list(args, await core.list_workstreams(include_archived=args.all))
        if any("could not be indexed" in n for n in core.notices):
            return EXIT_FAILED  # the list is incomplete: the warnings above say which and why
    elif args.ws_cmd == "create":
        ws = await core.create_workstream(args.title, args.tag)
        out.emit(args, ws.to_dict(), lambda: print(ws.id))
    elif args.ws_cmd == "show":
        ws = await core.resolve_workstream(args.ws)
        sessions = await core.list_sessions(ws.id)
        summary = await core.workstream_summary(ws.id)
        origin, pins, version = (await core.workstream_origin(ws.id), await core.list_pins(ws.id),
                                 await core.current_version(ws.id))
        doc = {**ws.to_dict(), "summary": summary.to_dict() if summary else None,
               "sessions": [s.to_dict() for s in sessions], "origin": origin, "pins": [p.to_dict() for p in pins],
               "summary_version": version.to_dict(with_text=False) if version else None}

        def text() -> None:
            if origin:
                print(mem.origin_line(origin))
            out.ws_show(ws, summary, sessions)
            if version:
                print(f"\nsummary version {version.number} ({version.author}); `summary WS --history` lists all")
            if pins:
                print(f"\n{len(pins)} pinned note(s) (`pins WS`)")

        out.emit(args, doc, text)
    elif args.ws_cmd == "archive":
        ws = await core.archive_workstream((await core.resolve_workstream(args.ws)).id)
        out.emit(args, ws.to_dict(), lambda: print(f"archived {ws.id} {out.line(ws.title)}"))
    elif args.ws_cmd == "rename":
        ws = await core.rename_workstream((await core.resolve_workstream(args.ws)).id, args.title)
        out.emit(args, ws.to_dict(), lambda: print(f"renamed {ws.id} to {out.line(ws.title)}"))
    elif args.ws_cmd == "fork":
        return await mem.cmd_fork(core, args)
    elif args.ws_cmd == "tag":
        ws = await core.set_tags((await core.resolve_workstream(args.ws)).id, args.tags)
        out.emit(args, ws.to_dict(), lambda: print(f"{ws.id} tags: {out.line(', '.join(ws.tags)) or '-'}"))
    return EXIT_OK


async def cmd_chat(core: ArawnCore, args: argparse.Namespace) -> int:
    ws = await core.resolve_workstream(args.ws)
    text = sys.stdin.read() if args.message == "-" else args.message
    if not text.strip():
        raise UsageError("the message is empty")
    fit = await core.pin_fit(ws.id)
    if fit.over_budget:  # never cut silently: say which pins the model will not see
        print(f"arawn: warning: {fit.warning()}", file=sys.stderr)
    parts: list[str] = []
    recalled: list[dict[str, Any]] = []
    shown = StreamSanitizer()  # the model's text: no terminal escapes reach the terminal
    try:
        async for piece in core.send(ws.id, text,
                                     on_recall=lambda r: recalled.extend(m.to_dict() for m in r.messages)):
            parts.append(piece)
            if not args.json:
                sys.stdout.write(shown.feed(piece))
                sys.stdout.flush()
    finally:
        if not args.json:
            sys.stdout.write(shown.flush())
    session = await core.active_session(ws.id)
    if args.json:
        out.print_json({"workstream_id": ws.id, "session_id": session.id if session else None,
                        "reply": "".join(parts), "recalled": recalled})
    else:
        sys.stdout.write("\n")
        if recalled:  # stdout is the reply alone; where it drew on is a note
            print(f"(recalled {len(recalled)} earlier message{'s' if len(recalled) != 1 else ''})", file=sys.stderr)
    return EXIT_OK


async def cmd_session(core: ArawnCore, args: argparse.Namespace) -> int:
    if args.session_cmd == "rename":
        return await mem.cmd_session_rename(core, args)
    if args.session_cmd == "show":
        messages = await core.session_messages(args.session_id)
        out.emit(args, [m.to_record() for m in messages], lambda: out.transcript(messages))
        return EXIT_OK
    ws = await core.resolve_workstream(args.ws)
    if args.session_cmd == "list":
        sessions = await core.list_sessions(ws.id)
        out.emit(args, [s.to_dict() for s in sessions], lambda: out.session_table(sessions))
        return EXIT_OK
    session = await core.end_session(ws.id, "explicit")
    if session is None:
        raise UsageError(f"workstream {ws.title!r} has no active session")
    code = EXIT_OK
    if args.wait:
        code = await _work(core, ws.id, args)
    doc = (await core.get_session(session.id)).to_dict()
    out.emit(args, doc, lambda: print(f"ended session {session.id}" + ("" if args.wait else
                                                                   " (compression queued)")))
    return code


async def _work(core: ArawnCore, workstream_id: str | None, args: argparse.Namespace) -> int:
    """Work the queue with progress on stderr; the exit code says how it went."""
    reporter = out.ProgressReporter(sys.stderr, quiet=False)
    core.events.subscribe(reporter.on_event)
    try:
        outcomes = await core.scheduler().drain(workstream_id)  # the TUI's scheduler, run to empty
    finally:
        core.events.unsubscribe(reporter.on_event)
        reporter.close()
    if any(isinstance(o.error, BackendUnavailable) for o in outcomes):
        err = next(o.error for o in outcomes if isinstance(o.error, BackendUnavailable))
        raise CliError(f"{err} (the work stays queued; run `arawn --headless jobs run` later)", EXIT_UNREACHABLE)
    failed = [o for o in outcomes if not o.ok and not o.will_retry]
    for o in failed:
        print(f"arawn: job {o.job.id} ({o.job.kind.value}) failed: {out.line(str(o.error))}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


async def cmd_compress(core: ArawnCore, args: argparse.Namespace) -> int:
    ws = await core.resolve_workstream(args.ws)
    if not core.settings.workstream.compression.enabled:
        raise UsageError("compression is disabled ([workstream.compression] enabled = false)")
    await core.compress(ws.id, session_id=args.session, rebuild=args.rebuild, focus=args.focus)
    code = await _work(core, ws.id, args)
    summary = await core.workstream_summary(ws.id)
    out.emit(args, summary.to_dict() if summary else None,
             lambda: print(out.inert(summary.text) if summary else "(no summary yet)"))
    return code


async def cmd_summary(core: ArawnCore, args: argparse.Namespace) -> int:
    if mem.wants_memory(args):
        return await mem.cmd_summary_memory(core, args)
    ws = await core.resolve_workstream(args.ws)
    summary = await (core.session_summary(args.session) if args.session else core.workstream_summary(ws.id))
    if summary is None:
        what = f"session {args.session}" if args.session else f"workstream {ws.title!r}"
        raise CliError(f"no summary for {what} yet (run `compress`)", EXIT_FAILED)
    out.emit(args, summary.to_dict(), lambda: print(out.inert(summary.text)))
    return EXIT_OK


async def cmd_import(core: ArawnCore, args: argparse.Namespace) -> int:
    ws_id = (await core.resolve_workstream(args.workstream)).id if args.workstream else None
    reporter = out.ByteProgress(sys.stderr, f"importing {Path(args.path).name}")
    report = await core.import_file(Path(args.path), args.format, ws_id, reporter.update)
    reporter.close()
    for problem in report.problems:
        print(out.line(f"arawn: {args.path}: {problem.where}: {problem.reason} (skipped)"), file=sys.stderr)
    code = EXIT_OK
    if args.compress and report.conversations_imported:
        await core.compress(report.workstream_id)
        code = await _work(core, report.workstream_id, args)
    doc = {
        "workstream_id": report.workstream_id,
        "conversations_imported": report.conversations_imported,
        "messages_imported": report.messages_imported,
        "skipped_duplicates": report.skipped_duplicates,
        "problems": [{"where": p.where, "reason": p.reason} for p in report.problems],
    }
    out.emit(args, doc, lambda: print(
        f"imported {report.conversations_imported} conversations ({report.messages_imported} messages) into"
        f" {report.workstream_id}; {report.skipped_duplicates} already present, {len(report.problems)} skipped"))
    return code


async def cmd_export(core: ArawnCore, args: argparse.Namespace) -> int:
    ws = await core.resolve_workstream(args.ws)
    async for chunk in core.export(ws.id, args.format):
        # markdown is for reading: shown inert; jsonl is data: control characters as JSON escapes
        sys.stdout.write(out.inert(chunk) if args.format == "markdown" else out.escape_c1(chunk))
    sys.stdout.flush()
    return EXIT_OK


async def cmd_jobs(core: ArawnCore, args: argparse.Namespace) -> int:
    if args.action == "retry":
        if not args.job_id:
            n = await core.retry_jobs()
        else:
            n = await core.retry_jobs(job_id=args.job_id)
            if n == 0:
                raise UsageError(f"no failed job with id {args.job_id}")
        out.emit(args, {"retried": n}, lambda: print(f"{n} job(s) queued again"))
        return EXIT_OK
    if args.action == "run":
        code = await _work(core, None, args)
        out.emit(args, {"open": await core.queue_length()}, lambda: print("queue worked"))
        return code
    show_jobs(args, await core.list_jobs(JobState(args.state) if args.state else None))
    return EXIT_OK


async def cmd_search(core: ArawnCore, args: argparse.Namespace) -> int:
    if not hasattr(core, "search"):
        raise CliError("search is not available in this build", EXIT_FAILED)
    ws_id = (await core.resolve_workstream(args.workstream)).id if args.workstream else None
    hits = await core.search(args.query, workstream_id=ws_id, role=args.role, since=args.since, limit=args.limit)
    out.emit(args, [h.to_dict() for h in hits], lambda: out.search_hits(hits))
    return EXIT_OK


async def cmd_reindex(core: ArawnCore, args: argparse.Namespace) -> int:
    reporter = out.CountProgress(sys.stderr, "reindexing workstreams")
    counts = await core.reindex(reporter.update)
    reporter.close()
    out.emit(args, counts, lambda: print(", ".join(f"{v} {k}" for k, v in counts.items())))
    return EXIT_FAILED if counts.get("failed") else EXIT_OK


async def cmd_doctor(core: ArawnCore, args: argparse.Namespace) -> int:
    s = core.settings
    info = await core.backend_info()
    model = core.model
    data_mode = oct(os.stat(s.data_dir).st_mode & 0o777)
    doc: dict[str, Any] = {
        "config": s.source or "(defaults: no arawn.toml found)",
        "data_dir": str(s.data_dir), "data_dir_mode": data_mode,
        "backend": info.kind, "host": info.host, "reachable": info.reachable, "detail": info.detail,
        "model": model, "model_present": model in info.models or any(m.split(":")[0] == model for m in info.models),
        "compression_model": core.compression_model(), "num_ctx": s.llm.num_ctx,
        "max_summary_tokens": s.workstream.compression.max_summary_tokens,
        "queue_open": await core.queue_length(),
    }
    doc.update(_doctor_backend_extras(info))
    code = EXIT_OK if info.reachable and doc["model_present"] else (EXIT_FAILED if info.reachable else EXIT_UNREACHABLE)
    out.emit(args, doc, lambda: out.doctor(doc))
    return code


def _doctor_backend_extras(info: Any) -> dict[str, Any]:
    """The context used (configured vs the server's) and, for a pool, every host's state."""
    extras: dict[str, Any] = {}
    if info.context is not None:
        extras["context"] = info.context.to_dict()
    if info.hosts:
        extras["hosts"] = [h.to_dict() for h in info.hosts]
    return extras


HANDLERS: dict[str, Callable[[ArawnCore, argparse.Namespace], Any]] = {
    "ws": cmd_ws, "chat": cmd_chat, "session": cmd_session, "compress": cmd_compress, "summary": cmd_summary,
    "import": cmd_import, "export": cmd_export, "jobs": cmd_jobs, "search": cmd_search, "reindex": cmd_reindex,
    "doctor": cmd_doctor, **mem.HANDLERS,
}


def run(argv: list[str], backend: LLMBackend | None = None) -> int:
    """Parse, run one command, map every expected failure to one stderr line and an exit code."""
    if sys.stderr is None:  # started with stderr closed (2>&-): the one line still needs somewhere to go
        sys.stderr = open(os.devnull, "w")
    if sys.stdout is None:  # started with stdout closed (>&-): say so, rather than a bug line at the first print
        return _fail("standard output is closed; redirect it to a file or /dev/null", EXIT_USAGE)
    try:
        args = build_parser().parse_args(argv)
        check_text_arguments(args)
        settings = load_settings(args.config, args.data_dir)
        code = _read_only(args, settings) if backend is None else None
        if code is None:
            import asyncio

            code = asyncio.run(_run(args, settings, backend))
        return code
    except ArawnError as exc:  # every expected failure: usage, not found, storage, backend, ...
        return _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # the file system refused (permissions, a read-only disk, I/O error)
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", EXIT_FAILED)
    except Exception as exc:  # a bug, not bad input: still one line (ARAWN_DEBUG=1 shows the traceback)
        if os.environ.get("ARAWN_DEBUG"):
            raise
        return _fail(f"unexpected error (a bug: please report it, with ARAWN_DEBUG=1 for details):"
                     f" {type(exc).__name__}: {exc}", EXIT_FAILED)


#: Arguments that name files: any bytes the file system allows (undecodable ones arrive as surrogates).
PATH_ARGUMENTS = frozenset({"config", "data_dir", "path", "set"})


def check_text_arguments(args: argparse.Namespace) -> None:
    """Every other argument is text that may be stored (a title, a tag, a message, a note): bytes
    that are not UTF-8 reach Python as lone surrogates, which no UTF-8 file can hold. Refused here,
    naming the argument, rather than failing at the write."""
    for name, value in vars(args).items():
        if name in PATH_ARGUMENTS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise UsageError(f"argument {name}: not valid UTF-8 text (at character {exc.start});"
                                 " check the terminal's or the script's encoding") from None


def _fail(message: str, code: int) -> int:
    print(f"arawn: {out.line(message)}", file=sys.stderr)  # may quote a server's or a file's text
    return code
