"""ChatGPT's data export: `conversations.json` (Settings -> Data controls -> Export data).

Where the format description comes from: OpenAI's help article "How do I
export my ChatGPT history and data?" (a zip whose `conversations.json`
holds every conversation) and the structure of real exports as described
in public tools that read them; no schema is published, so this reader is
strict only where it must be. The fixtures in tests are written by hand in
that shape.

The file is a JSON array, one object per conversation::

    {"title": "...", "create_time": 1700000000.0, "update_time": ...,
     "conversation_id": "...", "id": "...", "current_node": "<node id>",
     "mapping": {"<node id>": {"id": ..., "parent": "<node id>" | null,
                               "children": [...],
                               "message": null | {"id", "author": {"role"},
                                   "create_time", "content": {"content_type",
                                   "parts": [...]}, "metadata": {...},
                                   "recipient": "all" | "<tool>"}}}}

`mapping` is a tree: every edit or regeneration starts a branch. The
conversation the user last saw is the path from `current_node` up through
`parent` to the root, so that path is what is imported, in root-to-leaf
order. Skipped on the way (they are not the visible conversation): the root
and other nodes without a message, tool and hidden messages
(`metadata.is_visually_hidden_from_conversation`), messages addressed to a
tool (`recipient` other than "all"), and parts that are not text (images,
code execution output, browsing results, "thoughts"). The title goes into
every message's import metadata; message times (else the conversation's
create_time) are kept.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from arawn_core.importers.records import RecordError, SourceMessage, check_unicode, normalize_timestamp

#: content_type values whose `parts` are the message text (strings; other parts are images and files).
TEXT_TYPES = frozenset({"text", "multimodal_text"})
KEPT_ROLES = frozenset({"user", "assistant", "system"})


def looks_like(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("mapping"), dict) and "current_node" in obj


def epoch_timestamp(value: Any) -> str | None:
    """A Unix time in seconds (float or int) -> the storage layout; None when absent or unusable."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    if value > 1e11:  # milliseconds
        value = value / 1000
    try:
        dt = datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return normalize_timestamp(dt.isoformat())


def _name(obj: dict[str, Any]) -> str:
    title = obj.get("title")
    cid = obj.get("conversation_id") or obj.get("id")
    label = f"conversation {title!r}" if isinstance(title, str) and title else "untitled conversation"
    return f"{label} ({cid})" if cid else label


def _text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    kind = content.get("content_type")
    if kind == "code" and isinstance(content.get("text"), str):
        return content["text"]
    if kind in TEXT_TYPES:
        parts = content.get("parts")
        if isinstance(parts, list):
            return "\n".join(p for p in parts if isinstance(p, str) and p)
    return ""


def _path(obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Nodes from the root to current_node."""
    mapping = obj["mapping"]
    node_id = obj.get("current_node")
    if node_id not in mapping:
        raise RecordError(f"{name}: current_node {node_id!r} is not in its mapping")
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    while node_id is not None:
        if node_id in seen:
            raise RecordError(f"{name}: the parent links loop at node {node_id!r}")
        seen.add(node_id)
        node = mapping.get(node_id)
        if not isinstance(node, dict):
            raise RecordError(f"{name}: node {node_id!r} is missing from its mapping")
        chain.append(node)
        node_id = node.get("parent")
    chain.reverse()
    return chain


def parse_chatgpt_record(obj: Any) -> tuple[str | None, list[SourceMessage]]:
    if not isinstance(obj, dict):
        raise RecordError(f"expected a conversation object, not {type(obj).__name__}")
    name = _name(obj)
    if not isinstance(obj.get("mapping"), dict):
        raise RecordError(f"{name}: 'mapping' must be an object")
    title = obj.get("title") if isinstance(obj.get("title"), str) and obj.get("title") else None
    cid = obj.get("conversation_id") or obj.get("id")
    source_id = str(cid) if isinstance(cid, (str, int)) and not isinstance(cid, bool) else None
    last = epoch_timestamp(obj.get("create_time"))
    out: list[SourceMessage] = []
    for node in _path(obj, name):
        msg = node.get("message")
        if not isinstance(msg, dict):
            continue  # the root, or a placeholder
        author = msg.get("author")
        role = author.get("role") if isinstance(author, dict) else None
        if not isinstance(role, str):
            role = None  # a list or object there is no role (and unhashable: no set lookup)
        meta = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
        if role not in KEPT_ROLES or meta.get("is_visually_hidden_from_conversation"):
            continue
        if msg.get("recipient", "all") not in ("all", None):
            continue  # the assistant calling a tool
        text = _text(msg.get("content"))
        if not text.strip():
            continue
        ts = epoch_timestamp(msg.get("create_time")) or last
        if ts and last and ts < last:
            ts = last  # keep the conversation's order even when a clock went back
        last = ts or last
        extra: dict[str, Any] = {"title": title} if title else {}
        model = meta.get("model_slug")
        if isinstance(model, str) and model:
            extra["model"] = model
        mid = msg.get("id")
        out.append(SourceMessage(role, text, ts, str(mid) if mid is not None else None, extra=extra or None))
    if not out:
        raise RecordError(f"{name}: no visible messages on the path to its current node")
    try:
        check_unicode([source_id], out)
    except RecordError as exc:
        raise RecordError(f"{name}: {exc}") from None
    return source_id, out
