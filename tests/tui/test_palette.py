"""Palette commands (rename, archive, model, system prompt, copy) and content-is-data on screen."""

from __future__ import annotations

import io

from rich.console import Console
from textual.command import CommandPalette
from textual.widgets import Input, OptionList, TextArea

from arawn_core.models import WorkstreamState
from arawn_tui.screens.dialogs import Confirm, ModelPicker, MultilinePrompt, TextPrompt
from arawn_tui.widgets.chat_view import ChatMessage
from arawn_tui.widgets.markdown_text import MarkdownText, inert_markdown
from arawn_tui.widgets.workstream_list import WorkstreamList
from tests.tui.conftest import open_core, ready, settle, wait_until
from tests.tui.test_flows import chat, new_workstream


def rendered_text(markdown_source: str) -> str:
    """What the reply looks like on screen, as plain text."""
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(inert_markdown(markdown_source))
    return console.file.getvalue()


async def run_command(pilot, query: str, expect_screen: type | None = None) -> None:
    """Open the palette, search, run the top hit."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
    app.screen.query_one(Input).value = query
    await wait_until(pilot, lambda: app.screen.query_one("CommandList", OptionList).option_count > 0,
                     what=f"hits for {query!r}")
    await pilot.press("enter")
    if expect_screen is not None:
        await wait_until(pilot, lambda: isinstance(app.screen, expect_screen), what=expect_screen.__name__)


async def test_rename_and_archive_from_the_palette(make_app, tui_settings):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Old name")
        await new_workstream(pilot, "Keeper")
        wl = app.main_screen.query_one(WorkstreamList)
        wl.highlighted = wl.get_option_index(ws_id)
        await wait_until(pilot, lambda: app.main_screen.ws_id == ws_id, what="selection")

        await run_command(pilot, "rename workstream", TextPrompt)
        app.screen.query_one(Input).value = "New name"
        await pilot.press("enter")
        await wait_until(pilot, lambda: wl.workstreams[ws_id].title == "New name", what="renamed row")
        assert (await app.core.get_workstream(ws_id)).title == "New name"

        await run_command(pilot, "archive workstream", Confirm)
        await pilot.press("y")
        await wait_until(pilot, lambda: ws_id not in wl.workstreams, what="archived row gone")
        assert app.main_screen.ws_id != ws_id
        assert (await app.core.get_workstream(ws_id)).state is WorkstreamState.ARCHIVED
        await settle(pilot)


async def test_model_and_system_prompt_persist(make_app, tui_settings, backend):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        ws_id = await new_workstream(pilot, "Tuned")

        await run_command(pilot, "set model", ModelPicker)
        models = app.screen.query_one("#models", OptionList)
        assert [str(models.get_option_at_index(i).prompt) for i in range(models.option_count)] == [
            "default (fake-model)", "fake-model", "other-model"]
        models.highlighted = 2
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, ModelPicker), what="picker closed")

        await run_command(pilot, "set system prompt", MultilinePrompt)
        app.screen.query_one(TextArea).load_text("You are terse.\nAnswer in French.")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, MultilinePrompt), what="prompt saved")
        await settle(pilot)

        await chat(pilot, "bonjour")
        sent = [r for r in backend.requests if r.method == "chat"][-1]
        assert sent.options.model == "other-model"
        assert "You are terse.\nAnswer in French." in sent.system
        meta = str(app.main_screen.query_one("#ws-meta").render())
        assert "chat model: other-model" in meta and "system prompt: set" in meta
        await settle(pilot)

    core = await open_core(tui_settings)  # persisted, seen by a fresh core
    ws = await core.get_workstream(ws_id)
    assert ws.model == "other-model" and ws.system_prompt == "You are terse.\nAnswer in French."
    await core.close(end_sessions=False)


async def test_copy_last_reply_and_summary(make_app, backend):
    backend.reply = lambda messages, options: "copy me \x1b[31mplease"
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await new_workstream(pilot, "Clip")
        await chat(pilot, "say something")
        await run_command(pilot, "copy last reply")
        await wait_until(pilot, lambda: app.clipboard != "", what="clipboard")
        assert app.clipboard == "copy me ␛[31mplease"  # inert: no live escape goes to the clipboard

        user_message = app.main_screen.query(ChatMessage).first()
        await pilot.double_click(user_message)
        await wait_until(pilot, lambda: app.clipboard == "say something", what="message copied by double-click")

        backend.reply = lambda messages, options: "the summary text"
        await pilot.press("ctrl+e")
        await wait_until(pilot, lambda: "the summary text" in app.main_screen.query_one("#ws-summary", MarkdownText).source,
                         what="summary")
        await run_command(pilot, "copy workstream summary")
        await wait_until(pilot, lambda: app.clipboard == "the summary text", what="summary copied")
        await settle(pilot)


async def test_hostile_content_is_shown_inert(make_app, backend):
    hostile = "[bold red]markup?[/] \x1b[2J\x1b]0;pwned\x07 <b>html</b> \u202eevil"
    backend.reply = lambda messages, options: hostile
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await new_workstream(pilot, "[red]Title[/]\x1b[1m")
        await chat(pilot, hostile)
        blocks = list(app.main_screen.query(ChatMessage))
        user, reply = blocks[-2], blocks[-1]
        assert "[bold red]markup?[/]" in str(user.query_one(".message-body").render())
        source = reply.query_one(MarkdownText).source
        assert "\x1b" not in source and "\x07" not in source and "\u202e" not in source
        assert "␛[2J" in source
        # the rendered reply keeps the brackets as text (no markup was interpreted)
        rendered = rendered_text(source)
        assert "[bold red]markup?[/]" in rendered
        assert "<b>html</b>" in rendered  # raw HTML is text, not dropped
        title = str(app.main_screen.query_one("#chat-title").render())
        assert "[red]Title[/]␛[1m" in title
        await settle(pilot)


async def test_change_theme_from_the_palette(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        before = app.theme
        await run_command(pilot, "change theme", None)
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="theme picker")
        app.screen.query_one(Input).value = "nord"
        await wait_until(pilot, lambda: app.screen.query_one("CommandList", OptionList).option_count > 0,
                         what="theme hits")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.theme == "nord", what="theme applied")
        assert before != "nord"
