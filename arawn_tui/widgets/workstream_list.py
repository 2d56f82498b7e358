"""The workstream list: title, session count and a live compression badge per row.

Built in one `set_options` call so a thousand workstreams render at once; a
changed workstream replaces only its own row's prompt.
"""

from __future__ import annotations

from textual.content import Content
from textual.timer import Timer
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from arawn_core.models import CompressionStatus, JobProgress, Workstream
from arawn_tui.formatting import badge, plural
from arawn_tui.sanitize import one_line


def workstream_row(ws: Workstream) -> Content:
    """Two lines: the title, then `N sessions · badge`."""
    title = one_line(ws.title, 120) or "(untitled)"
    details = Content.assemble((plural(ws.session_count, "session"), "$text-muted"))
    mark = badge(ws.compression, ws.progress)
    if mark.plain:
        details = Content.assemble(details, ("  ", ""), mark)
    head = Content.styled(title, "bold" if not ws.is_scratch else "italic")
    return Content.assemble(head, "\n", details)


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
        self.replace_option_prompt(ws.id, workstream_row(ws))
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
        # Replacing a prompt clears the list's line cache (every row is measured again on
        # the next paint): with several jobs reporting, repaint badges a few times a second.
        self._progress_rows.add(ws.id)
        if self._progress_timer is None:
            self._progress_timer = self.set_timer(PROGRESS_REPAINT_S, self._repaint_progress)

    def _repaint_progress(self) -> None:
        self._progress_timer = None
        rows, self._progress_rows = self._progress_rows, set()
        for ws_id in rows:
            ws = self.workstreams.get(ws_id)
            if ws is not None:
                self.replace_option_prompt(ws_id, workstream_row(ws))

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
