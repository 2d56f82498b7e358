"""Pilot flows over the fake backend: the screen, the engine's events and the stored state."""

from __future__ import annotations

from textual.notifications import Notify
from textual.widgets import Input

from arawn_core import events as ev
from arawn_core.errors import ModelNotFound
from arawn_core.models import CompressionStatus, JobState
from arawn_tui import messages as m
from arawn_tui.widgets.chat_input import ChatInput
from arawn_tui.widgets.chat_view import ChatMessage, ChatNotice, ChatView
from arawn_tui.widgets.markdown_text import MarkdownText
from arawn_tui.widgets.status_bar import StatusBar
from arawn_tui.widgets.summary_panel import SummaryPanel
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.fakes import FakeBackend
from tests.tui.conftest import Recorder, open_core, ready, settle, wait_until


def badge_of(app, ws_id: str) -> str:
    ws = app.main_screen.query_one(WorkstreamList).workstreams[ws_id]
    return ws.compression.value


def summary_markdown(app) -> str:
    return app.main_screen.query_one("#ws-summary", MarkdownText).source


async def new_workstream(pilot, title: str) -> str:
    app = pilot.app
    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: app.screen.__class__.__name__ == "TextPrompt", what="the dialog")
    app.screen.query_one(Input).value = title  # typing is covered elsewhere; keep tests quick
    await pilot.press("enter")
    wl = app.main_screen.query_one(WorkstreamList)
    await wait_until(pilot, lambda: any(w.title == title for w in wl.workstreams.values())
                     and app.main_screen.ws_id is not None
                     and wl.workstreams[app.main_screen.ws_id].title == title, what="the new workstream")
    return app.main_screen.ws_id


async def chat(pilot, text: str) -> None:
    app = pilot.app
    screen = app.main_screen
    screen.query_one(ChatInput).focus()
    screen.query_one(ChatInput).insert(text)
    await pilot.press("enter")
    await wait_until(pilot, lambda: screen.reply_worker is not None and screen.reply_worker.is_finished,
                     what="the reply")
    await pilot.pause()


async def test_chat_end_session_compresses_and_shows_summary(make_app, backend: FakeBackend, recorder: Recorder):
    backend.chunk_delay_s = 0.01
    app = make_app()
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Project X")
        await chat(pilot, "hello MARKER-one")

        # the reply streamed in, in pieces, and is on screen
        assert len(recorder.of(m.ReplyPiece)) > 1
        replies = [w for w in app.main_screen.query(ChatMessage) if w.role == "assistant"]
        assert replies and "MARKER-one" in replies[-1].query_one(MarkdownText).source
        assert [r.method for r in backend.requests] == ["chat"]

        backend.pause()  # hold compression so the running badge can be seen
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "running", what="running badge")
        backend.resume()
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "done", what="done badge")
        await wait_until(pilot, lambda: "MARKER-one" in summary_markdown(app), what="summary on screen")
        await settle(pilot)

        running = recorder.events(ev.JobStarted)
        assert {j.kind for j in running} >= {"session", "reduce"}
        assert not recorder.events(ev.JobFailed) and len(recorder.events(ev.JobCompleted)) == len(running)
        toasts = [n.notification.message for n in recorder.of(Notify)]
        assert any("summarized" in t for t in toasts) and any("updated" in t for t in toasts)
        meta = str(app.main_screen.query_one("#ws-meta").render())
        assert "fake-model" in meta and "1 session covered" in meta

        core = app.core
        summary = await core.workstream_summary(ws_id)
        assert summary is not None and "MARKER-one" in summary.text
        sessions = await core.list_sessions(ws_id)
        assert len(sessions) == 1 and not sessions[0].active
        assert sessions[0].compression is CompressionStatus.DONE


async def test_ctrl_k_compresses_the_selected_workstream(tui_settings, make_app, backend, recorder):
    from dataclasses import replace

    off = replace(tui_settings, workstream=replace(
        tui_settings.workstream, compression=replace(tui_settings.workstream.compression, enabled=False)))
    core = await open_core(off)
    ws = await core.create_workstream("Manual")
    async for _ in core.send(ws.id, "remember MARKER-manual"):
        pass
    await core.end_session(ws.id)
    assert await core.queue_length() == 0  # compression off: nothing queued
    await core.close()

    app = make_app()
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        assert app.main_screen.ws_id == ws.id
        await pilot.press("ctrl+k")
        await wait_until(pilot, lambda: "MARKER-manual" in summary_markdown(app), what="summary")
        await settle(pilot)
        assert badge_of(app, ws.id) == "done"
        assert {j.kind for j in recorder.events(ev.JobQueued)} >= {"session"}
        assert (await app.core.workstream_summary(ws.id)) is not None


async def test_failed_job_shows_reason_and_ctrl_r_retries(make_app, backend: FakeBackend, recorder: Recorder):
    app = make_app()
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Fails")
        await chat(pilot, "hi MARKER-f")
        backend.fail_next(1, ModelNotFound("fake-model", "fake://"))
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "failed", what="failed badge")
        await wait_until(pilot, lambda: app.main_screen.query_one("#ws-error").display, what="error line")

        error_line = str(app.main_screen.query_one("#ws-error").render())
        assert "ollama pull fake-model" in error_line
        failures = recorder.events(ev.JobFailed)
        assert failures and not failures[0].will_retry and "not found" in failures[0].error
        errors = [n.notification for n in recorder.of(Notify) if n.notification.severity == "error"]
        assert errors and "ollama pull fake-model" in errors[0].message
        assert [j.state for j in await app.core.list_jobs(workstream_id=ws_id)] == [JobState.FAILED]

        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "done", what="done after retry")
        await wait_until(pilot, lambda: "MARKER-f" in summary_markdown(app), what="summary after retry")
        await settle(pilot)
        assert not app.main_screen.query_one("#ws-error").display
        assert await app.core.queue_length() == 0


async def test_quit_with_job_queued_resumes_on_next_start(tui_settings, make_app, backend: FakeBackend):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Resume")
        await chat(pilot, "keep MARKER-r")
        backend.pause()  # the job will be running when we quit
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "running", what="running")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.core is None, what="the core to close")
    assert backend.closed

    core = await open_core(tui_settings)
    jobs = await core.list_jobs(workstream_id=ws_id)
    assert [j.state for j in jobs] == [JobState.PENDING]  # released, not lost, not failed
    await core.close(end_sessions=False)

    second = FakeBackend(models=["fake-model"])
    second.pause()
    app2 = make_app(fake=second)
    async with app2.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: badge_of(app2, ws_id) == "running", what="resumed job running")
        second.resume()
        await wait_until(pilot, lambda: badge_of(app2, ws_id) == "done", what="resumed job done")
        assert "MARKER-r" in (await app2.core.workstream_summary(ws_id)).text
        await settle(pilot)


async def test_quit_ends_the_live_session_and_keeps_its_job(tui_settings, make_app, backend):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Quit")
        backend.pause()  # jobs queued at quit are not started before the core closes
        await chat_without_waiting_for_compression(pilot, backend, "bye MARKER-q")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.core is None, what="close")
    core = await open_core(tui_settings)
    sessions = await core.list_sessions(ws_id)
    assert len(sessions) == 1 and not sessions[0].active and sessions[0].end_reason == "quit"
    assert await core.queue_length() == 1
    await core.close(end_sessions=False)


async def chat_without_waiting_for_compression(pilot, backend: FakeBackend, text: str) -> None:
    backend.resume()
    await chat(pilot, text)
    backend.pause()


async def test_backend_down_status_line_chat_error_and_jobs_wait(make_app, recorder):
    down = FakeBackend(down=True, models=["fake-model"])
    app = make_app(fake=down)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        status = app.main_screen.query_one(StatusBar)
        await wait_until(pilot, lambda: status.info is not None, what="backend check")
        line = str(status.render())
        assert "unreachable" in line and "fake://" in line

        ws_id = await new_workstream(pilot, "Offline")
        await chat(pilot, "anyone there?")
        notices = [str(n.render()) for n in app.main_screen.query(ChatNotice)]
        assert any("unreachable" in n and "ollama serve" in n for n in notices)
        # the user's turn is stored even though no reply came
        session = await app.core.active_session(ws_id)
        assert [x.role for x in await app.core.session_messages(session.id)] == ["user"]

        await pilot.press("ctrl+e")
        # the scheduler knows the backend is down: the job waits, unclaimed, and the user is told
        calls = down.calls
        await wait_until(pilot, lambda: recorder.events(ev.JobQueued), what="the session's job queued")
        await wait_until(pilot, lambda: any("compression waits" in n.notification.message
                                            for n in recorder.of(Notify)), what="the waiting toast")
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "pending", what="pending badge")
        await pilot.pause(0.5)  # several scheduler polls later: still not tried
        assert badge_of(app, ws_id) == "pending" and down.calls == calls
        assert not app.scheduler.backend_up and not app.scheduler.running_jobs

        down.down = False  # the backend comes back: the health check resumes the jobs without user action
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "done", timeout=15, what="done after recovery")
        await settle(pilot)


async def test_escape_stops_the_reply_and_keeps_the_partial(make_app, backend: FakeBackend):
    backend.reply = lambda messages, options: " ".join(f"word{i}" for i in range(200))
    backend.chunk_delay_s = 0.02
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Stop")
        screen = app.main_screen
        screen.query_one(ChatInput).focus()
        await pilot.press(*"talk")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(screen.chat.reply_text) > 3, what="some reply")
        await pilot.press("escape")
        await wait_until(pilot, lambda: screen.reply_worker.is_finished, what="stopped")
        await wait_until(pilot, lambda: any("Stopped" in str(n.render()) for n in screen.query(ChatNotice)),
                         what="stopped notice")
        await settle(pilot)
        session = await app.core.active_session(ws_id)
        stored = await app.core.session_messages(session.id)
        assert [x.role for x in stored] == ["user", "assistant"]
        assert stored[1].metadata.get("interrupted") is True
        assert 0 < len(stored[1].content) < len(" ".join(f"word{i}" for i in range(200)))


async def test_read_only_transcript_of_an_ended_session(make_app, backend):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await new_workstream(pilot, "History")
        await chat(pilot, "first session MARKER-old")
        await pilot.press("ctrl+e")
        await settle(pilot)
        screen = app.main_screen
        chat_view = screen.query_one(ChatView)
        await wait_until(pilot, lambda: not chat_view.query(ChatMessage), what="fresh live chat")

        sessions = screen.session_list
        await wait_until(pilot, lambda: sessions.option_count == 1, what="one session listed")
        sessions.focus()
        sessions.highlighted = 0
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(chat_view.query(ChatMessage)) == 2, what="transcript")
        chat_input = screen.query_one(ChatInput)
        assert chat_input.disabled
        assert "READ-ONLY" in str(screen.query_one("#chat-title").render())
        assert "MARKER-old" in str(chat_view.query(ChatMessage).first().query_one(".message-body").render())
        # the session's summary is in the panel
        await wait_until(pilot, lambda: "MARKER-old" in screen.query_one("#session-summary", MarkdownText).source,
                         what="session summary")

        await pilot.press("escape")
        await wait_until(pilot, lambda: not chat_input.disabled and not chat_view.query(ChatMessage),
                         what="back to live")
        await settle(pilot)


async def test_multiline_input_and_history(make_app, backend):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Lines")
        screen = app.main_screen
        chat_input = screen.query_one(ChatInput)
        chat_input.focus()
        await pilot.press(*"line one", "ctrl+j", *"line two")
        assert chat_input.text == "line one\nline two"
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.reply_worker and screen.reply_worker.is_finished, what="reply")
        assert chat_input.text == ""
        await chat(pilot, "second")
        await pilot.press("up")
        assert chat_input.text == "second"
        await pilot.press("up")
        assert chat_input.text == "line one\nline two"
        await pilot.press("down")  # cursor is on the last line: next entry
        assert chat_input.text == "second"
        await pilot.press("down")
        assert chat_input.text == ""
        session = await app.core.active_session(ws_id)
        users = [x.content for x in await app.core.session_messages(session.id) if x.role == "user"]
        assert users == ["line one\nline two", "second"]
        await settle(pilot)


async def test_idle_sessions_end_on_their_own(tui_settings, make_app, backend, recorder):
    from dataclasses import replace

    settings = replace(tui_settings, workstream=replace(tui_settings.workstream, session_timeout_minutes=0.01))
    app = make_app(settings=settings)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Idle")
        await chat(pilot, "then silence MARKER-idle")
        await wait_until(pilot, lambda: badge_of(app, ws_id) == "done", timeout=15, what="idle end + compression")
        sessions = await app.core.list_sessions(ws_id)
        assert sessions[0].end_reason == "idle"
        # the live chat starts afresh: the next message opens a new session
        chat_view = app.main_screen.query_one(ChatView)
        await wait_until(pilot, lambda: not chat_view.query(ChatMessage), what="chat cleared")
        await settle(pilot)


async def test_summary_panel_toggles(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        panel = app.main_screen.query_one(SummaryPanel)
        assert panel.display
        await pilot.press("f2")
        assert not panel.display
        await pilot.press("f2")
        assert panel.display


async def test_at_most_max_jobs_running(tui_settings, make_app, backend: FakeBackend):
    core = await open_core(tui_settings)
    ids = []
    for n in range(4):
        ws = await core.create_workstream(f"Busy {n}")
        async for _ in core.send(ws.id, f"work MARKER-b{n}"):
            pass
        await core.end_session(ws.id)  # four session jobs queued
        ids.append(ws.id)
    await core.close(end_sessions=False)

    backend.pause()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await wait_until(pilot, lambda: backend.in_flight == 2, what="two jobs in flight")
        await pilot.pause(0.5)  # several poll ticks later, still two
        assert len(app.scheduler.running_jobs) == 2 and backend.in_flight == 2
        assert sorted(badge_of(app, i) for i in ids).count("running") == 2
        backend.resume()
        await wait_until(pilot, lambda: all(badge_of(app, i) == "done" for i in ids), timeout=20, what="all done")
        assert backend.max_in_flight == 2
        await settle(pilot)
        await pilot.press("ctrl+q")


async def test_typing_with_no_workstream_goes_to_scratch(make_app, backend):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert app.main_screen.ws_id is None
        await chat(pilot, "quick question MARKER-s")
        wl = app.main_screen.query_one(WorkstreamList)
        await wait_until(pilot, lambda: app.main_screen.ws_id is not None
                         and wl.workstreams.get(app.main_screen.ws_id) is not None, what="scratch listed")
        scratch = wl.workstreams[app.main_screen.ws_id]
        assert scratch.is_scratch and scratch.session_count == 1
        blocks = list(app.main_screen.query(ChatMessage))
        assert [b.role for b in blocks] == ["user", "assistant"]  # the streamed chat stayed on screen
        assert "MARKER-s" in blocks[1].query_one(MarkdownText).source
        await settle(pilot)
        await pilot.press("ctrl+q")


async def test_quit_during_a_reply_keeps_the_partial_reply(tui_settings, make_app, backend: FakeBackend):
    backend.reply = lambda messages, options: " ".join(f"w{i}" for i in range(300))
    backend.chunk_delay_s = 0.02
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Interrupted")
        screen = app.main_screen
        screen.query_one(ChatInput).insert("go")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(screen.chat.reply_text) > 3, what="reply streaming")
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: app.core is None, what="closed")
    core = await open_core(tui_settings)
    [session] = await core.list_sessions(ws_id)
    stored = await core.session_messages(session.id)
    assert [x.role for x in stored] == ["user", "assistant"]
    assert stored[1].metadata.get("interrupted") is True
    assert session.end_reason == "quit" and await core.queue_length() == 1
    await core.close(end_sessions=False)


async def test_ollama_host_with_nothing_listening_is_shown_at_once_then_checked(tmp_path, recorder):
    """The configured backend, chosen lazily as `arawn` does: a refused connection puts
    'unreachable' on the status line before the HTTP client is even loaded; the full
    check (the light probe, until a chat loads the client) follows and agrees."""
    import socket

    from arawn_core.config import parse_settings
    from arawn_tui.factory import create_app

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    settings = parse_settings(f'[llm]\nbackend = "ollama"\nhost = "{host}"\n', "t.toml").with_data_dir(tmp_path / "d")
    app = create_app(settings)
    async with app.run_test(size=(120, 40), message_hook=recorder) as pilot:
        await ready(pilot)
        def checks() -> list[ev.BackendChecked]:
            return recorder.events(ev.BackendChecked)

        await wait_until(pilot, lambda: len(checks()) >= 2, what="both backend checks")
        quick, full = checks()[:2]
        assert (quick.info.kind, quick.info.host, quick.info.reachable) == ("ollama", host, False)
        assert (full.info.kind, full.info.host, full.info.reachable) == ("ollama", host, False)
        assert full.info.detail and full.info.detail != quick.info.detail  # the check's own words
        line = str(app.main_screen.query_one(StatusBar).render())
        assert f"ollama unreachable at {host}" in line and "ollama serve" in line
