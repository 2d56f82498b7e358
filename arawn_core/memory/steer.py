"""What steers one compression run: the user's focus text and the lines to keep.

Both come from the user: the focus is an instruction (a note in the request) and the
protected lines a fenced KEEP block the reduce must carry over verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Longest focus text accepted (it goes into every call of the run).
MAX_FOCUS_CHARS = 2000


@dataclass(frozen=True)
class Steer:
    focus: str | None = None
    must_keep: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.focus) or bool(self.must_keep)

    def system_note(self, keeps: bool) -> str:
        """The note for one call; `keeps`: this call writes a workstream summary (the lines must survive)."""
        parts = []
        if self.focus:
            parts.append("The user asked this summary to focus on the following; keep everything about it, "
                         "in detail, and give the rest less room:\n" + self.focus)
        if keeps and self.must_keep:
            parts.append("The block KEEP holds lines the user wrote into the summary themselves. Copy every "
                         "one of them into your summary verbatim, character for character, under the heading "
                         "where it belongs; never drop, merge or reword them.")
        return "\n\n".join(parts)

    def keep_body(self) -> str:
        return "\n".join(self.must_keep)

    def hash_parts(self) -> tuple[str, ...]:
        """For the input hash: a steered run is a different input."""
        if not self:
            return ()
        return ("steer", self.focus or "", *self.must_keep)
