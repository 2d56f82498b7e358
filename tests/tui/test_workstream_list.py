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


async def test_the_first_screenful_comes_first_and_the_rest_right_after():
    """A thousand rows: only what fits on screen is built before the first frame; the rest
    follows, and reaching a row not added yet (by id, by index, the last row) adds it at once."""
    app = ListApp()
    async with app.run_test(size=(40, 12)) as pilot:
        wl = app.query_one(WorkstreamList)
        items = workstreams(1000)
        wl.set_workstreams(items)
        assert 0 < wl.option_count < 50 and not wl.complete  # one screenful, not a thousand rows
        late = items[900]
        late.session_count = 5
        late.compression = CompressionStatus.FAILED
        assert wl.update_workstream(late)  # a row not added yet: shown from the current data
        await pilot.pause()
        assert screen_lines(app)[:2] == ["project 000", "0 sessions"]
        for _ in range(20):
            if wl.complete:
                break
            await pilot.pause()
        assert wl.complete and wl.option_count == 1000
        wl.highlighted = wl.get_option_index("ws-900")
        await pilot.pause()
        assert "5 sessions  failed" in screen_lines(app)

        wl.set_workstreams(items)
        assert not wl.complete
        assert wl.get_option_index("ws-700") == 700  # by id: added on demand
        wl.set_workstreams(items)
        wl.highlighted = 999  # by index
        await pilot.pause()
        assert screen_lines(app)[-2:] == ["project 999", "999 sessions"]
        wl.set_workstreams(items)
        wl.remove_workstream("ws-500")  # removing a row not added yet
        wl.action_last()
        await pilot.pause()
        assert wl.option_count == 999 and wl.highlighted == 998
        assert screen_lines(app)[-2:] == ["project 999", "999 sessions"]

        wl.set_workstreams(items, select="ws-400")  # the selected row is there from the start
        assert wl.highlighted == 400 and wl.highlighted_option.id == "ws-400"
