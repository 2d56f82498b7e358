"""The record parsers of the formats that are no other app's export: arawn, messages and ShareGPT.

The layouts are described in `formats`; each parser takes one parsed JSON
record and returns its messages or raises `RecordError`. Separate because
these are the formats arawn defines or adopts as generic interchange; the
other apps' exports have a module each.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from arawn_core.importers.records import RecordError, SourceMessage, check_unicode, normalize_timestamp
from arawn_core.models import ROLES

SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "model": "assistant",
    "system": "system",
}
_CANONICAL_FROM = {"human", "gpt", "system"}
#: OpenAI-style roles that are not arawn's, mapped (the original role is kept in the import metadata).
OPENAI_ROLES = {"tool": "tool_result", "function": "tool_result", "developer": "system"}


def _source_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"'id' must be a string or a number, not {type(value).__name__}")
    return str(value)



def _content(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
        return "\n".join(p["text"] for p in value)
    raise RecordError(f"{what}: content must be a string, not {type(value).__name__}")


def _object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, not {type(obj).__name__}")
    return obj


def _turns(obj: Any, key: str) -> tuple[str | None, list[Any]]:
    """A conversation record's id and its non-empty list of turns under `key` (both formats' first checks)."""
    obj = _object(obj)
    source_id = _source_id(obj)
    turns = obj.get(key)
    if not isinstance(turns, list):
        raise RecordError(f"'{key}' must be a list")
    if not turns:
        raise RecordError("the conversation has no messages")
    return source_id, turns


def _each(turns: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each turn with its name for errors ("message 3"), checked to be an object as it is reached."""
    for i, t in enumerate(turns):
        what = f"message {i}"
        if not isinstance(t, dict):
            raise RecordError(f"{what}: expected an object")
        yield what, t


def parse_messages_record(obj: Any) -> tuple[str | None, list[SourceMessage]]:
    source_id, msgs = _turns(obj, "messages")
    out = []
    for what, m in _each(msgs):
        role = m.get("role")
        meta = m.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise RecordError(f"{what}: metadata must be an object")
        if isinstance(role, str) and role in OPENAI_ROLES:
            # an OpenAI-style tool reply: kept as arawn's tool_result, with what it answered
            extra = {k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)}
            meta = {**(meta or {}), "source_role": role, **extra}
            role = OPENAI_ROLES[role]
        if role not in ROLES:
            raise RecordError(f"{what}: role {role!r} is not one of {', '.join(sorted(ROLES))}")
        ts = normalize_timestamp(m["timestamp"]) if m.get("timestamp") is not None else None
        mid = m.get("id")
        content = m.get("content")
        if content is None and role in ("assistant", "tool_result") and m.get("tool_calls") is not None:
            content = ""  # an assistant turn that only calls tools; the calls are kept in metadata
        if m.get("tool_calls") is not None:
            meta = {**(meta or {}), "tool_calls": m["tool_calls"]}
        out.append(SourceMessage(role, _content(content, what), ts,
                                 str(mid) if mid is not None else None, meta))
    check_unicode([source_id], out)
    return source_id, out


def parse_sharegpt_record(obj: Any) -> tuple[str | None, list[SourceMessage]]:
    source_id, turns = _turns(obj, "conversations")
    out = []
    for what, t in _each(turns):
        speaker = t.get("from")
        if not isinstance(speaker, str) or not speaker:
            raise RecordError(f"{what}: 'from' must be a non-empty string")
        value = t.get("value")
        if not isinstance(value, str):
            raise RecordError(f"{what}: 'value' must be a string, not {type(value).__name__}")
        role = SHAREGPT_ROLES.get(speaker.lower(), "user")
        extra = None if speaker in _CANONICAL_FROM else {"from": speaker}
        out.append(SourceMessage(role, value, extra=extra))
    check_unicode([source_id], out)
    return source_id, out


def parse_arawn_record(obj: Any) -> tuple[str, SourceMessage, str | None]:
    """One stored message -> (source session id, the message, source workstream id)."""
    obj = _object(obj)
    sid = obj.get("session_id")
    if not isinstance(sid, (str, int)) or isinstance(sid, bool) or sid == "":
        raise RecordError("'session_id' must be a non-empty string")
    role = obj.get("role")
    if role not in ROLES:
        raise RecordError(f"role {role!r} is not one of {', '.join(sorted(ROLES))}")
    content = obj.get("content")
    if not isinstance(content, str):
        raise RecordError(f"content must be a string, not {type(content).__name__}")
    ts = normalize_timestamp(obj["timestamp"]) if obj.get("timestamp") is not None else None
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise RecordError("metadata must be an object or null")
    mid = obj.get("id")
    ws = obj.get("workstream_id")
    msg = SourceMessage(role, content, ts, str(mid) if mid is not None else None, meta)
    ws_id = str(ws) if ws is not None else None
    check_unicode([str(sid), ws_id], [msg])
    return str(sid), msg, ws_id


RECORD_PARSERS: dict[str, Callable[[Any], tuple[str | None, list[SourceMessage]]]] = {
    "messages": parse_messages_record,
    "sharegpt": parse_sharegpt_record,
}

