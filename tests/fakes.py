"""A scripted, deterministic LLM backend for tests (engine, compression, TUI, CLI).

`FakeBackend` implements `arawn_core.llm.base.LLMBackend` without a model:

* **Deterministic tokenizer.** A request costs
  ``ceil(total content chars / chars_per_token) + message_overhead_tokens *
  len(messages)`` tokens (defaults: 3.0 chars/token, 4 tokens a message).
  The defaults are *looser* than `TokenEstimator`'s defaults (2.5 chars/token
  and 8 a message), so the estimator over-counts relative to the fake, as it
  must against a real model. Pass a lower `chars_per_token` (e.g. 1.5: more
  tokens per char than the estimator assumes) to force the estimator to
  under-count, overflow, learn and re-split.
* **Context limit** = the request's `options.num_ctx`, like Ollama. Over it,
  `overflow="raise"` raises `ContextOverflow(prompt_tokens=<real count>)`;
  `overflow="truncate"` behaves like Ollama: keeps only the *last* num_ctx
  tokens of the prompt, answers from what is left, and reports
  `prompt_tokens == num_ctx`.
* **Replies** come from `reply(messages, options) -> str` (sync or async).
  The default echoes every `MARKER-\\w+` token of the input it saw (after any
  truncation), in first-seen order, after a fixed sentence; so planting
  markers in a transcript and finding them in the final summary proves no
  input was lost on the way. A reply longer than `options.num_predict`
  tokens is cut there and reported with `done_reason="length"`.
* **Recording.** `requests` holds a `FakeRequest` for every call, failed ones
  included (`error` set), in the order calls started.
* **Timing and faults.** `latency_s` before each reply (and `chunk_delay_s`
  between streamed chunks); `max_in_flight` records the most simultaneous
  calls; `fail_next(n, exc)` makes the next n calls raise; `down = True`
  raises `BackendUnavailable` at once (and `info()` reports unreachable);
  `pause()` / `resume()` hold every call until resumed; `models=[...]` makes
  unknown models raise `ModelNotFound`.

Typical use::

    backend = FakeBackend()                                  # echoes markers
    backend = FakeBackend(reply=scripted("first", "second"))  # fixed replies
    backend.fail_next(2, BackendUnavailable("fake://"))      # two transient failures
"""

from __future__ import annotations

import asyncio
import inspect
import math
import re
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Literal, Sequence, Union

from arawn_core.llm.base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, Usage
from arawn_core.llm.errors import BackendUnavailable, ContextOverflow, ModelNotFound

MARKER_RE = re.compile(r"MARKER-\w+")
FIXED_SENTENCE = "Fake summary of the given text."

ReplyFn = Callable[[list[ChatMessage], ChatOptions], Union[str, Awaitable[str]]]
ErrorSpec = Union[BaseException, type[BaseException], Callable[[], BaseException]]


def markers_in(text: str) -> list[str]:
    """Every MARKER-xxx token in `text`, first-seen order, without repeats."""
    return list(dict.fromkeys(MARKER_RE.findall(text)))


def default_reply(messages: list[ChatMessage], options: ChatOptions) -> str:
    """A fixed sentence plus every marker seen in the input, so markers propagate through summaries."""
    found = markers_in("\n".join(m.get("content", "") for m in messages))
    return " ".join([FIXED_SENTENCE, *found])


def scripted(*replies: str) -> ReplyFn:
    """Replies in the given order; after the last one, the last one again."""
    if not replies:
        raise ValueError("scripted() needs at least one reply")
    queue = list(replies)

    def reply(messages: list[ChatMessage], options: ChatOptions) -> str:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return reply


@dataclass
class FakeRequest:
    """One call as the fake saw it."""

    method: Literal["complete", "chat"]
    messages: list[ChatMessage]  # as sent (a copy), before any truncation
    options: ChatOptions
    prompt_tokens: int  # the fake tokenizer's count of the whole prompt
    reported_prompt_tokens: int = 0  # what usage.prompt_tokens said (num_ctx when truncated)
    truncated: bool = False
    reply: str | None = None  # the text returned (after any num_predict cut)
    done_reason: str | None = None
    error: BaseException | None = None

    @property
    def content(self) -> str:
        return "\n".join(m.get("content", "") for m in self.messages)

    @property
    def system(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "system")

    @property
    def user(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "user")

    @property
    def prompt_chars(self) -> int:
        return sum(len(m.get("content", "")) for m in self.messages)


class FakeBackend:
    """In-memory `LLMBackend`; see the module docstring for the behaviour."""

    kind = "fake"
    host = "fake://"

    def __init__(
        self,
        *,
        reply: ReplyFn | None = None,
        chars_per_token: float = 3.0,
        message_overhead_tokens: int = 4,
        overflow: Literal["raise", "truncate"] = "raise",
        latency_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        models: Sequence[str] | None = None,
        down: bool = False,
    ) -> None:
        if overflow not in ("raise", "truncate"):
            raise ValueError(f"overflow must be 'raise' or 'truncate', got {overflow!r}")
        self.reply: ReplyFn = reply or default_reply
        self.chars_per_token = chars_per_token
        self.message_overhead_tokens = message_overhead_tokens
        self.overflow = overflow
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.models = list(models) if models is not None else None
        self.down = down
        self.requests: list[FakeRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False
        self._failures: list[ErrorSpec] = []
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []  # futures, not an Event: no loop bound at creation

    # ---- test controls ---------------------------------------------------
    def fail_next(self, n: int, exc: ErrorSpec) -> None:
        """The next `n` calls raise `exc` (an exception, an exception class, or a factory)."""
        self._failures.extend([exc] * n)

    def pause(self) -> None:
        """Hold every call (after it is recorded and counted in flight) until `resume()`."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait_if_paused(self) -> None:
        while self.paused:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    def reset(self) -> None:
        """Forget recorded requests and the concurrency gauge (not the configuration)."""
        self.requests.clear()
        self.max_in_flight = 0

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def ok_requests(self) -> list[FakeRequest]:
        return [r for r in self.requests if r.error is None]

    # ---- tokenizer -------------------------------------------------------
    def count_text(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        chars = sum(len(m.get("content", "")) for m in messages)
        return math.ceil(chars / self.chars_per_token) + self.message_overhead_tokens * len(messages)

    def _truncate(self, messages: list[ChatMessage], num_ctx: int) -> list[ChatMessage]:
        """Ollama's silent truncation: keep the tail of the prompt that fits num_ctx tokens."""
        keep = max(0, int((num_ctx - self.message_overhead_tokens * len(messages)) * self.chars_per_token))
        kept: list[ChatMessage] = []
        for m in reversed(messages):
            content = m.get("content", "")
            if keep <= 0:
                break
            piece = content[-keep:] if len(content) > keep else content
            kept.append({**m, "content": piece})
            keep -= len(piece)
        kept.reverse()
        return kept

    # ---- the protocol ----------------------------------------------------
    async def _prepare(
        self, method: Literal["complete", "chat"], messages: list[ChatMessage], options: ChatOptions
    ) -> tuple[FakeRequest, list[ChatMessage]]:
        """Record the call; raise what the configuration says; return what the 'model' gets to see."""
        req = FakeRequest(method, [dict(m) for m in messages], options, self.count_tokens(messages))
        self.requests.append(req)
        try:
            if self.down:
                raise BackendUnavailable(self.host, "fake backend is down")
            await self._wait_if_paused()
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self._failures:
                spec = self._failures.pop(0)
                raise _make_error(spec)
            if self.models is not None and options.model not in self.models:
                raise ModelNotFound(options.model, self.host)
            seen = [dict(m) for m in messages]
            if req.prompt_tokens > options.num_ctx:
                if self.overflow == "raise":
                    raise ContextOverflow(
                        f"prompt is {req.prompt_tokens} tokens, num_ctx is {options.num_ctx}",
                        prompt_tokens=req.prompt_tokens,
                        num_ctx=options.num_ctx,
                    )
                seen = self._truncate(seen, options.num_ctx)
                req.truncated = True
                req.reported_prompt_tokens = options.num_ctx
            else:
                req.reported_prompt_tokens = req.prompt_tokens
            return req, seen
        except BaseException as exc:
            req.error = exc
            raise

    async def _generate(self, req: FakeRequest, seen: list[ChatMessage], options: ChatOptions) -> tuple[str, Usage]:
        try:
            text = self.reply(seen, options)
            if inspect.isawaitable(text):
                text = await text
        except BaseException as exc:
            req.error = exc
            raise
        text = str(text)
        done_reason = "stop"
        if options.num_predict and options.num_predict > 0 and self.count_text(text) > options.num_predict:
            text = text[: int(options.num_predict * self.chars_per_token)]
            done_reason = "length"
        req.reply = text
        req.done_reason = done_reason
        return text, Usage(req.reported_prompt_tokens, self.count_text(text), done_reason)

    def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        self.in_flight -= 1

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        self._enter()
        try:
            req, seen = await self._prepare("complete", messages, options)
            text, usage = await self._generate(req, seen, options)
            return Completion(text, usage)
        finally:
            self._leave()

    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        """Streams the reply word by word (whitespace kept, so the chunks join to the reply)."""
        self._enter()
        try:
            req, seen = await self._prepare("chat", messages, options)
            text, usage = await self._generate(req, seen, options)
            for piece in re.findall(r"^\s+|\S+\s*", text):
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                yield ChatChunk(piece)
            yield ChatChunk("", done=True, usage=usage)
        finally:
            self._leave()

    async def info(self) -> BackendInfo:
        return BackendInfo(
            kind=self.kind,
            host=self.host,
            reachable=not self.down,
            models=list(self.models) if self.models is not None else ["fake-model"],
            detail="fake backend is down" if self.down else "",
        )

    async def aclose(self) -> None:
        self.closed = True


def _make_error(spec: ErrorSpec) -> BaseException:
    if isinstance(spec, BaseException):
        return spec
    return spec()


# ---- models that lose things, and models that echo ----------------------------------
_FENCED_BODY = re.compile(r"<<<([A-Z-]+)-([0-9a-f]+)>>>\n(.*?)\n<<<END-\1-\2>>>", re.S)
_ASKED_WORDS = re.compile(r"under (\d+) words")
_FILLER = ("the work went on with further discussion of the approach and its details while the "
           "assistant explained the options and the user weighed them against the goals").split()


_BLOCK_HEAD = re.compile(r"^\[(user|assistant|system|tool_use|tool_result|agent_push)(?:, [^\]\n]*)?\]\n", re.M)
_SUMMARY_HEAD = re.compile(r"^\[summary \d+ of \d+\]\n", re.M)


def _transcript_points(body: str, plain: bool = False) -> list[str]:
    """The key items of a rendered transcript, per message with its role, ranked as the audit ranks them."""
    from arawn_core.memory import keyitems as K

    heads = list(_BLOCK_HEAD.finditer(body))
    msgs = [(h.group(1), body[h.end():(heads[i + 1].start() if i + 1 < len(heads) else len(body))])
            for i, h in enumerate(heads)] or [("user", body)]
    out = []
    for it in K.rank(K.merge(K.extract(role, text) for role, text in msgs)):
        if it.kind in K.SENTENCE_KINDS and it.anchors:  # briefly, as a model would: "remember: QKD-4821"
            label = "remember" if it.kind == "keep" else it.kind
            out.append(f"{label}: " + ", ".join(dict.fromkeys(t for _, t in K.tokens(it.text))))
        else:
            out.append(it.text)
    return out


def _bullets(summary: str) -> tuple[list[str], list[str]]:
    """(lines of its "Key items" sections, its other bullet lines), in order."""
    flagged, other = [], []
    in_section = False
    for line in summary.splitlines():
        if line.startswith("## Key items"):
            in_section = True
            continue
        if line.startswith("- "):
            (flagged if in_section else other).append(line[2:])
        elif line.strip():
            in_section = False
    return flagged, other


def _points(messages: list[ChatMessage]) -> list[str]:
    """What a careful summarizer would write, most important first.

    A transcript: its key items, ranked. Summaries: the lines of their "Key items" sections and the
    missing items a repair names first, then the bullets of each summary taken in turn (the first
    point of each, then the second of each ...), so each part's main points come first, with what
    the user asked to keep moved to the front.
    """
    from arawn_core.memory import keyitems as K

    user = "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")
    blocks = [(m.group(1), m.group(3)) for m in _FENCED_BODY.finditer(user)]
    if not blocks:  # completion style: the data is plain text
        return _transcript_points(user)
    first: list[str] = []
    parts: list[list[str]] = []
    for kind, body in blocks:
        if kind == "TRANSCRIPT":
            parts.append(_transcript_points(body))
        elif kind == "ITEMS":
            first.extend(line[2:] for line in body.splitlines() if line.startswith("- "))
        else:
            children = _SUMMARY_HEAD.split(body) if kind == "SUMMARIES" else [body]
            for child in children:
                flagged, other = _bullets(child)
                first.extend(flagged)
                parts.append(other)
    turns = []
    for i in range(max((len(p) for p in parts), default=0)):
        turns.extend(p[i] for p in parts if i < len(p))
    if blocks and blocks[0][0] != "TRANSCRIPT":  # summaries: what the user asked to keep before the rest
        best = {line: max((it.score for it in K.extract("user", line)), default=0.0) for line in turns}
        turns.sort(key=lambda line: -min(best[line], K.SCORE_KEEP))
    return [*first, *turns]


def data_of(messages: list[ChatMessage]) -> str:
    """What a summarizer is asked to summarize: the fenced blocks (chat style) or the whole user turn."""
    user = "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")
    blocks = [m.group(3) for m in _FENCED_BODY.finditer(user)]
    return "\n\n".join(blocks) if blocks else user


class LossyReply:
    """A summarizer that writes what it sees, but forgets each key item it sees with probability `drop`.

    "What it sees" is the key items of the data of the request (`arawn_core.memory.keyitems`, per
    transcript message, ranked as the audit ranks them) and every MARKER token in it. Each one it keeps
    is written as a bullet (verbatim; a keep request or decision naming codes as just those codes),
    best first, while the words the prompt asks for and the reply (num_predict) have room (markers
    always), then real words of the data fill up to `fill` x the words asked for. Seeded: the same calls give
    the same losses. `forgotten` counts the items dropped at random, `too_long` those left out for
    want of words, `seen` all of them.
    """

    def __init__(self, drop: float, seed: int = 0, fill: float = 0.7, chars_per_token: float = 3.0) -> None:
        import random

        self.chars_per_token = chars_per_token
        self.drop = drop
        self.fill = fill
        self.rng = random.Random(seed)
        self.seen = 0
        self.forgotten = 0
        self.too_long = 0  # items seen but left out for want of words (best first, like a model asked to be brief)

    def __call__(self, messages: list[ChatMessage], options: ChatOptions) -> str:
        from arawn_core.memory import keyitems as K

        data = data_of(messages)
        user = "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")
        asked = _ASKED_WORDS.findall("\n".join(_FENCED_BODY.sub("", m.get("content", "")) for m in messages))
        words = int(int(asked[-1]) * self.fill) if asked else 60
        texts: list[str] = []
        seen: set[str] = set()
        for text in _points(messages):
            if text not in seen:
                seen.add(text)
                texts.append(text)
        for marker in markers_in(data):
            if marker not in seen and not any(marker in t for t in texts):
                seen.add(marker)
                texts.append(marker)
        room = int(options.num_predict * self.chars_per_token * 0.95) if options.num_predict else 10**9
        limit = int(asked[-1]) if asked else 10**9
        kept = []
        used, used_words = 40, 6
        for text in texts:  # best first, while the words asked for (and the reply) have room
            self.seen += 1
            n = len(text.split()) + 1
            if self.rng.random() < self.drop:
                self.forgotten += 1
            elif (used + len(text) + 3 <= room and used_words + n <= limit) or MARKER_RE.fullmatch(text):
                kept.append(text)
                used += len(text) + 3
                used_words += n
            else:
                self.too_long += 1
        lines = ["Summary of the conversation so far."] + [f"- {t}" for t in kept]
        used = sum(len(line.split()) for line in lines)
        vocab = re.findall(r"\b[a-z]{2,10}\b", data) or _FILLER  # as often as in the data: real word lengths
        filler = [self.rng.choice(vocab) for _ in range(max(0, words - used))]  # real words, no loop
        if filler:
            lines.append(" ".join(filler) + ".")
        text = "\n".join(lines)
        room = min(room, max(len(data) * 4 // 5, len(text) - len(lines[-1]) if filler else len(text)))
        if len(text) > room and filler:  # and never writes more than it read  # an obedient model stops its padding at the reply limit
            text = text[:max(room, len(text) - len(lines[-1]))].rsplit(" ", 1)[0] + "."
        return text


class LossyBackend(FakeBackend):
    """`FakeBackend` answering with a seeded `LossyReply(drop)`."""

    def __init__(self, drop: float, seed: int = 0, fill: float = 0.7, **kwargs: object) -> None:
        self.lossy = LossyReply(drop, seed, fill)
        super().__init__(reply=self.lossy, **kwargs)  # type: ignore[arg-type]


def echo_prompt(messages: list[ChatMessage], options: ChatOptions) -> str:
    """What a base model given chat instructions does: it repeats them back."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    if system:
        return system[0]
    user = [m["content"] for m in messages if m.get("role") == "user"]
    return user[-1].rsplit("\n\n", 1)[-1] if user else ""


class EchoingBackend(FakeBackend):
    """`FakeBackend` whose every reply is the request's instructions, repeated back."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(reply=echo_prompt, **kwargs)  # type: ignore[arg-type]
