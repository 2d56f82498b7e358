"""Small pieces: content is data, every binding documented, every action in the palette."""

from __future__ import annotations

from textual.binding import Binding
from textual.content import Content

from arawn_core.models import CompressionStatus, JobProgress, Workstream, WorkstreamState
from arawn_tui.app import ArawnApp
from arawn_tui.commands import COMMANDS
from arawn_tui.formatting import badge_label
from arawn_tui.sanitize import StreamSanitizer, inert, one_line
from arawn_tui.screens import dialogs
from arawn_tui.screens.main import MainScreen
from arawn_tui.widgets.chat_input import ChatInput
from arawn_tui.widgets.workstream_list import workstream_row


def test_inert_neutralises_escapes_and_controls():
    evil = "a\x1b[2J\x1b]52;c;ZXZpbA==\x07b\x9b31mc\x00d\x7fe\u202eevil\r\nnext\rover"
    out = inert(evil)
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\x00" not in out
    assert "\x7f" not in out and "\u202e" not in out and "\r" not in out
    assert out.startswith("a␛[2J␛]52;c;ZXZpbA==␇b<9B>31mc␀d␡e<U+202E>evil\nnext\nover")
    assert inert("tabs\tand\nlines") == "tabs\tand\nlines"
    assert inert(None) == ""


def test_stream_sanitizer_keeps_crlf_split_across_pieces_as_one_break():
    s = StreamSanitizer()
    assert s.feed("one\r") + s.feed("\ntwo\x1b") + s.flush() == "one\ntwo␛"
    s = StreamSanitizer()
    assert s.feed("end\r") + s.flush() == "end\n"


def test_one_line_flattens_and_cuts():
    assert one_line("a\nb\t c", 10) == "a b c"
    assert one_line("x" * 20, 10) == "x" * 9 + "…"


def test_rows_never_interpret_markup():
    ws = Workstream("id", "[bold red]not markup[/] \x1b[31m", WorkstreamState.ACTIVE, [], "", "",
                    session_count=3, compression=CompressionStatus.RUNNING, progress=JobProgress(2, 5))
    row = workstream_row(ws)
    assert isinstance(row, Content)
    assert "[bold red]not markup[/]" in row.plain and "\x1b" not in row.plain
    assert "3 sessions" in row.plain and "running 2/5" in row.plain


def test_badges():
    assert badge_label(CompressionStatus.NONE) == ""
    assert badge_label(CompressionStatus.RUNNING, JobProgress(1, 3)) == "running 1/3"
    assert badge_label(CompressionStatus.RUNNING, JobProgress(0, 0)) == "running"
    for status in ("pending", "done", "failed", "stale"):
        assert badge_label(CompressionStatus(status)) == status


def _bindings(cls) -> list[Binding]:
    return [b for b in cls.BINDINGS if isinstance(b, Binding)]


def test_every_binding_has_an_id_and_a_description():
    classes = [ArawnApp, MainScreen, ChatInput, dialogs.TextPrompt, dialogs.MultilinePrompt, dialogs.Confirm,
               dialogs.ModelPicker]
    for cls in classes:
        for binding in _bindings(cls):
            assert binding.id and binding.description, f"{cls.__name__}: {binding}"


def test_the_keys_of_the_issue_are_bound():
    keys = {b.key: b.action for cls in (ArawnApp, MainScreen) for b in reversed(_bindings(cls))}
    assert keys["ctrl+n"] == "new_workstream"
    assert keys["ctrl+e"] == "end_session"
    assert keys["ctrl+k"] == "compress"
    assert keys["ctrl+r"] == "retry"
    assert keys["ctrl+p"] == "command_palette"
    assert keys["escape"] == "stop"
    assert keys["ctrl+q"] == "quit"


def test_every_action_is_in_the_palette_and_exists():
    in_palette = {c.action for c in COMMANDS}
    for binding in _bindings(MainScreen):
        assert binding.action in in_palette, binding
    for command in COMMANDS:
        if command.action.startswith("app."):
            assert hasattr(ArawnApp, "action_" + command.action[4:]), command
        else:
            assert hasattr(MainScreen, "action_" + command.action), command
    titles = {c.title for c in COMMANDS}
    assert {"Rename workstream", "Archive workstream", "Set model", "Set system prompt", "Toggle summary panel",
            "Change theme", "Copy last reply", "Copy workstream summary"} <= titles


def test_list_row_height_matches_wrapped_content():
    """The quick height of a list row is the height Textual's own wrapping gives, at every width."""
    from arawn_tui.formatting import ListRow

    texts = ["project 0001\n12 sessions  running 3/10", "a much longer title that wraps in a narrow list\n3 sessions",
             "日本語のタイトルはセル幅が二倍\n1 session", "one line", "\n", "", "title\n", "tab\there\nx"]
    for text in texts:
        plain = Content(text)
        row = ListRow.of(Content.assemble(Content.styled(text, "bold")))
        for width in (1, 4, 10, 16, 28, 60):
            for rules in ({}, {"line_pad": 1}, {"text_wrap": "nowrap"}, {"text_overflow": "ellipsis"}):
                assert row.get_height(rules, width) == plain.get_height(rules, width), (text, width, rules)
    assert ListRow.of(Content.assemble(Content.styled("x", "bold"))).spans  # styling kept


def test_gc_paused_for_start_up_then_frozen_and_released(monkeypatch):
    """The collector is off while the first screen is built, then resumes with what exists frozen
    and full collections rarer; closing the app gives everything back."""
    import gc

    from arawn_tui import gc_pause

    monkeypatch.setattr(gc_pause, "_paused", False)
    monkeypatch.setattr(gc_pause, "_thresholds", None)
    before = gc.get_threshold()
    assert gc.isenabled()
    try:
        gc_pause.pause()
        assert not gc.isenabled()
        gc_pause.pause()  # twice: still one resume
        kept = [object() for _ in range(10)] + [[] for _ in range(10)]
        gc_pause.freeze_and_resume()
        assert gc.isenabled() and gc.get_freeze_count() >= len(kept) // 2
        assert gc.get_threshold()[2] >= gc_pause.FULL_COLLECTION_EVERY
        gc_pause.release()
        assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.enable()


def test_importing_the_ui_changes_no_process_state():
    """TEXTUAL_FPS and the collector are `arawn`'s run-path choices, never an import's."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import gc, os, arawn_tui, arawn_tui.app, arawn_tui.factory, arawn_tui.headless\n"
            "assert 'TEXTUAL_FPS' not in os.environ, 'set at import'\n"
            "assert gc.isenabled() and gc.get_freeze_count() == 0, 'collector changed at import'\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TEXTUAL_FPS"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


async def test_an_app_not_run_by_arawn_leaves_the_collector_alone(make_app):
    import gc

    from tests.tui.conftest import ready

    frozen = gc.get_freeze_count()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.pause(0.1)
        assert app.first_screen_painted.is_set()
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        await pilot.press("ctrl+q")
