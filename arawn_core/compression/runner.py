"""Runs one compression job end to end and records the outcome.

The LLM work is done by `Summarizer`; this module decides what to feed it,
skips work whose input, prompt and model are unchanged, and commits each
result in one transaction together with the job's `done` state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from arawn_core import events as ev
from arawn_core.compression.budget import TokenEstimator
from arawn_core.compression.errors import CompressionError
from arawn_core.compression.mapreduce import Summarizer
from arawn_core.compression.prompts import PROMPT_VERSION
from arawn_core.compression.staleness import VERBATIM_MODEL, is_stale  # noqa: F401  (re-exported)
from arawn_core.compression.values import SummarizerConfig, SummaryResult, input_hash
from arawn_core.config import Settings
from arawn_core.llm.base import LLMBackend
from arawn_core.llm.errors import LLMError
from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem
from arawn_core.memory.steer import Steer
from arawn_core.memory.versions import VersionMeta, restore_protected
from arawn_core.models import (
    CompressionJob,
    JobKind,
    Message,
    Provenance,
    Summary,
    SummaryAudit,
    SummaryKind,
    new_id,
)
from arawn_core.store import memory as memory_store
from arawn_core.store.db import IndexBusy
from arawn_core.store.jobs import JobQueue
from arawn_core.store.repository import NotFound, Repository

log = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    job: CompressionJob
    ok: bool
    error: LLMError | Exception | None = None
    will_retry: bool = False
    llm_calls: int = 0


def hash_messages(messages: list[Message]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(m.id.encode())
        h.update(b"\0")
        h.update(m.role.encode())
        h.update(b"\0")
        h.update(m.content.encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()


def _steered(steer: Steer) -> dict[str, Steer]:
    """The `steer` keyword only for a steered run (an unsteered call is exactly the old call)."""
    return {"steer": steer} if steer else {}


def verbatim_text(messages: list[Message]) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in messages)


class JobRunner:
    def __init__(self, repo: Repository, queue: JobQueue, bus: ev.EventBus, backend: LLMBackend,
                 settings: Settings, estimator: TokenEstimator, model: Callable[[], str]) -> None:
        self.repo = repo
        self.queue = queue
        self.bus = bus
        self.backend = backend
        self.settings = settings
        self.estimator = estimator
        self.model = model
        self._summarizer: Summarizer | None = None
        self._style: str | None = None
        #: Lines that must survive every reduce of a workstream (pins, user edits): a hook for
        #: `arawn_core.memory`; the audit treats them as key items ranked above all others.
        self.must_keep: Callable[[str], Awaitable[Sequence[str]]] | None = None
        #: The context calls are planned with (min of [llm] num_ctx and the server's); set by the core.
        self.num_ctx_for: Callable[[str], Awaitable[int]] | None = None
        self._num_ctx = settings.llm.num_ctx

    def summarizer(self) -> Summarizer:
        """One Summarizer per model, shared by every job: its semaphore bounds the calls in
        flight across all jobs to `max_concurrency` (not `max_concurrency` per job)."""
        model = self.model()
        if self._summarizer is None or self._summarizer.config.model != model \
                or self._summarizer.config.num_ctx > self._num_ctx:
            self._summarizer = self._make_summarizer()
        return self._summarizer

    def _make_summarizer(self) -> Summarizer:
        c = self.settings.workstream.compression
        # A pool of hosts serves more calls at once than one host: one in flight per host slot.
        concurrency = max(c.max_concurrency, int(getattr(self.backend, "capacity", 0) or 0))
        cfg = SummarizerConfig(
            model=self.model(), num_ctx=self._num_ctx, max_summary_tokens=c.max_summary_tokens,
            safety_margin_tokens=c.safety_margin_tokens, max_concurrency=concurrency, fan_in=c.fan_in,
            audit=c.audit, key_items_share=c.key_items_share,  # type: ignore[arg-type]
            style="completion" if self._style == "completion" else "chat",
        )
        try:
            return Summarizer(self.backend, cfg, self.estimator)
        except ValueError as exc:  # the config leaves no room for input: permanent, with the keys to change
            raise CompressionError(str(exc)) from None

    async def run(self, job: CompressionJob) -> JobOutcome:
        self.bus.publish(ev.JobStarted(job.workstream_id, job.id, job.kind.value, job.session_id))
        last_write = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last_write
            self.bus.publish(ev.JobProgress(job.workstream_id, job.id, done, total))
            now = time.monotonic()
            if now - last_write > 0.5 or done >= total:
                last_write = now
                asyncio.ensure_future(self._save_progress(job.id, done, total))

        try:
            calls = await self._execute(job, progress)
        except asyncio.CancelledError:
            await asyncio.shield(self.queue.release(job))
            raise
        except LLMError as exc:
            will_retry, _ = await self.queue.fail(job, str(exc), exc.transient)
            self.bus.publish(ev.JobFailed(job.workstream_id, job.id, job.kind.value, job.session_id, str(exc),
                                          will_retry))
            self.bus.publish(ev.WorkstreamUpdated(job.workstream_id))
            return JobOutcome(job, False, exc, will_retry)
        except IndexBusy as exc:  # another process held the write lock past the busy timeout: try again later
            will_retry, _ = await self.queue.fail(job, str(exc), transient=True)
            self.bus.publish(ev.JobFailed(job.workstream_id, job.id, job.kind.value, job.session_id, str(exc),
                                          will_retry))
            return JobOutcome(job, False, exc, will_retry)
        except NotFound as exc:
            await self.queue.fail(job, str(exc), transient=False)
            self.bus.publish(ev.JobFailed(job.workstream_id, job.id, job.kind.value, job.session_id, str(exc), False))
            return JobOutcome(job, False, exc)
        except Exception as exc:  # a bug or a storage fault: recorded and shown, never swallowed
            log.exception("compression job %s failed", job.id)
            msg = f"internal error: {type(exc).__name__}: {exc}"
            will_retry, _ = await self.queue.fail(job, msg, transient=isinstance(exc, OSError))
            self.bus.publish(ev.JobFailed(job.workstream_id, job.id, job.kind.value, job.session_id, msg, will_retry))
            return JobOutcome(job, False, exc, will_retry)
        await self._save_estimator()
        self.bus.publish(ev.JobCompleted(job.workstream_id, job.id, job.kind.value, job.session_id))
        self.bus.publish(ev.WorkstreamUpdated(job.workstream_id))
        return JobOutcome(job, True, llm_calls=calls)

    async def _must_keep(self, workstream_id: str) -> list[str]:
        return list(await self.must_keep(workstream_id)) if self.must_keep is not None else []

    async def _save_progress(self, job_id: str, done: int, total: int) -> None:
        try:
            await self.queue.set_progress(job_id, done, total)
        except Exception:  # progress is advisory; the job itself records its outcome
            log.debug("progress write failed", exc_info=True)

    async def _save_estimator(self) -> None:
        """The learned chars-per-token ratio; advisory (the job's result is already committed), so a
        write lock held elsewhere past the busy timeout only means it is saved by a later job."""
        import json

        try:
            await self.repo.kv_set("token_estimator", json.dumps(self.estimator.to_dict()))
        except IndexBusy:
            log.warning("token estimator not saved: the index's write lock was held by another process")

    async def _detect_style(self) -> None:
        """A base model (the packaged embedded one) gets the completion framing; known once resolved."""
        if self._style is not None:
            return
        configured = self.settings.workstream.compression.prompt_style
        if configured != "auto":
            self._style = configured
            self._summarizer = None
            return
        backend = self.backend
        resolve = getattr(backend, "resolve", None)
        if resolve is not None:
            backend = await resolve()
        self._style = "completion" if getattr(backend, "base_model", False) else "chat"
        self._summarizer = None

    async def _execute(self, job: CompressionJob, progress: Callable[[int, int], None]) -> int:
        await self._detect_style()
        if self.num_ctx_for is not None:
            self._num_ctx = await self.num_ctx_for(self.model())
        if job.kind is JobKind.SESSION:
            return await self._session(job, progress)
        if job.kind is JobKind.CHECKPOINT:
            return await self._checkpoint(job, progress)
        if job.kind is JobKind.REBUILD:
            return await self._reduce(job, progress, rebuild=True)
        return await self._reduce(job, progress, rebuild=False)

    def _summary(self, kind: SummaryKind, job: CompressionJob, text: str, model: str, result: SummaryResult | None,
                 input_chars: int, input_hash: str, covers: list[str], started: float,
                 audit: SummaryAudit | None = None) -> Summary:
        if result is not None:
            method, audit = result.method, result.audit
        else:
            method = "verbatim" if model == VERBATIM_MODEL else "model"
        return Summary(
            id=new_id(), kind=kind, workstream_id=job.workstream_id,
            session_id=job.session_id if kind is not SummaryKind.WORKSTREAM else None, text=text,
            provenance=Provenance(
                model=model, prompt_version=PROMPT_VERSION if model != VERBATIM_MODEL else VERBATIM_MODEL,
                input_chars=input_chars,
                input_tokens=result.input_tokens if result else 0,
                output_tokens=result.output_tokens if result else 0,
                llm_calls=result.llm_calls if result else 0,
                duration_s=round(time.monotonic() - started, 3), input_hash=input_hash,
                method=method, audit=audit,
            ),
            covers=covers,
        )

    async def _commit(self, job: CompressionJob, summary: Summary | None, folded: list[str] | None = None,
                      then_reduce: bool = False, version: VersionMeta | None = None) -> None:
        """The result, the job's `done` and (for a session) the follow-up reduce: one transaction."""
        if summary is not None:
            await self.repo.prepare_summary(summary, folded, version)
        async with self.repo.db.transaction() as c:
            if summary is not None:
                await self.repo.write_summary(c, summary, folded, version)
            await self.queue.finish(c, job.id)
            reduce_id = await self.queue.enqueue_in(c, JobKind.REDUCE, job.workstream_id) if then_reduce else None
        if reduce_id:
            self.bus.publish(ev.JobQueued(job.workstream_id, reduce_id, JobKind.REDUCE.value, None))

    async def _session(self, job: CompressionJob, progress: Callable[[int, int], None]) -> int:
        started = time.monotonic()
        assert job.session_id
        session = await self.repo.get_session(job.session_id)
        messages = await self.repo.session_messages(session)
        model = self.model()
        digest = hash_messages(messages)
        existing = await self.repo.session_summary(session.id)
        if existing and existing.provenance.input_hash == digest and not is_stale(existing, model):
            await self._commit(job, None, then_reduce=True)
            return 0
        chars = sum(len(m.content) for m in messages)
        c = self.settings.workstream.compression
        result: SummaryResult | None = None
        audit: SummaryAudit | None = None
        if len(messages) < c.min_messages and chars <= c.verbatim_max_chars:
            text, used_model = verbatim_text(messages), VERBATIM_MODEL
            if c.audit != "off":  # every word is kept; the items still travel up to the reduce
                items = K.rank(K.merge(K.extract(m.role, m.content) for m in messages),
                               limit=self.summarizer().max_items())
                audit = SummaryAudit(mode=c.audit, level="verbatim", kept=len(items), total=len(items),
                                     items=[it.to_dict() for it in items])
        else:
            steer = await memory_store.steer_for(self.repo, job.workstream_id, with_protected=False)
            result = await self.summarizer().summarize_session([(m.role, m.content) for m in messages], progress,
                                                               **_steered(steer))
            text, used_model = result.text, model
            _keep_previous_if_fallback(result, existing)
        summary = self._summary(SummaryKind.SESSION, job, text, used_model, result, chars, digest,
                                [session.id], started, audit)
        await self._commit(job, summary, then_reduce=True)
        return result.llm_calls if result else 0

    async def _reduce(self, job: CompressionJob, progress: Callable[[int, int], None], rebuild: bool) -> int:
        started = time.monotonic()
        model = self.model()
        summarizer = self.summarizer()
        previous = await self.repo.workstream_summary(job.workstream_id)
        steer = await memory_store.steer_for(self.repo, job.workstream_id)  # focus, and the lines edits protect
        must_keep = list(dict.fromkeys([*steer.must_keep, *await self._must_keep(job.workstream_id)]))
        if rebuild:
            pending = await self.repo.all_session_summaries(job.workstream_id)
            if not pending:
                await self._commit(job, None)
                return 0
            texts = [s.text for _, s in pending]
            result = await summarizer.rebuild(texts, progress, items=[stored_items(s) for _, s in pending],
                                              must_keep=must_keep, **_steered(steer))
            covers = [sid for sid, _ in pending]
            digest = input_hash(*texts, *steer.hash_parts())
        else:
            pending = await self.repo.unfolded_session_summaries(job.workstream_id)
            if not pending:
                await self._commit(job, None)
                return 0
            texts = [s.text for _, s in pending]
            prev_text = previous.text if previous else None
            result = await summarizer.fold(prev_text, texts, progress,
                                           previous_items=stored_items(previous) if previous else None,
                                           new_items=[stored_items(s) for _, s in pending],
                                           must_keep=must_keep, **_steered(steer))
            covers = (previous.covers if previous else []) + [sid for sid, _ in pending]
            digest = input_hash(prev_text, *texts, *steer.hash_parts())
        _keep_previous_if_fallback(result, previous)
        # protected lines must survive verbatim: the audit appends the ones it misses (by their
        # key words); any still not there word for word are put back here, deterministically
        audited = set(result.audit.appended) if result.audit else set()
        result.text, put_back = restore_protected(result.text, list(steer.must_keep),
                                                  previous.text if previous else None)
        restored = [p for p in steer.must_keep if p in put_back or " ".join(p.split()) in audited]
        summary = self._summary(SummaryKind.WORKSTREAM, job, result.text, model, result,
                                sum(len(t) for t in texts) + (len(previous.text) if previous and not rebuild else 0),
                                digest, covers, started)
        version = VersionMeta("model", list(steer.must_keep), restored, steer.focus)
        await self._commit(job, summary, folded=[sid for sid, _ in pending], version=version)
        if steer.focus:
            await memory_store.clear_focus(self.repo, job.workstream_id, steer.focus)
        return result.llm_calls

    async def _checkpoint(self, job: CompressionJob, progress: Callable[[int, int], None]) -> int:
        """Summarize the older part of a long active session so its next turns fit."""
        started = time.monotonic()
        assert job.session_id
        session = await self.repo.get_session(job.session_id)
        messages = await self.repo.session_messages(session)
        previous = await self.repo.checkpoint(session.id)
        if previous and previous.covers:
            ids = [m.id for m in messages]
            if previous.covers[-1] in ids:
                messages = messages[ids.index(previous.covers[-1]) + 1:]
        keep_chars = self.settings.workstream.compression.token_threshold_chars // 2
        tail, kept = 0, 0
        for m in reversed(messages):
            if tail + len(m.content) > keep_chars:
                break
            tail += len(m.content)
            kept += 1
        older = messages[: len(messages) - kept] if kept < len(messages) else []
        if not older:
            await self._commit(job, None)
            return 0
        result = await self.summarizer().checkpoint([(m.role, m.content) for m in older],
                                                     previous.text if previous else None,
                                                     previous_items=stored_items(previous) if previous else None)
        _keep_previous_if_fallback(result, previous)
        summary = self._summary(SummaryKind.CHECKPOINT, job, result.text, self.model(), result,
                                sum(len(m.content) for m in older), hash_messages(older), [older[-1].id], started)
        await self._commit(job, summary)
        return result.llm_calls


def stored_items(summary: Summary | None) -> list[KeyItem] | None:
    """The key items a stored summary answers for (None: it has no audit; the summarizer derives them)."""
    if summary is None or summary.provenance.audit is None:
        return None
    return [KeyItem.from_dict(d, i) for i, d in enumerate(summary.provenance.audit.items) if isinstance(d, dict)]


def _keep_previous_if_fallback(result: SummaryResult, previous: Summary | None) -> None:
    """A model-written summary is never replaced by an extractive one: the job fails, naming the defect."""
    if result.method != "extractive" or previous is None or previous.provenance.method == "extractive":
        return
    defects = "; ".join(result.audit.defects) if result.audit else "its reply was not a summary"
    raise CompressionError(
        f"the model did not write a summary ({defects}, also after a corrective retry); "
        "the previous summary stays current"
    )
