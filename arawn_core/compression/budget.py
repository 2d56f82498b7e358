"""Token estimates and the per-call token budget.

Why estimates at all: we must plan every LLM call to fit the model context
*before* sending it, because Ollama silently cuts the start of an over-long
prompt. We do not ship a tokenizer per model, so we estimate tokens from
characters with a chars-per-token ratio that is deliberately low (it
over-counts tokens) and learn the real ratio per model from the
`prompt_eval_count` the backend reports after each call.

The learned ratio only ever moves in the safe direction quickly: one report
showing more tokens per char than assumed lowers the ratio at once; raising it
(fewer, larger calls) needs several consistent reports and is capped.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: Assumed chars per token before anything is learned. Real tokenizers give
#: ~3.5-4.5 for English prose and ~2.5-3 for code; 2.5 over-counts both.
DEFAULT_CHARS_PER_TOKEN = 2.5
#: Tokens a chat template adds around each message (role markers, separators).
MESSAGE_OVERHEAD_TOKENS = 8
#: Tokens the template adds to prime the reply ("<|assistant|>" and friends).
REPLY_OVERHEAD_TOKENS = 8
#: Never assume fewer chars per token than this (protects against a bogus
#: report turning every call into a one-line call).
MIN_CHARS_PER_TOKEN = 0.5
#: Never assume more chars per token than this, whatever the reports say.
#: Ollama reports only the *newly evaluated* tokens when a cached prompt
#: prefix is reused, which inflates the observed ratio; the cap bounds that.
MAX_CHARS_PER_TOKEN = 4.0
#: Learned ratio = min(recent observations) * this.
SAFETY_FACTOR = 0.9
#: Observations kept per model (the min is taken over these).
WINDOW = 32
#: Reports needed before the ratio may rise above the default.
MIN_OBSERVATIONS_TO_RAISE = 3
#: Prompts shorter than this are dominated by template tokens; not learned from.
MIN_TOKENS_TO_LEARN = 32
#: When a backend only tells us "too long" (no count), or a count is only a
#: lower bound (silent truncation), assume the truth is at least this much worse.
PENALTY_FACTOR = 0.75

STATE_VERSION = 1


class TokenEstimator:
    """Per-model conservative chars-per-token ratio, learned from backend reports.

    `estimate` over-counts on purpose: an over-count costs an extra LLM call,
    an under-count costs a truncated prompt (lost input) or a 400.
    """

    def __init__(self, default_chars_per_token: float = DEFAULT_CHARS_PER_TOKEN) -> None:
        if not MIN_CHARS_PER_TOKEN <= default_chars_per_token <= MAX_CHARS_PER_TOKEN:
            raise ValueError(
                f"default_chars_per_token must be between {MIN_CHARS_PER_TOKEN} and "
                f"{MAX_CHARS_PER_TOKEN}, got {default_chars_per_token}"
            )
        self.default_chars_per_token = float(default_chars_per_token)
        self._obs: dict[str, deque[float]] = {}

    # ---- reading ---------------------------------------------------------
    def chars_per_token(self, model: str) -> float:
        """The ratio used for `model` right now (lower = more conservative)."""
        obs = self._obs.get(model)
        if not obs:
            return self.default_chars_per_token
        ratio = min(obs) * SAFETY_FACTOR
        if len(obs) < MIN_OBSERVATIONS_TO_RAISE:
            ratio = min(ratio, self.default_chars_per_token)
        return max(MIN_CHARS_PER_TOKEN, min(MAX_CHARS_PER_TOKEN, ratio))

    def estimate(self, model: str, text: str) -> int:
        """Tokens `text` costs as one chat message: ceil(chars / ratio) + per-message overhead."""
        return math.ceil(len(text) / self.chars_per_token(model)) + MESSAGE_OVERHEAD_TOKENS

    def estimate_messages(self, model: str, messages: Iterable[Mapping[str, str]]) -> int:
        """Tokens a whole chat request costs (every message plus the reply priming)."""
        return sum(self.estimate(model, m.get("content", "")) for m in messages) + REPLY_OVERHEAD_TOKENS

    def chars_for_tokens(self, model: str, tokens: int) -> int:
        """How many characters fit in `tokens` (floor; the inverse of `estimate` without overhead)."""
        if tokens <= 0:
            return 0
        return int(tokens * self.chars_per_token(model))

    # ---- learning --------------------------------------------------------
    def observe(self, model: str, chars: int, prompt_tokens: int, *, lower_bound: bool = False) -> None:
        """Learn from a backend report: `chars` of message content cost `prompt_tokens`.

        `lower_bound=True` means the real count is at least `prompt_tokens` (the
        backend cut the prompt and reported the context size), so the real
        ratio is lower than what we see; we record a penalised value.
        """
        if chars <= 0 or prompt_tokens < MIN_TOKENS_TO_LEARN:
            return
        ratio = chars / prompt_tokens
        if lower_bound:
            ratio *= PENALTY_FACTOR
        self._add(model, ratio)

    def penalize(self, model: str, factor: float = PENALTY_FACTOR) -> None:
        """The backend said "too long" without a count: assume more tokens per char from now on."""
        self._add(model, self.chars_per_token(model) / SAFETY_FACTOR * factor)

    def _add(self, model: str, ratio: float) -> None:
        if not math.isfinite(ratio) or ratio <= 0:
            return
        ratio = max(MIN_CHARS_PER_TOKEN, min(MAX_CHARS_PER_TOKEN / SAFETY_FACTOR, ratio))
        self._obs.setdefault(model, deque(maxlen=WINDOW)).append(ratio)

    # ---- persistence -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, so learning survives restarts."""
        return {
            "version": STATE_VERSION,
            "default_chars_per_token": self.default_chars_per_token,
            "models": {m: list(obs) for m, obs in self._obs.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenEstimator:
        """Inverse of `to_dict`; malformed entries are dropped (a bad state must not block start-up)."""
        if not isinstance(data, Mapping):
            raise ValueError("token estimator state must be a JSON object")
        default = data.get("default_chars_per_token", DEFAULT_CHARS_PER_TOKEN)
        try:
            est = cls(float(default))
        except (TypeError, ValueError):
            est = cls()
        models = data.get("models") or {}
        if isinstance(models, Mapping):
            for model, obs in models.items():
                if not isinstance(model, str) or not isinstance(obs, list):
                    continue
                for value in obs[-WINDOW:]:
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        est._add(model, float(value))
        return est


@dataclass(frozen=True)
class TokenBudget:
    """What one call may spend on input: the context minus the reply, the prompt and a margin."""

    num_ctx: int
    max_summary_tokens: int
    safety_margin_tokens: int
    #: Below this much room for input the config is unusable (every call would carry a line).
    min_input_tokens: int = 32

    @property
    def max_request_tokens(self) -> int:
        """The largest (estimated) request, prompt included, that leaves room for the reply."""
        return self.num_ctx - self.max_summary_tokens - self.safety_margin_tokens

    def fits(self, request_tokens: int) -> bool:
        return request_tokens <= self.max_request_tokens

    def input_tokens_available(self, prompt_overhead_tokens: int) -> int:
        """Tokens left for the data after the reply, the fixed prompt and the margin.

        Raises ValueError (a configuration problem, not a transient one) when
        nothing useful is left.
        """
        available = self.max_request_tokens - prompt_overhead_tokens
        if available < self.min_input_tokens:
            raise ValueError(
                f"num_ctx={self.num_ctx} leaves {max(available, 0)} tokens for input after "
                f"max_summary_tokens={self.max_summary_tokens}, prompt overhead={prompt_overhead_tokens} "
                f"and safety_margin_tokens={self.safety_margin_tokens} (need at least "
                f"{self.min_input_tokens}): raise [llm] num_ctx or lower "
                f"[workstream.compression] max_summary_tokens / safety_margin_tokens"
            )
        return available
