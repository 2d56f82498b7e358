"""ArawnCore: the one facade the TUI and the CLI talk to.

Everything user-facing goes through here: workstreams, sessions, chat,
compression jobs, import/export, reindex. State changes are published on
`core.events` as typed events (see `arawn_core.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable

from arawn_core import events as ev
from arawn_core.compression.budget import TokenBudget, TokenEstimator

if TYPE_CHECKING:
    from arawn_core.compression.runner import JobOutcome, JobRunner
from arawn_core.config import Settings
from arawn_core.context import assemble_context, recall_room, system_content, tokens_of, with_recall
from arawn_core.llm.base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, LLMBackend
from arawn_core.llm.errors import ContextOverflow, LLMError
from arawn_core.llm.server_context import ContextMemory, ContextPlan
from arawn_core.memory.commands import MemoryCommands
from arawn_core.memory.pins import with_pins
from arawn_core.models import (
    CompressionJob,
    CompressionStatus,
    JobKind,
    JobState,
    Message,
    Session,
    Summary,
    Workstream,
    WorkstreamState,
    iso_utc,
    new_id,
    utc_now,
)
from arawn_core.staleness import is_stale
from arawn_core.store.converters import (
    apply_status,
    one_by_title,
    sessions_with_status,
    stamp_of,
    workstreams_from_rows,
)
from arawn_core.store.db import CorruptIndex, Database, ensure_private_dir, move_aside
from arawn_core.store.jobs import JobQueue
from arawn_core.recall import Recall
from arawn_core.runtime import Scheduler
from arawn_core.store.repository import Repository
from arawn_core.errors import NotFound, UsageError  # noqa: F401  (UsageError re-exported: its old home)

log = logging.getLogger(__name__)

SCRATCH_TITLE = "Scratch"
ESTIMATOR_KEY = "token_estimator"
CONTEXTS_KEY = "server_contexts"

Progress = Callable[[int, int], None]


@dataclass
class TurnContext:
    """One chat turn's request and what recall added to it."""

    messages: list[ChatMessage]
    recall: Recall


class ArawnCore(MemoryCommands):
    """(Pins, summary versions, focus, fork and session titles: `arawn_core.memory.commands`.)"""

    def __init__(self, settings: Settings, db: Database, repo: Repository, queue: JobQueue,
                 backend: LLMBackend, estimator: TokenEstimator) -> None:
        self.settings = settings
        self.db = db
        self.repo = repo
        self.queue = queue
        self.backend = backend
        self.estimator = estimator
        self.events = ev.EventBus()
        repo.on_notice = lambda text: self.events.publish(ev.Notice(text))
        self._runner: JobRunner | None = None
        self._recovery_reported = False  # finish_open has published what the recovery changed
        self.contexts = ContextMemory()  # the servers' context sizes (see `context_plan`)

    @property
    def runner(self) -> JobRunner:
        """Built on first use: listing and reading never pay for importing the summarizer."""
        if self._runner is None:
            from arawn_core.compression.runner import JobRunner

            self._runner = JobRunner(self.repo, self.queue, self.events, self.backend, self.settings,
                                     self.estimator, self.compression_model)
            self._runner.num_ctx_for = self.num_ctx_for
        return self._runner

    # ---- lifecycle -----------------------------------------------------
    @classmethod
    async def open(cls, settings: Settings, backend: LLMBackend | None = None,
                   defer_recovery: bool = False) -> ArawnCore:
        """Open the data dir. A damaged index is moved aside (arawn.db.corrupt-<time>) and rebuilt from
        the JSONL files, which hold everything it did; `notices` says so.

        `defer_recovery` (the TUI): the check of every workstream's files against the index (what a
        crash or a lost WAL left) is not done before this returns but at `finish_open()` or at the
        first write, whichever comes first; every write waits for it. Reads meanwhile see the index
        as it was; `finish_open()` says whether the check changed it."""
        data_dir = settings.data_dir
        loose = ensure_private_dir(data_dir, link_ok=True)
        try:
            return await cls._open(settings, backend, loose, defer_recovery)
        except CorruptIndex as exc:
            if not _writable_dir(data_dir):
                raise
            damaged = exc.path
            aside = move_aside(damaged)
        core = await cls._open(settings, backend, loose)  # a new index: recovered (rebuilt) at once
        core.repo.notice(f"{damaged} was damaged; moved it to {aside.name} and rebuilt the index from the"
                         " message files")
        return core

    @classmethod
    async def _open(cls, settings: Settings, backend: LLMBackend | None, loose: bool = False,
                    defer_recovery: bool = False) -> ArawnCore:
        data_dir = settings.data_dir
        db = await Database.open(data_dir / "arawn.db")
        try:
            repo = Repository(db, data_dir)
            repo.check_modes = loose  # the data dir was found loose: check every mode inside it
            c = settings.workstream.compression
            queue = JobQueue(db, c.max_attempts, c.retry_base_s, c.retry_max_s)
            estimator = TokenEstimator()
            raw = await repo.kv_get(ESTIMATOR_KEY)
            if raw:
                try:
                    estimator = TokenEstimator.from_dict(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring unreadable token estimator state")
            contexts = await _load_contexts(repo)
            if backend is None:
                from arawn_core.llm.lazy import LazyBackend

                backend = LazyBackend(settings, contexts)  # chosen on first use: most commands never need it
            elif isinstance(getattr(backend, "memory", None), ContextMemory):
                backend.memory.merge(contexts)  # type: ignore[attr-defined]
                contexts = backend.memory  # type: ignore[attr-defined]
            core = cls(settings, db, repo, queue, backend, estimator)
            core.contexts = contexts
            if defer_recovery and not db.created and not db.read_only:
                db.defer_writes(core._recover)
            else:
                await core._recover()
        except BaseException:
            await db.close()  # else the connection's thread keeps the process alive after the error
            raise
        return core

    @property
    def notices(self) -> list[str]:
        """One line per problem met reading or indexing the files (bad lines, a rebuilt index...)."""
        return self.repo.notices

    async def _recover(self) -> bool:
        """After a crash or a damaged/missing index: index what the files hold and SQLite misses
        (workstreams, events, JSONL lines); orphaned running jobs back to pending. True if that
        changed what the index holds (or left a notice)."""
        notices = len(self.repo.notices)
        changed = bool(await self.repo.catch_up_all())
        if self.db.read_only:
            return changed or len(self.repo.notices) > notices
        changed = bool(await self.queue.recover_orphans()) or changed
        changed = await self._recover_memory() or changed  # once after the upgrade to schema 6
        if await self.repo.message_index_rebuild_pending():  # schema 3 replaced the full-text index
            await self.repo.rebuild_message_index()
            changed = True
        return changed or len(self.repo.notices) > notices

    async def finish_open(self) -> bool:
        """The recovery `open(defer_recovery=True)` left for later: run now, or awaited if a write
        already started it. True if it changed the index (lists read before it are out of date);
        its error, if it failed (every write raises it too). False if nothing was deferred."""
        task = self.db.run_deferred()
        if task is None:
            return False
        changed = bool(await asyncio.shield(task))
        if changed and not self._recovery_reported:
            self._recovery_reported = True
            self.events.publish(ev.WorkstreamUpdated(""))  # any workstream may have changed
        return changed

    async def close(self, end_sessions: bool | None = None) -> None:
        """End active sessions if asked (default: `end_sessions_on_quit`); queued jobs stay queued."""
        task = self.db.deferred
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task  # a deferred recovery under way: never close the connection under it
        if end_sessions is None:
            end_sessions = self.settings.workstream.end_sessions_on_quit
        if end_sessions:
            for session in await self.repo.all_active_sessions():
                await self._end(session, "quit")
        try:
            await self._save_contexts()
        finally:
            await self.backend.aclose()
            await self.db.close()

    @property
    def model(self) -> str:
        override = getattr(self.backend, "model_override", None)
        return override or self.settings.llm.model

    def compression_model(self) -> str:
        override = getattr(self.backend, "model_override", None)
        return override or self.settings.compression_model

    # ---- workstreams ---------------------------------------------------
    async def list_workstreams(self, include_archived: bool = False, limit: int | None = None) -> list[Workstream]:
        """In list order; only the first `limit` if given (a first screen, the rest read after it)."""
        # the same queries and mapping as the sync read path (arawn_core.readonly)
        rows = await self.repo.workstream_rows(include_archived, limit)
        return workstreams_from_rows(rows, await self.queue.status(), self.compression_model())

    async def get_workstream(self, workstream_id: str) -> Workstream:
        ws = await self.repo.get_workstream(workstream_id)
        summary = await self.repo.workstream_summary(ws.id)
        ws.summary = summary.text if summary else None
        apply_status(ws, (await self.queue.status(ws.id)).get(ws.id), stamp_of(summary), self.compression_model())
        return ws

    async def resolve_workstream(self, ref: str) -> Workstream:
        """An id, or an unambiguous title (exact, then case-insensitive)."""
        try:
            return await self.get_workstream(ref)
        except NotFound:
            pass
        return await self.get_workstream(one_by_title(ref, await self.repo.find_workstreams_by_title(ref)).id)

    async def create_workstream(self, title: str, tags: list[str] | None = None) -> Workstream:
        title = title.strip()
        if not title:
            raise UsageError("a workstream title cannot be empty")
        ws = await self.repo.create_workstream(title, tags or [])
        self.events.publish(ev.WorkstreamUpdated(ws.id))
        return ws

    async def scratch_workstream(self) -> Workstream:
        ws = await self.repo.scratch_workstream()
        if ws is None:
            ws = await self.repo.create_workstream(SCRATCH_TITLE, [], is_scratch=True)
            self.events.publish(ev.WorkstreamUpdated(ws.id))
        return ws

    async def _update(self, workstream_id: str, **changes) -> Workstream:
        ws = await self.repo.update_workstream(await self.repo.get_workstream(workstream_id), **changes)
        self.events.publish(ev.WorkstreamUpdated(ws.id))
        return ws

    async def rename_workstream(self, workstream_id: str, title: str) -> Workstream:
        if not title.strip():
            raise UsageError("a workstream title cannot be empty")
        return await self._update(workstream_id, title=title.strip())

    async def set_tags(self, workstream_id: str, tags: list[str]) -> Workstream:
        return await self._update(workstream_id, tags=list(tags))

    async def archive_workstream(self, workstream_id: str) -> Workstream:
        session = await self.repo.active_session(workstream_id)
        if session:
            await self._end(session, "archive")
        return await self._update(workstream_id, state=WorkstreamState.ARCHIVED)

    async def unarchive_workstream(self, workstream_id: str) -> Workstream:
        return await self._update(workstream_id, state=WorkstreamState.ACTIVE)

    async def set_workstream_model(self, workstream_id: str, model: str | None) -> Workstream:
        return await self._update(workstream_id, model=model or None)

    async def set_system_prompt(self, workstream_id: str, prompt: str | None) -> Workstream:
        return await self._update(workstream_id, system_prompt=prompt or None)

    # ---- sessions ------------------------------------------------------
    async def list_sessions(self, workstream_id: str) -> list[Session]:
        # the same queries and mapping as the sync read path (arawn_core.readonly)
        return sessions_with_status(await self.repo.list_sessions(workstream_id),
                                    await self.repo.session_summary_stamps(workstream_id),
                                    await self.queue.status(workstream_id, per_session=True), self.compression_model())

    async def get_session(self, session_id: str) -> Session:
        return await self.repo.get_session(session_id)

    async def active_session(self, workstream_id: str) -> Session | None:
        return await self.repo.active_session(workstream_id)

    async def session_messages(self, session_id: str) -> list[Message]:
        return await self.repo.session_messages(await self.repo.get_session(session_id))

    async def end_session(self, workstream_id: str, reason: str = "explicit") -> Session | None:
        """End the active session and queue its compression; returns at once."""
        session = await self.repo.active_session(workstream_id)
        if session is None:
            return None
        return await self._end(session, reason)

    async def _end(self, session: Session, reason: str) -> Session:
        session = await self.repo.end_session(session, reason)
        self.events.publish(ev.SessionEnded(session.workstream_id, session.id, reason))
        if session.message_count and self.settings.workstream.compression.enabled:
            await self._enqueue(JobKind.SESSION, session.workstream_id, session.id)
        self.events.publish(ev.WorkstreamUpdated(session.workstream_id))
        return session

    async def end_idle_sessions(self, now: datetime | None = None) -> list[Session]:
        minutes = self.settings.workstream.session_timeout_minutes
        if minutes <= 0:
            return []
        cutoff = iso_utc((now or datetime.now(timezone.utc)) - timedelta(minutes=minutes))
        return [await self._end(s, "idle") for s in await self.repo.idle_sessions(cutoff)]

    async def _ensure_session(self, workstream_id: str, now: str) -> Session:
        session = await self.repo.active_session(workstream_id)
        minutes = self.settings.workstream.session_timeout_minutes
        if session and minutes > 0:
            cutoff = iso_utc(datetime.now(timezone.utc) - timedelta(minutes=minutes))
            if session.last_activity_at < cutoff:
                await self._end(session, "idle")
                session = None
        if session is None:
            session = await self.repo.create_session(workstream_id, now)
            self.events.publish(ev.SessionStarted(workstream_id, session.id))
        return session

    # ---- messages and chat ---------------------------------------------
    async def append_message(self, workstream_id: str, role: str, content: str,
                             metadata: dict | None = None) -> Message:
        """Store one message in the workstream's active session (starting one if needed)."""
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from undecodable bytes in argv or stdin
            raise UsageError(f"the message is not valid UTF-8 text (at character {exc.start})") from None
        now = utc_now()
        session = await self._ensure_session(workstream_id, now)
        msg = Message(new_id(), workstream_id, session.id, role, content, now, metadata)
        await self.repo.append_messages(workstream_id, [msg])
        self.events.publish(ev.MessageAdded(workstream_id, session.id, msg.id, role))
        return msg

    async def build_context(self, workstream_id: str) -> list[dict[str, str]]:
        """What the model sees for the next turn (see `build_turn`)."""
        return (await self.build_turn(workstream_id)).messages

    async def build_turn(self, workstream_id: str) -> TurnContext:
        """The next turn's request: summaries in the system prompt, recalled earlier messages, recent turns.

        Everything is estimated against one budget (num_ctx minus the reply): the recall
        block gets at most `[context] recall_max_tokens` of it, reserved before the recent
        turns are fitted, so the whole request never exceeds num_ctx.
        """
        ws = await self.repo.get_workstream(workstream_id)
        ws_summary = await self.repo.workstream_summary(workstream_id)
        session = await self.repo.active_session(workstream_id)
        history: list[Message] = []
        checkpoint: Summary | None = None
        if session:
            history = await self.repo.session_messages(session)
            checkpoint = await self.repo.checkpoint(session.id)
            if checkpoint and checkpoint.covers:
                ids = [m.id for m in history]
                if checkpoint.covers[-1] in ids:
                    history = history[ids.index(checkpoint.covers[-1]) + 1:]
        system = system_content(ws.system_prompt, ws_summary.text if ws_summary else None,
                                checkpoint.text if checkpoint else None)
        model = ws.model or self.model
        system = with_pins(system, await self.pin_fit(workstream_id, model))  # whole pins, within their budget
        num_ctx = await self.num_ctx_for(model)
        budget = TokenBudget(num_ctx, self.settings.llm.max_reply_tokens, 64)
        try:
            available = budget.input_tokens_available(0)
        except ValueError:  # the budget's own message names the compression keys; this is the chat's
            raise UsageError(
                f"a context of {num_ctx} tokens (num_ctx for {model}) leaves no room for the conversation after"
                f" [llm] max_reply_tokens = {self.settings.llm.max_reply_tokens}: lower llm.max_reply_tokens"
                " or raise llm.num_ctx") from None

        def estimate(text: str) -> int:
            return self.estimator.estimate(model, text)

        newest = history[-1] if history and history[-1].role == "user" else None
        cfg = self.settings.context
        room = recall_room(system, newest, available, estimate, cfg.recall_max_tokens) if cfg.recall else 0
        messages, dropped = assemble_context(system, history, available - room, estimate)
        found = Recall()
        if room > 0 and newest is not None and session is not None:
            found = await self._recall(workstream_id, session.id, history[dropped:], newest.content,
                                       min(cfg.recall_max_tokens, available - tokens_of(messages, estimate)),
                                       estimate)
            if dropped and found.tokens < room:
                # the block came out smaller than reserved (or empty): give the rest back to the recent
                # turns, and leave out of the block what the context now holds itself
                messages, dropped = assemble_context(system, history, available - found.tokens, estimate)
                found = found.without({m.id for m in history[dropped:]}, estimate)
        return TurnContext(with_recall(messages, found.block), found)

    async def _recall(self, workstream_id: str, session_id: str, kept: list[Message], text: str,
                      budget_tokens: int, estimate: Callable[[str], int]) -> Recall:
        from arawn_core.recall import recall

        return await recall(self.db, self.repo.messages_path, workstream_id, text, exclude_session=session_id,
                            exclude_from_id=kept[0].id if kept else None, budget_tokens=budget_tokens,
                            estimate=estimate)

    async def send(self, workstream_id: str, text: str,
                   on_recall: Callable[[Recall], None] | None = None) -> AsyncIterator[str]:
        """Store the user's turn, stream the reply, store it (a stopped reply is kept, marked interrupted).

        `on_recall` hears which earlier messages were recalled for this turn, before the reply
        starts; the reply's metadata keeps them too (`recalled`), so they outlive the process.
        """
        ws = await self.repo.get_workstream(workstream_id)
        if ws.state is WorkstreamState.ARCHIVED:
            raise UsageError(f"workstream {ws.title!r} is archived")
        user = await self.append_message(workstream_id, "user", text)
        turn = await self.build_turn(workstream_id)
        context = turn.messages
        if on_recall is not None:
            on_recall(turn.recall)
        model = ws.model or self.model
        options = ChatOptions(model=model, num_ctx=await self.num_ctx_for(model),
                              num_predict=self.settings.llm.max_reply_tokens)
        parts: list[str] = []
        finished = False
        try:
            async for chunk in self._chat_replanned(workstream_id, turn, options):
                if chunk.text:
                    parts.append(chunk.text)
                    yield chunk.text
                if chunk.done:
                    finished = True
                    if chunk.usage and chunk.usage.prompt_tokens:
                        chars = sum(len(m["content"]) for m in context)
                        self.estimator.observe(model, chars, chunk.usage.prompt_tokens)
        finally:
            if parts:
                meta = Message.reply_metadata(model, user.id, interrupted=not finished)
                if turn.recall.messages:
                    meta["recalled"] = [r.to_dict() for r in turn.recall.messages]
                await asyncio.shield(self._store_reply(workstream_id, "".join(parts), meta))

    async def _store_reply(self, workstream_id: str, text: str, meta: dict) -> None:
        await self.append_message(workstream_id, "assistant", text, meta)
        session = await self.repo.active_session(workstream_id)
        threshold = self.settings.workstream.compression.token_threshold_chars
        if session and self.settings.workstream.compression.enabled:
            checkpoint = await self.repo.checkpoint(session.id)
            covered = checkpoint.provenance.input_chars if checkpoint else 0
            if session.char_count - covered > threshold:
                await self._enqueue(JobKind.CHECKPOINT, workstream_id, session.id)

    # ---- compression ---------------------------------------------------
    async def _enqueue(self, kind: JobKind, workstream_id: str, session_id: str | None = None) -> CompressionJob | None:
        job = await self.queue.enqueue(kind, workstream_id, session_id)
        if job:
            self.events.publish(ev.JobQueued(workstream_id, job.id, kind.value, session_id))
        return job

    async def compress(self, workstream_id: str, session_id: str | None = None, rebuild: bool = False,
                       focus: str | None = None) -> list[CompressionJob]:
        """Queue compression now (manual): the given or every not-yet-summarized ended session, then a reduce.

        `focus` steers that run (see `set_focus`); with nothing new to fold it rebuilds, steered.
        """
        jobs: list[CompressionJob] = []
        if focus is not None:
            await self.set_focus(workstream_id, focus)
        await self.queue.retry(workstream_id=workstream_id)  # a manual compress also retries what failed
        if rebuild:
            job = await self._enqueue(JobKind.REBUILD, workstream_id)
            return [job] if job else []
        sessions = await self.list_sessions(workstream_id)
        if session_id and not any(s.id == session_id for s in sessions):
            raise UsageError(f"no session {session_id} in this workstream")
        in_flight = False
        for s in sessions:
            if (session_id and s.id != session_id) or s.message_count == 0:
                continue
            if s.compression in (CompressionStatus.PENDING, CompressionStatus.RUNNING):
                in_flight = True
                continue
            wanted = session_id is not None or s.compression in (CompressionStatus.NONE, CompressionStatus.STALE)
            if s.active and session_id is None:
                wanted = False
            if wanted and (job := await self._enqueue(JobKind.SESSION, workstream_id, s.id)):
                jobs.append(job)
        if not jobs and not in_flight:  # no session work: fold what is not folded yet
            if job := await self._enqueue(JobKind.REBUILD if focus else JobKind.REDUCE, workstream_id):
                jobs.append(job)
        return jobs

    async def claim_job(self, workstream_id: str | None = None) -> CompressionJob | None:
        return await self.queue.claim(workstream_id)

    async def run_job(self, job: CompressionJob) -> JobOutcome:
        outcome = await self.runner.run(job)
        return outcome

    async def run_next(self, workstream_id: str | None = None) -> JobOutcome | None:
        """Claim and run one due job; None when nothing is due."""
        job = await self.claim_job(workstream_id)
        if job is None:
            return None
        return await self.run_job(job)

    def scheduler(self, max_jobs: int | None = None) -> Scheduler:
        """A scheduler over this core: `run()` it until `stop()` (the TUI), or `drain()` it (the CLI)."""
        return Scheduler(self, max_jobs)

    async def work_queue(self, workstream_id: str | None = None, stop_on_unreachable: bool = True,
                         wait_for_retries: bool = True) -> list[JobOutcome]:
        """Work due jobs until none is left (waiting out retry backoff if asked): `Scheduler.drain`."""
        return await self.scheduler().drain(workstream_id, stop_on_unreachable, wait_for_retries)

    async def list_jobs(self, state: JobState | None = None, workstream_id: str | None = None) -> list[CompressionJob]:
        return await self.queue.list(state, workstream_id)

    async def retry_jobs(self, job_id: str | None = None, workstream_id: str | None = None) -> int:
        n = await self.queue.retry(job_id, workstream_id)
        if n:
            for ws_id in {j.workstream_id for j in await self.queue.list(JobState.PENDING)}:
                self.events.publish(ev.WorkstreamUpdated(ws_id))
        return n

    async def next_job_due_in(self, workstream_id: str | None = None) -> float | None:
        """Seconds until the next pending job may run (0: now; None: nothing pending). Read-only."""
        return await self.queue.next_due_in(workstream_id)

    async def get_preference(self, key: str) -> str | None:
        """A UI preference kept in the data dir (e.g. the theme picked from the palette)."""
        return await self.repo.kv_get(f"pref:{key}")

    async def set_preference(self, key: str, value: str) -> None:
        await self.repo.kv_set(f"pref:{key}", value)

    async def queue_length(self) -> int:
        return await self.queue.open_count()

    async def workstream_summary(self, workstream_id: str) -> Summary | None:
        s = await self.repo.workstream_summary(workstream_id)
        if s:
            s.stale = is_stale(s, self.compression_model())
        return s

    async def session_summary(self, session_id: str) -> Summary | None:
        s = await self.repo.session_summary(session_id)
        if s:
            s.stale = is_stale(s, self.compression_model())
        return s

    # ---- import / export / reindex ---------------------------------------
    async def import_file(self, path: Path, fmt: str = "auto", workstream_id: str | None = None,
                          progress: Progress | None = None):
        from arawn_core.importers import import_path

        return await import_path(self, Path(path), fmt, workstream_id, progress)

    async def export(self, workstream_id: str, fmt: str = "jsonl") -> AsyncIterator[str]:
        from arawn_core.importers.export import export_workstream

        async for chunk in export_workstream(self, workstream_id, fmt):
            yield chunk

    async def reindex(self, progress: Progress | None = None) -> dict[str, int]:
        counts = await self.repo.reindex(progress)
        self.events.publish(ev.WorkstreamUpdated(""))
        return counts

    async def search(self, query: str, workstream_id: str | None = None, role: str | None = None,
                     since: str | None = None, limit: int = 20) -> list:
        """Ranked full-text hits over messages and summaries; a malformed query is a UsageError."""
        from arawn_core.search import QueryError, search

        if since:
            try:
                when = datetime.fromisoformat(since.replace("Z", "+00:00"))
                if "T" not in since:
                    since = when.strftime("%Y-%m-%d")
                else:
                    since = iso_utc(when if when.tzinfo else when.replace(tzinfo=timezone.utc))
            except ValueError:
                raise UsageError(f"--since {since!r} is not a date (use YYYY-MM-DD or an ISO timestamp)") from None
        try:
            return await search(self.db, self.repo.messages_path, query, workstream_id, role, since, limit)
        except QueryError as exc:
            raise UsageError(str(exc)) from None

    async def backend_info(self) -> BackendInfo:
        info = await self.backend.info()
        if info.context is None:
            info.context = await self.context_plan()
        return info

    # ---- the server's context ------------------------------------------
    async def context_plan(self, model: str | None = None) -> ContextPlan:
        """min([llm] num_ctx, the server's) for `model`, with both numbers (doctor, the status line)."""
        model = model or self.model
        read = getattr(self.backend, "server_context", None)
        server = None
        if read is not None:
            try:
                server = await read(model)
            except LLMError:
                server = None  # a down server is planned for with the configured size
        await self._save_contexts()
        return ContextPlan(self.settings.llm.num_ctx, server.size if server else None,
                           server.source if server else "")

    async def _chat_replanned(self, workstream_id: str, turn: TurnContext,
                              options: ChatOptions) -> AsyncIterator[ChatChunk]:
        """A server that refuses an over-long chat and so reveals a smaller context: plan again, send once more."""
        sent = False
        try:
            async for chunk in self.backend.chat(turn.messages, options):
                sent = True
                yield chunk
            return
        except ContextOverflow:
            smaller = await self.num_ctx_for(options.model)
            if sent or smaller >= options.num_ctx:
                raise
        again = await self.build_turn(workstream_id)  # the caller learns from the context really sent
        turn.messages[:] = again.messages
        turn.recall = again.recall  # and the reply records what that context recalled
        async for chunk in self.backend.chat(turn.messages, replace(options, num_ctx=smaller)):
            yield chunk

    async def num_ctx_for(self, model: str) -> int:
        """The context every call for `model` is planned with."""
        return (await self.context_plan(model)).used

    async def _save_contexts(self) -> None:
        """Sizes learned from refusals survive restarts (kv in the data dir)."""
        if self.contexts.dirty:
            self.contexts.dirty = False
            await self.repo.kv_set(CONTEXTS_KEY, json.dumps(self.contexts.to_dict()))


def _writable_dir(path: Path) -> bool:
    from arawn_core.store.db import writable

    return writable(path)


async def _load_contexts(repo: Repository) -> ContextMemory:
    raw = await repo.kv_get(CONTEXTS_KEY)
    if not raw:
        return ContextMemory()
    try:
        return ContextMemory.from_dict(json.loads(raw))
    except ValueError:
        log.warning("ignoring unreadable server context state")
        return ContextMemory()

