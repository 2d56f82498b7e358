"""A child process for crash tests: does real work in a data dir until it is SIGKILLed.

    python -m tests.crash_child DATA_DIR MODE [ARGS...]

Modes:
  append WS_ID      append messages forever; prints "ok <message id>" after each append returned
Each line is flushed, so the parent knows exactly which operations completed.
"""

from __future__ import annotations

import asyncio
import sys

from arawn_core.config import Settings
from arawn_core.core import ArawnCore


async def append_forever(core: ArawnCore, ws_id: str) -> None:
    i = 0
    while True:
        role = "user" if i % 2 == 0 else "assistant"
        m = await core.append_message(ws_id, role, f"message {i} " + "lorem ipsum " * (i % 50))
        sys.stdout.write(f"ok {m.id}\n")
        sys.stdout.flush()
        i += 1


async def main(argv: list[str]) -> None:
    from tests.fakes import FakeBackend

    data_dir, mode, *rest = argv
    core = await ArawnCore.open(Settings().with_data_dir(data_dir), FakeBackend())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if mode == "append":
        await append_forever(core, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
