"""One summary step: send a request, check the reply, audit it, repair or fall back.

The layer of `Summarizer` that talks to the backend (see `mapreduce`): every
summary at every level goes through `_summarize`, which sends one request
within the semaphore, learns from the backend's real token counts (an overflow
raises `Overflow` so the caller splits and redoes), retries a cut or
degenerate reply once, audits the text against its key items, makes one repair
call for missing items and appends the rest verbatim, or writes the extractive
fallback. Separate because this is the only place an LLM call is made.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from arawn_core.compression import prompts as P
from arawn_core.compression.errors import CompressionError, DegenerateSummary, Overflow, SummaryTruncated
from arawn_core.compression.item_plan import ItemPlanning
from arawn_core.compression.operation import Operation
from arawn_core.compression.values import Builder, Draft
from arawn_core.llm.base import ChatMessage, Completion, LLMBackend
from arawn_core.llm.errors import ContextOverflow
from arawn_core.memory import audit as A
from arawn_core.memory.degenerate import defect as reply_defect
from arawn_core.memory.degenerate import fence_codes
from arawn_core.memory.keyitems import KeyItem

#: The extractive fallback lists at least this many characters of key items, however small max_summary_tokens.
MIN_FALLBACK_CHARS = 600


class SummaryStep(ItemPlanning):
    """One checked, audited summary call of one `Summarizer` (its backend and semaphore are set in `__init__`)."""

    backend: LLMBackend
    _sem: asyncio.Semaphore

    async def _call(self, build: Builder, op: Operation, note: str | None = None) -> str:
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
                    raise Overflow(str(exc)) from exc
                op.calls += 1
                if exc.prompt_tokens and exc.prompt_tokens > num_ctx:
                    self.estimator.observe(model, chars, exc.prompt_tokens)  # a real count above the limit
                elif exc.prompt_tokens:
                    self.estimator.observe(model, chars, exc.prompt_tokens, lower_bound=True)
                else:
                    self.estimator.penalize(model)
                await op.tick()
                raise Overflow(str(exc)) from exc
            op.calls += 1
            usage = completion.usage
            op.in_tokens += usage.prompt_tokens
            op.out_tokens += usage.completion_tokens
            if usage.prompt_tokens >= num_ctx:
                # Ollama kept only the last num_ctx tokens: the start of our input was never read.
                self.estimator.observe(model, chars, usage.prompt_tokens, lower_bound=True)
                await op.tick()
                raise Overflow(f"prompt silently truncated at num_ctx={num_ctx}")
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

    async def _checked_call(self, build: Builder, op: Operation, input_chars: int) -> tuple[str, str | None]:
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
        self, build: Builder, op: Operation, level: str, items: list[KeyItem], input_chars: int, *, top: bool = False
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

    async def _repair(self, draft: str, missing: list[KeyItem], op: Operation, input_chars: int) -> str | None:
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
        except (Overflow, CompressionError):
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
