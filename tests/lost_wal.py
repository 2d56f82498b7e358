"""A data dir as a lost WAL leaves it (a crash's stand-in): its index is the last checkpoint,
its files hold more (a rename, a message and a workstream written after it)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from arawn_core.config import parse_settings
from arawn_core.core import ArawnCore
from tests.fakes import FakeBackend


def settings(data: Path):
    return parse_settings("").with_data_dir(data)


def lost_wal_copy(tmp_path: Path) -> Path:
    """A data dir whose index misses a rename, a message and a workstream that its files hold."""
    data, copy = tmp_path / "data", tmp_path / "copy"

    async def work() -> None:
        core = await ArawnCore.open(settings(data), FakeBackend())
        try:
            alpha = await core.create_workstream("Alpha")
            await core.append_message(alpha.id, "user", "a1")
        finally:
            await core.close(end_sessions=False)  # checkpointed: the copy's index holds this
        core = await ArawnCore.open(settings(data), FakeBackend())
        try:
            [alpha] = await core.list_workstreams()
            await core.rename_workstream(alpha.id, "Alpha renamed")
            await core.append_message(alpha.id, "user", "after the checkpoint")
            await core.create_workstream("Born later")
            shutil.copytree(data / "workstreams", copy / "workstreams", copy_function=shutil.copy2)
            shutil.copy2(data / "arawn.db", copy / "arawn.db")  # without its WAL
        finally:
            await core.close(end_sessions=False)

    asyncio.run(work())
    assert not (copy / "arawn.db-wal").exists()
    return copy
