"""Every version of the workstream summary (f4): who wrote it, what it covers, the diff from the
version before it; `r` makes the highlighted version current again (as a new version)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from arawn_core.core import UsageError
from arawn_core.memory.versions import SummaryVersion, unified_diff
from arawn_tui.formatting import local_time, plural
from arawn_tui.sanitize import inert, one_line

AUTHOR_LABEL = {"model": "model", "user": "you", "revert": "revert", "fork": "fork"}
DIFF_STYLE = {"+": "$text-success", "-": "$text-error", "@": "$text-accent"}


def version_row(v: SummaryVersion, current: bool) -> Content:
    """Two lines: `N  author  [current]`, then when and how many sessions it covers."""
    head: list = [(f"{v.number:>3}  ", "bold"), (AUTHOR_LABEL.get(v.author, v.author), "$text-accent")]
    if v.reverted_from is not None:
        head.append((f" of {v.reverted_from}", "$text-muted"))
    if current:
        head.append(("  current", "bold $success"))
    detail = f"  {local_time(v.created_at)} · {plural(len(v.covers), 'session')}"
    if v.focus:
        detail += " · focus"
    return Content.assemble(*head, "\n", (detail, "$text-muted"))


def diff_content(previous: SummaryVersion | None, version: SummaryVersion) -> Content:
    """The version's provenance, then its diff from `previous` (its whole text for the first)."""
    p = version.provenance
    facts = [f"version {version.number} by {AUTHOR_LABEL.get(version.author, version.author)}",
             local_time(version.created_at)]
    if version.author == "model" and p.get("model"):
        facts.append(one_line(str(p.get("model")), 40))
    lines: list[Content] = [Content.styled(" · ".join(facts), "bold")]
    if version.focus:
        lines.append(Content.styled("focus: " + one_line(version.focus, 200), "$text-muted"))
    if version.protected:
        lines.append(Content.styled(f"{plural(len(version.protected), 'protected line')}", "$text-muted"))
    if version.restored:
        lines.append(Content.styled(f"{plural(len(version.restored), 'protected line')} the model dropped,"
                                    " put back", "$warning"))
    lines.append(Content(""))
    if previous is None:
        body = [Content.styled("+" + inert(x), DIFF_STYLE["+"]) for x in version.text.splitlines()]
    else:
        diff = unified_diff(previous, version)
        body = [Content.styled(inert(x), DIFF_STYLE.get(x[:1], "")) if not x.startswith(("+++", "---"))
                else Content.styled(inert(x), "bold") for x in diff.splitlines()]
        if not body:
            body = [Content.styled("(same text as version %d)" % previous.number, "$text-muted")]
    return Content("\n").join(lines + body)


class SummaryHistoryScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="history.close", tooltip="Close the history"),
        Binding("r", "revert", "Revert to this", id="history.revert",
                tooltip="Make the highlighted version current again (as a new version)"),
    ]
    DEFAULT_CSS = """
    SummaryHistoryScreen #history-box {
        width: 90%; max-width: 140; height: 90%; border: thick $primary; background: $surface; padding: 1 2 0 2;
    }
    SummaryHistoryScreen #history-body { height: 1fr; }
    SummaryHistoryScreen #versions { width: 36; height: 1fr; max-height: 100%; }
    SummaryHistoryScreen #diff-scroll { width: 1fr; height: 1fr; padding: 0 1; }
    """

    @dataclass
    class Loaded(Message):
        versions: list[SummaryVersion]
        select: int | None

    def __init__(self, workstream_id: str, workstream_title: str) -> None:
        super().__init__(classes="dialog", id="summary-history")
        self.workstream_id = workstream_id
        self.workstream_title = workstream_title
        self.versions: list[SummaryVersion] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="history-box"):
            yield Static(Content(f"Summary history · {one_line(self.workstream_title, 60)}"), classes="dialog-title")
            yield Static("", id="history-status", classes="dialog-hint")
            with Horizontal(id="history-body"):
                yield OptionList(id="versions")
                with VerticalScroll(id="diff-scroll"):
                    yield Static("", id="diff")
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        self.query_one("#versions", OptionList).focus()

    @property
    def core(self):  # noqa: ANN201 - the app's ArawnCore
        return self.app.core  # type: ignore[attr-defined]

    @work(group="history", exclusive=True, exit_on_error=False)
    async def load(self, select: int | None = None) -> None:
        self.post_message(self.Loaded(await self.core.summary_versions(self.workstream_id), select))

    def on_summary_history_screen_loaded(self, message: Loaded) -> None:
        self.versions = message.versions
        listing = self.query_one("#versions", OptionList)
        last = self.versions[-1].number if self.versions else None
        listing.set_options(Option(version_row(v, v.number == last), id=str(v.number))
                            for v in reversed(self.versions))
        status = (f"{plural(len(self.versions), 'version')}; newest first. r makes the highlighted one current "
                  "again, as a new version (so it can be undone).") if self.versions else (
            "No summary yet: versions appear as sessions are compressed or you edit the summary.")
        self.query_one("#history-status", Static).update(Content(status))
        if self.versions:
            number = message.select or last
            listing.highlighted = [v.number for v in reversed(self.versions)].index(number)
            self._show(number)
        else:
            self.query_one("#diff", Static).update(Content(""))

    @on(OptionList.OptionHighlighted, "#versions")
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self._show(int(event.option.id))

    def _show(self, number: int) -> None:
        by_number = {v.number: v for v in self.versions}
        version = by_number.get(number)
        if version is not None:
            self.query_one("#diff", Static).update(diff_content(by_number.get(number - 1), version))

    @property
    def selected_number(self) -> int | None:
        option = self.query_one("#versions", OptionList).highlighted_option
        return int(option.id) if option is not None and option.id else None

    def action_revert(self) -> None:
        number = self.selected_number
        if number is None:
            return
        if self.versions and number == self.versions[-1].number:
            self.notify("That is the current version already.", severity="warning")
            return
        self.revert(number)

    @work(group="history-revert", exit_on_error=False)
    async def revert(self, number: int) -> None:
        from arawn_tui.screens.dialogs import Confirm

        if not await self.app.push_screen_wait(Confirm(
                f"Make version {number} the current summary? It becomes a new version; nothing is lost.",
                "Revert")):
            return
        try:
            version = await self.core.revert_summary(self.workstream_id, number)
        except UsageError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(f"Version {number} is current again (as version {version.number}).")
        self.load(version.number)

    def action_close(self) -> None:
        self.dismiss(None)
