"""Worker groups: every `@work(group=...)` in the UI names one of these, and quitting
treats each group as written here (one place for both).

At quit, groups that only read, wait on the LLM or wait on a dialog are cancelled;
the others (short database writes: ending a session, creating a workstream) are
waited for, since a cancel landing inside one could leave the connection
mid-transaction. The scheduler's worker is stopped through `Scheduler.stop()`.
"""

from __future__ import annotations

CORE = "core"  # opening the data dir
SCHEDULER = "scheduler"  # the one worker running arawn_core.runtime.Scheduler
CHAT = "chat"  # a reply streaming
DIALOG = "dialog"  # a dialog open (push_screen_wait), then its one write
ACTIONS = "actions"  # end session, compress, retry: short writes
REFRESH = "refresh"  # reloading what engine events touched
LOAD_LIST = "load-list"
LOAD_WORKSTREAM = "load-ws"
LOAD_SESSION = "load-session"
SEARCH = "search"

CANCEL_ON_QUIT = frozenset({CHAT, DIALOG, REFRESH, LOAD_LIST, LOAD_WORKSTREAM, LOAD_SESSION, SEARCH})
# Loading what is shown: tests and benchmarks wait for these to settle.
LOADING = frozenset({REFRESH, LOAD_LIST, LOAD_WORKSTREAM, LOAD_SESSION, ACTIONS})
