"""The workstream list: title, session count and a live compression badge per row.

A thousand workstreams must not hold up the first screen: `set_workstreams` builds and
adds only the rows that can be on screen, and the rest after the frame that painted them,
in a few steps (`FOLLOW_UP_ROWS` a step, each after the previous one's frame), so keys
typed meanwhile are not held up either. Until then
the missing rows are added on demand (reaching for one by id or index, or the last row).
A changed workstream gets a new row through OptionList's public `replace_option_prompt`;
the rows' heights are remembered (`formatting.ListRow`), so the re-measure that follows is
a thousand lookups, not a thousand wraps. Only public Textual API.
"""

from __future__ import annotations

from textual.content import Content
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from arawn_core.models import CompressionStatus, JobProgress, Workstream
from arawn_tui.formatting import ListRow, badge, plural
from arawn_tui.sanitize import one_line


def workstream_row(ws: Workstream) -> Content:
    """Two lines: the title, then `N sessions · badge`."""
    title = one_line(ws.title, 120) or "(untitled)"
    details = Content.assemble((plural(ws.session_count, "session"), "$text-muted"))
    mark = badge(ws.compression, ws.progress)
    if mark.plain:
        details = Content.assemble(details, ("  ", ""), mark)
    head = Content.styled(title, "bold" if not ws.is_scratch else "italic")
    return ListRow.of(Content.assemble(head, "\n", details))


ROW_MIN_LINES = 2  # a row is its title and its details line, each wrapped: never fewer lines


def rows_that_fit(lines: int) -> int:
    """The most rows `lines` lines can show (the last one partly): the first screenful."""
    return lines // ROW_MIN_LINES + 1


PROGRESS_REPAINT_S = 0.25
FOLLOW_UP_ROWS = 250  # rows added per step after the first frame (a few ms each)


class WorkstreamList(OptionList):
    """Workstreams; highlighting one selects it (the screen loads its sessions and chat)."""

    class Painted(Message):
        """A list set by `set_workstreams` was painted: posted from each paint until the screen
        says `first_paint_seen` (a paint during the app's start-up batch is never shown, so the
        screen waits for one after the app is ready). What waits for the first screen (the
        rest of the list, the open's deferred recovery) then runs after that frame."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstreams: dict[str, Workstream] = {}
        self.running_jobs: dict[str, dict[str, JobProgress]] = {}
        self._progress_rows: set[str] = set()
        self._progress_timer: Timer | None = None
        self._pending: dict[str, None] = {}  # ids whose rows are added after the first frame, in order
        self._follow_up_due = False
        self._set_once = False  # set_workstreams has been called: the next paint shows a list
        self.first_paint_seen = False  # set by the screen: no more Painted messages

    def set_workstreams(self, workstreams: list[Workstream], select: str | None = None) -> None:
        """Replace every row; keep (or move to) the selected workstream.

        The rows that fit on screen (and the selected one) now, the others after the first
        frame (`_add_pending`)."""
        self.workstreams = {ws.id: ws for ws in workstreams}
        self._set_once = True
        order = [ws.id for ws in workstreams]
        first = max(self._rows_on_screen(), order.index(select) + 1 if select in self.workstreams else 0)
        self._pending = dict.fromkeys(order[first:])  # in list order
        self._follow_up_due = False
        self.set_options(self._option(ws_id) for ws_id in order[:first])
        if select and select in self.workstreams:
            self.highlighted = self.get_option_index(select)
        elif workstreams:
            self.highlighted = 0

    def _rows_on_screen(self) -> int:
        """How many rows can be visible at most: every row is at least ROW_MIN_LINES high."""
        region = self.scrollable_content_region
        return rows_that_fit(max(region.height, self.app.size.height if self.is_attached else 0))

    def _option(self, ws_id: str) -> Option:
        return Option(workstream_row(self.workstreams[ws_id]), id=ws_id)

    def render_lines(self, crop: Region) -> list[Strip]:
        """The Line API's paint: once the rows on screen are painted, the next step of rows not
        added yet follows that frame (each step's own paint schedules the next)."""
        lines = super().render_lines(crop)
        if self._set_once and not self.first_paint_seen:
            self.post_message(self.Painted())
        if self._pending and not self._follow_up_due:
            self._follow_up_due = True
            self.call_after_refresh(self._add_pending)
        return lines

    def _add_pending(self, all_of_them: bool = False) -> None:
        """Add the next rows not added yet (all of them if asked), from the current data."""
        self._follow_up_due = False
        if not self._pending:
            return
        ids = list(self._pending)
        n = len(ids) if all_of_them else FOLLOW_UP_ROWS
        batch, self._pending = ids[:n], dict.fromkeys(ids[n:])
        self.add_options([self._option(ws_id) for ws_id in batch])

    @property
    def complete(self) -> bool:
        """Every workstream has its row (the follow-up steps after the first frame are done)."""
        return not self._pending

    # ---- reaching a row not added yet adds the rest first --------------------------
    def get_option_index(self, option_id: str) -> int:
        if option_id in self._pending:
            self._add_pending(all_of_them=True)
        return super().get_option_index(option_id)

    def validate_highlighted(self, highlighted: int | None) -> int | None:
        if highlighted is not None and self._pending and highlighted >= self.option_count:
            self._add_pending(all_of_them=True)
        return super().validate_highlighted(highlighted)

    def action_last(self) -> None:
        self._add_pending(all_of_them=True)
        super().action_last()

    def action_page_down(self) -> None:
        self._add_pending(all_of_them=True)
        super().action_page_down()

    def update_workstream(self, ws: Workstream) -> bool:
        """Refresh one row; False when the workstream is not in the list (caller reloads)."""
        if ws.id not in self.workstreams:
            return False
        jobs = self.running_jobs.get(ws.id)
        if ws.compression is CompressionStatus.RUNNING and jobs:
            ws.progress = _sum_progress(jobs)
        elif ws.compression is not CompressionStatus.RUNNING:
            self.running_jobs.pop(ws.id, None)
        self.workstreams[ws.id] = ws
        self._replace_row(ws.id)
        return True

    def remove_workstream(self, workstream_id: str) -> None:
        if self.workstreams.pop(workstream_id, None) is not None:
            if workstream_id in self._pending:
                del self._pending[workstream_id]
            else:
                self.remove_option(workstream_id)

    def set_job_progress(self, workstream_id: str, job_id: str, done: int, total: int) -> None:
        """A live progress report: the badge becomes `running n/m` without a database read."""
        ws = self.workstreams.get(workstream_id)
        if ws is None:
            return
        jobs = self.running_jobs.setdefault(workstream_id, {})
        jobs[job_id] = JobProgress(done, total)
        ws.compression = CompressionStatus.RUNNING
        ws.progress = _sum_progress(jobs)
        # With several jobs reporting, repaint badges a few times a second.
        self._progress_rows.add(ws.id)
        if self._progress_timer is None:
            self._progress_timer = self.set_timer(PROGRESS_REPAINT_S, self._repaint_progress)

    def _repaint_progress(self) -> None:
        self._progress_timer = None
        rows, self._progress_rows = self._progress_rows, set()
        for ws_id in rows:
            if ws_id in self.workstreams:
                self._replace_row(ws_id)

    def _replace_row(self, ws_id: str) -> None:
        """Show a workstream's row anew (a row not added yet is built from the current data
        when it is added)."""
        if ws_id in self._pending:
            return
        self.replace_option_prompt(ws_id, workstream_row(self.workstreams[ws_id]))

    def job_ended(self, workstream_id: str, job_id: str) -> None:
        jobs = self.running_jobs.get(workstream_id)
        if jobs is not None:
            jobs.pop(job_id, None)

    @property
    def selected_id(self) -> str | None:
        option = self.highlighted_option
        return option.id if option is not None else None

    def title_of(self, workstream_id: str) -> str:
        ws = self.workstreams.get(workstream_id)
        return one_line(ws.title, 60) if ws else "a workstream"


def _sum_progress(jobs: dict[str, JobProgress]) -> JobProgress:
    return JobProgress(sum(p.done for p in jobs.values()), sum(p.total for p in jobs.values()))
