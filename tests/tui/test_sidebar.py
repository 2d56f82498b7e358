"""The sidebar: the session list always shows the highlighted workstream's sessions."""

from __future__ import annotations

from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.tui.conftest import open_core, ready, settle, wait_until


async def test_moving_to_a_workstream_without_sessions_empties_the_session_list(tui_settings, make_app):
    core = await open_core(tui_settings)
    empty = await core.create_workstream("Empty")
    busy = await core.create_workstream("Busy")
    for text in ("first MARKER-a", "second MARKER-b"):
        async for _ in core.send(busy.id, text):
            pass
        await core.end_session(busy.id)
    await core.work_queue()
    await core.close(end_sessions=False)

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        wl = screen.query_one(WorkstreamList)
        sessions = screen.query_one(SessionList)
        await wait_until(pilot, lambda: screen.ws_id == busy.id and sessions.option_count == 2,
                         what="the busy workstream (the most recent) and its sessions")
        await settle(pilot)
        wl.focus()
        await pilot.press("down")  # to the one with none
        await wait_until(pilot, lambda: screen.ws_id == empty.id, what="the empty workstream selected")
        await settle(pilot)
        await pilot.pause(0.3)
        assert sessions.option_count == 0 and not sessions.sessions
        await pilot.press("ctrl+q")


async def test_a_new_workstream_after_one_with_sessions_shows_no_sessions(make_app):
    """As a new user does it: a workstream, a chat, the session ended; then a second workstream.
    It takes the first row (the newest), where the first one was: the screen must follow."""
    from tests.tui.test_flows import chat, new_workstream

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        sessions = screen.query_one(SessionList)
        first = await new_workstream(pilot, "First")
        await chat(pilot, "hello MARKER-n")
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: sessions.option_count == 1, what="the first workstream's session")
        await settle(pilot)
        second = await new_workstream(pilot, "Second")
        assert second != first
        await settle(pilot)
        await pilot.pause(0.3)
        wl = screen.query_one(WorkstreamList)
        assert wl.selected_id == second == screen.ws_id
        assert sessions.option_count == 0 and not sessions.sessions
        # and moving back and forth keeps the two apart
        wl.focus()
        await pilot.press("down")
        await wait_until(pilot, lambda: screen.ws_id == first and sessions.option_count == 1, what="first again")
        await pilot.press("up")
        await wait_until(pilot, lambda: screen.ws_id == second, what="second again")
        await settle(pilot)
        await pilot.pause(0.3)
        assert sessions.option_count == 0
        await pilot.press("ctrl+q")


async def test_archiving_the_selected_workstream_shows_the_next_one_and_its_sessions(tui_settings, make_app):
    """The next row takes the archived one's place, so the list's highlight does not move (and
    OptionList posts no event): the screen must still switch to that workstream, and the archived
    one's sessions must leave the session list."""
    core = await open_core(tui_settings)
    empty = await core.create_workstream("Empty")
    busy = await core.create_workstream("Busy")  # newest: first row, selected at start
    async for _ in core.send(busy.id, "hi MARKER-arch"):
        pass
    await core.end_session(busy.id)
    await core.work_queue()
    await core.close(end_sessions=False)

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        screen = app.main_screen
        sessions = screen.query_one(SessionList)
        await wait_until(pilot, lambda: screen.ws_id == busy.id and sessions.option_count == 1,
                         what="the busy workstream and its session")
        await app.core.archive_workstream(busy.id)
        await wait_until(pilot, lambda: screen.ws_id == empty.id, what="the next workstream shown")
        await settle(pilot)
        await pilot.pause(0.3)
        wl = screen.query_one(WorkstreamList)
        assert wl.selected_id == empty.id and busy.id not in wl.workstreams
        assert sessions.option_count == 0 and not sessions.sessions
        title = str(screen.query_one("#chat-title").render())
        assert "Empty" in title and "Busy" not in title
        await pilot.press("ctrl+q")
