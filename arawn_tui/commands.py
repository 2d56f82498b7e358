"""The command palette: every action of the app, searchable by name.

Key bindings and palette entries call the same screen actions, so the two
never drift apart.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from arawn_tui.app import ArawnApp


class PaletteCommand(NamedTuple):
    title: str
    help: str
    action: str  # an action on the main screen, or "app.<name>"


COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand("New workstream", "Create a workstream (ctrl+n)", "new_workstream"),
    PaletteCommand("Rename workstream", "Give the selected workstream a new title", "rename_workstream"),
    PaletteCommand("Archive workstream", "End its session and hide it from the list", "archive_workstream"),
    PaletteCommand("Set model", "Pick this workstream's chat model from the backend's list", "set_model"),
    PaletteCommand("Set system prompt", "Edit this workstream's system prompt", "set_system_prompt"),
    PaletteCommand("End session", "End the live session; it is compressed in the background (ctrl+e)",
                   "end_session"),
    PaletteCommand("Compress now", "Compress the selected workstream's unsummarized sessions (ctrl+k)",
                   "compress"),
    PaletteCommand("Rebuild summary", "Recompute the workstream summary from every session summary",
                   "rebuild_summary"),
    PaletteCommand("Retry failed jobs", "Put failed compression jobs back in the queue (ctrl+r)", "retry"),
    PaletteCommand("Stop reply", "Stop the reply being written; the partial reply is kept (escape)", "stop"),
    PaletteCommand("Back to live chat", "Leave the read-only transcript (escape)", "back_to_live"),
    PaletteCommand("Show the whole transcript", "Mount every message of a long session", "show_whole_transcript"),
    PaletteCommand("Copy last reply", "Copy the model's last reply to the clipboard", "copy_last_reply"),
    PaletteCommand("Copy workstream summary", "Copy the workstream summary to the clipboard",
                   "copy_workstream_summary"),
    PaletteCommand("Copy session summary", "Copy the highlighted session's summary to the clipboard",
                   "copy_session_summary"),
    PaletteCommand("Pinned notes", "Add, edit or remove the notes kept verbatim in every chat (f3)", "pins"),
    PaletteCommand("Pin a message...", "Pin a message of the transcript on screen as a note", "pin_message"),
    PaletteCommand("Edit summary", "Edit the workstream summary; your lines are kept by later compressions",
                   "edit_summary"),
    PaletteCommand("Summary history", "Every summary version with its diff; revert to one (f4)",
                   "summary_history"),
    PaletteCommand("Compress with focus...", "Compress now, telling this run what to keep above all",
                   "compress_with_focus"),
    PaletteCommand("Fork workstream", "A new workstream starting from this one's summary and pins",
                   "fork_workstream"),
    PaletteCommand("Rename session", "Give the highlighted session a title", "rename_session"),
    PaletteCommand("Open a session this summary covers",
                   "List the sessions the workstream (or session) summary was written from; enter opens one",
                   "open_summary_sources"),
    PaletteCommand("Toggle summary panel", "Show or hide the summary panel (f2)", "toggle_summary"),
    PaletteCommand("Change theme", "Pick a Textual theme", "app.change_theme"),
    PaletteCommand("Keys and help", "Show or hide the keys of the focused widget and the app", "toggle_help"),
    PaletteCommand("Search conversations and summaries",
                   "Find words in every message and summary; enter opens the session at the hit (ctrl+f)",
                   "search"),
    PaletteCommand("Quit", "Quit; queued compressions resume next time (ctrl+q)", "app.quit"),
)


class ArawnCommands(Provider):
    """Palette entries for every arawn action (the key bindings call the same actions)."""

    def _run(self, action: str) -> None:
        app: ArawnApp = self.app  # type: ignore[assignment]
        self.app.call_later(app.run_action, action, app.main_screen)

    async def discover(self) -> Hits:
        for command in COMMANDS:
            yield DiscoveryHit(command.title, partial(self._run, command.action), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in COMMANDS:
            score = max(matcher.match(command.title), matcher.match(command.help) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), partial(self._run, command.action),
                          text=command.title, help=command.help)
