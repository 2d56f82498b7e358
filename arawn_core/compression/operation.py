"""One public summarizer call's record: LLM calls and tokens, progress, and the audit of every level.

Every layer of the summarizer adds to the same `Operation` (calls, tokens,
items dropped, repairs, fallbacks); it alone turns that into the
`SummaryResult` and its `SummaryAudit`, so what is counted and what is reported
live side by side. `gather` runs a level's pieces concurrently.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Coroutine, Sequence, TypeVar

from arawn_core.compression.values import AuditMode, Draft, Progress, SummaryResult
from arawn_core.memory import audit as A
from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem
from arawn_core.models import MAX_LISTED, SummaryAudit

T = TypeVar("T")


class Operation:
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


async def gather(coros: Sequence[Coroutine[object, object, T]]) -> list[T]:
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

