"""Memory in the TUI with Pilot: pinned notes (f3 and the palette), pin a transcript message,
edit the summary, its history with diff and revert (f4), compress with focus, fork, rename a
session; and a snapshot of the history view."""

from __future__ import annotations

import asyncio
import sqlite3

from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static, TextArea

from arawn_tui.factory import create_app
from arawn_tui.screens.dialogs import Confirm, MultilinePrompt, TextPrompt
from arawn_tui.screens.pins import MessagePicker, PinsScreen
from arawn_tui.screens.summary_edit import SummaryEditor
from arawn_tui.screens.summary_history import SummaryHistoryScreen
from arawn_tui.widgets.pins_view import PinsView
from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.fakes import FakeBackend, scripted
from tests.tui.conftest import FIXED_TS, open_core, pin_summary_times, ready, settle, wait_until, write_conversations
from tests.tui.test_flows import chat, new_workstream
from tests.tui.test_palette import run_command
from tests.tui.test_snapshots import GARDEN, SIZE, steady


async def test_pins_add_edit_remove_with_f3_and_shown_in_the_panel(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Pinned")
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, PinsScreen), what="the pins screen")
        pins_screen = app.screen
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, MultilinePrompt), what="the note editor")
        app.screen.query_one(TextArea).load_text("Deadline is 14 March")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is pins_screen and len(pins_screen.pins) == 1, what="pin listed")
        assert [p.text for p in await app.core.list_pins(ws_id)] == ["Deadline is 14 March"]

        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, MultilinePrompt), what="the note editor")
        assert app.screen.query_one(TextArea).text == "Deadline is 14 March"
        app.screen.query_one(TextArea).load_text("Deadline is 21 March")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: pins_screen.pins and pins_screen.pins[0].text == "Deadline is 21 March",
                         what="pin edited")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, PinsScreen), what="closed")
        view = app.main_screen.query_one(PinsView)
        await wait_until(pilot, lambda: view.display and [p.text for p in view.pins] == ["Deadline is 21 March"],
                         what="pins under the summary")
        assert "Deadline is 21 March" in str(view.query_one("#pins-body", Static).render())

        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, PinsScreen) and app.screen.pins, what="pins again")
        await pilot.press("delete")
        await wait_until(pilot, lambda: not app.screen.pins, what="pin removed")
        assert await app.core.list_pins(ws_id) == []
        await pilot.press("escape")
        await wait_until(pilot, lambda: not view.display, what="pins section hidden")
        await settle(pilot)


async def test_pin_a_message_of_the_transcript(make_app, backend):
    backend.reply = scripted("The answer is 42, MARKER-reply.")
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Chatty")
        await chat(pilot, "what is the answer?")
        await run_command(pilot, "pin a message", MessagePicker)
        options = app.screen.query_one("#message-list", OptionList)
        assert options.option_count == 2 and options.highlighted == 0  # newest first: the reply
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, MessagePicker), what="picker closed")
        await wait_until(pilot, lambda: app.main_screen.query_one(PinsView).pins, what="pinned")
        pins = await app.core.list_pins(ws_id)
        stored = await app.core.session_messages((await app.core.active_session(ws_id)).id)
        assert [p.text for p in pins] == ["The answer is 42, MARKER-reply."]
        assert pins[0].source_message_id == stored[-1].id
        await chat(pilot, "again")
        assert "The answer is 42, MARKER-reply." in backend.requests[-1].system  # in the next context
        await settle(pilot)


async def test_edit_summary_history_diff_and_revert(make_app, tui_settings, backend, tmp_path):
    core = await open_core(tui_settings, backend)
    ws = await core.create_workstream("Garden")
    await core.import_file(write_conversations(tmp_path / "g.jsonl", GARDEN), "messages", ws.id)
    await core.compress(ws.id)
    await core.work_queue()
    model_text = (await core.workstream_summary(ws.id)).text
    await core.close(end_sessions=False)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: app.main_screen.ws_id == ws.id, what="selection")
        await run_command(pilot, "edit summary", SummaryEditor)
        area = app.screen.query_one(TextArea)
        assert area.text == model_text
        area.load_text(model_text + "\n- mine: water before 9am")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, SummaryEditor), what="editor closed")
        await wait_until(pilot, lambda: "water before 9am" in (app.main_screen.summary_panel.workstream_summary.text
                                                               if app.main_screen.summary_panel.workstream_summary
                                                               else ""), what="edited summary shown")
        v = await app.core.current_version(ws.id)
        assert (v.number, v.author, v.protected) == (2, "user", ["- mine: water before 9am"])

        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryHistoryScreen) and app.screen.versions,
                         what="history")
        history = app.screen
        listing = history.query_one("#versions", OptionList)
        assert listing.option_count == 2 and history.selected_number == 2
        diff = str(history.query_one("#diff", Static).render())
        assert "+- mine: water before 9am" in diff and "version 2 by you" in diff
        listing.highlighted = 1  # version 1
        await wait_until(pilot, lambda: history.selected_number == 1, what="version 1")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, Confirm), what="confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.screen is history and len(history.versions) == 3, what="reverted")
        assert (await app.core.workstream_summary(ws.id)).text == model_text
        assert history.selected_number == 3 and history.versions[-1].reverted_from == 1
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, SummaryHistoryScreen), what="closed")
        await settle(pilot)


async def test_compress_with_focus_fork_and_rename_session(make_app, tui_settings, backend, tmp_path):
    core = await open_core(tui_settings, backend)
    ws = await core.create_workstream("Garden")
    await core.import_file(write_conversations(tmp_path / "g.jsonl", GARDEN), "messages", ws.id)
    await core.add_pin(ws.id, "organic only")
    await core.close(end_sessions=False)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: app.main_screen.ws_id == ws.id, what="selection")
        await run_command(pilot, "compress with focus", TextPrompt)
        app.screen.query_one(Input).value = "watering schedule"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, TextPrompt), what="prompt closed")
        await settle(pilot)
        await wait_until(pilot, lambda: app.main_screen.summary_panel.workstream_summary is not None, what="summary")
        v = await app.core.current_version(ws.id)
        assert v is not None and v.focus == "watering schedule"
        assert any("watering schedule" in r.user for r in backend.ok_requests)

        await run_command(pilot, "fork workstream", TextPrompt)
        assert app.screen.query_one(Input).value == "Garden (fork)"
        app.screen.query_one(Input).value = "Garden B"
        await pilot.press("enter")
        wl = app.main_screen.query_one(WorkstreamList)
        await wait_until(pilot, lambda: any(w.title == "Garden B" for w in wl.workstreams.values()), what="fork row")
        fork_id = next(i for i, w in wl.workstreams.items() if w.title == "Garden B")
        assert (await app.core.workstream_origin(fork_id))["origin_id"] == ws.id
        assert (await app.core.workstream_summary(fork_id)).text == v.text
        assert [p.text for p in await app.core.list_pins(fork_id)] == ["organic only"]

        wl.highlighted = wl.get_option_index(ws.id)
        await wait_until(pilot, lambda: app.main_screen.ws_id == ws.id, what="back to Garden")
        sessions = app.main_screen.query_one(SessionList)
        await wait_until(pilot, lambda: len(sessions.sessions) == 2, what="sessions")
        sessions.highlighted = 0
        await run_command(pilot, "rename session", TextPrompt)
        first = sessions.sessions[sessions.selected_id]
        assert app.screen.query_one(Input).value == first.title == "How often should I water them?"
        app.screen.query_one(Input).value = "Watering"
        await pilot.press("enter")
        await wait_until(pilot, lambda: sessions.sessions.get(first.id) is not None
                         and sessions.sessions[first.id].title == "Watering", what="renamed row")
        assert "Watering" in str(sessions.get_option(first.id).prompt)
        await settle(pilot)


def build_history(settings, tmp) -> str:
    """Garden with two summaries by the model, then an edit and a revert: four versions."""

    async def go() -> str:
        backend = FakeBackend(models=["fake-model"], reply=scripted(
            "Tomatoes in pots: cherry and bush varieties.", "Watering: daily in summer.",
            "## Garden\n\n- Pot tomatoes: Tiny Tim.\n- Water daily in summer."))
        core = await open_core(settings, backend)
        garden = await core.create_workstream("Garden")
        await core.import_file(write_conversations(tmp / "garden.jsonl", GARDEN), "messages", garden.id)
        await core.compress(garden.id)
        await core.work_queue()
        await core.set_summary(garden.id, "## Garden\n\n- Pot tomatoes: Tiny Tim.\n- Water before 9am, not at"
                                          " noon.\n- Mine: no chemical feed.")
        await core.add_pin(garden.id, "Organic only.")
        await core.close(end_sessions=False)
        pin_summary_times(settings)
        with sqlite3.connect(settings.data_dir / "arawn.db") as db:
            db.execute("UPDATE summary_versions SET created_at = ?,"
                       " provenance = json_set(provenance, '$.created_at', ?)", (FIXED_TS, FIXED_TS))
            db.execute("UPDATE pins SET created_at = ?, updated_at = ?", (FIXED_TS, FIXED_TS))
        return garden.id

    return asyncio.run(go())


def test_summary_history_view(snap_compare, tui_settings, tmp_path):
    garden = build_history(tui_settings, tmp_path)
    app = create_app(tui_settings, FakeBackend(models=["fake-model"]))

    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        assert app.main_screen.ws_id == garden
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryHistoryScreen) and app.screen.versions,
                         what="history")
        await wait_until(pilot, lambda: "Mine: no chemical feed" in str(app.screen.query_one("#diff").render()),
                         what="the diff of the edit")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_pins_over_budget_are_flagged_in_the_panel(make_app, tmp_path):
    from arawn_core.config import parse_settings
    from tests.tui.conftest import TEST_TOML

    settings = parse_settings(TEST_TOML.replace("[llm]", "[workstream]\npin_budget_tokens = 100\n\n[llm]"),
                              "tight.toml").with_data_dir(tmp_path / "tight")
    core = await open_core(settings)
    ws = await core.create_workstream("Tight")
    await core.add_pin(ws.id, "fits PIN-A")
    await core.add_pin(ws.id, "too long PIN-B " + "words " * 100)
    await core.close(end_sessions=False)
    app = make_app(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        view = app.main_screen.query_one(PinsView)
        await wait_until(pilot, lambda: view.fit is not None and view.fit.over_budget, what="the pins' fit")
        warning = view.query_one("#pins-warning", Static)
        assert warning.display and "1 of 2 pinned notes left out" in str(warning.render())
        assert "(left out: over budget)" in str(view.query_one("#pins-body", Static).render())
        await settle(pilot)
