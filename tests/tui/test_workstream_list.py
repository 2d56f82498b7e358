"""The workstream list: a changed row is shown at once, and a row that grows moves the rows below."""

from __future__ import annotations

from textual.app import App, ComposeResult

from arawn_core.models import CompressionStatus, Workstream, WorkstreamState
from arawn_tui.widgets.workstream_list import WorkstreamList

TS = "2026-01-15T12:00:00.000000Z"


def workstreams(n: int) -> list[Workstream]:
    return [Workstream(id=f"ws-{i:03d}", title=f"project {i:03d}", state=WorkstreamState.ACTIVE, tags=[], created_at=TS, updated_at=TS, session_count=i)
            for i in range(n)]


class ListApp(App[None]):
    CSS = "WorkstreamList { border: none; height: 1fr; scrollbar-size-vertical: 0; }"

    def compose(self) -> ComposeResult:
        yield WorkstreamList(id="workstreams")


def screen_lines(app: App) -> list[str]:
    wl = app.query_one(WorkstreamList)
    return [strip.text.strip() for strip in wl.render_lines(wl.region.reset_offset)]


async def test_a_changed_row_is_repainted_and_a_taller_one_moves_the_rest():
    app = ListApp()
    async with app.run_test(size=(40, 12)) as pilot:
        wl = app.query_one(WorkstreamList)
        wl.set_workstreams(workstreams(1000))
        await pilot.pause()
        assert screen_lines(app)[:4] == ["project 000", "0 sessions", "project 001", "1 session"]

        ws = workstreams(2)[1]
        ws.session_count = 7
        ws.compression = CompressionStatus.FAILED
        assert wl.update_workstream(ws)
        await pilot.pause()
        assert screen_lines(app)[2:6] == ["project 001", "7 sessions  failed", "project 002", "2 sessions"]

        wl.set_job_progress("ws-001", "job-1", 2, 5)
        await pilot.pause(0.4)  # progress repaints a few times a second
        assert screen_lines(app)[3] == "7 sessions  running 2/5"

        ws.title = "a title long enough to need a second line in a narrow list"
        assert wl.update_workstream(ws)
        await pilot.pause()
        lines = screen_lines(app)
        assert lines[2:5] == ["a title long enough to need a second", "line in a narrow list",
                              "7 sessions  running 2/5"]
        assert lines[5:7] == ["project 002", "2 sessions"]
        wl.highlighted = 999  # the last row is still reached: the list knows its new length
        await pilot.pause()
        assert screen_lines(app)[-2:] == ["project 999", "999 sessions"]

        assert not wl.update_workstream(Workstream(id="elsewhere", title="x", state=WorkstreamState.ACTIVE, tags=[], created_at=TS, updated_at=TS))
