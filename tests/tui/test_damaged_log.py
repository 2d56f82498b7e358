"""The TUI around a damaged message log (issue 15): a garbage or deleted line hides only itself."""

from __future__ import annotations

import pytest

from arawn_tui.widgets.chat_view import ChatView
from tests.tui.conftest import open_core, ready, settle, wait_until

TEXTS = [f"message number {n}" for n in range(6)]


async def live_session(settings) -> str:
    core = await open_core(settings)
    ws = await core.create_workstream("Damaged")
    for n, text in enumerate(TEXTS):
        await core.append_message(ws.id, "user" if n % 2 == 0 else "assistant", text)
    path = core.repo.messages_path(ws.id)
    await core.close(end_sessions=False)
    return str(path)


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
async def test_the_chat_shows_every_message_but_the_damaged_one(make_app, tui_settings, damage: str):
    from pathlib import Path

    path = Path(await live_session(tui_settings))
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "garbage":
        lines[2] = b"\x1b[2J" + b"#" * (len(lines[2]) - 5) + b"\n"  # same length: the index still points at it
    else:
        del lines[2]  # every later offset shifts
    path.write_bytes(b"".join(lines))
    app = make_app()
    shown: list[str] = []
    notify = app.notify

    def recording_notify(message, **kwargs):
        shown.append(str(message))
        return notify(message, **kwargs)

    app.notify = recording_notify  # what the user is told, on screen
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        main = app.main_screen
        chat = main.query_one(ChatView)
        await wait_until(pilot, lambda: main.ws_id is not None and len(chat.messages) == len(TEXTS) - 1,
                         what="the live chat without the damaged line")
        await settle(pilot)
        assert [m.content for m in chat.messages] == TEXTS[:2] + TEXTS[3:]
        assert any(f"{path}: line 3" in n for n in app.core.notices)
        await wait_until(pilot, lambda: any(f"{path}: line 3" in text for text in shown),
                         what="a toast naming the damaged line")
