"""When a stored summary no longer matches what would be produced now.

`PROMPT_VERSION` is defined here, with the rule that reads it, rather than in
`arawn_core.compression.prompts`: every listing marks summaries made by older
prompts or another model as stale, and listing must not import the compression
package (`ws list` runs at about Python's own start-up cost). The prompts
module re-exports it; bump it here whenever a prompt changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arawn_core.models import Summary

PROMPT_VERSION = "2026-12-04.2"  # issue 11: fixed system prompts, key items, completion style, flagged inputs
VERBATIM_MODEL = "verbatim"  # a short session stored as its own summary, no model involved


def stale_fields(summary_model: str, prompt_version: str, current_model: str) -> bool:
    """A summary is stale when its prompt version or model differs from today's."""
    if summary_model == VERBATIM_MODEL:
        return False
    return prompt_version != PROMPT_VERSION or summary_model != current_model


def is_stale(summary: Summary, model: str) -> bool:
    return stale_fields(summary.provenance.model, summary.provenance.prompt_version, model)
