"""Memory the user can steer: pinned notes, summary versions, protected lines, focus, fork.

Pure logic (no SQL, no UI); the store keeps it in SQLite and events.jsonl.
"""
