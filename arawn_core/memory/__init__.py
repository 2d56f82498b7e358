"""Memory the user can steer: pinned notes, summary versions, protected lines, focus, fork.

`pins`, `versions` and `steer` are pure logic (no SQL, no UI); `commands` holds the
ArawnCore methods over them, which keep everything in events.jsonl and SQLite
(`arawn_core.store.memory`).
"""
