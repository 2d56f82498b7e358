"""The messages' full-text index: FTS5 tables sharded by message rowid.

Message `k` (its `messages.rowid`) is indexed in `messages_fts_<(k-1) // SHARD_ROWS>`.
Why shards: FTS5's bm25 counts the documents holding each query term by reading
that term's whole posting list, on every query. Over one million messages a
common word costs tens of milliseconds before a single row is ranked. A shard
holds at most SHARD_ROWS messages, so ranking the newest shard costs the same
at a thousand messages as at ten million; search widens to older shards only
while it has too few hits (see arawn_core.search). The index is contentless:
message text lives in the JSONL files.

Table names come from integers only, never from user text.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

SHARD_ROWS = 65_536
_NAME = re.compile(r"messages_fts_(\d+)")
LIST_SQL = "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'messages_fts_[0-9]*'"


def shard_of(rowid: int) -> int:
    return (rowid - 1) // SHARD_ROWS


def table(shard: int) -> str:
    return f"messages_fts_{int(shard)}"


def shards_from(names: Iterable[Any]) -> list[int]:
    return sorted(int(m.group(1)) for (name, *_) in names if (m := _NAME.fullmatch(name)))


async def shards(conn: Any) -> list[int]:
    """Shard numbers present, oldest first (`conn`: an aiosqlite connection)."""
    async with conn.execute(LIST_SQL) as cur:
        return shards_from(await cur.fetchall())


async def insert(conn: Any, rows: Iterable[tuple[int, str]]) -> None:
    """Index (rowid, content) pairs, creating shards as they are first needed (inside the caller's transaction)."""
    by_shard: dict[int, list[tuple[int, str]]] = {}
    for rowid, content in rows:
        by_shard.setdefault(shard_of(rowid), []).append((rowid, content))
    for shard, part in by_shard.items():
        name = table(shard)
        await conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5("
            "content, content='', tokenize='unicode61 remove_diacritics 2')")
        await conn.executemany(f"INSERT INTO {name} (rowid, content) VALUES (?, ?)", part)


async def clear(conn: Any) -> None:
    """Drop every shard (reindex rebuilds them)."""
    for shard in await shards(conn):
        await conn.execute(f"DROP TABLE {table(shard)}")


async def count(conn: Any) -> int:
    total = 0
    for shard in await shards(conn):
        async with conn.execute(f"SELECT count(*) FROM {table(shard)}") as cur:
            total += (await cur.fetchone())[0]
    return total


async def misplaced(conn: Any) -> int:
    """Rows outside their shard's rowid range, or without a message: 0 in a consistent store."""
    bad = 0
    for shard in await shards(conn):
        lo, hi = shard * SHARD_ROWS + 1, (shard + 1) * SHARD_ROWS
        async with conn.execute(
                f"SELECT count(*) FROM {table(shard)} f WHERE f.rowid NOT BETWEEN ? AND ?"
                " OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.rowid = f.rowid)", (lo, hi)) as cur:
            bad += (await cur.fetchone())[0]
    return bad


async def contains(conn: Any, rowid: int, fts_expression: str) -> bool:
    """The message with this rowid matches the (already safe) FTS5 expression."""
    shard = shard_of(rowid)
    if shard not in await shards(conn):
        return False
    name = table(shard)
    async with conn.execute(f"SELECT 1 FROM {name} WHERE {name} MATCH ? AND rowid = ?",
                            (fts_expression, rowid)) as cur:
        return await cur.fetchone() is not None
