"""Pieces: one request if the input fits, else split it smaller and redo; the map over a transcript.

The layer of `Summarizer` above the single step (see `mapreduce`): a piece is
a run of transcript items (map), of summaries (merge) or one long summary
(condense). `_run_piece` sizes and builds its request, and when it does not
fit (by estimate, or by the backend's count after sending) re-splits it with
`chunking.resplit` and runs the parts concurrently. `_map` plans the chunks of
a transcript. Separate because splitting is where "never over the context
budget, never cut" is kept.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from arawn_core.compression import prompts as P
from arawn_core.compression.chunking import Chunk, ChunkItem, plan_chunks, resplit
from arawn_core.compression.errors import CompressionError, Overflow
from arawn_core.compression.operation import Operation, gather
from arawn_core.compression.sizing import MIN_INPUT_WORDS_TARGET, MIN_TARGET_WORDS, planned_merge_calls
from arawn_core.compression.step import SummaryStep
from arawn_core.compression.values import Builder, Draft, PieceKind
from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem

#: Rendering cost of one summary in a merge ("[summary 10 of 12]\n" + "\n\n").
SUMMARY_OVERHEAD_CHARS = 32


class PieceRunner(SummaryStep):
    """Split-and-redo pieces of one `Summarizer`."""

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
        self, kind: PieceKind, units: list[ChunkItem], position: str | None, op: Operation,
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
            except Overflow:
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
        return [d for outs in await gather(jobs) for d in outs]

    async def _map(self, items: list[tuple[str, str]], op: Operation, *, plan_merges: bool) -> list[Draft]:
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
        return [d for outs in await gather(jobs) for d in outs]
