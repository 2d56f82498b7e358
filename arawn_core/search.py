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

from arawn_core.errors import UsageError
from arawn_core.store import fts, jsonl
from arawn_core.store.db import Database

OPERATORS = {"AND", "OR", "NOT"}
SNIPPET_CHARS = 160
#: Search stops widening once it has enough hits from at least this many newest messages.
RANK_AT_LEAST = 8_192
_TOKEN = re.compile(r'"[^"]*"?|\(|\)|[^\s"()]+')
_WORD = re.compile(r"\w+", re.UNICODE)


class QueryError(UsageError, ValueError):
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
    top = (await db.fetchone("SELECT max(rowid) FROM messages"))[0] or 0
    exact: list[Any] = []  # (rowid, score) matching the whole query as a phrase
    ranked: list[Any] = []  # (rowid, score) matching the query, not as a phrase
    phrase = parsed.phrase if parsed.phrase != parsed.fts else None  # a quoted phrase: every hit is exact
    # Newest messages first, one rowid range at a time (each inside one shard, so bm25's
    # document counts cost a shard, not the history); older ranges only while there are
    # fewer than `limit` hits or fewer than RANK_AT_LEAST messages ranked: recent
    # conversations win ties.
    for lo, hi in _ranges(top, await fts.shards(db.conn)):
        t = fts.table(fts.shard_of(hi))
        join = f" JOIN messages m ON m.rowid = {t}.rowid" if filters else ""
        select = (f"SELECT {t}.rowid, bm25({t}) AS score FROM {t}{join}"
                  f" WHERE {t} MATCH ? AND {t}.rowid > ? AND {t}.rowid <= ?{where} ORDER BY score LIMIT ?")
        got = await db.fetchall(select, [parsed.fts, lo, hi, *params, limit])
        if phrase and got:
            if len(got) < limit:  # every match of the range is here: which of them hold the phrase (no ranking)
                rows = await db.fetchall(f"SELECT rowid FROM {t} WHERE {t} MATCH ? AND rowid >= ? AND rowid <= ?",
                                         [phrase, min(r[0] for r in got), max(r[0] for r in got)])
                holds = {r[0] for r in rows}
                exact += [r for r in got if r[0] in holds]
            else:
                best_phrase = await db.fetchall(select, [phrase, lo, hi, *params, limit])
                exact += best_phrase
                holds = {r[0] for r in best_phrase}
            got = [r for r in got if r[0] not in holds]
        (exact if parsed.phrase and not phrase else ranked).extend(got)
        if len(exact) + len(ranked) >= limit and top - lo >= RANK_AT_LEAST:
            break
    best = (sorted(exact, key=lambda r: r[1]) + sorted(ranked, key=lambda r: r[1]))[:limit]
    exact_ids = {r[0] for r in exact}
    meta = {r["rid"]: r for r in await db.fetchall(
        "SELECT m.rowid AS rid, m.id, m.workstream_id, m.session_id, m.role, m.timestamp, m.offset, m.length,"
        " w.title FROM messages m JOIN workstreams w ON w.id = m.workstream_id"
        f" WHERE m.rowid IN ({','.join('?' * len(best))})", [r[0] for r in best])} if best else {}
    rows = [dict(meta[rid], score=score) for rid, score in best if rid in meta]
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


def _ranges(top: int, shards: list[int]) -> list[tuple[int, int]]:
    """(lo, hi] rowid ranges, newest first: the newest RANK_AT_LEAST messages, then up to a
    shard's worth, then shard by shard; no range crosses a shard boundary."""
    present = set(shards)
    cuts = {0, top - RANK_AT_LEAST, top - fts.SHARD_ROWS} | {k * fts.SHARD_ROWS for k in present}
    edges = [top, *sorted((c for c in cuts if 0 <= c < top), reverse=True)]
    return [(lo, hi) for hi, lo in zip(edges, edges[1:]) if fts.shard_of(hi) in present]


def _read_contents(messages_path, rows: list[Any]) -> list[str]:
    out = []
    handles: dict[str, Any] = {}
    try:
        for r in rows:
            fh = handles.get(r["workstream_id"])
            if fh is None:
                fh = handles[r["workstream_id"]] = jsonl.open_read(messages_path(r["workstream_id"]))  # no links
            try:
                out.append(str(jsonl.read_span(fh, r["offset"], r["length"]).get("content", "")))
            except ValueError:
                out.append("")
    finally:
        for fh in handles.values():
            fh.close()
    return out
