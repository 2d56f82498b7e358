"""Reduce loops: merge summaries hierarchically, fold new ones into a previous one, condense one that is too long.

The top layer of `Summarizer`'s machinery (see `mapreduce`): groups of at most
`fan_in` neighbours are merged level by level until one remains (or until the
final merge/rebuild request fits); a fold puts a previous summary and new ones
in one call, merging or shortening whichever side keeps it from fitting.
Separate because these loops are where progress must be guaranteed (each round
shrinks the input, or `MAX_ROUNDS` stops it with an error).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

from arawn_core.compression import prompts as P
from arawn_core.compression.chunking import ChunkItem
from arawn_core.compression.errors import CompressionError, Overflow
from arawn_core.compression.operation import Operation, gather
from arawn_core.compression.pieces import PieceRunner
from arawn_core.compression.sizing import planned_merge_calls
from arawn_core.compression.values import Builder, Draft
from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem

#: Safety stop for reduce loops that make no progress (a model that will not shorten).
MAX_ROUNDS = 64


class Reducer(PieceRunner):
    """Hierarchical merge, fold and condense of one `Summarizer`."""

    async def _condense(self, draft: Draft, op: Operation, must: Sequence[KeyItem] = ()) -> Draft:
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

    async def _merge_level(self, texts: list[Draft], op: Operation) -> list[Draft]:
        """One level of the hierarchy: merge groups of neighbours; if no two fit together, shorten each."""
        groups = self._groups(texts)
        if all(len(g) == 1 for g in groups):
            return await gather([self._condense(t, op) for t in texts])

        async def merge(group: list[Draft]) -> list[Draft]:
            if len(group) == 1:
                return group
            units = [ChunkItem("summary", d.text, i) for i, d in enumerate(group)]
            return await self._run_piece("merge", units, None, op, {i: d.items for i, d in enumerate(group)})

        return [d for outs in await gather([merge(g) for g in groups]) for d in outs]

    async def _reduce_to_one(self, texts: list[Draft], op: Operation, *, final: Literal["merge", "rebuild"],
                             must: Sequence[KeyItem] = (), focus: str | None = None) -> Draft:
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
                                                   keep=keep, focus=focus)
                if self._fits(build):
                    self._record(op, level, dropped, untracked)
                    try:
                        return await self._summarize(build, op, level, items, sum(map(len, current)), top=True)
                    except Overflow:
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
        op: Operation,
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
                except Overflow:
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
