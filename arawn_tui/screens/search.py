"""Search every message and summary (ctrl+f): a query box and a list of ranked hits.

Results follow the typing: each change restarts a short timer (DEBOUNCE_S);
when it fires, one `search` worker runs the query (`exclusive`: a newer query
cancels an older one still running). The worker posts `SearchDone`; answers
to a query that is no longer the current one are dropped. A malformed query
comes back as the engine's one-line `UsageError` and is shown in place of the
results.

Hits are data: workstream titles and snippets pass through `sanitize.one_line`
and are rendered as `Content`; the engine's `[match]` brackets become
highlight styling (only around the query's own words, so brackets that were
in the text stay as written).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Checkbox, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from arawn_core.errors import UsageError
from arawn_tui import workers as groups
from arawn_core.search import QueryError, SearchHit, parse_query
from arawn_tui import messages as m
from arawn_tui.formatting import local_time
from arawn_tui.sanitize import one_line
from arawn_tui.widgets.chat_view import ROLE_LABEL

DEBOUNCE_S = 0.25
SEARCH_LIMIT = 50
HINT = ('Type to search every message and summary. Words must all match; "an exact phrase", '
        "prefix*, OR and NOT work too. enter opens the highlighted hit.")
PLACEHOLDER = 'words, "a phrase", prefix*, OR, NOT'
MATCH_STYLE = "bold $text-warning on $warning-muted"
KIND_LABEL = {"session_summary": "session summary", "workstream_summary": "workstream summary"}
_BRACKETED = re.compile(r"\[([^\[\]]+)\]")


def hit_kind(hit: SearchHit) -> str:
    """`you`, `model`, ... for a message; `session summary` / `workstream summary` for a summary."""
    if hit.kind == "message":
        return ROLE_LABEL.get(hit.role, one_line(hit.role, 20))
    return KIND_LABEL.get(hit.kind, one_line(hit.kind, 30))


def snippet_content(snippet: str, terms: Iterable[str] = ()) -> Content:
    """The snippet as inert `Content`, its `[match]` brackets turned into highlight styling.

    With `terms`, only brackets around one of those words count as matches
    (others were in the text and stay, brackets and all).
    """
    text = one_line(snippet, 1000)
    wanted = {t.lower() for t in terms if t}
    parts: list[str | tuple[str, str]] = []
    pos = 0
    for match in _BRACKETED.finditer(text):
        if wanted and match.group(1).lower() not in wanted:
            continue
        parts += [text[pos:match.start()], (match.group(1), MATCH_STYLE)]
        pos = match.end()
    parts.append(text[pos:])
    return Content.assemble(*parts)


def hit_row(hit: SearchHit, terms: Iterable[str] = ()) -> Content:
    """Two lines: `workstream · who · when`, then the highlighted snippet."""
    head = [(one_line(hit.workstream_title, 60), "bold"), ("  ·  ", "$text-muted"), (hit_kind(hit), "$text-accent")]
    when = local_time(hit.timestamp)
    if when:
        head += [("  ·  ", "$text-muted"), (when, "$text-muted")]
    if hit.exact:
        head += [("  ·  ", "$text-muted"), ("exact phrase", "italic $text-success")]
    return Content.assemble(*head, "\n", snippet_content(hit.snippet, terms))


def query_terms(query: str) -> list[str]:
    try:
        return parse_query(query).terms
    except QueryError:
        return []


class QueryInput(Input):
    """The query box; `down` moves to the results (an Input would scroll itself)."""

    BINDINGS = [Binding("down", "screen.results", "Results", id="search.results",
                        tooltip="Move from the query to the results")]


class ResultList(OptionList):
    """The hits; `up` on the first one goes back to the query box."""

    def action_cursor_up(self) -> None:
        if not self.highlighted:
            self.screen.query_one("#search-query", Input).focus()
        else:
            super().action_cursor_up()


class SearchScreen(ModalScreen[SearchHit | None]):
    """Dismisses with the chosen hit (None: closed)."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="search.close", tooltip="Close the search"),
        Binding("ctrl+t", "toggle_scope", "This workstream only", id="search.scope",
                tooltip="Search only the selected workstream, or everything"),
        Binding("ctrl+f", "focus_query", "Query", id="search.query", show=False, priority=True,
                tooltip="Back to the query box"),
    ]

    def __init__(self, query: str = "", workstream_id: str | None = None, workstream_title: str = "",
                 this_workstream: bool = False) -> None:
        super().__init__(id="search", classes="dialog")
        self.initial_query = query
        self.workstream_id = workstream_id
        self.workstream_title = workstream_title
        self.initial_scope = this_workstream and workstream_id is not None
        self.generation = 0
        self.hits: list[SearchHit] = []
        self.shown_query = ""  # the query whose hits (or error) are on screen
        self.error: str | None = None
        self._timer: Timer | None = None

    # ---- layout ---------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box", id="search-box"):
            yield Static("Search conversations and summaries", classes="dialog-title")
            with Horizontal(id="search-bar"):
                yield QueryInput(self.initial_query, placeholder=PLACEHOLDER, id="search-query")
                label = f"only {one_line(self.workstream_title, 24)}" if self.workstream_id else "this workstream only"
                yield Checkbox(Content(label), self.initial_scope, id="search-scope",
                               disabled=self.workstream_id is None,
                               tooltip="Search only the selected workstream (ctrl+t)")
            yield Static(Content(HINT), id="search-status")
            yield ResultList(id="search-results")
        yield Footer()

    def on_mount(self) -> None:
        self.results.display = False
        self.query_input.focus()
        if self.initial_query.strip():
            self._schedule(0)

    # ---- accessors ------------------------------------------------------------------
    @property
    def query_input(self) -> Input:
        return self.query_one("#search-query", Input)

    @property
    def results(self) -> ResultList:
        return self.query_one(ResultList)

    @property
    def status(self) -> Static:
        return self.query_one("#search-status", Static)

    @property
    def this_workstream(self) -> bool:
        return self.query_one("#search-scope", Checkbox).value

    @property
    def query_text(self) -> str:
        return self.query_input.value

    # ---- running the query ----------------------------------------------------------------
    @on(Input.Changed, "#search-query")
    def query_changed(self) -> None:
        self._schedule(DEBOUNCE_S)

    @on(Checkbox.Changed, "#search-scope")
    def scope_changed(self) -> None:
        self._schedule(0)

    def _schedule(self, delay: float) -> None:
        """A new query: forget the pending one; search once typing rests `delay` seconds."""
        self.generation += 1
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        query = self.query_text.strip()
        if not query:
            self.workers.cancel_group(self, groups.SEARCH)
            self._show([], None, "")
            return
        generation = self.generation
        if delay:
            self._timer = self.set_timer(delay, lambda: self._start(generation))
        else:
            self.call_later(self._start, generation)

    def _start(self, generation: int) -> None:
        self._timer = None
        if generation == self.generation:
            scope = self.workstream_id if self.this_workstream else None
            self.run_search(self.query_text.strip(), scope, generation)

    @work(group=groups.SEARCH, exclusive=True, exit_on_error=False, description="search")
    async def run_search(self, query: str, workstream_id: str | None, generation: int) -> None:
        core = self.app.core  # type: ignore[attr-defined]
        if core is None:
            self.post_message(m.SearchDone(generation, query, error="Still opening the data dir…"))
            return
        try:
            hits = await core.search(query, workstream_id=workstream_id, limit=SEARCH_LIMIT)
        except UsageError as exc:  # a malformed query: the engine says what is wrong in one line
            self.post_message(m.SearchDone(generation, query, error=str(exc)))
            return
        self.post_message(m.SearchDone(generation, query, hits))

    def on_search_done(self, message: m.SearchDone) -> None:
        if message.generation == self.generation:
            self._show(message.hits, message.error, message.query)

    @on(Worker.StateChanged)
    def search_failed(self, event: Worker.StateChanged) -> None:
        """An unexpected failure: say so here (the app's handler still raises its toast)."""
        if event.worker.group == groups.SEARCH and event.state is WorkerState.ERROR:
            self._show([], f"The search failed: {type(event.worker.error).__name__}", self.query_text.strip())

    def _show(self, hits: list[SearchHit], error: str | None, query: str) -> None:
        self.hits = hits
        self.error = error
        self.shown_query = query
        status = self.status
        status.set_class(error is not None, "-error")
        if error is not None:
            status.update(Content(one_line(error, 300)))
        elif not query:
            status.update(Content(HINT))
        elif not hits:
            status.update(Content(f"No matches for {one_line(query, 80)}."))
        else:
            more = " (the best ones)" if len(hits) >= SEARCH_LIMIT else ""
            status.update(Content(f"{len(hits)} match{'es' if len(hits) != 1 else ''}{more}: "
                                  "enter opens the highlighted one."))
        terms = query_terms(query)
        results = self.results
        options: list[Option | None] = []
        for n, hit in enumerate(hits):
            if n:
                options.append(None)
            options.append(Option(hit_row(hit, terms), id=str(n)))
        results.set_options(options)
        results.display = bool(hits)
        if hits:
            results.highlighted = 0

    # ---- opening a hit ---------------------------------------------------------------------
    @on(Input.Submitted, "#search-query")
    def submitted(self) -> None:
        if self._timer is not None or self.shown_query != self.query_text.strip():
            return  # the results on screen are for an older query
        if self.hits:
            index = self.results.highlighted or 0
            self.dismiss(self.hits[int(self.results.get_option_at_index(index).id or 0)])

    @on(OptionList.OptionSelected, "#search-results")
    def picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(self.hits[int(event.option.id)])

    def action_results(self) -> None:
        if self.hits:
            self.results.focus()

    def action_focus_query(self) -> None:
        self.query_input.focus()

    def action_toggle_scope(self) -> None:
        scope = self.query_one("#search-scope", Checkbox)
        if not scope.disabled:
            scope.toggle()

    def action_close(self) -> None:
        self.dismiss(None)

