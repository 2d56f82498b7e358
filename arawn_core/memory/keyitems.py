"""Key items: the must-keep facts of a message, found without a model.

Why deterministic: the audit must not trust the model it checks. Regexes
find identifiers and codes (ABC-123, INC-4F2A), CamelCase and snake_case
names, versions, numbers with units, dates, file paths, URLs, e-mail
addresses, inline code and commands; cue phrases find the user's explicit
keep requests, decisions, instructions, constraints and questions.

Why ranked and bounded: a summary has room for a few dozen items, not for
every number in a pasted log. Rank, highest first: what the user asked to
keep and the user's decisions, then identifiers in the user's prose, then
items repeated across messages, then items the assistant mentioned once, and
items inside pasted code last (only a few of those are taken at all).

Everything here is a pure function of the message text, so key items never
need storing: they are derived again from the JSONL whenever needed, and a
reindex restores whatever a stored summary's audit refers to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

#: Items kept per message (the best of them).
MAX_PER_MESSAGE = 12
#: Items taken from pasted code blocks per message.
MAX_FROM_CODE = 2
#: Longest sentence item (longer ones are cut at a word boundary).
MAX_SENTENCE_CHARS = 200
#: Longest token item (a longer "identifier" is noise, e.g. a base64 blob).
MAX_TOKEN_CHARS = 120

# ---- scores (higher first) --------------------------------------------------
SCORE_KEEP = 100.0  # "remember ...", "note that ...", "don't forget ..."
SCORE_MUST = 1000.0  # lines the caller protects (see `must_keep_items`)
SCORE_DECISION = 90.0
SCORE_INSTRUCTION = 70.0
SCORE_CONSTRAINT = 68.0
SCORE_USER_TOKEN = {"code": 65.0, "url": 62.0, "path": 62.0, "email": 62.0, "command": 60.0, "version": 58.0,
                    "date": 56.0, "quantity": 55.0, "identifier": 52.0}
SCORE_QUESTION = 45.0
SCORE_ASSISTANT = 20.0  # any token kind, mentioned once by the assistant (or another non-user role)
SCORE_CODE_BLOCK = 5.0
#: Added per extra message an item occurs in (repeated items rank above assistant-once items).
REPEAT_BONUS = 12.0
MAX_REPEAT_BONUS = 36.0
#: Repeated items other than the user's own rank up to here (under the user's identifiers, SCORE_USER_TOKEN).
TIER_REPEATED = 50.0
#: User questions kept per message (most messages of a chat are questions).
MAX_QUESTIONS = 1

SENTENCE_KINDS = frozenset({"keep", "decision", "instruction", "constraint", "question", "must"})


@dataclass
class KeyItem:
    """One must-keep item: what it says, why it ranks where it does, and how a summary shows it kept.

    `anchors` are normalised strings that must all occur in a summary for the
    item to count as kept; an item without anchors (a plain sentence) counts
    as kept when most of its content words occur.
    """

    text: str
    kind: str
    score: float
    anchors: tuple[str, ...] = ()
    count: int = 1  # messages (or summaries) it was found in
    order: int = 0  # first position seen, for stable ranking

    @property
    def key(self) -> str:
        return "a:" + "|".join(self.anchors) if self.anchors and self.kind not in SENTENCE_KINDS else (
            "s:" + normalise(self.text))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "kind": self.kind, "score": round(self.score, 1)}
        if self.anchors:
            d["anchors"] = list(self.anchors)
        if self.count != 1:
            d["count"] = self.count
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], order: int = 0) -> KeyItem:
        return cls(text=str(d.get("text", "")), kind=str(d.get("kind", "identifier")),
                   score=float(d.get("score", SCORE_ASSISTANT)), anchors=tuple(str(a) for a in d.get("anchors") or ()),
                   count=int(d.get("count", 1)), order=order)


# ---- normalisation and matching ------------------------------------------------
_NOISE = re.compile(r"[\s`*_\"'“”‘’()\[\]{}<>|]+")


def normalise(text: str) -> str:
    """Case-, whitespace- and markup-insensitive form used for matching (backticks, emphasis, quotes)."""
    return _NOISE.sub(" ", text.casefold()).strip()


_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset("""a an the and or but if then else of to in on at by for with from as is are was were be been
being it its this that these those there here we you i he she they them our your my me us do does did done
have has had not no yes can could would should will shall may might must please also just so than too very
about into over under up down out what which who whom whose when where why how all any some each more most
such own same other only new use using let lets make sure want need like get got""".split())


def content_words(text: str) -> set[str]:
    """Distinct content words (stop words and 1-2 letter words left out), each cut to 6 letters."""
    return {w[:6] for w in _WORD.findall(text.casefold()) if len(w) > 2 and w not in _STOP}


def _anchor_pattern(anchor: str) -> re.Pattern[str]:
    """A code matches with any (or no) separator between its parts: XYZ-1234 ~ xyz 1234 ~ XYZ_1234."""
    parts = [re.escape(p) for p in re.split(r"[\s\-_./:]+", anchor) if p]
    if len(parts) > 1 and all(p.isalnum() for p in parts):  # the anchor as written, or with other separators
        body = "(?:" + re.escape(anchor) + "|" + r"[\s\-_./:]{0,3}".join(parts) + ")"
    else:
        body = re.escape(anchor)
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])")


class Matcher:
    """A summary prepared once for many `has` checks."""

    def __init__(self, summary: str) -> None:
        self.norm = normalise(summary)
        self.words = content_words(summary)

    def has(self, item: KeyItem) -> bool:
        if item.anchors:
            return all(_anchor_pattern(a).search(self.norm) for a in item.anchors)
        words = content_words(item.text)
        if not words:
            return normalise(item.text) in self.norm
        return len(words & self.words) >= 0.6 * len(words)


# ---- the patterns ------------------------------------------------------------------
_UNITS = (r"ms|msec|s|sec|secs|seconds?|min|mins|minutes?|h|hrs?|hours?|days?|weeks?|months?|years?|"
          r"b|kb|mb|gb|tb|kib|mib|gib|tib|bytes?|k|m|bn|%|px|em|rem|pt|dpi|hz|khz|mhz|ghz|fps|rpm|"
          r"mm|cm|km|ft|kg|mg|lbs?|oz|ml|°c|°f|usd|eur|gbp|tokens?|words?|chars?|characters?|"
          r"users?|requests?|rps|qps|cores?|threads?")
_MONTHS = (r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
_TOKENS = re.compile(  # case-sensitive, so that ordinary words never start a match (speed); (?i:) where needed
    r"(?P<url>\b(?i:https?)://[^\s<>\"'`)\]]+)"
    r"|(?P<email>\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b)"
    r"|(?P<code>\b[A-Z][A-Z0-9]{1,9}-(?=[A-Z0-9]*\d)[A-Z0-9]{2,12}\b(?!-\w))"
    r"|(?P<date>\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"
    rf"|\b(?i:{_MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?(?:,? \d{{4}})?\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)? (?i:{_MONTHS})\.?(?: \d{{4}})?\b)"
    r"|(?P<version>\b[vV]\d+(?:\.\d+)+\b|\b\d+\.\d+\.\d+(?:[-+][\w.]+)?\b)"
    r"|(?P<path>(?<![\w/])(?:~|\.{1,2})?/(?:[\w.-]+/)*[\w.-]*\w|\b[A-Za-z]:\\[\w\\. -]+\w"
    r"|\b(?:[\w-]+/)+[\w-]+\.[A-Za-z0-9]{1,5}\b)"
    rf"|(?P<quantity>(?:[$€£]\s?\d[\d,]*(?:\.\d+)?\s?(?i:k|m|bn|million|billion)?\b)"
    rf"|\b\d[\d,]*(?:\.\d+)?\s?(?i:{_UNITS})(?![\w]))"
    r"|(?P<inline>`[^`\n]{2,80}`)"
    r"|(?P<identifier>\b[a-z]+(?:[A-Z][a-z0-9]+)+\b|\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+){1,}\b"
    r"|\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b)",
)
_COMMAND_START = re.compile(
    r"^(?:\$ )?(?:git|pip|python3?|npm|npx|yarn|pnpm|docker|kubectl|make|cargo|go|curl|wget|ssh|scp|sudo|apt(?:-get)?|"
    r"brew|ls|cd|cat|grep|sed|awk|rm|cp|mv|mkdir|chmod|chown|tar|systemctl|ollama|arawn|pytest|uv|poetry|conda|"
    r"node|java|javac|gcc|g\+\+|cmake|terraform|aws|gcloud|az|helm)\b"
)

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9`*])|\n+")
_KEEP = re.compile(r"\b(?:remember|note that|take note|make a note|don'?t forget|do not forget|keep in mind|"
                   r"for the record|write (?:this|that|it) down|keep track of|don'?t lose|do not lose)\b", re.I)
_DECISION = re.compile(r"\b(?:we|i)(?:'ve| have)? (?:decided|chose|chosen|settled|agreed)\b|\bdecided to\b|"
                       r"\blet'?s (?:go with|use|stick with|do)\b|\b(?:we|i)(?:'ll| will) (?:go with|use|stick with)\b|"
                       r"\b(?:decision|conclusion|final answer)\s*:|\bgo(?:ing)? with\b|\bwe(?:'re| are) using\b",
                       re.I)
_INSTRUCTION = re.compile(r"^(?:please\s+)?(?:always|never|make sure|ensure|use|avoid|do not|don'?t|stop|keep|"
                          r"write|add|remove|rename|change|call|prefer)\b|\b(?:you (?:must|should)|from now on|"
                          r"going forward|in future)\b", re.I)
_CONSTRAINT = re.compile(r"\b(?:must(?: not)?|mustn'?t|cannot|no more than|at most|at least|"
                         r"deadline|by (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|"
                         r"end of)|budget|required|requirement|limit(?:ed)? to|without)\b", re.I)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 1)
    return text[: cut if cut > limit // 2 else limit - 1] + "…"


def _strip_token(kind: str, raw: str) -> str:
    if kind == "inline":
        return raw.strip("`").strip()
    if kind in ("url", "path"):
        return raw.rstrip(".,;:!?")
    return raw.strip()


#: One pattern a kind, each run only on text that can hold it (a cheap test first): much faster than
#: one alternation, which tries every kind at every position. Order = precedence at one position.
_KIND_PATTERNS = [(m.group(1), re.compile(part)) for part in re.split(r"\|(?=\(\?P<)", _TOKENS.pattern)
                  for m in [re.match(r"\(\?P<(\w+)>", part)] if m]
_DIGIT = re.compile(r"\d")
_LOWER_UPPER = re.compile(r"[a-z0-9][A-Z]")
_NEEDS: dict[str, Callable[[str, bool], bool]] = {
    "url": lambda t, d: "://" in t,
    "email": lambda t, d: "@" in t,
    "code": lambda t, d: d and "-" in t,
    "date": lambda t, d: d,
    "version": lambda t, d: d and "." in t,
    "path": lambda t, d: "/" in t or "\\" in t,
    "quantity": lambda t, d: d,
    "inline": lambda t, d: "`" in t,
    # camelCase / CamelCase need a lower (or digit) then upper letter, snake_case an underscore
    "identifier": lambda t, d: "_" in t or _LOWER_UPPER.search(t) is not None,
}


def _matches(text: str) -> list[re.Match[str]]:
    """The token matches of `text`, left to right, without overlaps (like one alternation would)."""
    digit = _DIGIT.search(text) is not None
    found: list[tuple[int, int, re.Match[str]]] = []
    for rank_, (kind, pattern) in enumerate(_KIND_PATTERNS):
        if _NEEDS[kind](text, digit):
            found.extend((m.start(), rank_, m) for m in pattern.finditer(text))
    found.sort(key=lambda x: (x[0], x[1]))
    out, end = [], -1
    for start, _, m in found:
        if start >= end and m.end() > start:
            out.append(m)
            end = m.end()
    return out


def tokens(text: str) -> Iterable[tuple[str, str]]:
    """(kind, token) for each token item in `text`, in order."""
    for m in _matches(text):
        kind = m.lastgroup or "identifier"
        raw = m.group(0)
        if kind == "identifier" and text[m.start() - 1:m.start()] == "\\":
            continue  # an escaped "\nName" pasted from a string literal
        token = _strip_token(kind, raw)
        if kind == "inline":
            if not token or token.isdigit():
                continue
            kind = "command" if _COMMAND_START.match(token) or " -" in token else "identifier"
        if kind == "path" and token.count("/") < 2 and "." not in token.rsplit("/", 1)[-1]:
            continue  # "and/or", "input/output": words, not paths
        if 2 <= len(token) <= MAX_TOKEN_CHARS:
            yield kind, token


def _anchor(kind: str, token: str) -> str:
    return normalise(token)


@dataclass
class _Acc:
    items: list[KeyItem] = field(default_factory=list)
    seen: dict[str, KeyItem] = field(default_factory=dict)

    def add(self, item: KeyItem) -> None:
        old = self.seen.get(item.key)
        if old is None:
            item.order = len(self.items)
            self.items.append(item)
            self.seen[item.key] = item
        elif item.score > old.score:
            old.score = item.score


#: Content words a decision, instruction, constraint or question needs to be an item ("How are you?" is not).
MIN_SENTENCE_WORDS = 3


def _sentence_kind(sentence: str) -> tuple[str, float] | None:
    if _KEEP.search(sentence):
        return "keep", SCORE_KEEP
    if len(content_words(sentence)) < MIN_SENTENCE_WORDS:
        return None
    if _DECISION.search(sentence):
        return "decision", SCORE_DECISION
    if _INSTRUCTION.search(sentence):
        return "instruction", SCORE_INSTRUCTION
    if _CONSTRAINT.search(sentence):
        return "constraint", SCORE_CONSTRAINT
    if sentence.rstrip().endswith("?"):
        return "question", SCORE_QUESTION
    return None


def extract(role: str, text: str, *, limit: int = MAX_PER_MESSAGE) -> list[KeyItem]:
    """The ranked key items of one message (at most `limit`)."""
    if not text:
        return []
    acc = _Acc()
    user = role == "user"
    code_blocks: list[str] = []

    def cut_code(m: re.Match[str]) -> str:
        code_blocks.append(m.group(0))
        return "\n"

    prose = _FENCE.sub(cut_code, text) if "```" in text else text
    questions = 0
    for sentence in _SENTENCE_SPLIT.split(prose):
        sentence = sentence.strip(" \t-*>#")
        if len(sentence) < 3:
            continue
        found_tokens = list(tokens(sentence))
        anchors = tuple(dict.fromkeys(_anchor(k, t) for k, t in found_tokens if k != "identifier" or user))
        if user and len(sentence) >= 12:
            found = _sentence_kind(sentence)
            if found is not None:
                kind, score = found
                if kind == "question":
                    questions += 1
                if kind != "question" or questions <= MAX_QUESTIONS:
                    acc.add(KeyItem(_cut(sentence, MAX_SENTENCE_CHARS), kind, score, anchors))
                    if kind in ("keep", "decision") and anchors:
                        continue  # its identifiers are audited through the sentence
        for kind, token in found_tokens:
            score = SCORE_USER_TOKEN.get(kind, 50.0) if user else SCORE_ASSISTANT + (
                5.0 if kind in ("code", "path", "url", "command") else 0.0)
            acc.add(KeyItem(token, kind, score, (_anchor(kind, token),)))
    taken = 0
    for block in code_blocks:
        for kind, token in tokens(block):
            if taken >= MAX_FROM_CODE:
                break
            if kind in ("url", "path", "code", "command"):
                acc.add(KeyItem(token, kind, SCORE_CODE_BLOCK, (_anchor(kind, token),)))
                taken += 1
    return rank(acc.items, limit=limit)


def merge(groups: Iterable[Iterable[KeyItem]]) -> list[KeyItem]:
    """Items of many messages (or summaries) as one list: duplicates counted once, repetition rewarded."""
    acc: dict[str, KeyItem] = {}
    order = 0
    for group in groups:
        for item in group:
            old = acc.get(item.key)
            if old is None:
                acc[item.key] = KeyItem(item.text, item.kind, item.score, item.anchors, item.count, order)
                order += 1
            else:
                old.count += item.count
                old.score = max(old.score, item.score)
    return list(acc.values())


def _effective(item: KeyItem) -> float:
    """Score plus the repetition bonus, which never lifts an item into a higher tier: keep requests and
    decisions stay first, the user's identifiers above repeated items, repeated above assistant-once."""
    bonus = min(MAX_REPEAT_BONUS, REPEAT_BONUS * (item.count - 1))
    if item.score >= SCORE_MUST:
        return item.score + bonus
    if item.kind == "keep":
        return SCORE_KEEP + min(bonus, 9.0)
    if item.kind == "decision":
        return min(SCORE_DECISION + bonus, SCORE_KEEP - 1)
    if item.score > TIER_REPEATED:  # the user's own words
        return min(item.score + bonus, SCORE_DECISION - 1)
    return min(item.score + bonus, TIER_REPEATED)


def rank(items: Sequence[KeyItem], *, limit: int | None = None, max_chars: int | None = None) -> list[KeyItem]:
    """Best first (score plus a bonus for repetition; ties in the order first seen), bounded."""
    out = sorted(items, key=lambda it: (-_effective(it), it.order))
    if limit is not None:
        out = out[:limit]
    if max_chars is not None:
        kept, used = [], 0
        for it in out:
            if used + len(it.text) + 3 > max_chars:
                continue
            kept.append(it)
            used += len(it.text) + 3
        out = kept
    return out


def extract_messages(messages: Iterable[tuple[str, str]], *, limit: int | None = None) -> list[KeyItem]:
    """Key items of a whole transcript, merged and ranked."""
    return rank(merge(extract(role, text) for role, text in messages), limit=limit)


def must_keep_items(lines: Iterable[str]) -> list[KeyItem]:
    """Lines the caller protects (pinned or user-edited): audited like key items, ranked above all others."""
    out = []
    for line in lines:
        line = " ".join(str(line).split())
        if line:
            anchors = tuple(dict.fromkeys(_anchor(k, t) for k, t in tokens(line)))
            out.append(KeyItem(line, "must", SCORE_MUST, anchors))
    return out


def is_user_goal(item: KeyItem) -> bool:
    """Sentence items the extractive fallback lists as the user's goals, decisions and questions."""
    return item.kind in SENTENCE_KINDS
