"""A long transcript shows its newest messages at once; older ones are mounted as the
user scrolls up (each mounted message makes every layout pass of the screen longer)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from arawn_tui.screens.main import LIVE_HINT
from arawn_tui.widgets.chat_input import ChatInput
from arawn_tui.widgets.chat_view import PAGE, WINDOW, ChatMessage, ChatView
from tests.tui.conftest import open_core, ready, settle, wait_until

N = 70


async def long_live_session(settings) -> list[str]:
    core = await open_core(settings)
    ws = await core.create_workstream("Long talk")
    ids = []
    for n in range(N):
        msg = await core.append_message(ws.id, "user" if n % 2 == 0 else "assistant", f"message number {n}")
        ids.append(msg.id)
    await core.close(end_sessions=False)
    return ids


@asynccontextmanager
async def live_chat(make_app):
    """The app at the long session's live chat, settled."""
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        main = app.main_screen
        chat = main.query_one(ChatView)
        await wait_until(pilot, lambda: main.ws_id is not None and len(chat.messages) == N, what="the live chat")
        await settle(pilot)
        yield app, pilot, main, chat


def mounted(chat: ChatView) -> list[str | None]:
    return [w.message_id for w in chat.query(ChatMessage)]


async def test_newest_window_then_older_pages_on_scroll_up(make_app, tui_settings):
    ids = await long_live_session(tui_settings)
    async with live_chat(make_app) as (app, pilot, main, chat):
        assert mounted(chat) == ids[-WINDOW:]
        assert chat.scroll_y == chat.max_scroll_y  # at the newest message
        assert f"{N - WINDOW} earlier messages" in str(chat.query(".notice-more").first().render())
        assert f"message number {N - 1}".replace(" ", "&#160;") in app.export_screenshot()

        # scrolling to the top mounts the page before, and what was on screen stays on screen
        chat.focus()
        await pilot.press("home")
        await wait_until(pilot, lambda: len(mounted(chat)) == WINDOW + PAGE, what="one more page")
        await pilot.pause(0.1)
        assert mounted(chat) == ids[-(WINDOW + PAGE):]
        first_of_window = next(w for w in chat.query(ChatMessage) if w.message_id == ids[-WINDOW])
        assert chat.region.overlaps(first_of_window.region)
        assert f"{N - WINDOW - PAGE} earlier messages" in str(chat.query(".notice-more").first().render())

        for _ in range(6):
            await pilot.press("home")
            await pilot.pause(0.1)
        await wait_until(pilot, lambda: len(mounted(chat)) == N, what="the whole transcript")
        assert mounted(chat) == ids
        assert not chat.query(".notice-more")

        # the same transcript loaded again (a refresh) leaves the view as the user left it
        messages = chat.messages
        await main.chat.show(messages, LIVE_HINT)
        assert mounted(chat) == ids
        # shown again after another one (back from another workstream): the newest window
        await main.chat.show([], LIVE_HINT)
        await main.chat.show(messages, LIVE_HINT)
        await pilot.pause()
        assert mounted(chat) == ids[-WINDOW:]


async def test_whole_transcript_from_the_palette(make_app, tui_settings):
    ids = await long_live_session(tui_settings)
    async with live_chat(make_app) as (app, pilot, main, chat):
        assert len(mounted(chat)) == WINDOW
        await app.run_action("show_whole_transcript", main)
        await pilot.pause()
        assert mounted(chat) == ids
        assert not chat.query(".notice-more")


async def test_typing_in_a_window_opened_at_an_old_message_jumps_to_the_live_end(make_app, tui_settings):
    """A search hit opens the live chat at an old message; sending shows the newest messages again."""
    ids = await long_live_session(tui_settings)
    async with live_chat(make_app) as (app, pilot, main, chat):
        await chat.show(chat.messages, found=ids[3])
        await pilot.pause()
        assert ids[3] in mounted(chat) and ids[-1] not in mounted(chat)
        main.query_one(ChatInput).insert("a new question")
        main.query_one(ChatInput).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: main.reply_worker is not None and main.reply_worker.is_finished,
                         what="the reply")
        await pilot.pause()
        shown = mounted(chat)
        assert shown[:WINDOW] == ids[-WINDOW:] and len(shown) == WINDOW + 2  # the question and its reply
        assert [w.role for w in chat.query(ChatMessage)][-2:] == ["user", "assistant"]
