"""Export a workstream's history as text chunks (`arawn --headless export`).

- `jsonl`: the storage layout, one message a line, sessions in order (oldest
  first), messages in their stored order. Importing it back (`--format arawn`)
  reproduces the sessions, roles, contents, timestamps and metadata.
- `markdown`: a readable document: the title, the workstream summary if any,
  then each session under a heading (start time, how it ended, its summary)
  with each message under a role heading. Message content is data and goes in
  as Markdown, guarded so it cannot break the document's structure: a code
  fence left open is closed, and heading, setext-underline and HTML-block lines
  (outside code fences) are backslash-escaped so they show as text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, AsyncIterator

from arawn_core.models import Message, Session, parse_ts
from arawn_core.errors import NotFound, UsageError

if TYPE_CHECKING:
    from arawn_core.core import ArawnCore

EXPORT_FORMATS = ("jsonl", "markdown")


async def export_workstream(core: ArawnCore, workstream_id: str, fmt: str = "jsonl") -> AsyncIterator[str]:
    fmt = (fmt or "jsonl").strip().lower()
    if fmt == "md":
        fmt = "markdown"
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}")
    try:
        ws = await core.get_workstream(workstream_id)
    except NotFound:
        raise UsageError(f"no workstream with id {workstream_id} to export") from None
    sessions = await core.list_sessions(ws.id)
    if fmt == "jsonl":
        for session in sessions:
            messages = await core.repo.session_messages(session)
            if messages:
                yield b"".join(m.to_json_line() for m in messages).decode("utf-8")
        return
    yield f"# {_inline(ws.title)}\n\n"
    facts = [f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}"]
    if ws.tags:
        facts.append("tags: " + ", ".join(_inline(t) for t in ws.tags))
    facts.append(f"created {_when(ws.created_at)}")
    yield "*" + " · ".join(facts) + "*\n\n"
    summary = await core.workstream_summary(ws.id)
    if summary and summary.text.strip():
        yield "## Summary\n\n" + guard_markdown(summary.text) + "\n"
    for n, session in enumerate(sessions, 1):
        messages = await core.repo.session_messages(session)
        yield _session_markdown(n, session, messages)


def _session_markdown(n: int, session: Session, messages: list[Message]) -> str:
    if session.ended_at:
        status = f"ended {_when(session.ended_at)} ({session.end_reason or 'explicit'})"
    else:
        status = "active"
    parts = [f"## Session {n} · {_when(session.started_at)}\n\n",
             f"*{len(messages)} message{'s' if len(messages) != 1 else ''} · {status}*\n\n"]
    if session.summary and session.summary.strip():
        parts.append("**Session summary**\n\n" + guard_markdown(session.summary) + "\n")
    for m in messages:
        note = " (interrupted)" if m.interrupted else ""
        parts.append(f"### {_role_title(m.role)} · {_when(m.timestamp)}{note}\n\n")
        parts.append(guard_markdown(m.content) + "\n")
    return "".join(parts)


def _role_title(role: str) -> str:
    return role.replace("_", " ").capitalize()


def _when(ts: str) -> str:
    try:
        return parse_ts(ts).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, AttributeError):
        return ts


def _inline(text: str) -> str:
    """Text for a heading or an inline note: one line."""
    return " ".join(text.split())


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^( {0,3})(#{1,6})(?=[ \t]|$)")
_SETEXT = re.compile(r"^( {0,3})(=+|-+)[ \t]*$")
_HTML_BLOCK = re.compile(r"^( {0,3})<(?=[A-Za-z/!?])")


def guard_markdown(text: str) -> str:
    """Content as Markdown that cannot break the surrounding document; ends with a newline.

    Outside code fences: `#` headings, `===`/`---` underlines under a text line
    and HTML blocks are escaped to show literally; an unclosed fence is closed.
    """
    out: list[str] = []
    fence: str | None = None  # the open fence's marker run
    prev_text = False  # the previous line is paragraph text (a setext underline would apply to it)
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
                fence = None
            out.append(line)
            prev_text = False
            continue
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            out.append(line)
            prev_text = False
            continue
        if _ATX.match(line):
            line = _ATX.sub(r"\1\\\2", line, count=1)
        elif prev_text and _SETEXT.match(line):
            line = _SETEXT.sub(lambda s: s.group(1) + "\\" + s.group(2), line, count=1)
        elif _HTML_BLOCK.match(line):
            line = _HTML_BLOCK.sub(r"\1\\<", line, count=1)
        out.append(line)
        prev_text = bool(line.strip())
    if fence is not None:
        out.append(fence)
    return "\n".join(out).rstrip("\n") + "\n"
