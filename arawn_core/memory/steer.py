"""What steers one compression run: the user's focus text and the lines their edits protect.

The focus goes into that run's requests as a note (`prompts.FOCUS_NOTE`); the protected
lines go to the audit as `must_keep` (named in the request's ITEMS block, checked after
each call) and are restored verbatim after the reduce (`versions.restore_protected`).
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

    def hash_parts(self) -> tuple[str, ...]:
        """For the input hash: a steered run is a different input."""
        if not self:
            return ()
        return ("steer", self.focus or "", *self.must_keep)
