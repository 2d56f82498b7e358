"""What the summarizer takes and gives: its configuration, its result, a draft, the input hash.

Separate from the algorithm so that the job runner (which stores results and
their provenance) and every layer of the summarizer share these plain values
without importing one another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Optional

from arawn_core.compression import prompts as P
from arawn_core.llm.base import ChatMessage
from arawn_core.memory.keyitems import KeyItem
from arawn_core.models import Provenance, SummaryAudit

if TYPE_CHECKING:
    from arawn_core.config import Settings

Progress = Callable[[int, int], Optional[Awaitable[None]]]  # sync or async callback
Builder = Callable[[bool], list[ChatMessage]]  # shorter -> messages
PieceKind = Literal["map", "merge", "condense"]
AuditMode = Literal["repair", "report", "off"]


@dataclass
class SummaryResult:
    text: str
    input_chars: int
    input_tokens: int  # sum of the prompt tokens the backend reported
    output_tokens: int  # sum of the completion tokens the backend reported
    llm_calls: int  # every request sent, including ones that overflowed and were redone
    duration_s: float
    model: str = ""
    prompt_version: str = P.PROMPT_VERSION
    method: str = "model"  # "model" | "repaired" | "extractive"
    audit: SummaryAudit | None = None  # None: audit off
    items: list[KeyItem] = field(default_factory=list)  # the key items this summary answers for

    def provenance(self, input_hash: str) -> Provenance:
        return Provenance(
            model=self.model,
            prompt_version=self.prompt_version,
            input_chars=self.input_chars,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            llm_calls=self.llm_calls,
            duration_s=self.duration_s,
            input_hash=input_hash,
            method=self.method,
            audit=self.audit,
        )


@dataclass
class Draft:
    """A summary on its way up the hierarchy, with the key items it answers for."""

    text: str
    items: list[KeyItem] = field(default_factory=list)


@dataclass(frozen=True)
class SummarizerConfig:
    model: str
    num_ctx: int
    max_summary_tokens: int = 1024
    safety_margin_tokens: int = 256
    max_concurrency: int = 2
    fan_in: int = 4
    temperature: float | None = 0.2
    audit: AuditMode = "repair"
    key_items_share: float = 0.25  # of max_summary_tokens: the verbatim "Key items" section's bound
    style: P.Style = "chat"  # "completion" for a base model

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None, style: P.Style = "chat") -> SummarizerConfig:
        c = settings.workstream.compression
        return cls(
            model=model or settings.compression_model,
            num_ctx=settings.llm.num_ctx,
            max_summary_tokens=c.max_summary_tokens,
            safety_margin_tokens=c.safety_margin_tokens,
            max_concurrency=c.max_concurrency,
            fan_in=c.fan_in,
            audit=c.audit,  # type: ignore[arg-type]
            key_items_share=c.key_items_share,
            style=style,
        )


def input_hash(*parts: str | bytes | None) -> str:
    """sha256 hex of the parts, length-prefixed so ("ab", "c") != ("a", "bc") and None != "".

    Pass everything the summary depends on (model, PROMPT_VERSION, each
    role and text ...) so a change anywhere marks the summary stale.
    """
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            h.update(b"N")
            continue
        data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(b"S" + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()

