"""Snapshots of the main screens (pytest-textual-snapshot).

Deterministic by construction: a fixed terminal size, sessions imported with
fixed timestamps, summary times pinned, UTC display, the fake backend's
scripted replies, cursor blink off, and no clock anywhere on screen. Each test
waits for the state it claims to show before the picture is taken.
"""

from __future__ import annotations

from dataclasses import replace

import asyncio
from pathlib import Path

from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

from arawn_core.config import Settings
from arawn_tui.app import ArawnApp
from arawn_tui import workers as groups
from arawn_tui.factory import create_app
from arawn_tui.widgets.chat_input import ChatInput
from arawn_tui.widgets.chat_view import ChatMessage
from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.status_bar import StatusBar
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.fakes import FakeBackend, scripted
from tests.tui.conftest import open_core, pin_summary_times, ready, wait_until, write_conversations

SIZE = (120, 36)

GARDEN = [
    [("user", "Which tomatoes grow well in pots? MARKER-pots", "2026-01-10T09:00:00Z"),
     ("assistant", "Cherry and bush varieties: *Tiny Tim*, *Balconi Red*.", "2026-01-10T09:00:30Z")],
    [("user", "How often should I water them?", "2026-01-12T18:15:00Z"),
     ("assistant", "Daily in summer; check the soil a knuckle deep.", "2026-01-12T18:15:40Z"),
     ("user", "And feeding?", "2026-01-12T18:20:00Z"),
     ("assistant", "Tomato feed weekly once the first truss sets.", "2026-01-12T18:20:30Z")],
]


def build(settings: Settings, tmp: Path, compress: bool) -> dict[str, str]:
    """Workstreams for the pictures: `Garden` with two imported sessions (summarized if asked)."""

    async def go() -> dict[str, str]:
        backend = FakeBackend(models=["fake-model"], reply=scripted(
            "Tomatoes in pots: cherry and bush varieties (Tiny Tim, Balconi Red).",
            "Watering: daily in summer, test the soil; feed weekly after the first truss.",
            "## Garden\n\n- Pot tomatoes: **Tiny Tim**, Balconi Red.\n- Water daily in summer.\n"
            "- Feed weekly after the first truss."))
        # the audit reports only: a repair call would take the next scripted reply
        c = settings.workstream.compression
        audited = replace(settings, workstream=replace(settings.workstream, compression=replace(c, audit="report")))
        core = await open_core(audited, backend)
        reading = await core.create_workstream("Reading list")
        garden = await core.create_workstream("Garden")
        await core.import_file(write_conversations(tmp / "garden.jsonl", GARDEN), "messages", garden.id)
        if compress:
            await core.compress(garden.id)
            await core.work_queue()
        await core.close(end_sessions=False)
        if compress:
            pin_summary_times(settings)
        return {"garden": garden.id, "reading": reading.id}

    return asyncio.run(go())


async def steady(pilot: Pilot) -> None:
    """Loaded, backend checked, no cursor blinking, nothing left to refresh."""
    app: ArawnApp = await ready(pilot)  # type: ignore[assignment]
    status = app.main_screen.query_one(StatusBar)
    await wait_until(pilot, lambda: status.info is not None, what="backend check")
    app.main_screen.query_one(ChatInput).cursor_blink = False
    await wait_until(pilot, lambda: not (app.scheduler and app.scheduler.running_jobs) and not any(
        w.group in groups.LOADING and not w.is_finished for w in app.workers), what="loads to finish")
    await pilot.pause(0.2)


def test_first_start_empty(snap_compare, tui_settings):
    app = create_app(tui_settings, FakeBackend(models=["fake-model"]))
    assert snap_compare(app, terminal_size=SIZE, run_before=steady)


def test_workstream_with_summary_sessions_and_a_transcript(snap_compare, tui_settings, tmp_path):
    ids = build(tui_settings, tmp_path, compress=True)
    app = create_app(tui_settings, FakeBackend(models=["fake-model"]))

    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        screen = app.main_screen
        assert screen.ws_id == ids["garden"]
        sessions = screen.query_one(SessionList)
        sessions.focus()
        sessions.highlighted = 1  # the older session: its summary shows in the panel
        await wait_until(pilot, lambda: "Tomatoes in pots" in str(
            screen.query_one("#session-summary").source), what="session summary")
        await pilot.press("enter")  # and its transcript, read-only, in the chat
        await wait_until(pilot, lambda: len(screen.query(ChatMessage)) == 2, what="transcript")
        await steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_compression_running(snap_compare, tui_settings, tmp_path):
    ids = build(tui_settings, tmp_path, compress=False)
    backend = FakeBackend(models=["fake-model"])
    backend.pause()  # both session jobs stay in their first call
    app = create_app(tui_settings, backend)

    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        await pilot.press("ctrl+k")
        wl = app.main_screen.query_one(WorkstreamList)
        await wait_until(pilot, lambda: backend.in_flight == 2, what="two jobs in their LLM call")
        await wait_until(pilot, lambda: wl.workstreams[ids["garden"]].compression.value == "running",
                         what="running badge")
        await pilot.pause(0.3)
        app.main_screen.query_one(ChatInput).cursor_blink = False

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_failed_job(snap_compare, tui_settings, tmp_path):
    ids = build(tui_settings, tmp_path, compress=False)
    backend = FakeBackend(models=["another-model"])  # the configured fake-model is missing: permanent error
    app = create_app(tui_settings, backend)

    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        wl = app.main_screen.query_one(WorkstreamList)
        await pilot.press("ctrl+k")
        await wait_until(pilot, lambda: wl.workstreams[ids["garden"]].compression.value == "failed",
                         what="failed badge")
        await wait_until(pilot, lambda: app.main_screen.query_one("#ws-error").display, what="reason shown")
        app.clear_notifications()  # two jobs fail; keep the toasts out of the picture, the panel has the reason
        await steady(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_command_palette(snap_compare, tui_settings, tmp_path):
    build(tui_settings, tmp_path, compress=True)
    app = create_app(tui_settings, FakeBackend(models=["fake-model"]))

    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        app.screen.query_one(Input).cursor_blink = False
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
