"""The workstream list: title, session count and a live compression badge per row.

Built in one `set_options` call so a thousand workstreams render at once; a
changed workstream re-renders only its own row (see `_replace_row`).
"""

from __future__ import annotations

from textual.content import Content
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


PROGRESS_REPAINT_S = 0.25


class WorkstreamList(OptionList):
    """Workstreams; highlighting one selects it (the screen loads its sessions and chat)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workstreams: dict[str, Workstream] = {}
        self.running_jobs: dict[str, dict[str, JobProgress]] = {}
        self._progress_rows: set[str] = set()
        self._progress_timer: Timer | None = None

    def set_workstreams(self, workstreams: list[Workstream], select: str | None = None) -> None:
        """Replace every row in one call; keep (or move to) the selected workstream."""
        self.workstreams = {ws.id: ws for ws in workstreams}
        self.set_options(Option(workstream_row(ws), id=ws.id) for ws in workstreams)
        if select and select in self.workstreams:
            self.highlighted = self.get_option_index(select)
        elif workstreams:
            self.highlighted = 0

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
        """Show a workstream's row anew.

        `OptionList.replace_option_prompt` drops the list's line cache, so the next paint
        measures all rows again (tens of ms for a thousand workstreams, on every badge
        change). A row whose height stays the same (nearly always: a new count or badge)
        only needs itself rendered again, so here only the render cache is dropped.
        """
        prompt = workstream_row(self.workstreams[ws_id])
        index = self.get_option_index(ws_id)
        option = self.get_option_at_index(index)
        old_height = self._line_cache.heights.get(index)
        region = self.scrollable_content_region
        if old_height is None or not region:
            self.replace_option_prompt(ws_id, prompt)
            return
        option._set_prompt(prompt)
        padding = self.get_component_styles("option-list--option").padding
        width = region.width - self._get_left_gutter_width() - padding.width
        if self._get_visual(option).get_height(self.styles, width) + option._divider != old_height:
            self.replace_option_prompt(ws_id, prompt)  # taller or shorter: every row below moves
            return
        self._option_render_cache.clear()  # rendered rows; only the visible ones are rendered again
        self.refresh()

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
