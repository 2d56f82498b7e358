"""Search (ctrl+f): results follow the typing, errors stay one line, enter opens the hit.

Real SQLite and FTS under the fake backend, as in the other TUI tests; the
expected hits always come from `core.search` itself.
"""

from __future__ import annotations

from dataclasses import replace

import asyncio
from pathlib import Path

from textual.command import CommandPalette
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, OptionList
from textual.worker import Worker, WorkerState

from arawn_core.config import Settings
from arawn_tui.factory import create_app
from arawn_tui.screens import search as search_screen
from arawn_tui.screens.main import MainScreen
from arawn_tui.screens.search import MATCH_STYLE, SEARCH_LIMIT, SearchScreen, snippet_content
from arawn_tui.widgets.chat_view import ChatMessage, ChatView
from arawn_tui.widgets.markdown_text import MarkdownText
from arawn_tui.widgets.session_list import SessionList
from arawn_tui.widgets.summary_panel import SummaryPanel
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.fakes import FakeBackend
from tests.tui.conftest import Recorder, open_core, pin_summary_times, ready, settle, wait_until, write_conversations
from tests.tui.test_flows import chat, new_workstream
from tests.tui.test_snapshots import GARDEN, SIZE, build, steady


def _long_conversation() -> list[tuple[str, str, str]]:
    """60 messages; the third (long scrolled out of view at the end) mentions zucchini."""
    conv = []
    for n in range(60):
        role = "user" if n % 2 == 0 else "assistant"
        text = f"Turn {n}: more about watering schedules and soil."
        if n == 2:
            text = "Should I plant zucchini next to the beans? MARKER-deep"
        conv.append((role, text, f"2026-01-14T10:{n:02d}:00Z"))
    return conv


READING = [[("user", "A novel about a tomato farmer: [red]tomato[/] \x1b[2J \u202eevil", "2026-01-13T08:00:00Z"),
            ("assistant", "Try *The Tomato Heart*.", "2026-01-13T08:00:20Z")]]


async def build_data(settings: Settings, tmp: Path) -> dict[str, str]:
    """`Garden`: the snapshot sessions and a long one, summarized; `Reading list`: one session.

    Summarized with the audit reporting only: a repair would append the question about zucchini
    to a summary, which the search would then find too."""
    c = settings.workstream.compression
    core = await open_core(replace(settings, workstream=replace(settings.workstream, compression=replace(
        c, audit="report"))))
    reading = await core.create_workstream("Reading list")
    garden = await core.create_workstream("Garden")
    await core.import_file(write_conversations(tmp / "garden.jsonl", [*GARDEN, _long_conversation()]),
                           "messages", garden.id)
    await core.import_file(write_conversations(tmp / "reading.jsonl", READING), "messages", reading.id)
    await core.compress(garden.id)
    await core.work_queue()
    await core.close(end_sessions=False)
    pin_summary_times(settings)
    return {"garden": garden.id, "reading": reading.id}


def key(hit) -> tuple:
    return (hit.kind, hit.workstream_id, hit.session_id, hit.message_id, hit.snippet)


async def open_search(pilot: Pilot) -> SearchScreen:
    await pilot.press("ctrl+f")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, SearchScreen), what="the search screen")
    screen: SearchScreen = pilot.app.screen  # type: ignore[assignment]
    screen.query_input.cursor_blink = False
    return screen


async def type_query(pilot: Pilot, screen: SearchScreen, text: str) -> None:
    """Type `text` into the query box and wait for its answer."""
    await pilot.press(*text)
    await wait_until(pilot, lambda: screen.shown_query == text.strip() and screen._timer is None
                     and not any(w.group == "search" and not w.is_finished for w in screen.workers),
                     what=f"results for {text!r}")
    await pilot.pause()


def highlighted_words(prompt: Content) -> list[str]:
    return [prompt.plain[s.start:s.end] for s in prompt.spans if s.style == MATCH_STYLE]


def search_workers(recorder: Recorder, state: WorkerState) -> list[Worker]:
    return [e.worker for e in recorder.of(Worker.StateChanged) if e.worker.group == "search" and e.state is state]


async def test_typing_shows_the_engines_hits(make_app, tui_settings, tmp_path, recorder):
    ids = await build_data(tui_settings, tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await ready(pilot)
        screen = await open_search(pilot)
        assert "Type to search" in str(screen.status.render())
        assert not screen.results.display

        await type_query(pilot, screen, "tomato")
        expected = await app.core.search("tomato", limit=SEARCH_LIMIT)
        assert expected and [key(h) for h in screen.hits] == [key(h) for h in expected]
        assert {h.workstream_id for h in screen.hits} == {ids["garden"], ids["reading"]}
        assert search_workers(recorder, WorkerState.SUCCESS)  # the worker ran (and the input never waited)
        assert f"{len(expected)} match" in str(screen.status.render())
        assert screen.results.display and screen.results.option_count == len(expected)

        # each row: workstream · who · when, then the snippet with the matches highlighted
        rows = [screen.results.get_option_at_index(i).prompt for i in range(screen.results.option_count)]
        for hit, row in zip(screen.hits, rows):
            head = row.plain.split("\n")[0]
            assert head.startswith(hit.workstream_title)
            assert {w.lower() for w in highlighted_words(row)} == {"tomato"}
        reading_row = next(r for h, r in zip(screen.hits, rows) if h.workstream_id == ids["reading"]
                           and h.role == "user")
        # content is data: its brackets stay text, its escapes are inert, nothing was parsed as markup
        assert "[red]tomato[/]" in reading_row.plain and "␛[2J" in reading_row.plain
        assert "\x1b" not in reading_row.plain and "\u202e" not in reading_row.plain
        assert "you  ·  2026-01-13 08:00" in reading_row.plain

        # emptying the query brings the hint back
        await pilot.press(*["backspace"] * len("tomato"))
        await wait_until(pilot, lambda: "Type to search" in str(screen.status.render()), what="the hint")
        assert not screen.results.display and screen.hits == []
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="search closed")
        await settle(pilot)


def test_snippet_brackets_become_highlights_only_around_query_words():
    c = snippet_content("…a [Tomato]es list[int] and [red] [tomato] \x1b[1m", ["tomato"])
    assert c.plain == "…a Tomatoes list[int] and [red] tomato ␛[1m"
    assert highlighted_words(c) == ["Tomato", "tomato"]
    assert highlighted_words(snippet_content("[a] b [c]")) == ["a", "c"]  # no terms: every bracket


async def test_malformed_query_shows_one_clear_line(make_app, tui_settings, tmp_path, recorder):
    await build_data(tui_settings, tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await ready(pilot)
        screen = await open_search(pilot)
        await type_query(pilot, screen, '"unbalanced')
        status = str(screen.status.render())
        assert status == 'unbalanced quote in the search query: close the phrase with a second "'
        assert screen.status.has_class("-error")
        assert "\n" not in status and "sqlite" not in status.lower() and "fts5" not in status.lower()
        assert not screen.results.display and screen.hits == []

        await pilot.press("home", "delete", "end", *" tomato AND")  # drop the quote, add a dangling AND
        await wait_until(pilot, lambda: screen.shown_query == "unbalanced tomato AND" and screen._timer is None,
                         what="the operator error")
        assert str(screen.status.render()) == "search operator AND needs a term on each side"

        # fixed: the error goes, the hits come
        await pilot.press(*" beans")
        await wait_until(pilot, lambda: screen.shown_query == "unbalanced tomato AND beans", what="fixed query")
        assert not screen.status.has_class("-error")
        assert not search_workers(recorder, WorkerState.ERROR)
        assert not [n for n in app._notifications if n.severity == "error"]  # no crash, no toast
        await pilot.press("escape")
        await settle(pilot)


async def test_enter_opens_the_session_at_the_message(make_app, tui_settings, tmp_path):
    ids = await build_data(tui_settings, tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        main = app.main_screen
        wl = main.query_one(WorkstreamList)
        wl.highlighted = wl.get_option_index(ids["reading"])  # start elsewhere: the hit switches workstream
        await wait_until(pilot, lambda: main.ws_id == ids["reading"], what="Reading list selected")
        await settle(pilot)

        screen = await open_search(pilot)
        await type_query(pilot, screen, "zucchini")
        (hit,) = screen.hits
        assert hit.kind == "message" and hit.workstream_id == ids["garden"]
        await pilot.press("down", "enter")  # to the results, open the highlighted one
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="search closed")
        chat = main.query_one(ChatView)
        await wait_until(pilot, lambda: main.viewing_session == hit.session_id
                         and any(w.message_id == hit.message_id for w in chat.query(ChatMessage)),
                         what="the transcript around the hit")
        await settle(pilot)
        await pilot.pause(0.2)

        assert main.ws_id == ids["garden"] and wl.highlighted == wl.get_option_index(ids["garden"])
        assert main.viewing_session == hit.session_id
        assert main.query_one(SessionList).selected_id == hit.session_id
        assert "READ-ONLY" in str(main.query_one("#chat-title").render())
        assert main.chat_input.disabled
        (found,) = [w for w in chat.query(ChatMessage) if w.message_id == hit.message_id]
        assert "zucchini" in found.text and found.has_class("-found")
        # a window of the 60 messages around the hit (with the ones before it), scrolled to it
        shown = [w.message_id for w in chat.query(ChatMessage)]
        assert 3 <= len(shown) < 60 and shown[0] == chat.messages[0].id
        assert shown == [m.id for m in chat.messages[:len(shown)]]
        assert chat.region.contains_region(found.region), (chat.region, found.region)
        assert chat.scroll_y < chat.max_scroll_y
        assert "zucchini" in app.export_screenshot()
        assert f"{60 - len(shown)} later messages" in str(chat.query(".notice-more").last().render())
        # scrolling down mounts the rest, in order, a page at a time
        for _ in range(10):
            await pilot.press("end")
            await pilot.pause(0.1)
        await wait_until(pilot, lambda: len(chat.query(ChatMessage)) == 60, what="the rest of the transcript")
        assert [w.message_id for w in chat.query(ChatMessage)] == [m.id for m in chat.messages]
        assert not chat.query(".notice-more")

        # a workstream-summary hit: the workstream (live chat) with its summary panel shown
        await pilot.press("f2")
        assert not main.query_one(SummaryPanel).display
        screen = await open_search(pilot)
        assert screen.query_input.value == "zucchini"  # the last query is offered again
        screen.query_input.value = ""
        await type_query(pilot, screen, "Fake summary")
        index = next(i for i, h in enumerate(screen.hits) if h.kind == "workstream_summary")
        screen.results.highlighted = index
        screen.results.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen) and main.viewing_session is None,
                         what="back to the workstream")
        await settle(pilot)
        assert main.ws_id == ids["garden"]
        assert main.query_one(SummaryPanel).display
        assert "Fake summary" in main.query_one("#ws-summary", MarkdownText).source
        assert not main.chat_input.disabled


async def test_typing_fast_runs_only_the_last_query(make_app, tui_settings, tmp_path, recorder, monkeypatch):
    await build_data(tui_settings, tmp_path)
    # a wider debounce than the default, so a slow shared test machine still counts as "typing fast"
    monkeypatch.setattr(search_screen, "DEBOUNCE_S", 0.6)
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
        await ready(pilot)
        core = app.core
        real = core.search
        calls: list[str] = []
        hold = asyncio.Event()

        async def counting(query: str, **kwargs):
            calls.append(query)
            if query == "water":
                await hold.wait()  # held: only the next query can end it (by cancelling it)
            return await real(query, **kwargs)

        core.search = counting  # type: ignore[method-assign]
        screen = await open_search(pilot)
        await type_query(pilot, screen, "tomato")
        assert calls == ["tomato"]  # one search for six keys
        assert [key(h) for h in screen.hits] == [key(h) for h in await real("tomato", limit=SEARCH_LIMIT)]

        screen.query_input.value = ""
        await pilot.press(*"water")
        await wait_until(pilot, lambda: calls[-1:] == ["water"], what="the held search")
        await pilot.press(*" OR beans")  # a newer query while "water" is still running
        await wait_until(pilot, lambda: screen.shown_query == "water OR beans", what="the last query's hits")
        assert calls == ["tomato", "water", "water OR beans"]
        cancelled = search_workers(recorder, WorkerState.CANCELLED)
        assert len(cancelled) == 1  # "water" was cancelled by the newer query (exclusive)
        expected = await real("water OR beans", limit=SEARCH_LIMIT)
        assert [key(h) for h in screen.hits] == [key(h) for h in expected]
        core.search = real  # type: ignore[method-assign]
        await pilot.press("escape")
        await settle(pilot)


async def test_this_workstream_only(make_app, tui_settings, tmp_path):
    ids = await build_data(tui_settings, tmp_path)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        main = app.main_screen
        wl = main.query_one(WorkstreamList)
        wl.highlighted = wl.get_option_index(ids["reading"])
        await wait_until(pilot, lambda: main.ws_id == ids["reading"], what="Reading list selected")
        screen = await open_search(pilot)
        await type_query(pilot, screen, "tomato")
        assert {h.workstream_id for h in screen.hits} == {ids["garden"], ids["reading"]}
        await pilot.press("ctrl+t")
        assert screen.query_one(Checkbox).value
        await wait_until(pilot, lambda: {h.workstream_id for h in screen.hits} == {ids["reading"]},
                         what="hits of one workstream")
        expected = await app.core.search("tomato", workstream_id=ids["reading"], limit=SEARCH_LIMIT)
        assert [key(h) for h in screen.hits] == [key(h) for h in expected]
        await pilot.press("enter")  # enter in the query box opens the highlighted (first) hit
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen)
                         and main.viewing_session == expected[0].session_id, what="the first hit opened")
        await settle(pilot)
        assert main.ws_id == ids["reading"]
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen), what="search again")
        assert app.screen.query_one(Checkbox).value  # the scope is remembered with the query
        await pilot.press("escape")
        await settle(pilot)


async def test_palette_lists_search(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        commands = app.screen.query_one("CommandList", OptionList)

        def listed() -> list[str]:
            return [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]

        await wait_until(pilot, lambda: any("Search conversations and summaries" in p for p in listed()),
                         what="search among every command")
        app.screen.query_one(Input).value = "search"
        await wait_until(pilot, lambda: listed() and "Search conversations" in listed()[0], what="search hit first")
        first = listed()[0]
        assert "Search conversations and summaries" in str(first)
        assert "every message and summary" in str(first) and "ctrl+f" in str(first)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search screen")
        await pilot.press("escape")
        await settle(pilot)


def test_search_screen_with_results(snap_compare, tui_settings, tmp_path):
    build(tui_settings, tmp_path, compress=True)
    app = create_app(tui_settings, FakeBackend(models=["fake-model"]))

    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        screen = await open_search(pilot)
        await type_query(pilot, screen, "tomato*")
        assert len(screen.hits) >= 4
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_a_hit_in_the_live_session_opens_the_live_chat_and_archived_ones_say_so(make_app, tui_settings,
                                                                                     tmp_path):
    ids = await build_data(tui_settings, tmp_path)
    core = await open_core(tui_settings)
    await core.archive_workstream(ids["reading"])
    await core.close(end_sessions=False)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        main = app.main_screen
        ws_id = await new_workstream(pilot, "Live one")
        await chat(pilot, "parsnips MARKER-live")
        wl = main.query_one(WorkstreamList)
        wl.highlighted = wl.get_option_index(ids["garden"])
        await wait_until(pilot, lambda: main.ws_id == ids["garden"], what="Garden selected")
        await settle(pilot)

        screen = await open_search(pilot)
        await type_query(pilot, screen, "parsnips")
        (hit,) = [h for h in screen.hits if h.kind == "message"]
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: main.ws_id == ws_id and any(
            w.has_class("-found") for w in main.query(ChatMessage)), what="the live chat at the message")
        await settle(pilot)
        assert main.viewing_session is None and not main.chat_input.disabled  # live: you can go on typing
        assert "live chat" in str(main.query_one("#chat-title").render())
        found = next(w for w in main.query(ChatMessage) if w.has_class("-found"))
        assert found.message_id == hit.message_id and "parsnips" in found.text

        screen = await open_search(pilot)
        screen.query_input.value = ""
        await type_query(pilot, screen, "novel")
        assert {h.workstream_id for h in screen.hits} == {ids["reading"]}  # archived, still searched
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="search closed")
        await wait_until(pilot, lambda: any("archived" in n.message for n in app._notifications),
                         what="the archived notice")
        assert main.ws_id == ws_id  # nothing else changed
        await settle(pilot)
