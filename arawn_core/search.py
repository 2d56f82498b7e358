"""Full-text search over messages and summaries (SQLite FTS5, bm25 ranking).

User text is never spliced into SQL and never handed to FTS5's own query
parser raw: `parse_query` turns it into a safe FTS5 expression (quoted terms,
quoted phrases, `term*` prefixes, AND/OR/NOT between terms) or raises
`QueryError` with one line saying what is wrong.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass
from typing import Any

from arawn_core.store import jsonl
from arawn_core.store.db import Database

OPERATORS = {"AND", "OR", "NOT"}
SNIPPET_CHARS = 160
#: Newest-first rowid windows searched in turn (None: everything).
WINDOWS: tuple[int | None, ...] = (4_000, 32_000, 256_000, None)
_TOKEN = re.compile(r'"[^"]*"?|\(|\)|[^\s"()]+')
_WORD = re.compile(r"\w+", re.UNICODE)


class QueryError(ValueError):
    """A malformed search query, described in one line."""


@dataclass
class ParsedQuery:
    fts: str  # the FTS5 MATCH expression
    terms: list[str]  # plain words, for highlighting
    phrase: str | None  # the whole query as one phrase (exact-phrase-first ranking), if multi-word


@dataclass
class SearchHit:
    kind: str  # "message" | "summary"
    workstream_id: str
    workstream_title: str
    session_id: str | None
    message_id: str | None
    role: str
    timestamp: str
    snippet: str  # highlighted with [ and ]
    score: float
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def parse_query(text: str) -> ParsedQuery:
    text = text.strip()
    if not text:
        raise QueryError("the search query is empty")
    if text.count('"') % 2:
        raise QueryError('unbalanced quote in the search query: close the phrase with a second "')
    parts: list[str] = []
    terms: list[str] = []
    pending_op: str | None = None
    for tok in _TOKEN.findall(text):
        if tok in ("(", ")"):
            continue  # grouping is not supported; terms still count
        upper = tok.upper() if tok.isalpha() else ""
        if tok in OPERATORS or (upper in OPERATORS and tok == upper):
            if not parts or pending_op:
                raise QueryError(f"search operator {tok} needs a term on each side")
            pending_op = tok
            continue
        if tok.startswith('"'):
            words = _WORD.findall(tok[1:-1])
            if not words:
                continue
            expr = _quote(" ".join(words))
            terms.extend(words)
        else:
            prefix = tok.endswith("*")
            words = _WORD.findall(tok)
            if not words:
                continue
            terms.extend(words)
            expr = " ".join(_quote(w) for w in words)
            if len(words) > 1:
                expr = _quote(" ".join(words))
            if prefix:
                expr += "*"
        if parts:
            parts.append(pending_op or "AND")
        pending_op = None
        parts.append(expr)
    if pending_op:
        raise QueryError(f"search operator {pending_op} needs a term on each side")
    if not parts:
        raise QueryError("the search query has no words to look for")
    plain = [t for t in _TOKEN.findall(text) if t not in OPERATORS]
    words = _WORD.findall(" ".join(plain))
    phrase = _quote(" ".join(words)) if len(words) > 1 else None
    return ParsedQuery(" ".join(parts), terms, phrase)


def highlight(content: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    """A window of the content around the first match, matches in [brackets]."""
    lowered = [t.lower() for t in terms if t]
    flat = " ".join(content.split())
    low = flat.lower()
    first = min((i for i in (low.find(t) for t in lowered) if i >= 0), default=0)
    start = max(0, first - width // 3)
    window = flat[start:start + width]
    if lowered:
        pattern = re.compile("|".join(re.escape(t) for t in sorted(set(lowered), key=len, reverse=True)),
                             re.IGNORECASE)
        window = pattern.sub(lambda m: f"[{m.group(0)}]", window)
    return ("…" if start > 0 else "") + window + ("…" if start + width < len(flat) else "")


async def search(db: Database, messages_path, query: str, workstream_id: str | None = None,
                 role: str | None = None, since: str | None = None, limit: int = 20,
                 include_summaries: bool = True) -> list[SearchHit]:
    """Ranked hits: exact-phrase matches first, then bm25. `messages_path(ws_id)` locates the JSONL."""
    parsed = parse_query(query)
    if limit < 1:
        raise QueryError("--limit must be at least 1")
    filters, params = [], []
    if workstream_id:
        filters.append("m.workstream_id = ?")
        params.append(workstream_id)
    if role:
        filters.append("m.role = ?")
        params.append(role)
    if since:
        filters.append("m.timestamp >= ?")
        params.append(since)
    where = "".join(f" AND {f}" for f in filters)
    select = (
        "SELECT f.rowid AS rid, bm25(messages_fts) AS score, m.id, m.workstream_id, m.session_id, m.role,"
        " m.timestamp, m.offset, m.length, w.title FROM messages_fts f JOIN messages m ON m.rowid = f.rowid"
        f" JOIN workstreams w ON w.id = m.workstream_id WHERE messages_fts MATCH ? AND f.rowid > ?{where}"
        " ORDER BY score LIMIT ?"
    )
    top = (await db.fetchone("SELECT max(rowid) FROM messages"))[0] or 0
    rows: list[Any] = []
    exact_ids: set[int] = set()
    # bm25 is computed for every match before the best are taken, so a common word over
    # a million messages costs a second. Rank within the newest messages first and widen
    # only while fewer than `limit` hits come back: recent conversations win ties.
    for window in WINDOWS:
        floor = max(0, top - window) if window else 0
        exact = await db.fetchall(select, [parsed.phrase, floor, *params, limit]) if parsed.phrase else []
        exact_ids = {r["rid"] for r in exact}
        ranked = [] if len(exact) >= limit else await db.fetchall(select, [parsed.fts, floor, *params, limit])
        rows = (exact + [r for r in ranked if r["rid"] not in exact_ids])[:limit]
        if len(rows) >= limit or floor == 0:
            break
    contents = await asyncio.to_thread(_read_contents, messages_path, rows)
    hits = [
        SearchHit("message", r["workstream_id"], r["title"], r["session_id"], r["id"], r["role"], r["timestamp"],
                  highlight(contents[i], parsed.terms), r["score"], r["rid"] in exact_ids)
        for i, r in enumerate(rows)
    ]
    if include_summaries and not role:
        hits += await _search_summaries(db, parsed, workstream_id, since, limit)
        hits.sort(key=lambda h: (not h.exact, h.score))
        hits = hits[:limit]
    return hits


async def _search_summaries(db: Database, parsed: ParsedQuery, workstream_id: str | None, since: str | None,
                            limit: int) -> list[SearchHit]:
    filters, params = [], []
    if workstream_id:
        filters.append("s.workstream_id = ?")
        params.append(workstream_id)
    if since:
        filters.append("s.created_at >= ?")
        params.append(since)
    # only summaries still in use (current workstream / session summaries)
    filters.append("(s.id IN (SELECT summary_id FROM workstreams) OR s.id IN (SELECT summary_id FROM sessions))")
    where = "".join(f" AND {f}" for f in filters)
    rows = await db.fetchall(
        "SELECT s.*, bm25(summaries_fts) AS score, w.title AS ws_title FROM summaries_fts f"
        " JOIN summaries s ON s.rowid = f.rowid JOIN workstreams w ON w.id = s.workstream_id"
        f" WHERE summaries_fts MATCH ?{where} ORDER BY score LIMIT ?",
        [parsed.fts, *params, limit],
    )
    phrase = parsed.phrase.strip('"').lower() if parsed.phrase else None
    return [
        SearchHit(f"{r['kind']}_summary", r["workstream_id"], r["ws_title"], r["session_id"], None, "summary",
                  r["created_at"], highlight(r["text"], parsed.terms), r["score"],
                  bool(phrase and phrase in " ".join(_WORD.findall(r["text"].lower()))))
        for r in rows
    ]


def _read_contents(messages_path, rows: list[Any]) -> list[str]:
    out = []
    handles: dict[str, Any] = {}
    try:
        for r in rows:
            fh = handles.get(r["workstream_id"])
            if fh is None:
                fh = handles[r["workstream_id"]] = open(messages_path(r["workstream_id"]), "rb")
            try:
                out.append(str(jsonl.read_span(fh, r["offset"], r["length"]).get("content", "")))
            except ValueError:
                out.append("")
    finally:
        for fh in handles.values():
            fh.close()
    return out
