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

Layout: `Summarizer` is one object (one budget, one estimator that learns, one
semaphore bounding in-flight calls), its methods split into layers, each a
base class of the next that uses only the layers below it:

  sizing.Sizing           token and word arithmetic, the shared state
  item_plan.ItemPlanning  which key items each summary answers for
  step.SummaryStep        one request: send, check, audit, repair, fall back
  pieces.PieceRunner      one piece, split and redone when it does not fit; the map
  reduce.Reducer          hierarchical merge, fold, condense
  mapreduce.Summarizer    the public calls (this module)

`values` holds the config, result and draft; `errors` the errors; `operation`
the per-call record that becomes the result's audit.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from arawn_core.compression import prompts as P
from arawn_core.compression.budget import TokenBudget, TokenEstimator
from arawn_core.compression.errors import Overflow
from arawn_core.compression.operation import Operation
from arawn_core.compression.reduce import Reducer
from arawn_core.compression.sizing import MIN_DATA_TOKENS, planned_merge_calls
from arawn_core.compression.values import Builder, Draft, Progress, SummarizerConfig, SummaryResult
from arawn_core.llm.base import ChatOptions, LLMBackend
from arawn_core.memory import audit as A
from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem
from arawn_core.memory.steer import Steer


def _normalise(items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(str(role), text or "") for role, text in items]


class Summarizer(Reducer):
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

    # ---- public API ----------------------------------------------------
    async def summarize_session(
        self, items: Sequence[tuple[str, str]], progress: Progress | None = None, *, steer: Steer | None = None
    ) -> SummaryResult:
        """Map: a session transcript [(role, text), ...] -> its summary. Empty input -> "" with no call."""
        op = Operation(progress, self.config.model)
        items = _normalise(items)
        chars = sum(len(t) for _, t in items)
        if chars == 0:
            return await op.result("", 0, self.config.audit)
        words = self._target_words(share=2, input_chars=chars)
        style = self.config.style
        focus = steer.focus if steer else None
        whole = lambda shorter: P.session_messages(items, target_words=words, shorter=shorter, style=style,  # noqa: E731
                                                   focus=focus)
        if self._fits(whole):
            op.plan(1)
            keys = self._bounded(op, "session", [self._items_of_messages(items)], words)
            try:
                draft = await self._summarize(whole, op, "session", keys, chars, top=True)
                return await op.result(draft, chars, self.config.audit)
            except Overflow:
                pass  # the estimator learned; plan chunks with the new ratio
        drafts = await self._map(items, op, plan_merges=True)
        draft = await self._reduce_to_one(drafts, op, final="merge", focus=focus)
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
        steer: Steer | None = None,
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
        op = Operation(progress, self.config.model)
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
                                                     keep=keep, focus=steer.focus if steer else None)

        draft = await self._fold_loop(prev, new, build, op, "reduce", must)
        return await op.result(draft, input_chars, self.config.audit)

    async def rebuild(
        self,
        session_summaries: Sequence[str],
        progress: Progress | None = None,
        *,
        items: Sequence[Sequence[KeyItem] | None] | None = None,
        must_keep: Sequence[str] = (),
        steer: Steer | None = None,
    ) -> SummaryResult:
        """The workstream summary from all session summaries, hierarchically, each call within budget."""
        op = Operation(progress, self.config.model)
        pairs = [(s, (items[i] if items and i < len(items) else None)) for i, s in enumerate(session_summaries)]
        pairs = [(s, its) for s, its in pairs if s and s.strip()]
        input_chars = sum(len(s) for s, _ in pairs)
        if not pairs:
            return await op.result("", 0, self.config.audit)
        op.plan(max(1, planned_merge_calls(len(pairs), self.config.fan_in)))
        drafts = [Draft(s, self._items_of_text(s, its)) for s, its in pairs]
        draft = await self._reduce_to_one(drafts, op, final="rebuild", must=K.must_keep_items(must_keep),
                                          focus=steer.focus if steer else None)
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
        op = Operation(progress, self.config.model)
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
            except Overflow:
                pass
        drafts = await self._map(items, op, plan_merges=False)

        def build(prev: str | None, texts: list[str], words: int, keep: Sequence[str]) -> Builder:
            return lambda shorter: P.checkpoint_messages(prev, summaries=texts, target_words=words, shorter=shorter,
                                                         style=style, keep=keep)

        prev = Draft(previous_checkpoint, prev_items) if previous_checkpoint else None
        draft = await self._fold_loop(prev, drafts, build, op, "checkpoint", [])
        return await op.result(draft, input_chars, self.config.audit)
