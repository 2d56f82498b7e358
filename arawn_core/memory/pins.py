"""Pinned notes: text the user wants in every chat context of a workstream, verbatim.

Pins are never summarized and never cut. They go into the system message in the
order they were pinned while they fit `pin_budget_tokens`; a pin that does not fit
is left out whole, and the caller is told (the chat CLI on stderr, the TUI in the
summary panel), so nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

PIN_HEADER = ("Notes the user pinned for this workstream (their own words, kept verbatim; "
              "take them into account in every answer):")

#: Longest pin the CLI or TUI accepts; a pin is a note, not a document store.
MAX_PIN_CHARS = 20_000


@dataclass
class Pin:
    id: str
    workstream_id: str
    text: str
    created_at: str
    updated_at: str
    source_message_id: str | None = None  # pinned from this message of a transcript

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PinFit:
    """Which pins go into the context, and which do not fit the budget."""

    included: list[Pin] = field(default_factory=list)
    omitted: list[Pin] = field(default_factory=list)
    used_tokens: int = 0
    budget_tokens: int = 0

    @property
    def over_budget(self) -> bool:
        return bool(self.omitted)

    def block(self) -> str:
        """The pins as they appear in the system message ("" when there are none)."""
        return render_block(self.included)

    def warning(self) -> str:
        """One line for the user when pins are left out; "" when all fit."""
        if not self.omitted:
            return ""
        n, total = len(self.omitted), len(self.included) + len(self.omitted)
        return (f"{n} of {total} pinned note{'s' if total != 1 else ''} left out of the context: the pins need more"
                f" than pin_budget_tokens={self.budget_tokens} ([workstream] in arawn.toml); unpin or shorten some")

    def to_dict(self) -> dict[str, Any]:
        return {"included": [p.id for p in self.included], "omitted": [p.id for p in self.omitted],
                "used_tokens": self.used_tokens, "budget_tokens": self.budget_tokens,
                "over_budget": self.over_budget}


def render_block(pins: list[Pin]) -> str:
    if not pins:
        return ""
    return PIN_HEADER + "\n" + "\n\n".join(f"- {p.text}" if "\n" not in p.text else f"---\n{p.text}\n---"
                                         for p in pins)


def fit_pins(pins: list[Pin], budget_tokens: int, estimate: Callable[[str], int]) -> PinFit:
    """Whole pins, oldest first, while the rendered block stays within the budget."""
    fit = PinFit(budget_tokens=budget_tokens)
    for pin in pins:
        trial = fit.included + [pin]
        cost = estimate(render_block(trial))
        if not fit.omitted and cost <= budget_tokens:
            fit.included = trial
            fit.used_tokens = cost
        else:
            fit.omitted.append(pin)  # once one is left out, the rest are too: the order stays the user's
    return fit


def with_pins(system: str, fit: PinFit) -> str:
    """The system message with the pinned notes appended."""
    block = fit.block()
    return f"{system}\n\n{block}" if block else system


def check_pin_text(text: str) -> str:
    """The pin as stored (trailing whitespace trimmed); ValueError says what is wrong."""
    text = text.strip("\n").rstrip()
    if not text.strip():
        raise ValueError("a pinned note cannot be empty")
    if len(text) > MAX_PIN_CHARS:
        raise ValueError(f"a pinned note is at most {MAX_PIN_CHARS} characters (this one has {len(text)})")
    return text
