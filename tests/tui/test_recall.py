"""Recall on screen: the reply says which earlier messages its request carried, each opens
its session at that message, and a summary's sources open from the palette."""

from __future__ import annotations

from dataclasses import replace

from arawn_tui.screens.main import MainScreen
from arawn_tui.screens.sources import SourcePicker
from arawn_tui.widgets.chat_view import ChatMessage, ChatView
from arawn_tui.widgets.recall_line import RecallLine
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.tui.conftest import open_core, ready, settle, wait_until
from tests.tui.test_flows import chat
from tests.tui.test_palette import run_command

SIZE = (120, 36)
DETAIL = "For staging we settled on the rotation code ROT-4471, rotated every Tuesday."


async def seed(settings) -> dict[str, str]:
    """A workstream whose first, ended and summarized session said the detail once."""
    core = await open_core(settings)
    ws = await core.create_workstream("Infra")
    await core.append_message(ws.id, "user", "Let us plan the staging environment.")
    detail = await core.append_message(ws.id, "assistant", DETAIL)
    first = await core.end_session(ws.id)
    await core.append_message(ws.id, "user", "Now the logging pipeline: we ship logs with vector.")
    await core.end_session(ws.id)
    await core.work_queue()
    summary = await core.workstream_summary(ws.id)
    assert summary is not None and len(summary.covers) == 2
    await core.close(end_sessions=False)
    return {"ws": ws.id, "detail": detail.id, "first": first.id}


async def test_the_reply_shows_what_was_recalled_and_opens_it(make_app, tui_settings):
    ids = await seed(tui_settings)
    keep_live = replace(tui_settings, workstream=replace(tui_settings.workstream, end_sessions_on_quit=False))
    app = make_app(keep_live)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        main = app.main_screen
        await wait_until(pilot, lambda: main.ws_id == ids["ws"], what="the workstream")
        await settle(pilot)
        await chat(pilot, "Which rotation code did we pick for staging?")
        chat_view = main.query_one(ChatView)
        reply = [w for w in chat_view.query(ChatMessage) if w.role == "assistant"][-1]
        await wait_until(pilot, lambda: bool(reply.query(RecallLine)), what="the recalled line")
        line = reply.query_one(RecallLine)
        assert [r["id"] for r in line.recalled] == [ids["detail"]]
        assert "recalled 1 earlier message" in str(line.render())
        assert "recalled 1 earlier message".replace(" ", "&#160;") in app.export_screenshot()

        await pilot.click(line)
        await wait_until(pilot, lambda: isinstance(app.screen, SourcePicker), what="the recalled list")
        assert "ROT-4471" in app.export_screenshot()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and main.viewing_session == ids["first"]
                         and any(w.has_class("-found") for w in chat_view.query(ChatMessage)),
                         what="the old session at the recalled message")
        found = next(w for w in chat_view.query(ChatMessage) if w.has_class("-found"))
        assert found.message_id == ids["detail"] and "READ-ONLY" in str(main.query_one("#chat-title").render())
        await settle(pilot)

    # after a restart the live chat still says it (the reply's metadata keeps the list)
    app = make_app(keep_live)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        main = app.main_screen
        chat_view = main.query_one(ChatView)
        await wait_until(pilot, lambda: main.ws_id == ids["ws"] and len(chat_view.messages) == 2, what="live chat")
        await settle(pilot)
        (line,) = chat_view.query(RecallLine)
        assert [r["id"] for r in line.recalled] == [ids["detail"]]


async def test_a_reply_without_recall_has_no_line(make_app, tui_settings):
    await seed(tui_settings)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await settle(pilot)
        await chat(pilot, "What is a name for a cat?")
        assert not app.main_screen.query(RecallLine)


async def test_summary_sources_from_the_palette_open_a_covered_session(make_app, tui_settings):
    ids = await seed(tui_settings)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        main = app.main_screen
        await wait_until(pilot, lambda: main.ws_id == ids["ws"] and main.summary_panel.workstream_summary,
                         what="the workstream and its summary")
        await settle(pilot)
        await run_command(pilot, "session this summary covers", SourcePicker)
        picker = app.screen
        assert [key for key, _ in picker.items] == main.summary_panel.workstream_summary.covers
        assert ids["first"] == picker.items[0][0] and "2 messages" in picker.items[0][1]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and main.viewing_session == ids["first"],
                         what="the covered session's transcript")
        await settle(pilot)
        assert DETAIL in [w.text for w in main.query_one(ChatView).query(ChatMessage)]
        assert main.query_one(WorkstreamList).highlighted == main.query_one(WorkstreamList).get_option_index(ids["ws"])
