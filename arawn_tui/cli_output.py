"""Text and JSON output for the headless CLI, and progress on stderr."""

from __future__ import annotations

import json
import sys
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, TextIO

if TYPE_CHECKING:
    import re

    from arawn_core import events as ev
    from arawn_core.models import CompressionJob, Message, Session, Summary, Workstream

from arawn_tui.sanitize import inert, one_line

__all__ = ["inert", "one_line", "line"]


@lru_cache(maxsize=1)
def _c1() -> re.Pattern[str]:
    import re  # compiled on first use: most commands print no JSON

    # DEL, C1, and the bidi controls sanitize.inert shows as <U+...> (they reorder what a terminal shows)
    return re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def escape_c1(json_text: str) -> str:
    """JSON text with DEL, C1 controls (U+0080-U+009F: CSI, OSC ... in 8 bits) and bidi overrides
    (U+202E ...) as \\u escapes.

    json escapes C0 controls itself but writes these raw; inside JSON they can only be in strings,
    where the escape means the same character, so the document parses to exactly the same data.
    """
    return _c1().sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi], else a one-line usage error naming the range.
    Every integer on the command line goes through it: an unbounded one reaches SQLite, which
    takes 64 bits (OverflowError), or a loop."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range: use {lo} to {hi}")
        return value
    parse.__name__ = "integer"
    return parse


def print_json(doc: Any) -> None:
    sys.stdout.write(escape_c1(json.dumps(doc, ensure_ascii=False, default=str)))
    sys.stdout.write("\n")


def emit(args: Any, doc: Any, text: Callable[[], None]) -> None:
    """One JSON document with --json, else the human form. `doc` may be a callable, built only if needed."""
    if args.json:
        print_json(doc() if callable(doc) else doc)
    else:
        text()


def line(text: str, limit: int = 2000) -> str:
    """A message for one stderr line or table cell: inert, line breaks folded, cut at `limit`.

    Unlike `one_line` the spacing is kept as written (doctor's and the tables' alignment)."""
    flat = inert(text).replace("\n", " ").replace("\t", " ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _badge(ws: Workstream) -> str:
    status = ws.compression.value
    if status == "running" and ws.progress.total:
        return f"running {ws.progress.done}/{ws.progress.total}"
    return status


def ws_table(items: list[Workstream]) -> None:
    lines = [f"{'ID':36}  {'SESSIONS':>8}  {'COMPRESSION':14}  TITLE"]
    for w in items:
        title = line(w.title) + (" [archived]" if w.state.value == "archived" else "")
        lines.append(f"{w.id:36}  {w.session_count:>8}  {_badge(w):14}  {title}")
    sys.stdout.write("\n".join(lines) + "\n")


def session_table(sessions: list[Session]) -> None:
    print(f"{'ID':36}  {'STARTED':20}  {'TURNS':>5}  {'STATE':8}  {'COMPRESSION':11}  TITLE")
    for s in sessions:
        state = "active" if s.active else line(s.end_reason or "ended", 8)
        print(f"{s.id:36}  {s.started_at[:19]:20}  {s.turn_count:>5}  {state:8}  {s.compression.value:11}"
              f"  {line(s.title or '', 80)}")


def ws_show(ws: Workstream, summary: Summary | None, sessions: list[Session]) -> None:
    print(f"{line(ws.title)}  ({ws.id})")
    print(f"state: {ws.state.value}  tags: {line(', '.join(ws.tags)) or '-'}  compression: {_badge(ws)}")
    if ws.last_error:
        print(f"last error: {line(ws.last_error)}")
    if summary:
        p = summary.provenance
        stale = "  [stale]" if summary.stale else ""
        print(f"\nsummary ({line(p.model)}, {line(p.created_at[:19])}, {len(summary.covers)} sessions){stale}:")
        from arawn_core.memory.audit import describe as describe_audit  # only when a summary is shown

        if said := describe_audit(summary.provenance):
            print(f"audit: {line(said)}")
        print(inert(summary.text))
    print()
    session_table(sessions)


def transcript(messages: list[Message]) -> None:
    for m in messages:
        print(f"[{line(m.timestamp[:19])}] {line(m.role)}:\n{inert(m.content)}\n")


def jobs_table(jobs: list[CompressionJob]) -> None:
    print(f"{'ID':36}  {'KIND':10}  {'STATE':8}  {'TRIES':>5}  ERROR")
    for j in jobs:
        print(f"{j.id:36}  {j.kind.value:10}  {j.state.value:8}  {j.attempts:>5}  {line(j.last_error or '', 300)}")


def search_hits(hits: list[Any]) -> None:
    for h in hits:
        d = h.to_dict()
        where = line(d.get("session_title") or "", 80) or d.get("session_id", "")
        print(f"{line(d.get('workstream_title', ''))} / {where} [{line(d.get('role', ''))}]"
              f" {line(d.get('timestamp', '')[:19])}\n  {line(d.get('snippet', ''))}")


def doctor(doc: dict[str, Any]) -> None:
    ok = "ok" if doc["reachable"] else "UNREACHABLE"
    print(f"config:      {line(str(doc['config']))}")
    print(f"data dir:    {line(doc['data_dir'])} ({doc['data_dir_mode']})")
    print(line(f"backend:     {doc['backend']} at {doc['host']}: {ok} {doc['detail']}".rstrip()))
    print(f"model:       {line(doc['model'])} ({'present' if doc['model_present'] else 'NOT FOUND'})")
    print(f"compression: {line(doc['compression_model'])}, num_ctx {doc['num_ctx']},"
          f" max_summary_tokens {doc['max_summary_tokens']}")
    ctx = doc.get("context")
    if ctx:
        server = f"server's {ctx['server']} ({ctx['source']})" if ctx["server"] else "server's not known yet"
        configured = "configured 0 (the server's)" if not ctx["configured"] else f"configured {ctx['configured']}"
        print(line(f"context:     {ctx['used']} used ({ctx['which']}): {configured}, {server}"))
    for h in doc.get("hosts") or []:
        state = "up" if h["up"] else f"DOWN ({h['detail']}; retried in {h['retry_in_s']:g}s)"
        chat = ", chats" if h["chat"] else ""
        print(line(f"host:        {h['host']}: {state}, {h['in_flight']}/{h['slots']} busy, "
                    f"{h['served']} served{chat}"))
    print(f"queue:       {doc['queue_open']} open job(s)")
    if not doc["reachable"] and doc["backend"] == "openai":
        print("hint: start the OpenAI-compatible server, or set [llm] host to its base URL (with /v1)")
    elif not doc["reachable"]:
        print("hint: start Ollama (`ollama serve`), or set [llm] host / OLLAMA_HOST")
    elif not doc["model_present"] and doc["backend"] == "openai":
        print("hint: set [llm] model to one the server serves")
    elif not doc["model_present"]:
        print(f"hint: `ollama pull {line(doc['model'])}`")


class _Line:
    """A progress line: redrawn in place on a terminal, plain lines (at most one a second) otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0
        self.drawn = False

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.drawn = True
        elif force or now - self.last >= 1.0:
            self.stream.write(text + "\n")
        else:
            return
        self.last = now
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    frac = done / total if total else 0.0
    filled = int(frac * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


class ProgressReporter(_Line):
    """Compression progress from engine events."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        super().__init__(stream)
        self.quiet = quiet

    def on_event(self, event: ev.Event) -> None:
        from arawn_core import events as ev  # loaded with the engine that publishes them

        if self.quiet:
            return
        if isinstance(event, ev.JobStarted):
            self.show(f"compressing: {event.kind} job {event.job_id[:8]} started", force=True)
        elif isinstance(event, ev.JobProgress):
            self.show(f"compressing: {event.job_id[:8]} {bar(event.done, event.total)} LLM calls")
        elif isinstance(event, ev.JobCompleted):
            self.show(f"compressing: {event.kind} job {event.job_id[:8]} done", force=True)
        elif isinstance(event, ev.JobFailed):
            retry = " (will retry)" if event.will_retry else ""
            self.show(f"compressing: {event.kind} job {event.job_id[:8]} failed: {line(event.error, 300)}{retry}",
                      force=True)


class ByteProgress(_Line):
    def __init__(self, stream: TextIO, label: str) -> None:
        super().__init__(stream)
        self.label = line(label, 200)  # may hold a file name chosen by whoever sent the file

    def update(self, done: int, total: int) -> None:
        pct = 100.0 * done / total if total else 100.0
        self.show(f"{self.label}: {pct:5.1f}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB)", force=done >= total)


class CountProgress(_Line):
    def __init__(self, stream: TextIO, label: str) -> None:
        super().__init__(stream)
        self.label = line(label, 200)

    def update(self, done: int, total: int) -> None:
        self.show(f"{self.label}: {bar(done, total)}", force=done >= total)

