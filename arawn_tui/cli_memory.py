"""Headless commands for steerable memory: pins, summary edit/history/diff/revert, fork, session rename.

Registered by `arawn_tui.headless`; each handler goes through ArawnCore and prints with
`cli_output` (one JSON document with --json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arawn_core.errors import UsageError
from arawn_tui import cli_output as out

if TYPE_CHECKING:  # the fast read path (`ws list`) builds the parser without loading the engine
    from arawn_core.core import ArawnCore
    from arawn_core.memory.pins import Pin, PinFit
    from arawn_core.memory.versions import SummaryVersion

#: A summary version number on the command line (SQLite holds 64-bit integers; nobody has 10**9 versions).
VERSION_NUMBER = out.bounded_int(1, 10 ** 9)


def add_parsers(sub: Any) -> None:
    """`pin`, `pins`, `unpin` (the other memory options hang off existing commands)."""
    pin = sub.add_parser("pin", help="pin a note to a workstream (in every chat context); prints its id")
    pin.add_argument("ws")
    pin.add_argument("text", help="the note, or - to read stdin")
    sub.add_parser("pins", help="a workstream's pinned notes, and whether they fit their budget").add_argument("ws")
    unpin = sub.add_parser("unpin", help="remove a pinned note")
    unpin.add_argument("ws")
    unpin.add_argument("pin_id", help="the pin's id (or a unique prefix of at least 4 characters)")


def add_summary_options(summary: argparse.ArgumentParser) -> None:
    what = summary.add_mutually_exclusive_group()
    what.add_argument("--set", metavar="FILE", help="replace the summary with FILE (- reads stdin): a new version"
                      " by you; the lines you add or change are kept by later compressions")
    what.add_argument("--history", action="store_true", help="every version: number, author, sessions covered")
    what.add_argument("--diff", nargs=2, type=VERSION_NUMBER, metavar=("A", "B"), help="unified diff of versions A and B")
    what.add_argument("--revert", type=VERSION_NUMBER, metavar="N", help="make version N current again (as a new version)")
    what.add_argument("--version", type=VERSION_NUMBER, metavar="N", dest="show_version", help="print version N")


def wants_memory(args: argparse.Namespace) -> bool:
    return bool(args.set is not None or args.history or args.diff or args.revert is not None
                or args.show_version is not None)


def read_text(source: str, what: str) -> str:
    """`-` is stdin, else a file; a missing, undecodable or non-regular file (a FIFO or a device
    would block or never end) is a usage error naming it."""
    import stat

    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    try:
        if path.exists() and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
            raise UsageError(f"{what}: {source} is not a regular file (use - to read stdin)")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what}: no such file {source}") from None
    except IsADirectoryError:
        raise UsageError(f"{what}: {source} is a directory") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: {source} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {source}: {exc.strerror}") from None


# ---- pins -------------------------------------------------------------------------
async def cmd_pin(core: ArawnCore, args: argparse.Namespace) -> int:
    ws = await core.resolve_workstream(args.ws)
    text = sys.stdin.read() if args.text == "-" else args.text
    pin = await core.add_pin(ws.id, text)
    fit = await core.pin_fit(ws.id)
    out.emit(args, {**pin.to_dict(), "budget": fit.to_dict()}, lambda: print(pin.id))
    if fit.over_budget:
        print(f"arawn: warning: {fit.warning()}", file=sys.stderr)
    return 0


async def cmd_pins(core: ArawnCore, args: argparse.Namespace) -> int:
    ws = await core.resolve_workstream(args.ws)
    pins = await core.list_pins(ws.id)
    fit = await core.pin_fit(ws.id)
    out.emit(args, {"workstream_id": ws.id, "pins": [p.to_dict() for p in pins], "budget": fit.to_dict()},
             lambda: pins_text(pins, fit))
    return 0


async def cmd_unpin(core: ArawnCore, args: argparse.Namespace) -> int:
    ws = await core.resolve_workstream(args.ws)
    pin = await core.remove_pin(ws.id, args.pin_id)
    out.emit(args, pin.to_dict(), lambda: print(f"unpinned {pin.id}"))
    return 0


def pins_text(pins: list[Pin], fit: PinFit) -> None:
    if not pins:
        print("(no pinned notes)")
        return
    left_out = {p.id for p in fit.omitted}
    for p in pins:
        mark = "  [left out: over budget]" if p.id in left_out else ""
        print(f"{p.id}  {p.created_at[:19]}{mark}\n{out.inert(p.text)}\n")
    print(f"pins use {fit.used_tokens} of {fit.budget_tokens} tokens")
    if fit.over_budget:
        print(f"warning: {fit.warning()}")


# ---- summary versions ---------------------------------------------------------------
async def cmd_summary_memory(core: ArawnCore, args: argparse.Namespace) -> int:
    core.summary_versions  # noqa: B018 - on the read-only core this raises NeedsEngine before stdin is read
    if args.session:
        raise UsageError("--set, --history, --diff, --revert and --version are for the workstream summary,"
                         " not with --session")
    ws = await core.resolve_workstream(args.ws)
    if args.history:
        versions = await core.summary_versions(ws.id)
        out.emit(args, [v.to_dict(with_text=False) for v in versions], lambda: history_table(versions))
    elif args.diff:
        a, b = args.diff
        diff = await core.diff_versions(ws.id, a, b)
        doc = {"workstream_id": ws.id, "a": a, "b": b, "diff": diff}
        out.emit(args, doc, lambda: write_diff(diff))
    elif args.show_version is not None:
        v = await core.summary_version(ws.id, args.show_version)
        out.emit(args, v.to_dict(), lambda: sys.stdout.write(out.inert(v.text) + ("" if v.text.endswith("\n") else "\n")))
    elif args.revert is not None:
        v = await core.revert_summary(ws.id, args.revert)
        out.emit(args, v.to_dict(), lambda: print(f"version {v.number}: version {args.revert} is current again"))
    else:
        text = read_text(args.set, "--set")
        v = await core.set_summary(ws.id, text)
        if v is None:
            current = await core.current_version(ws.id)
            doc = current.to_dict() if current else None
            out.emit(args, doc, lambda: print("unchanged: that is the current summary"))
        else:
            out.emit(args, v.to_dict(), lambda: print(
                f"version {v.number} (yours); {len(v.protected)} line(s) protected from later compressions"))
    return 0


def history_table(versions: list[SummaryVersion]) -> None:
    if not versions:
        print("(no summary versions yet: run `compress`)")
        return
    print(f"{'N':>4}  {'AUTHOR':7}  {'CREATED':19}  {'SESSIONS':>8}  {'PROTECTED':>9}  DETAIL")
    for v in versions:
        detail = []
        if v.reverted_from is not None:
            detail.append(f"revert to {v.reverted_from}")
        if v.focus:
            detail.append(f"focus: {out.inert(v.focus)}")
        if v.restored:
            detail.append(f"{len(v.restored)} protected line(s) put back")
        model = v.provenance.get("model", "")
        if v.author == "model" and model:
            detail.insert(0, out.inert(model))
        print(f"{v.number:>4}  {v.author:7}  {v.created_at[:19]:19}  {len(v.covers):>8}  {len(v.protected):>9}  "
              + "; ".join(detail))


def write_diff(diff: str) -> None:
    """The diff, coloured only on a terminal (piped output stays plain for patch/grep)."""
    colour = sys.stdout.isatty()
    for line in out.inert(diff).splitlines(keepends=True):
        if colour and line.startswith(("+++", "---")):
            line = f"\x1b[1m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("+"):
            line = f"\x1b[32m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("-"):
            line = f"\x1b[31m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("@@"):
            line = f"\x1b[36m{line.rstrip(chr(10))}\x1b[0m\n"
        sys.stdout.write(line)
    if not diff:
        print("(no differences)")


# ---- fork and session rename -----------------------------------------------------------
async def cmd_fork(core: ArawnCore, args: argparse.Namespace) -> int:
    origin = await core.resolve_workstream(args.ws)
    ws = await core.fork_workstream(origin.id, args.title)
    doc = {**ws.to_dict(), "origin": await core.workstream_origin(ws.id)}
    out.emit(args, doc, lambda: print(ws.id))
    return 0


async def cmd_session_rename(core: ArawnCore, args: argparse.Namespace) -> int:
    session = await core.rename_session(args.session_id, args.title)
    out.emit(args, session.to_dict(), lambda: print(f"renamed {session.id} to {out.inert(session.title or '')}"))
    return 0


def origin_line(origin: dict[str, Any] | None) -> str:
    if not origin:
        return ""
    at = f" at summary version {origin['origin_version']}" if origin.get("origin_version") else ""
    return f"forked from {out.inert(origin['origin_title'])} ({origin['origin_id']}){at}"


HANDLERS = {"pin": cmd_pin, "pins": cmd_pins, "unpin": cmd_unpin}
