"""Replies that are not summaries: echoes of the prompt, empty, looping, fenced, or longer than the input.

Why: a base model (or a small chat model) asked for a summary often repeats
the instructions back ("You maintain the running summary of a
workstream..."), and such a reply used to be stored, shown and fed to the
next session as its context. `defect` names what is wrong with a reply, or
returns None for a reply that may be stored.
"""

from __future__ import annotations

import re

#: Words in a row copied from the instructions that make a reply an echo.
ECHO_RUN_WORDS = 10
#: Share of a reply's word 6-grams found in the instructions that makes it an echo.
ECHO_SHARE = 0.3
#: A reply whose distinct word 8-grams are under this share of all of them loops.
LOOP_UNIQUE_SHARE = 0.45
LOOP_MIN_SHINGLES = 24
#: A line of at least this many characters repeated LOOP_LINE_REPEATS times loops.
LOOP_LINE_CHARS = 16
LOOP_LINE_REPEATS = 4
#: Slack over the input's length before a reply counts as longer than its input.
LENGTH_SLACK_CHARS = 256

_FENCE_OPEN = re.compile(r"(?m)^<<<[A-Z][A-Z-]*-([0-9a-f]{8,})>>>$")


def fence_codes(request_text: str) -> set[str]:
    """The nonce of a request's fences: the code of its first fence line (data comes only after it, and
    one request uses one nonce); look-alike markers inside the data, which a reply may quote, are not it."""
    found = _FENCE_OPEN.search(request_text)
    return {found.group(1)} if found else set()
_WORDS = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.casefold())


def _shingles(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def echoes(reply: str, instructions: str) -> bool:
    """The reply repeats the instructions: a long verbatim run, or a large share of its phrases."""
    if not instructions.strip():
        return False
    rw, iw = _words(reply), _words(instructions)
    if len(rw) < 6 or len(iw) < 6:
        return False
    inst6 = set(_shingles(iw, 6))
    mine = _shingles(rw, 6)
    if not mine:
        return False
    hits = [s in inst6 for s in mine]
    if sum(hits) >= ECHO_SHARE * len(mine):
        return True
    run = 0
    for hit in hits:  # ECHO_RUN_WORDS consecutive words = (ECHO_RUN_WORDS - 5) consecutive 6-gram hits
        run = run + 1 if hit else 0
        if run >= ECHO_RUN_WORDS - 5:
            return True
    return False


def loops(reply: str) -> bool:
    """The reply repeats itself: few distinct phrases, or one line over and over."""
    words = _words(reply)
    sh = _shingles(words, 8)
    if len(sh) >= LOOP_MIN_SHINGLES and len(set(sh)) < LOOP_UNIQUE_SHARE * len(sh):
        return True
    counts: dict[str, int] = {}
    for line in reply.splitlines():
        line = " ".join(line.split())
        if len(line) >= LOOP_LINE_CHARS:
            counts[line] = counts.get(line, 0) + 1
            if counts[line] >= LOOP_LINE_REPEATS:
                return True
    return False


def defect(reply: str, *, instructions: str, input_chars: int, fences: set[str] | frozenset[str] = frozenset()
           ) -> str | None:
    """What makes `reply` not a summary (one phrase for the user), or None.

    `fences` are the nonces of the request's fences: a reply holding one copied the prompt's framing.
    """
    text = reply.strip()
    if not text:
        return "it was empty"
    if echoes(text, instructions):
        return "it repeated the instructions instead of summarizing"
    if any(f"-{code}>>>" in text for code in fences):
        return "it contained the prompt's fence markers"
    if loops(text):
        return "it repeated itself in a loop"
    if input_chars and len(text) > input_chars + LENGTH_SLACK_CHARS:
        return f"it was longer than its input ({len(text)} > {input_chars} characters)"
    return None
