"""When a stored summary no longer matches what would be produced now."""

from __future__ import annotations

from arawn_core.compression.prompts import PROMPT_VERSION
from arawn_core.models import Summary

VERBATIM_MODEL = "verbatim"  # a short session stored as its own summary, no model involved


def stale_fields(summary_model: str, prompt_version: str, current_model: str) -> bool:
    """A summary is stale when its prompt version or model differs from today's."""
    if summary_model == VERBATIM_MODEL:
        return False
    return prompt_version != PROMPT_VERSION or summary_model != current_model


def is_stale(summary: Summary, model: str) -> bool:
    return stale_fields(summary.provenance.model, summary.provenance.prompt_version, model)
