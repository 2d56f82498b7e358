"""The records of a workstream's events.jsonl, and the checks a hand-edited one must pass.

Shared by the repository (which writes the events) and the rebuild from files (which reads
them back: reindex, the open's catch-up): a workstream snapshot to and from its event, a
required text field, an imported session's latest message, the short reason a bad record is
reported with, and the check that a workstream directory's name is one of our ids.
"""

from __future__ import annotations

import uuid
from typing import Any

from arawn_core.errors import NotFound
from arawn_core.models import Message, Workstream, WorkstreamState

EVENTS_FILE = "events.jsonl"

def checked_id(value: str) -> str:
    """Only our own UUIDs name directories (user text never becomes a path)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"not a workstream id: {value!r}") from None


#: Errors that mean "this record or workstream is unreadable", not "the program is wrong".
RECORD_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


def short_reason(exc: BaseException) -> str:
    """An exception as a short phrase for a one-line report."""
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}" if exc.args else "a key is missing"
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__


def text_field(ev: dict[str, Any], key: str) -> str:
    value = ev[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a string")
    return value



def note_import(last: dict[str, tuple[str, str]], m: Message) -> None:
    """Track (import key, latest timestamp) per imported session."""
    key = m.import_key
    if key:
        prev = last.get(m.session_id)
        last[m.session_id] = (key, max(m.timestamp, prev[1]) if prev else m.timestamp)



def ws_event(ws: Workstream) -> dict[str, Any]:
    return {
        "type": "workstream", "id": ws.id, "title": ws.title, "state": ws.state.value, "tags": ws.tags,
        "created_at": ws.created_at, "updated_at": ws.updated_at, "model": ws.model,
        "system_prompt": ws.system_prompt, "is_scratch": ws.is_scratch,
    }


def ws_from_event(ev: dict[str, Any], ws_id: str | None = None) -> Workstream:
    """A workstream snapshot event; ValueError/KeyError/TypeError when it is not one (a hand-edited line)."""
    if ws_id is not None and ev.get("id") != ws_id:
        raise ValueError("its id is not this directory's")
    tags = ev.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("tags is not a list of strings")
    for key in ("model", "system_prompt"):
        if ev.get(key) is not None and not isinstance(ev[key], str):
            raise ValueError(f"{key} is not a string")
    if not isinstance(ev["title"], str):
        raise ValueError("title is not a string")
    return Workstream(
        id=text_field(ev, "id"), title=ev["title"], state=WorkstreamState(ev.get("state", "active")), tags=tags,
        created_at=text_field(ev, "created_at"), updated_at=text_field(ev, "updated_at"), model=ev.get("model"),
        system_prompt=ev.get("system_prompt"), is_scratch=bool(ev.get("is_scratch")),
    )

