"""Storage: JSONL files are the source of truth, SQLite (aiosqlite) is the index."""
