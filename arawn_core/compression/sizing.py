"""How big each request and reply may be: the summarizer's token and word arithmetic.

The base layer of `Summarizer` (see `mapreduce`): it holds the state every
layer reads (config, estimator, budget, options) and answers "does this request
fit", "how much data fits next to this prompt" and "how many words to ask
for". Separate because every other layer asks it and it asks none of them; the
constants here are the knobs a maintainer tunes when merges stop making progress.
"""

from __future__ import annotations

import math

from arawn_core.compression import prompts as P
from arawn_core.compression.budget import TokenBudget, TokenEstimator
from arawn_core.compression.errors import CompressionError
from arawn_core.compression.values import Builder, SummarizerConfig
from arawn_core.llm.base import ChatOptions

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


def planned_merge_calls(n: int, fan_in: int) -> int:
    """LLM calls a hierarchical merge of n texts takes when fan_in texts always fit one call."""
    calls = 0
    while n > 1:
        groups = math.ceil(n / fan_in)
        calls += groups - (1 if n % fan_in == 1 else 0)  # a trailing single passes through
        n = groups
    return calls


class Sizing:
    """Request and reply sizes of one `Summarizer` (its attributes are set by `Summarizer.__init__`)."""

    config: SummarizerConfig
    estimator: TokenEstimator
    budget: TokenBudget
    options: ChatOptions

    @property
    def auditing(self) -> bool:
        return self.config.audit != "off"

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
