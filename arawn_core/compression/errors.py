"""The summarizer's errors: why compression could not finish, and the internal "split and redo" signal.

Separate so that callers that only need to tell the failures apart (the job
runner, the tests) import them without the summarizer's machinery, and so that
every layer of the summarizer raises and catches the same classes.
"""

from __future__ import annotations

from arawn_core.llm.errors import LLMError


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


class Overflow(Exception):
    """Internal: the request did not fit after all (the estimator has learned); split and redo."""

