"""Map/reduce summarization that never sends a request over the context budget.

Pure algorithm: it talks to an `LLMBackend` and a `TokenEstimator`, nothing
else (no storage, no queue). The engine wraps each public method in a durable
job.

How a request is kept in budget:

1. Before sending, the whole request (prompt included) is estimated with the
   conservative estimator; if it is over `num_ctx - max_summary_tokens -
   safety_margin_tokens` it is split first (never cut: nothing is dropped).
2. After sending, the backend's real `prompt_tokens` is checked. If the
   backend raised `ContextOverflow`, or reports `prompt_tokens >= num_ctx`
   (Ollama silently keeps only the end of an over-long prompt and reports the
   context size), the estimator learns from it and the piece is split smaller
   and redone.
3. A reply cut at `num_predict` (done_reason "length") is retried once with a
   request for a shorter summary, and is an error if it happens again: a
   truncated summary is never returned as if it were whole.

What is kept (`arawn_core.memory`): every summary, at every level (chunk,
merge, session, checkpoint, reduce, rebuild, condense), is audited against the
key items of its inputs; missing items get one repair call, then a bounded
verbatim "Key items" section; the counts are the summary's audit. A summary
of summaries is told which items it will be audited for (the input lines
holding them go under the inputs' "Key items" headings, items on no line are
listed), and the words asked for leave room for them, so a model that keeps
what it is asked to keep needs no repair call. A reply
that is not a summary (an echo of the prompt, empty, a loop, fence markers,
longer than its input) is retried once with a corrective note, then replaced
by the labelled extractive fallback, or (audit "off") is an error naming the
defect. An echoed prompt is never returned.

Why summaries ask for a word count: merges must make progress. Intermediate
summaries are asked to be small enough that `fan_in` of them fit one merge
call, final ones that two fit one call (previous + new in a fold).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Awaitable, Callable, Coroutine, Literal, Optional, Sequence, TypeVar

from arawn_core.compression import prompts as P
from arawn_core.compression.budget import TokenBudget, TokenEstimator
from arawn_core.compression.chunking import Chunk, ChunkItem, plan_chunks, resplit
from arawn_core.llm.base import ChatMessage, ChatOptions, Completion, LLMBackend
from arawn_core.llm.errors import ContextOverflow, LLMError
from arawn_core.memory import audit as A
from arawn_core.memory import keyitems as K
from arawn_core.memory.degenerate import defect as reply_defect
from arawn_core.memory.degenerate import fence_codes
from arawn_core.memory.keyitems import KeyItem
from arawn_core.models import MAX_LISTED, Provenance, SummaryAudit

if TYPE_CHECKING:
    from arawn_core.config import Settings

T = TypeVar("T")
Progress = Callable[[int, int], Optional[Awaitable[None]]]  # sync or async callback
Builder = Callable[[bool], list[ChatMessage]]  # shorter -> messages
PieceKind = Literal["map", "merge", "condense"]
AuditMode = Literal["repair", "report", "off"]

#: Rendering cost of one summary in a merge ("[summary 10 of 12]\n" + "\n\n").
SUMMARY_OVERHEAD_CHARS = 32
#: Rough chars per word of summary text (English prose with Markdown); sizes the word targets.
CHARS_PER_WORD = 6.0
#: Words asked for per reply token (a token is ~0.75 words; leave headroom for Markdown).
WORDS_PER_TOKEN = 0.6
MIN_TARGET_WORDS = 30
#: Minimum room for data in one call; below it the configuration is unusable.
MIN_DATA_TOKENS = 128
#: A summary of a short input is asked for about 1/COMPRESSION of its words (never under MIN_INPUT_WORDS_TARGET).
COMPRESSION = 18.0
MIN_INPUT_WORDS_TARGET = 100
#: The extractive fallback lists at least this many characters of key items, however small max_summary_tokens.
MIN_FALLBACK_CHARS = 600
#: Safety stop for reduce loops that make no progress (a model that will not shorten).
MAX_ROUNDS = 64


class CompressionError(LLMError):
    """Compression cannot finish with this model and configuration (the message says why)."""

    transient = False


class SummaryTruncated(CompressionError):
    """The model's summary was cut at num_predict twice in a row; never returned half."""

    def __init__(self, max_summary_tokens: int) -> None:
        self.max_summary_tokens = max_summary_tokens
        super().__init__(
            f"the summary was cut off at max_summary_tokens={max_summary_tokens} even after asking "
            "for a shorter one: raise [workstream.compression] max_summary_tokens"
        )


class EmptySummary(CompressionError):
    """The model returned nothing; worth retrying later."""

    transient = True


class DegenerateSummary(CompressionError):
    """The model's reply was not a summary twice in a row (and audit is off, so no fallback)."""

    def __init__(self, defect: str, model: str) -> None:
        self.defect = defect
        super().__init__(f"model {model!r} did not write a summary: {defect} (twice); "
                         "set [workstream.compression] audit = \"repair\" to store an extractive summary instead")


class _Overflow(Exception):
    """Internal: the request did not fit after all (the estimator has learned); split and redo."""


@dataclass
class SummaryResult:
    text: str
    input_chars: int
    input_tokens: int  # sum of the prompt tokens the backend reported
    output_tokens: int  # sum of the completion tokens the backend reported
    llm_calls: int  # every request sent, including ones that overflowed and were redone
    duration_s: float
    model: str = ""
    prompt_version: str = P.PROMPT_VERSION
    method: str = "model"  # "model" | "repaired" | "extractive"
    audit: SummaryAudit | None = None  # None: audit off
    items: list[KeyItem] = field(default_factory=list)  # the key items this summary answers for

    def provenance(self, input_hash: str) -> Provenance:
        return Provenance(
            model=self.model,
            prompt_version=self.prompt_version,
            input_chars=self.input_chars,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            llm_calls=self.llm_calls,
            duration_s=self.duration_s,
            input_hash=input_hash,
            method=self.method,
            audit=self.audit,
        )


@dataclass
class Draft:
    """A summary on its way up the hierarchy, with the key items it answers for."""

    text: str
    items: list[KeyItem] = field(default_factory=list)


@dataclass(frozen=True)
class SummarizerConfig:
    model: str
    num_ctx: int
    max_summary_tokens: int = 1024
    safety_margin_tokens: int = 256
    max_concurrency: int = 2
    fan_in: int = 4
    temperature: float | None = 0.2
    audit: AuditMode = "repair"
    key_items_share: float = 0.25  # of max_summary_tokens: the verbatim "Key items" section's bound
    style: P.Style = "chat"  # "completion" for a base model

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None, style: P.Style = "chat") -> SummarizerConfig:
        c = settings.workstream.compression
        return cls(
            model=model or settings.compression_model,
            num_ctx=settings.llm.num_ctx,
            max_summary_tokens=c.max_summary_tokens,
            safety_margin_tokens=c.safety_margin_tokens,
            max_concurrency=c.max_concurrency,
            fan_in=c.fan_in,
            audit=c.audit,  # type: ignore[arg-type]
            key_items_share=c.key_items_share,
            style=style,
        )


def input_hash(*parts: str | bytes | None) -> str:
    """sha256 hex of the parts, length-prefixed so ("ab", "c") != ("a", "bc") and None != "".

    Pass everything the summary depends on (model, PROMPT_VERSION, each
    role and text ...) so a change anywhere marks the summary stale.
    """
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            h.update(b"N")
            continue
        data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(b"S" + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def planned_merge_calls(n: int, fan_in: int) -> int:
    """LLM calls a hierarchical merge of n texts takes when fan_in texts always fit one call."""
    calls = 0
    while n > 1:
        groups = math.ceil(n / fan_in)
        calls += groups - (1 if n % fan_in == 1 else 0)  # a trailing single passes through
        n = groups
    return calls


class _Op:
    """Counters and progress of one public call."""

    def __init__(self, progress: Progress | None, model: str) -> None:
        self.progress = progress
        self.model = model
        self.t0 = time.monotonic()
        self.calls = 0
        self.in_tokens = 0
        self.out_tokens = 0
        self.done = 0
        self.total = 0
        self._reported: tuple[int, int] | None = None
        # the audit of everything this call did, level by level
        self.levels: dict[str, dict[str, int]] = {}
        self.defects: list[str] = []
        self.dropped: dict[str, KeyItem] = {}
        self.repair_calls = 0
        self.retries = 0
        self.fallbacks = 0
        self.repaired = False
        self.top: tuple[str, A.ItemAudit, list[KeyItem], bool] | None = None  # level, audit, appended, fallback

    def count(self, level: str, **values: int) -> None:
        row = self.levels.setdefault(level, {})
        for k, v in values.items():
            row[k] = row.get(k, 0) + v

    def plan(self, n: int) -> None:
        self.total += n

    async def tick(self) -> None:
        self.done += 1
        self.total = max(self.total, self.done)
        await self._emit()

    async def _emit(self) -> None:
        if self.progress is None or self._reported == (self.done, self.total):
            return
        self._reported = (self.done, self.total)
        result = self.progress(self.done, self.total)
        if inspect.isawaitable(result):
            await result

    async def result(self, text: str | Draft, input_chars: int, mode: AuditMode = "off") -> SummaryResult:
        if self.done:
            self.total = self.done  # planned work that turned out unnecessary
            await self._emit()
        draft = text if isinstance(text, Draft) else Draft(text)
        method = "model"
        audit: SummaryAudit | None = None
        if self.top is not None and self.top[3]:
            method = "extractive"
        elif self.repaired:
            method = "repaired"
        if mode != "off":
            audit = self._audit(draft, mode)
        return SummaryResult(
            text=draft.text,
            input_chars=input_chars,
            input_tokens=self.in_tokens,
            output_tokens=self.out_tokens,
            llm_calls=self.calls,
            duration_s=time.monotonic() - self.t0,
            model=self.model,
            method=method,
            audit=audit,
            items=draft.items,
        )

    def _audit(self, draft: Draft, mode: str) -> SummaryAudit:
        if self.top is not None:
            level, a, appended, _ = self.top
            kept, total, missing = len(a.kept), a.total, [it.text for it in a.missing]
        else:  # no call was made (nothing new, or a single summary passed through): what it carries
            level, kept, total, missing, appended = "none", len(draft.items), len(draft.items), [], []
        return SummaryAudit(
            mode=mode, level=level, kept=kept, total=total, missing=missing,
            appended=[it.text for it in appended],
            dropped=[it.text for it in K.rank(list(self.dropped.values()), limit=MAX_LISTED)],
            dropped_count=len(self.dropped),
            repair_calls=self.repair_calls, retries=self.retries, fallbacks=self.fallbacks,
            defects=list(dict.fromkeys(self.defects)), levels=self.levels,
            items=[it.to_dict() for it in draft.items],
        )


async def _gather(coros: Sequence[Coroutine[object, object, T]]) -> list[T]:
    """Run concurrently, keep order; on the first failure cancel the rest and raise that error itself."""
    if len(coros) == 1:
        return [await coros[0]]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except BaseExceptionGroup as eg:
        exc: BaseException = eg
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        raise exc from None
    return [t.result() for t in tasks]


def _normalise(items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(str(role), text or "") for role, text in items]


class Summarizer:
    """Summarize sessions, fold and rebuild workstream summaries within the model's context.

    One instance bounds its own in-flight LLM calls to `max_concurrency`,
    across all calls made on it.
    """

    def __init__(self, backend: LLMBackend, config: SummarizerConfig, estimator: TokenEstimator | None = None) -> None:
        if config.fan_in < 2:
            raise ValueError(f"fan_in must be at least 2, got {config.fan_in}")
        if config.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {config.max_concurrency}")
        if config.audit not in A.AUDIT_MODES:
            raise ValueError(f"audit must be one of {', '.join(A.AUDIT_MODES)}, got {config.audit!r}")
        self.backend = backend
        self.config = config
        self.estimator = estimator if estimator is not None else TokenEstimator()
        self.budget = TokenBudget(
            config.num_ctx, config.max_summary_tokens, config.safety_margin_tokens, min_input_tokens=MIN_DATA_TOKENS
        )
        self.options = ChatOptions(
            model=config.model,
            num_ctx=config.num_ctx,
            num_predict=config.max_summary_tokens,
            temperature=config.temperature,
        )
        self._sem = asyncio.Semaphore(config.max_concurrency)
        self.budget.input_tokens_available(self._prompt_overhead())  # ValueError now, not mid-job

    @property
    def auditing(self) -> bool:
        return self.config.audit != "off"

    # ---- public API ----------------------------------------------------
    async def summarize_session(
        self, items: Sequence[tuple[str, str]], progress: Progress | None = None
    ) -> SummaryResult:
        """Map: a session transcript [(role, text), ...] -> its summary. Empty input -> "" with no call."""
        op = _Op(progress, self.config.model)
        items = _normalise(items)
        chars = sum(len(t) for _, t in items)
        if chars == 0:
            return await op.result("", 0, self.config.audit)
        words = self._target_words(share=2, input_chars=chars)
        style = self.config.style
        whole = lambda shorter: P.session_messages(items, target_words=words, shorter=shorter, style=style)  # noqa: E731
        if self._fits(whole):
            op.plan(1)
            keys = self._bounded(op, "session", [self._items_of_messages(items)], words)
            try:
                draft = await self._summarize(whole, op, "session", keys, chars, top=True)
                return await op.result(draft, chars, self.config.audit)
            except _Overflow:
                pass  # the estimator learned; plan chunks with the new ratio
        drafts = await self._map(items, op, plan_merges=True)
        draft = await self._reduce_to_one(drafts, op, final="merge")
        return await op.result(draft, chars, self.config.audit)

    async def fold(
        self,
        previous_summary: str | None,
        new_summaries: Sequence[str],
        progress: Progress | None = None,
        *,
        previous_items: Sequence[KeyItem] | None = None,
        new_items: Sequence[Sequence[KeyItem] | None] | None = None,
        must_keep: Sequence[str] = (),
    ) -> SummaryResult:
        """Reduce: previous workstream summary + only the new session summaries -> updated summary.

        The input is bounded by the previous summary (itself at most
        max_summary_tokens) plus the new summaries, whatever the number of
        sessions folded before. New summaries that do not fit together are
        merged hierarchically first. Nothing new -> the previous summary, no call.

        The result is audited against `previous_items` (the key items the
        previous summary answers for) plus each new summary's `new_items`
        (both derived from the texts when not given) plus `must_keep`: lines
        that must survive every reduce (audited first, appended verbatim if the
        model drops them).
        """
        op = _Op(progress, self.config.model)
        pairs = [(s, (new_items[i] if new_items and i < len(new_items) else None))
                 for i, s in enumerate(new_summaries)]
        pairs = [(s, its) for s, its in pairs if s and s.strip()]
        input_chars = len(previous_summary or "") + sum(len(s) for s, _ in pairs)
        prev_items = self._items_of_text(previous_summary, previous_items)
        must = K.must_keep_items(must_keep)
        if not pairs:
            return await op.result(Draft(previous_summary or "", prev_items), input_chars, self.config.audit)
        op.plan(1)
        new = [Draft(s, self._items_of_text(s, its)) for s, its in pairs]
        prev = Draft(previous_summary, prev_items) if previous_summary else None
        style = self.config.style

        def build(p: str | None, texts: list[str], words: int, keep: Sequence[str]) -> Builder:
            return lambda shorter: P.reduce_messages(p, texts, target_words=words, shorter=shorter, style=style,
                                                     keep=keep)

        draft = await self._fold_loop(prev, new, build, op, "reduce", must)
        return await op.result(draft, input_chars, self.config.audit)

    async def rebuild(
        self,
        session_summaries: Sequence[str],
        progress: Progress | None = None,
        *,
        items: Sequence[Sequence[KeyItem] | None] | None = None,
        must_keep: Sequence[str] = (),
    ) -> SummaryResult:
        """The workstream summary from all session summaries, hierarchically, each call within budget."""
        op = _Op(progress, self.config.model)
        pairs = [(s, (items[i] if items and i < len(items) else None)) for i, s in enumerate(session_summaries)]
        pairs = [(s, its) for s, its in pairs if s and s.strip()]
        input_chars = sum(len(s) for s, _ in pairs)
        if not pairs:
            return await op.result("", 0, self.config.audit)
        op.plan(max(1, planned_merge_calls(len(pairs), self.config.fan_in)))
        drafts = [Draft(s, self._items_of_text(s, its)) for s, its in pairs]
        draft = await self._reduce_to_one(drafts, op, final="rebuild", must=K.must_keep_items(must_keep))
        return await op.result(draft, input_chars, self.config.audit)

    async def checkpoint(
        self,
        items: Sequence[tuple[str, str]],
        previous_checkpoint: str | None,
        progress: Progress | None = None,
        *,
        previous_items: Sequence[KeyItem] | None = None,
    ) -> SummaryResult:
        """Summary of an active session's older part: previous checkpoint + the turns since -> new checkpoint."""
        op = _Op(progress, self.config.model)
        items = _normalise(items)
        chars = sum(len(t) for _, t in items)
        input_chars = chars + len(previous_checkpoint or "")
        prev_items = self._items_of_text(previous_checkpoint, previous_items)
        if chars == 0:
            return await op.result(Draft(previous_checkpoint or "", prev_items), input_chars, self.config.audit)
        words = self._target_words(share=2, input_chars=input_chars)
        style = self.config.style
        direct = lambda shorter: P.checkpoint_messages(  # noqa: E731
            previous_checkpoint, items=items, target_words=words, shorter=shorter, style=style
        )
        op.plan(1)
        if self._fits(direct):
            keys = self._bounded(op, "checkpoint", [prev_items, self._items_of_messages(items)], words)
            try:
                draft = await self._summarize(direct, op, "checkpoint", keys, input_chars, top=True)
                return await op.result(draft, input_chars, self.config.audit)
            except _Overflow:
                pass
        drafts = await self._map(items, op, plan_merges=False)

        def build(prev: str | None, texts: list[str], words: int, keep: Sequence[str]) -> Builder:
            return lambda shorter: P.checkpoint_messages(prev, summaries=texts, target_words=words, shorter=shorter,
                                                         style=style, keep=keep)

        prev = Draft(previous_checkpoint, prev_items) if previous_checkpoint else None
        draft = await self._fold_loop(prev, drafts, build, op, "checkpoint", [])
        return await op.result(draft, input_chars, self.config.audit)

    # ---- key items -----------------------------------------------------
    def _items_of_messages(self, items: Sequence[tuple[str, str]]) -> list[KeyItem]:
        if not self.auditing:
            return []
        return K.merge(K.extract(role, text) for role, text in items)

    def _items_of_text(self, text: str | None, given: Sequence[KeyItem] | None) -> list[KeyItem]:
        """A summary's key items: those stored with it, else derived from its text (an older summary)."""
        if not self.auditing or not text:
            return []
        if given is not None:
            return list(given)
        return K.merge([K.extract("summary", text)])

    def max_items(self) -> int:
        """Key items one summary answers for (the verbatim section holds ~16 characters an item)."""
        return max(16, self._section_chars() // 16)

    def _section_chars(self) -> int:
        tokens = int(self.config.max_summary_tokens * self.config.key_items_share)
        return int(tokens * min(self.estimator.chars_per_token(self.config.model), 3.0))

    def _bounded(self, op: _Op, level: str, groups: Sequence[Sequence[KeyItem]], words: int) -> list[KeyItem]:
        """The inputs' items merged and ranked; those over the bound are recorded as dropped.

        The bound is what a summary of `words` words can be held to: the items may take 40% of it
        (and no more than `_tracked_chars`); keep requests and decisions rank first, so they are
        the last to go.
        """
        if not self.auditing:
            return []
        taken, dropped, untracked = self._select(groups, words)
        self._record(op, level, dropped, untracked)
        return taken

    @staticmethod
    def _record(op: _Op, level: str, dropped: Sequence[KeyItem], untracked: int) -> None:
        for it in dropped:
            op.dropped.setdefault(it.key, it)
        if untracked:
            op.count(level, untracked=untracked)

    def _select(self, groups: Sequence[Sequence[KeyItem]], words: int) -> tuple[list[KeyItem], list[KeyItem], int]:
        """`_bounded` without recording: (tracked, dropped, how many were left untracked)."""
        ranked = K.rank(K.merge(groups))
        limit = self.max_items()
        keep_room = self._tracked_chars()
        room = min(keep_room, int(words * CHARS_PER_WORD * 0.4))
        taken: list[KeyItem] = []
        dropped: list[KeyItem] = []
        full = False
        for it in ranked:
            cost = _item_cost(it)
            if it.score >= K.SCORE_MUST:
                fits = True  # lines the caller protects: always
            elif it.kind in ("keep", "decision"):  # each that fits the summary's whole item room
                fits = len(taken) < limit and cost <= keep_room
                keep_room -= cost if fits else 0
            else:  # the rest: a prefix of the ranking, so a model writing its best points first keeps them
                full = full or len(taken) >= limit or cost > room
                fits = not full
            if not fits:
                dropped.append(it)
                continue
            taken.append(it)
            room -= cost
        return taken, dropped, len(ranked) - len(taken)

    def _keep_lines(self, items: Sequence[KeyItem]) -> list[str]:
        """How a request names the items a summary of summaries must keep: codes of a keep request as codes."""
        if not self.auditing:
            return []
        return [A._compact(it)[2:] or it.text for it in items]

    def _name_items(self, texts: Sequence[str], items: Sequence[KeyItem]) -> tuple[list[str], list[str]]:
        """The input summaries with the lines holding `items` under their "Key items" heading, and the rest named.

        Why: the audit will check the reply for these items, so the request must say which they are; a
        model that keeps what it is asked to keep then needs no repair call. Moving the bullet that
        already holds an item into the input's "Key items" section (every prompt says to keep those
        lines) says so for the cost of one heading; only items on no bullet line of their own are
        listed (`_keep_lines`) in an ITEMS block.
        """
        if not self.auditing or not items:
            return list(texts), []
        return A.flag_lines(texts, items, self._keep_lines)

    def _keep_words(self, words: int, keep: Sequence[str]) -> int:
        """`words`, raised so that the listed items fit next to prose, within the reply's room.

        Why: a model that writes what it is asked to keep within the words it is given must have
        words for them; else it leaves some out and the audit spends a repair call on them.
        """
        if not keep:
            return words
        need = sum(len(k.split()) + 1 for k in keep) + MIN_TARGET_WORDS
        return max(words, min(need, self._reply_words()))

    def _tracked_chars(self) -> int:
        """What the tracked items may cost in a summary: 40% of the reply's room (the rest is prose)."""
        reply_share = 1.0 - self.config.key_items_share
        ratio = min(self.estimator.chars_per_token(self.config.model), 3.0)
        return int(self.config.max_summary_tokens * reply_share * ratio * 0.4)

    # ---- sizing --------------------------------------------------------
    def _request_tokens(self, build: Builder) -> int:
        """Estimated tokens of the request, the longer of its normal and its "be shorter" retry form."""
        est = self.estimator.estimate_messages
        return max(est(self.config.model, build(False)), est(self.config.model, build(True))) + self._note_tokens

    @property
    def _note_tokens(self) -> int:
        """Room for a corrective note on a retry."""
        return math.ceil((len(P.CORRECTION_NOTE) + 80) / self.estimator.chars_per_token(self.config.model))

    def _fits(self, build: Builder) -> bool:
        return self.budget.fits(self._request_tokens(build))

    def _prompt_overhead(self) -> int:
        """Estimated tokens of the largest of our prompts without any data."""
        w = 10_000
        return max(
            self._request_tokens(lambda s: P.reduce_messages("", [], target_words=w, shorter=s)),
            self._request_tokens(lambda s: P.checkpoint_messages("", summaries=[], target_words=w, shorter=s)),
            self._request_tokens(lambda s: P.session_messages([], part="9999 of 9999", target_words=w, shorter=s)),
            self._request_tokens(lambda s: P.repair_messages("", [], target_words=w, shorter=s)),
        )

    def _available(self, overhead: int) -> int:
        """Room for data; when learning has shrunk it to nothing mid-job, a CompressionError saying why."""
        try:
            return self.budget.input_tokens_available(overhead)
        except ValueError as exc:
            ratio = self.estimator.chars_per_token(self.config.model)
            raise CompressionError(f"{exc} (model {self.config.model!r} uses ~{ratio:.2f} chars/token)") from None

    def _data_tokens(self) -> int:
        """Tokens left for data next to the largest of our prompts."""
        return self._available(self._prompt_overhead())

    def _max_data_chars(self, build_empty: Builder) -> int:
        """Characters of data that fit next to the prompt `build_empty` renders without data."""
        available = self._available(self._request_tokens(build_empty))
        return self.estimator.chars_for_tokens(self.config.model, available)

    def _target_words(self, share: int, input_chars: int | None = None) -> int:
        """Words to ask for, so that `share` such summaries fit one call and the reply fits num_predict.

        The reply's room is max_summary_tokens less the share kept for the
        verbatim "Key items" section; a summary of a short input is asked to
        be at most ~1/COMPRESSION of its words (a 3,000-word chunk needs no
        600-word summary, and every word of it is read again by the merge).
        """
        ratio = self.estimator.chars_per_token(self.config.model)
        by_budget = self._data_tokens() * ratio / (CHARS_PER_WORD * share)
        target = min(by_budget, self._reply_words())
        if input_chars:
            target = min(target, max(MIN_INPUT_WORDS_TARGET, input_chars / CHARS_PER_WORD / COMPRESSION))
        return max(MIN_TARGET_WORDS, int(target))

    def _reply_words(self) -> int:
        """Words a reply may have: max_summary_tokens less the verbatim "Key items" section's share."""
        reply_share = 1.0 - (self.config.key_items_share if self.auditing else 0.0)
        return int(self.config.max_summary_tokens * reply_share * WORDS_PER_TOKEN)

    # ---- one request ---------------------------------------------------
    async def _call(self, build: Builder, op: _Op, note: str | None = None) -> str:
        """Send one request; learn from its usage; handle overflow and truncated replies."""
        model, num_ctx = self.config.model, self.config.num_ctx
        for attempt in (0, 1):
            messages = _with_note(build(attempt == 1), note)
            chars = sum(len(m["content"]) for m in messages)
            try:
                async with self._sem:
                    completion: Completion = await self.backend.complete(messages, self.options)
            except ContextOverflow as exc:
                if exc.num_ctx and exc.num_ctx < self.config.num_ctx:
                    self._use_context(exc.num_ctx)  # the server's context is smaller: plan with it from now on
                    num_ctx = exc.num_ctx
                if exc.replan:  # turned back unsent, planned for a larger context: split, learn nothing
                    raise _Overflow(str(exc)) from exc
                op.calls += 1
                if exc.prompt_tokens and exc.prompt_tokens > num_ctx:
                    self.estimator.observe(model, chars, exc.prompt_tokens)  # a real count above the limit
                elif exc.prompt_tokens:
                    self.estimator.observe(model, chars, exc.prompt_tokens, lower_bound=True)
                else:
                    self.estimator.penalize(model)
                await op.tick()
                raise _Overflow(str(exc)) from exc
            op.calls += 1
            usage = completion.usage
            op.in_tokens += usage.prompt_tokens
            op.out_tokens += usage.completion_tokens
            if usage.prompt_tokens >= num_ctx:
                # Ollama kept only the last num_ctx tokens: the start of our input was never read.
                self.estimator.observe(model, chars, usage.prompt_tokens, lower_bound=True)
                await op.tick()
                raise _Overflow(f"prompt silently truncated at num_ctx={num_ctx}")
            if usage.prompt_tokens:
                self.estimator.observe(model, chars, usage.prompt_tokens)
            await op.tick()
            if usage.done_reason == "length":
                if attempt == 0:
                    op.plan(1)
                    continue
                raise SummaryTruncated(self.config.max_summary_tokens)
            text = completion.text.strip()
            if self.config.style == "completion" and text:
                text = P.COMPLETION_REPLY_START + " " + text
            return text
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checked_call(self, build: Builder, op: _Op, input_chars: int) -> tuple[str, str | None]:
        """A reply that is a summary, or ("", defect) after one retry with a corrective note."""
        request = build(False)
        instructions = P.instruction_text(request)
        fences = fence_codes("\n".join(m["content"] for m in request))
        text = await self._call(build, op)
        found = reply_defect(text, instructions=instructions, input_chars=input_chars, fences=fences)
        if found is None:
            return text, None
        op.defects.append(found)
        op.retries += 1
        op.plan(1)
        text = await self._call(build, op, note=P.CORRECTION_NOTE.format(defect=found))
        again = reply_defect(text, instructions=instructions, input_chars=input_chars, fences=fences)
        if again is None:
            return text, None
        op.defects.append(again)
        return "", again

    async def _summarize(
        self, build: Builder, op: _Op, level: str, items: list[KeyItem], input_chars: int, *, top: bool = False
    ) -> Draft:
        """One summary call, checked, audited against `items`, repaired and completed (see the module doc)."""
        text, defect = await self._checked_call(build, op, input_chars)
        mode = self.config.audit
        if defect is not None:
            if mode == "off":
                raise DegenerateSummary(defect, self.config.model)
            op.fallbacks += 1
            op.count(level, fallbacks=1)
            text = A.extractive_summary(items, defect, self._fallback_chars())
            a = A.audit_text(text, items)
            if top:
                op.top = (level, a, [], True)
            for it in a.missing:
                op.dropped.setdefault(it.key, it)
            return Draft(text, A.carried(items, a.missing))
        if mode == "off":
            return Draft(text)
        a = A.audit_text(text, items)
        recovered = 0
        if a.missing and mode == "repair":
            repaired = await self._repair(text, a.missing, op, input_chars)
            if repaired is not None:
                again = A.audit_text(repaired, items)
                if len(again.kept) >= len(a.kept):
                    recovered = len(again.kept) - len(a.kept)
                    text, a = repaired, again
        appended: list[KeyItem] = []
        dropped: list[KeyItem] = []
        if a.missing and mode == "repair":
            text, appended, dropped = A.append_section(text, a.missing, self._section_chars())
            op.repaired = True
            for it in dropped:
                op.dropped.setdefault(it.key, it)
        op.count(level, calls=1, total=a.total, kept=len(a.kept), repaired=recovered, appended=len(appended),
                 dropped=len(dropped))
        if top:
            op.top = (level, a, appended, False)
        return Draft(text, A.carried(items, dropped) if mode == "repair" else list(items))

    async def _repair(self, draft: str, missing: list[KeyItem], op: _Op, input_chars: int) -> str | None:
        """One bounded repair call naming the missing items; None when it fails or is not a summary."""
        budget = self._section_chars() * 2
        names, used = [], 0
        for it in missing:
            if used + len(it.text) > budget:
                break
            names.append(it.text)
            used += len(it.text) + 3
        if not names:
            return None
        words = max(self._target_words(share=2), len(draft.split()) + used // 5)
        style = self.config.style
        build: Builder = lambda s: P.repair_messages(draft, names, target_words=words, shorter=s, style=style)  # noqa: E731
        if not self._fits(build):
            return None
        op.plan(1)
        op.repair_calls += 1
        try:
            text = await self._call(build, op)
        except (_Overflow, CompressionError):
            return None
        limit = max(input_chars, len(draft)) + used
        request = build(False)
        fences = fence_codes("\n".join(m["content"] for m in request))
        if reply_defect(text, instructions=P.instruction_text(request), input_chars=limit, fences=fences) is not None:
            return None
        return text

    def _fallback_chars(self) -> int:
        """Room for the extractive fallback's items: most of a summary, and never too little for a few."""
        ratio = min(self.estimator.chars_per_token(self.config.model), 3.0)
        return max(MIN_FALLBACK_CHARS, int(self.config.max_summary_tokens * ratio * 0.8))

    def _use_context(self, num_ctx: int) -> None:
        """The server refused and named a smaller context than planned: every later call fits it."""
        self.config = replace(self.config, num_ctx=num_ctx)
        self.budget = replace(self.budget, num_ctx=num_ctx)
        self.options = replace(self.options, num_ctx=num_ctx)

    # ---- pieces: one call, or split and redo ------------------------------
    def _piece_builder(self, kind: PieceKind, units: list[ChunkItem], position: str | None, words: int,
                       keep: Sequence[str] = ()) -> Builder:
        style = self.config.style
        if kind == "map":
            return lambda s: P.session_messages(units, part=position, target_words=words, shorter=s, style=style)
        if kind == "merge":
            texts = [u.text for u in units]
            return lambda s: P.merge_messages(texts, target_words=words, shorter=s, style=style, keep=keep)
        text = "".join(u.text for u in units)
        return lambda s: P.condense_messages(text, part=position, target_words=words, shorter=s, style=style,
                                             keep=keep)

    def _words_for(self, kind: PieceKind, units: list[ChunkItem]) -> int:
        chars = sum(len(u.text) for u in units)
        if kind == "condense":
            half = len("".join(u.text for u in units).split()) // 2
            return max(MIN_TARGET_WORDS, min(half, self._target_words(share=2)))
        if kind == "merge":  # a merge writes at most ~3/8 of the words it reads
            words = min(self._target_words(share=self.config.fan_in), max(MIN_INPUT_WORDS_TARGET, chars // 16))
            return max(MIN_TARGET_WORDS, words)
        return self._target_words(share=self.config.fan_in, input_chars=chars)

    def _piece_groups(self, kind: PieceKind, units: list[ChunkItem],
                      unit_items: dict[int, list[KeyItem]]) -> list[list[KeyItem]]:
        """The key items of a piece's inputs, a group each: extracted (transcript) or carried (summaries)."""
        if not self.auditing:
            return []
        if kind == "map":
            return [K.extract(u.role, u.text) for u in units]
        groups = []
        for u in units:
            its = unit_items.get(u.index, [])
            if u.label:  # a fragment of a summary: the items that are in it
                m = K.Matcher(u.text)
                its = [it for it in its if m.has(it)]
            groups.append(its)
        return groups

    async def _run_piece(
        self, kind: PieceKind, units: list[ChunkItem], position: str | None, op: _Op,
        unit_items: dict[int, list[KeyItem]] | None = None, must: Sequence[KeyItem] = (),
    ) -> list[Draft]:
        """One call if the piece fits; else split it (smaller each time) and return the parts' outputs in order."""
        unit_items = unit_items or {}
        words = self._words_for(kind, units)
        level = {"map": "chunk", "merge": "merge", "condense": "condense"}[kind]
        chars = sum(len(u.text) for u in units)
        items, dropped, untracked = self._select([list(must), *self._piece_groups(kind, units, unit_items)], words)
        keep: list[str] = []
        shown = units
        if kind != "map":  # a transcript shows its items; summaries are told which of theirs to keep
            flagged, keep = self._name_items([u.text for u in units], items)
            shown = [replace(u, text=t) for u, t in zip(units, flagged)]
            words = self._keep_words(words, [*keep, *self._keep_lines(items)])
        build = self._piece_builder(kind, shown, position, words, keep)
        if self._fits(build):
            self._record(op, level, dropped, untracked)
            try:
                return [await self._summarize(build, op, level, items, chars)]
            except _Overflow:
                pass  # learned; split below
        overhead = P.ITEM_OVERHEAD_CHARS if kind == "map" else SUMMARY_OVERHEAD_CHARS
        size = chars + overhead * len(units)
        empty = self._piece_builder(kind, [], position, 10_000, keep)
        room = self._max_data_chars(empty)
        target = room if room < size else size // 2
        if target - overhead < 1 or size < 2:
            raise CompressionError(
                f"cannot fit even {size} characters of input in num_ctx={self.config.num_ctx}: "
                "raise [llm] num_ctx or lower [workstream.compression] max_summary_tokens"
            )
        subs: list[Chunk] = resplit(units, target, item_overhead_chars=overhead)
        op.plan(len(subs))
        k = len(subs)
        jobs = []
        for j, sub in enumerate(subs, 1):
            sub_kind: PieceKind = kind
            if kind == "merge" and len(sub.items) == 1:
                sub_kind = "condense"
            sub_pos = f"{position}, piece {j} of {k}" if position else f"{j} of {k}"
            jobs.append(self._run_piece(sub_kind, sub.items, sub_pos, op, unit_items, must))
        return [d for outs in await _gather(jobs) for d in outs]

    async def _map(self, items: list[tuple[str, str]], op: _Op, *, plan_merges: bool) -> list[Draft]:
        """Chunk a transcript to fit and summarize the chunks concurrently, in order."""
        empty = self._piece_builder("map", [], "9999 of 9999", 10_000)
        max_chars = self._max_data_chars(empty)
        if max_chars <= P.ITEM_OVERHEAD_CHARS:
            raise CompressionError(
                f"num_ctx={self.config.num_ctx} leaves room for only {max_chars} characters of transcript a call: "
                "raise [llm] num_ctx or lower [workstream.compression] max_summary_tokens"
            )
        chunks = plan_chunks(items, max_chars, item_overhead_chars=P.ITEM_OVERHEAD_CHARS)
        n = len(chunks)
        op.plan(n + (planned_merge_calls(n, self.config.fan_in) if plan_merges else 0))
        jobs = [self._run_piece("map", c.items, f"{i} of {n}", op) for i, c in enumerate(chunks, 1)]
        return [d for outs in await _gather(jobs) for d in outs]

    # ---- reduce loops --------------------------------------------------
    async def _condense(self, draft: Draft, op: _Op, must: Sequence[KeyItem] = ()) -> Draft:
        """Shorten one text that is too long to combine with another; an error if the model will not shorten."""
        op.plan(1)
        outs = await self._run_piece("condense", [ChunkItem("summary", draft.text, 0)], None, op, {0: draft.items},
                                     must)
        shorter = "\n\n".join(d.text for d in outs)
        if len(shorter) >= 0.9 * len(draft.text):
            raise CompressionError(
                f"model {self.config.model!r} does not shorten summaries enough to fit "
                f"num_ctx={self.config.num_ctx}: raise num_ctx or lower max_summary_tokens"
            )
        return Draft(shorter, K.merge(d.items for d in outs))

    def _groups(self, texts: list[Draft]) -> list[list[Draft]]:
        """Consecutive groups of at most fan_in texts whose merge request fits the budget."""
        words = self._target_words(share=self.config.fan_in)
        groups: list[list[Draft]] = []
        i = 0
        while i < len(texts):
            group = [texts[i]]
            i += 1
            while i < len(texts) and len(group) < self.config.fan_in:
                candidate = [d.text for d in [*group, texts[i]]]
                if not self._fits(lambda s: P.merge_messages(candidate, target_words=words, shorter=s)):
                    break
                group = [*group, texts[i]]
                i += 1
            groups.append(group)
        return groups

    async def _merge_level(self, texts: list[Draft], op: _Op) -> list[Draft]:
        """One level of the hierarchy: merge groups of neighbours; if no two fit together, shorten each."""
        groups = self._groups(texts)
        if all(len(g) == 1 for g in groups):
            return await _gather([self._condense(t, op) for t in texts])

        async def merge(group: list[Draft]) -> list[Draft]:
            if len(group) == 1:
                return group
            units = [ChunkItem("summary", d.text, i) for i, d in enumerate(group)]
            return await self._run_piece("merge", units, None, op, {i: d.items for i, d in enumerate(group)})

        return [d for outs in await _gather([merge(g) for g in groups]) for d in outs]

    async def _reduce_to_one(self, texts: list[Draft], op: _Op, *, final: Literal["merge", "rebuild"],
                             must: Sequence[KeyItem] = ()) -> Draft:
        """Merge texts hierarchically (fan-in bounded, each call within budget) until one remains."""
        level = "session" if final == "merge" else "rebuild"
        for _ in range(MAX_ROUNDS):
            if final == "merge" and len(texts) == 1:
                return texts[0]
            if len(texts) <= self.config.fan_in:
                words = self._target_words(share=2)
                current = [d.text for d in texts]
                builder = P.merge_messages if final == "merge" else P.rebuild_messages
                style = self.config.style
                items, dropped, untracked = self._select([list(must), *[d.items for d in texts]], words)
                current, keep = self._name_items(current, items)
                words = self._keep_words(words, self._keep_lines(items))
                build: Builder = lambda s: builder(current, target_words=words, shorter=s, style=style,  # noqa: E731
                                                   keep=keep)
                if self._fits(build):
                    self._record(op, level, dropped, untracked)
                    try:
                        return await self._summarize(build, op, level, items, sum(map(len, current)), top=True)
                    except _Overflow:
                        pass
            if len(texts) == 1:
                texts = [await self._condense(texts[0], op, must)]
            else:
                texts = await self._merge_level(texts, op)
        raise CompressionError(f"hierarchical merge made no progress in {MAX_ROUNDS} rounds")

    async def _fold_loop(
        self,
        previous: Draft | None,
        texts: list[Draft],
        build_for: Callable[[str | None, list[str], int, Sequence[str]], Builder],
        op: _Op,
        level: str,
        must: Sequence[KeyItem],
    ) -> Draft:
        """previous + texts in one call; while they do not fit, merge texts (or shorten the larger side)."""
        planned = False
        for _ in range(MAX_ROUNDS):
            prev_text = previous.text if previous else None
            words = self._target_words(share=2)
            groups = [list(must), previous.items if previous else [], *[d.items for d in texts]]
            items, dropped, untracked = self._select(groups, words)
            shown, keep = self._name_items([prev_text or "", *[d.text for d in texts]], items)
            words = self._keep_words(words, self._keep_lines(items))
            build = build_for(shown[0] if previous else None, shown[1:], words, keep)
            if self._fits(build):
                self._record(op, level, dropped, untracked)
                chars = len(prev_text or "") + sum(len(d.text) for d in texts)
                try:
                    return await self._summarize(build, op, level, items, chars, top=True)
                except _Overflow:
                    continue
            if len(texts) > 1:
                if not planned:
                    op.plan(planned_merge_calls(len(texts), self.config.fan_in))
                    planned = True
                texts = await self._merge_level(texts, op)
            elif previous and len(previous.text) >= len(texts[0].text):
                previous = await self._condense(previous, op, must)
            else:
                texts = [await self._condense(texts[0], op)]
        raise CompressionError(f"fold made no progress in {MAX_ROUNDS} rounds")


def _item_cost(item: KeyItem) -> int:
    """Characters a summary needs to keep an item: its anchors (codes, paths ...) or else its words."""
    if item.anchors:
        return sum(len(a) for a in item.anchors) + 4
    return len(item.text) + 3


def _with_note(messages: list[ChatMessage], note: str | None) -> list[ChatMessage]:
    """The request with a corrective note at the end of its (last) user message."""
    if not note:
        return messages
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = f"{m['content']}\n\n{note}"
            break
    return out
