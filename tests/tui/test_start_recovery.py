"""The TUI's start over what a crash left (issue 17): the first list is painted from the index
as it is, the files are checked against it after that frame, and the list then shows what the
check found (a workstream and a rename the lost WAL had held)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from arawn_core.store.repository import Repository
from tests.test_deferred_recovery import crashed_copy
from tests.tui.conftest import ready, wait_until


async def test_the_recovery_runs_after_the_first_paint_and_the_list_follows(
        make_app, tui_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = await asyncio.to_thread(crashed_copy, tmp_path)  # it runs its own event loop
    app = make_app(tui_settings.with_data_dir(copy))
    seen: list[bool] = []
    real = Repository.catch_up_all

    async def watched(self: Repository) -> int:
        seen.append(app.first_screen_painted.is_set())  # set at the first frame that shows the list
        return await real(self)

    monkeypatch.setattr(Repository, "catch_up_all", watched)
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        wl = app.main_screen.workstream_list

        def titles() -> list[str]:
            return sorted(ws.title for ws in wl.workstreams.values())

        await wait_until(pilot, lambda: titles() == ["Alpha renamed", "Born later"],
                         what="the list with what the recovery indexed")
        assert seen == [True], "the files were checked before the first list was on screen"
        assert wl.option_count == 2 and wl.first_paint_seen
