"""Which key items each summary answers for, and how a request names them.

The layer of `Summarizer` between sizing and the calls (see `mapreduce`): the
inputs' key items are merged, ranked and bounded to what a summary of the asked
size can keep; the rest are recorded as dropped. A summary of summaries is
shown its items under "Key items" headings (or listed) so a model that keeps
what it is asked needs no repair call. Separate because this is the audit's
side of every request; `memory.audit` checks the reply against what is chosen here.
"""

from __future__ import annotations

from typing import Sequence

from arawn_core.compression.operation import Operation
from arawn_core.compression.sizing import CHARS_PER_WORD, MIN_TARGET_WORDS, Sizing
from arawn_core.memory import audit as A
from arawn_core.memory import keyitems as K
from arawn_core.memory.keyitems import KeyItem


class ItemPlanning(Sizing):
    """Key-item selection for one `Summarizer`'s requests."""

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

    def _bounded(self, op: Operation, level: str, groups: Sequence[Sequence[KeyItem]], words: int) -> list[KeyItem]:
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
    def _record(op: Operation, level: str, dropped: Sequence[KeyItem], untracked: int) -> None:
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


def _item_cost(item: KeyItem) -> int:
    """Characters a summary needs to keep an item: its anchors (codes, paths ...) or else its words."""
    if item.anchors:
        return sum(len(a) for a in item.anchors) + 4
    return len(item.text) + 3

