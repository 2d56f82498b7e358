"""Open WebUI's chat export (Settings -> Chats -> Export chats; or a single chat's "Export chat (.json)").

Where the format description comes from: Open WebUI's documentation of
chat import/export and the shape of its chat records (`ChatModel` in its
backend: `id`, `user_id`, `title`, `chat` (a JSON object), `created_at`,
`updated_at` in Unix seconds, `archived`, `pinned`, ...). The `chat` object
holds the messages twice: `chat.history.messages` (a map of id -> message
with `parentId` and `childrenIds`, every branch of regenerated replies) with
`chat.history.currentId` (the message the user last saw), and
`chat.messages` (a list, the displayed path, in older exports the only
one). The fixtures in tests are written by hand in that shape.

The path from `currentId` up through `parentId` is what is imported (the
conversation as shown); without a history, `chat.messages` in order. Each
message: `role` (user, assistant, system), `content` (a string), `timestamp`
(Unix seconds), `model` (kept in the import metadata with the title).
Messages with no text are skipped; a record without either list is a
problem naming the chat.
"""

from __future__ import annotations

from typing import Any

from arawn_core.importers.chatgpt import epoch_timestamp
from arawn_core.importers.records import RecordError, SourceMessage, check_unicode
from arawn_core.models import ROLES


def _chat(obj: Any) -> dict[str, Any] | None:
    return obj.get("chat") if isinstance(obj, dict) and isinstance(obj.get("chat"), dict) else None


def looks_like(obj: Any) -> bool:
    chat = _chat(obj)
    return chat is not None and (isinstance(chat.get("messages"), list) or isinstance(chat.get("history"), dict))


def _name(obj: dict[str, Any], chat: dict[str, Any]) -> str:
    title = obj.get("title") or chat.get("title")
    cid = obj.get("id") or chat.get("id")
    label = f"chat {title!r}" if isinstance(title, str) and title else "untitled chat"
    return f"{label} ({cid})" if cid else label


def _displayed(chat: dict[str, Any], name: str) -> list[Any]:
    history = chat.get("history")
    if isinstance(history, dict) and isinstance(history.get("messages"), dict) and history["messages"]:
        messages = history["messages"]
        current = history.get("currentId")
        if current not in messages:
            raise RecordError(f"{name}: history.currentId {current!r} is not one of its messages")
        path: list[Any] = []
        seen: set[str] = set()
        while current is not None:
            if current in seen:
                raise RecordError(f"{name}: the parentId links loop at message {current!r}")
            seen.add(current)
            msg = messages.get(current)
            if not isinstance(msg, dict):
                raise RecordError(f"{name}: message {current!r} is missing from its history")
            path.append(msg)
            current = msg.get("parentId")
        path.reverse()
        return path
    if isinstance(chat.get("messages"), list):
        return chat["messages"]
    raise RecordError(f"{name}: neither chat.history.messages nor chat.messages holds its messages")


def parse_openwebui_record(obj: Any) -> tuple[str | None, list[SourceMessage]]:
    chat = _chat(obj)
    if chat is None:
        raise RecordError("expected an Open WebUI chat record with a 'chat' object")
    name = _name(obj, chat)
    title = obj.get("title") or chat.get("title")
    title = title if isinstance(title, str) and title else None
    cid = obj.get("id") or chat.get("id")
    source_id = str(cid) if isinstance(cid, (str, int)) and not isinstance(cid, bool) else None
    last = epoch_timestamp(obj.get("created_at"))
    out: list[SourceMessage] = []
    for i, msg in enumerate(_displayed(chat, name)):
        if not isinstance(msg, dict):
            raise RecordError(f"{name}: message {i} is not an object")
        role = msg.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list would not even hash
            raise RecordError(f"{name}: message {i}: role {role!r} is not one of {', '.join(sorted(ROLES))}")
        content = msg.get("content")
        if isinstance(content, list):  # OpenAI-style parts
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise RecordError(f"{name}: message {i}: content must be a string, not {type(content).__name__}")
        if not content.strip():
            continue
        ts = epoch_timestamp(msg.get("timestamp")) or last
        if ts and last and ts < last:
            ts = last
        last = ts or last
        extra: dict[str, Any] = {"title": title} if title else {}
        if isinstance(msg.get("model"), str) and msg["model"]:
            extra["model"] = msg["model"]
        mid = msg.get("id")
        out.append(SourceMessage(role, content, ts, str(mid) if mid is not None else None, extra=extra or None))
    if not out:
        raise RecordError(f"{name}: no messages with text")
    try:
        check_unicode([source_id], out)
    except RecordError as exc:
        raise RecordError(f"{name}: {exc}") from None
    return source_id, out
