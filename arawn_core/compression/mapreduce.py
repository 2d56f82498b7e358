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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Awaitable, Callable, Coroutine, Literal, Optional, Sequence, TypeVar

from arawn_core.compression import prompts as P
from arawn_core.compression.budget import TokenBudget, TokenEstimator
from arawn_core.compression.chunking import Chunk, ChunkItem, plan_chunks, resplit
from arawn_core.llm.base import ChatMessage, ChatOptions, Completion, LLMBackend
from arawn_core.llm.errors import ContextOverflow, LLMError
from arawn_core.models import Provenance

if TYPE_CHECKING:
    from arawn_core.config import Settings

T = TypeVar("T")
Progress = Callable[[int, int], Optional[Awaitable[None]]]  # sync or async callback
Builder = Callable[[bool], list[ChatMessage]]  # shorter -> messages
PieceKind = Literal["map", "merge", "condense"]

#: Rendering cost of one summary in a merge ("[summary 10 of 12]\n" + "\n\n").
SUMMARY_OVERHEAD_CHARS = 32
#: Rough chars per word of summary text (English prose with Markdown); sizes the word targets.
CHARS_PER_WORD = 6.0
#: Words asked for per reply token (a token is ~0.75 words; leave headroom for Markdown).
WORDS_PER_TOKEN = 0.6
MIN_TARGET_WORDS = 30
#: Minimum room for data in one call; below it the configuration is unusable.
MIN_DATA_TOKENS = 128
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
        )


@dataclass(frozen=True)
class SummarizerConfig:
    model: str
    num_ctx: int
    max_summary_tokens: int = 1024
    safety_margin_tokens: int = 256
    max_concurrency: int = 2
    fan_in: int = 4
    temperature: float | None = 0.2

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None) -> SummarizerConfig:
        c = settings.workstream.compression
        return cls(
            model=model or settings.compression_model,
            num_ctx=settings.llm.num_ctx,
            max_summary_tokens=c.max_summary_tokens,
            safety_margin_tokens=c.safety_margin_tokens,
            max_concurrency=c.max_concurrency,
            fan_in=c.fan_in,
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

    async def result(self, text: str, input_chars: int) -> SummaryResult:
        if self.done:
            self.total = self.done  # planned work that turned out unnecessary
            await self._emit()
        return SummaryResult(
            text=text,
            input_chars=input_chars,
            input_tokens=self.in_tokens,
            output_tokens=self.out_tokens,
            llm_calls=self.calls,
            duration_s=time.monotonic() - self.t0,
            model=self.model,
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

    # ---- public API ----------------------------------------------------
    async def summarize_session(
        self, items: Sequence[tuple[str, str]], progress: Progress | None = None
    ) -> SummaryResult:
        """Map: a session transcript [(role, text), ...] -> its summary. Empty input -> "" with no call."""
        op = _Op(progress, self.config.model)
        items = _normalise(items)
        chars = sum(len(t) for _, t in items)
        if chars == 0:
            return await op.result("", 0)
        words = self._target_words(share=2)
        whole = lambda shorter: P.session_messages(items, target_words=words, shorter=shorter)  # noqa: E731
        if self._fits(whole):
            op.plan(1)
            try:
                return await op.result(await self._call(whole, op), chars)
            except _Overflow:
                pass  # the estimator learned; plan chunks with the new ratio
        summaries = await self._map(items, op, plan_merges=True)
        text = await self._reduce_to_one(summaries, op, final="merge")
        return await op.result(text, chars)

    async def fold(
        self, previous_summary: str | None, new_summaries: Sequence[str], progress: Progress | None = None
    ) -> SummaryResult:
        """Reduce: previous workstream summary + only the new session summaries -> updated summary.

        The input is bounded by the previous summary (itself at most
        max_summary_tokens) plus the new summaries, whatever the number of
        sessions folded before. New summaries that do not fit together are
        merged hierarchically first. Nothing new -> the previous summary, no call.
        """
        op = _Op(progress, self.config.model)
        new = [s for s in new_summaries if s and s.strip()]
        input_chars = len(previous_summary or "") + sum(len(s) for s in new)
        if not new:
            return await op.result(previous_summary or "", input_chars)
        op.plan(1)

        def build(prev: str | None, texts: list[str], words: int) -> Builder:
            return lambda shorter: P.reduce_messages(prev, texts, target_words=words, shorter=shorter)

        text = await self._fold_loop(previous_summary, new, build, op)
        return await op.result(text, input_chars)

    async def rebuild(self, session_summaries: Sequence[str], progress: Progress | None = None) -> SummaryResult:
        """The workstream summary from all session summaries, hierarchically, each call within budget."""
        op = _Op(progress, self.config.model)
        texts = [s for s in session_summaries if s and s.strip()]
        input_chars = sum(len(s) for s in texts)
        if not texts:
            return await op.result("", 0)
        op.plan(max(1, planned_merge_calls(len(texts), self.config.fan_in)))
        text = await self._reduce_to_one(texts, op, final="rebuild")
        return await op.result(text, input_chars)

    async def checkpoint(
        self,
        items: Sequence[tuple[str, str]],
        previous_checkpoint: str | None,
        progress: Progress | None = None,
    ) -> SummaryResult:
        """Summary of an active session's older part: previous checkpoint + the turns since -> new checkpoint."""
        op = _Op(progress, self.config.model)
        items = _normalise(items)
        chars = sum(len(t) for _, t in items)
        input_chars = chars + len(previous_checkpoint or "")
        if chars == 0:
            return await op.result(previous_checkpoint or "", input_chars)
        words = self._target_words(share=2)
        direct = lambda shorter: P.checkpoint_messages(  # noqa: E731
            previous_checkpoint, items=items, target_words=words, shorter=shorter
        )
        op.plan(1)
        if self._fits(direct):
            try:
                return await op.result(await self._call(direct, op), input_chars)
            except _Overflow:
                pass
        summaries = await self._map(items, op, plan_merges=False)

        def build(prev: str | None, texts: list[str], words: int) -> Builder:
            return lambda shorter: P.checkpoint_messages(prev, summaries=texts, target_words=words, shorter=shorter)

        text = await self._fold_loop(previous_checkpoint, summaries, build, op)
        return await op.result(text, input_chars)

    # ---- sizing --------------------------------------------------------
    def _request_tokens(self, build: Builder) -> int:
        """Estimated tokens of the request, the longer of its normal and its "be shorter" retry form."""
        est = self.estimator.estimate_messages
        return max(est(self.config.model, build(False)), est(self.config.model, build(True)))

    def _fits(self, build: Builder) -> bool:
        return self.budget.fits(self._request_tokens(build))

    def _prompt_overhead(self) -> int:
        """Estimated tokens of the largest of our prompts without any data."""
        w = 10_000
        return max(
            self._request_tokens(lambda s: P.reduce_messages("", [], target_words=w, shorter=s)),
            self._request_tokens(lambda s: P.checkpoint_messages("", summaries=[], target_words=w, shorter=s)),
            self._request_tokens(lambda s: P.session_messages([], part="9999 of 9999", target_words=w, shorter=s)),
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

    def _target_words(self, share: int) -> int:
        """Words to ask for, so that `share` such summaries fit one call and the reply fits num_predict."""
        ratio = self.estimator.chars_per_token(self.config.model)
        by_budget = self._data_tokens() * ratio / (CHARS_PER_WORD * share)
        by_reply = self.config.max_summary_tokens * WORDS_PER_TOKEN
        return max(MIN_TARGET_WORDS, int(min(by_budget, by_reply)))

    # ---- one request ---------------------------------------------------
    async def _call(self, build: Builder, op: _Op) -> str:
        """Send one request; learn from its usage; handle overflow and truncated replies."""
        model, num_ctx = self.config.model, self.config.num_ctx
        for attempt in (0, 1):
            messages = build(attempt == 1)
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
            if not text:
                raise EmptySummary(f"model {model!r} returned an empty summary")
            return text
        raise AssertionError("unreachable")  # pragma: no cover

    def _use_context(self, num_ctx: int) -> None:
        """The server refused and named a smaller context than planned: every later call fits it."""
        self.config = replace(self.config, num_ctx=num_ctx)
        self.budget = replace(self.budget, num_ctx=num_ctx)
        self.options = replace(self.options, num_ctx=num_ctx)

    # ---- pieces: one call, or split and redo ------------------------------
    def _piece_builder(self, kind: PieceKind, units: list[ChunkItem], position: str | None, words: int) -> Builder:
        if kind == "map":
            return lambda s: P.session_messages(units, part=position, target_words=words, shorter=s)
        if kind == "merge":
            texts = [u.text for u in units]
            return lambda s: P.merge_messages(texts, target_words=words, shorter=s)
        text = "".join(u.text for u in units)
        return lambda s: P.condense_messages(text, part=position, target_words=words, shorter=s)

    def _words_for(self, kind: PieceKind, units: list[ChunkItem]) -> int:
        if kind == "condense":
            half = len("".join(u.text for u in units).split()) // 2
            return max(MIN_TARGET_WORDS, min(half, self._target_words(share=2)))
        return self._target_words(share=self.config.fan_in)

    async def _run_piece(
        self, kind: PieceKind, units: list[ChunkItem], position: str | None, op: _Op
    ) -> list[str]:
        """One call if the piece fits; else split it (smaller each time) and return the parts' outputs in order."""
        build = self._piece_builder(kind, units, position, self._words_for(kind, units))
        if self._fits(build):
            try:
                return [await self._call(build, op)]
            except _Overflow:
                pass  # learned; split below
        overhead = P.ITEM_OVERHEAD_CHARS if kind == "map" else SUMMARY_OVERHEAD_CHARS
        size = sum(len(u.text) for u in units) + overhead * len(units)
        empty = self._piece_builder(kind, [], position, 10_000)
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
            jobs.append(self._run_piece(sub_kind, sub.items, sub_pos, op))
        return [text for outs in await _gather(jobs) for text in outs]

    async def _map(self, items: list[tuple[str, str]], op: _Op, *, plan_merges: bool) -> list[str]:
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
        return [text for outs in await _gather(jobs) for text in outs]

    # ---- reduce loops --------------------------------------------------
    async def _condense(self, text: str, op: _Op) -> str:
        """Shorten one text that is too long to combine with another; an error if the model will not shorten."""
        op.plan(1)
        outs = await self._run_piece("condense", [ChunkItem("summary", text, 0)], None, op)
        shorter = "\n\n".join(outs)
        if len(shorter) >= 0.9 * len(text):
            raise CompressionError(
                f"model {self.config.model!r} does not shorten summaries enough to fit "
                f"num_ctx={self.config.num_ctx}: raise num_ctx or lower max_summary_tokens"
            )
        return shorter

    def _groups(self, texts: list[str]) -> list[list[str]]:
        """Consecutive groups of at most fan_in texts whose merge request fits the budget."""
        words = self._target_words(share=self.config.fan_in)
        groups: list[list[str]] = []
        i = 0
        while i < len(texts):
            group = [texts[i]]
            i += 1
            while i < len(texts) and len(group) < self.config.fan_in:
                candidate = [*group, texts[i]]
                if not self._fits(lambda s: P.merge_messages(candidate, target_words=words, shorter=s)):
                    break
                group = candidate
                i += 1
            groups.append(group)
        return groups

    async def _merge_level(self, texts: list[str], op: _Op) -> list[str]:
        """One level of the hierarchy: merge groups of neighbours; if no two fit together, shorten each."""
        groups = self._groups(texts)
        if all(len(g) == 1 for g in groups):
            return await _gather([self._condense(t, op) for t in texts])

        async def merge(group: list[str]) -> list[str]:
            if len(group) == 1:
                return group
            units = [ChunkItem("summary", t, i) for i, t in enumerate(group)]
            return await self._run_piece("merge", units, None, op)

        return [text for outs in await _gather([merge(g) for g in groups]) for text in outs]

    async def _reduce_to_one(self, texts: list[str], op: _Op, *, final: Literal["merge", "rebuild"]) -> str:
        """Merge texts hierarchically (fan-in bounded, each call within budget) until one remains."""
        for _ in range(MAX_ROUNDS):
            if final == "merge" and len(texts) == 1:
                return texts[0]
            if len(texts) <= self.config.fan_in:
                words = self._target_words(share=2)
                current = texts
                builder = P.merge_messages if final == "merge" else P.rebuild_messages
                build: Builder = lambda s: builder(current, target_words=words, shorter=s)  # noqa: E731
                if self._fits(build):
                    try:
                        return await self._call(build, op)
                    except _Overflow:
                        pass
            if len(texts) == 1:
                texts = [await self._condense(texts[0], op)]
            else:
                texts = await self._merge_level(texts, op)
        raise CompressionError(f"hierarchical merge made no progress in {MAX_ROUNDS} rounds")

    async def _fold_loop(
        self,
        previous: str | None,
        texts: list[str],
        build_for: Callable[[str | None, list[str], int], Builder],
        op: _Op,
    ) -> str:
        """previous + texts in one call; while they do not fit, merge texts (or shorten the larger side)."""
        planned = False
        for _ in range(MAX_ROUNDS):
            build = build_for(previous, texts, self._target_words(share=2))
            if self._fits(build):
                try:
                    return await self._call(build, op)
                except _Overflow:
                    continue
            if len(texts) > 1:
                if not planned:
                    op.plan(planned_merge_calls(len(texts), self.config.fan_in))
                    planned = True
                texts = await self._merge_level(texts, op)
            elif previous and len(previous) >= len(texts[0]):
                previous = await self._condense(previous, op)
            else:
                texts = [await self._condense(texts[0], op)]
        raise CompressionError(f"fold made no progress in {MAX_ROUNDS} rounds")
