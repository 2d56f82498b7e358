"""The production backend: an Ollama server through `ollama.AsyncClient`.

Why a wrapper at all: the ollama client reports failures in four unrelated
shapes (builtin `ConnectionError` for a refused plain request, raw `httpx`
errors for a refused or broken stream and for every timeout, `ResponseError`
for HTTP errors, `json`/pydantic errors for a garbled reply). The rest of
arawn only knows the few types in `errors.py`, each carrying what the user
needs to act, so every translation happens here, in one place.

Silent truncation: by default Ollama does not reject a prompt longer than
`num_ctx`; it keeps the newest `num_ctx` tokens and says nothing. The only
evidence is `prompt_eval_count` reaching `num_ctx`. `complete()` (compression
and other one-shot work, where a silently cut input means a lossy result)
raises `ContextOverflow` in that case. `chat()` cannot un-show text it has
already streamed, so it only reports the count in the final chunk's usage;
callers check `context_filled(usage, num_ctx)` and decide (warn, compress).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from typing import Any, AsyncIterator

import httpx
from pydantic import ValidationError

from arawn_core.config import DEFAULT_HOST, host_problem

from .base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, Usage
from .deadline import Deadline
from .server_context import ServerContext, from_ollama_show
from .errors import (
    BackendError,
    BackendUnavailable,
    ContextOverflow,
    LLMError,
    LLMTimeout,
    ModelNotFound,
    translated,
)

log = logging.getLogger(__name__)


def _import_ollama() -> Any:
    """`import ollama`, even when $OLLAMA_HOST is malformed.

    The package builds a default client from $OLLAMA_HOST at import time and raises a bare
    ValueError on a bad one. arawn never uses that client (it passes the host it validated),
    so the variable is swapped for the default just for the import, then put back.
    """
    value = os.environ.get("OLLAMA_HOST")
    if value is None or host_problem(value) is None:
        import ollama

        return ollama
    os.environ["OLLAMA_HOST"] = DEFAULT_HOST
    try:
        import ollama
    finally:
        os.environ["OLLAMA_HOST"] = value
    return ollama


ollama = _import_ollama()

#: httpx mounts that override every proxy httpx would take from the environment (None: connect directly).
NO_ENV_PROXIES: dict[str, None] = {"all://": None, "http://": None, "https://": None}
# Words Ollama (and llama.cpp behind it) use in a 400 about an over-long input.
_CONTEXT_WORDS = ("context", "length", "exceed", "truncat")
# 4xx statuses that mean "try again later" rather than "your request is wrong".
_TRANSIENT_4XX = frozenset({408, 429})


def context_filled(usage: Usage, num_ctx: int) -> bool:
    """True when the server evaluated a full context, i.e. it probably cut the input."""
    return num_ctx > 0 and usage.prompt_tokens >= num_ctx


def _request_options(options: ChatOptions) -> dict[str, Any]:
    """Always send num_ctx and num_predict: Ollama's defaults (2048, unbounded) are never what we want."""
    opts: dict[str, Any] = {"num_ctx": options.num_ctx, "num_predict": options.num_predict}
    if options.temperature is not None:
        opts["temperature"] = options.temperature
    return opts


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str | None) -> str:
    """Reply text as valid Unicode: a server can send a JSON escape like \\ud800 without its pair,
    which Python decodes to a lone surrogate that no UTF-8 file, terminal or SQLite accepts."""
    if not value:
        return ""
    return _LONE_SURROGATE.sub("\ufffd", value)


def _usage(reply: Any, options: ChatOptions, host: str) -> Usage:
    """The reply's token counts, or 0 ("not reported") for counts no server could have produced.

    A prompt count above num_ctx (the server cuts the prompt to num_ctx) or below zero is not
    a measurement: learning from it would mis-size every later call, and reporting it as a
    filled context would blame the user's num_ctx for the server's bug.
    """
    prompt = reply.prompt_eval_count or 0
    completion = reply.eval_count or 0
    limit = max(options.num_predict, options.num_ctx)
    if not 0 <= prompt <= options.num_ctx or not 0 <= completion <= limit:
        log.info("ignoring absurd token counts from %s: prompt_eval_count=%r eval_count=%r (num_ctx %d)",
                    host, reply.prompt_eval_count, reply.eval_count, options.num_ctx)
        prompt = prompt if 0 <= prompt <= options.num_ctx else 0
        completion = completion if 0 <= completion <= limit else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, done_reason=reply.done_reason)


def _flat(text: str, limit: int = 500) -> str:
    """A server's words on one line (they end up in error lines and the jobs table)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _malformed(exc: ValidationError, host: str) -> LLMError:
    """A reply that does not parse as Ollama's: the server's own `error` if it sent one, else which fields."""
    problems = []
    for err in exc.errors()[:3]:
        given = err.get("input")
        if isinstance(given, dict) and given.get("error"):
            return BackendError(f"Ollama at {host} answered with an error: {_flat(given['error'])}", transient=True)
        where = ".".join(str(part) for part in err.get("loc", ())) or "reply"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return BackendError(f"malformed reply from {host}: {_flat('; '.join(problems))}", transient=True)


class OllamaBackend:
    """`LLMBackend` over Ollama's HTTP API.

    `timeout_s` bounds each whole request, streamed reply included (see
    `deadline.py`): a server that sends a token a second, or a body a byte a
    second, is cut off at it and the request fails as `LLMTimeout`.
    """

    kind = "ollama"

    def __init__(self, host: str, timeout_s: float) -> None:
        self.host = host
        self.timeout_s = timeout_s
        # The conversation goes to `host` and nowhere else: no HTTP(S)_PROXY / ALL_PROXY from the
        # environment (they would receive every prompt), no redirects (a 307 would re-send the body).
        self._client = ollama.AsyncClient(host=host, timeout=timeout_s, follow_redirects=False,
                                          mounts=NO_ENV_PROXIES)
        self._server_contexts: dict[str, ServerContext | None] = {}  # model -> what /api/show said, this run

    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        """Stream a reply; the last chunk has done=True and usage (see `context_filled`)."""
        _require_model(options)
        deadline = Deadline(self.timeout_s, self.host)
        with self._translated(options.model):
            stream = await deadline.within(self._client.chat(
                model=options.model, messages=messages, options=_request_options(options), stream=True
            ))
        try:
            while True:
                with self._translated(options.model):
                    try:
                        part = await deadline.within(anext(stream))
                    except StopAsyncIteration:
                        break
                content = _text(part.message.content if part.message else "")
                if part.done:
                    yield ChatChunk(text=content, done=True, usage=_usage(part, options, self.host))
                    return
                if content:
                    yield ChatChunk(text=content)
        finally:
            # Also runs when the caller stops early: releases the HTTP connection now, not at GC.
            await stream.aclose()
        raise BackendError(f"stream from {self.host} ended before its final message", transient=True)

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        """One non-streamed reply. Raises ContextOverflow if the server had to cut the input."""
        _require_model(options)
        deadline = Deadline(self.timeout_s, self.host)
        with self._translated(options.model):
            reply = await deadline.within(self._client.chat(
                model=options.model, messages=messages, options=_request_options(options), stream=False
            ))
        if not reply.done:  # a reply that says it is unfinished is never passed on as a whole one
            raise BackendError(f"Ollama at {self.host} sent an unfinished reply (done: false) to a"
                               " non-streamed request", transient=True)
        usage = _usage(reply, options, self.host)
        if context_filled(usage, options.num_ctx):
            raise ContextOverflow(
                f"the prompt filled all {options.num_ctx} tokens of context, so the server dropped its oldest part",
                prompt_tokens=usage.prompt_tokens,
                num_ctx=options.num_ctx,
            )
        return Completion(text=_text(reply.message.content), usage=usage)

    async def list_models(self) -> list[str]:
        """Names of the models the server has (api/tags), e.g. "llama3.2:latest"."""
        with self._translated(""):
            listing = await Deadline(self.timeout_s, self.host).within(self._client.list())
        return [m.model for m in listing.models if m.model]

    async def server_context(self, model: str) -> ServerContext | None:
        """The context the server runs `model` with (/api/show: the Modelfile's num_ctx, else the trained
        context_length); asked once a run, None when the server does not say or cannot be asked."""
        if model in self._server_contexts:
            return self._server_contexts[model]
        try:
            with self._translated(model):
                shown = await self._client.show(model)
        except LLMError:
            return None  # down, or no such model: planned with the configured size, asked again next time
        found = from_ollama_show(shown.modelinfo, shown.parameters)
        self._server_contexts[model] = found
        return found

    async def info(self) -> BackendInfo:
        """Reachability for `doctor` and the status line; a down server is data, not an error."""
        try:
            models = await self.list_models()
        except Exception as exc:  # noqa: BLE001 - documented to never raise
            return BackendInfo(kind=self.kind, host=self.host, reachable=False, detail=str(exc))
        return BackendInfo(kind=self.kind, host=self.host, reachable=True, models=models)

    async def aclose(self) -> None:
        await self._client.close()

    def _translated(self, model: str) -> contextlib.AbstractContextManager[None]:
        """Re-raise client and transport failures as arawn's LLMError types."""
        return translated(lambda exc: self._translate(exc, model))

    def _translate(self, exc: Exception, model: str) -> LLMError | None:
        if isinstance(exc, ollama.ResponseError):
            return self._from_response(exc, model)
        if isinstance(exc, httpx.ConnectTimeout):
            # Nothing answered at all: the user's fix is the same as for a refused connection.
            return BackendUnavailable(self.host, "connect timed out")
        if isinstance(exc, httpx.TimeoutException):
            return LLMTimeout(self.host, self.timeout_s)
        if isinstance(exc, httpx.ConnectError):  # refused streaming call: the client lets it through raw
            return BackendUnavailable(self.host, str(exc) or "could not connect")
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return BackendError(f"connection to {self.host} was reset: {exc}", transient=True)
        if isinstance(exc, ConnectionError):  # the client's rewrap of a refused plain call
            cause = exc.__context__  # the httpx.ConnectError it suppressed with `from None`
            return BackendUnavailable(self.host, str(cause) if cause else "could not connect")
        if isinstance(exc, httpx.TransportError):  # server hung up mid-reply, read error, ...
            return BackendError(f"connection to {self.host} broke: {exc or type(exc).__name__}", transient=True)
        if isinstance(exc, httpx.RequestError):  # a body that cannot be decoded (bad gzip, bad charset), ...
            return BackendError(f"malformed reply from {self.host}: {_flat(str(exc)) or type(exc).__name__}",
                                transient=True)
        if isinstance(exc, RecursionError):  # a reply nested past what json can decode ([[[[...)
            return BackendError(f"malformed reply from {self.host}: JSON nested too deeply", transient=True)
        if isinstance(exc, ValidationError):  # JSON, but not Ollama's shape (maybe a 200 with an error)
            return _malformed(exc, self.host)
        if isinstance(exc, (AttributeError, TypeError)) and _from_the_client(exc):
            # JSON, but not an object ([1], "text", 5): the client trips over it while reading it
            return BackendError(f"malformed reply from {self.host}: a reply that is not a JSON object", transient=True)
        if isinstance(exc, json.JSONDecodeError):  # a line or body cut short or garbled
            return BackendError(f"malformed reply from {self.host}: {_flat(str(exc))}", transient=True)
        return None

    def _from_response(self, exc: ollama.ResponseError, model: str) -> LLMError:
        status = exc.status_code
        text = _flat(exc.error)
        lowered = text.lower()
        # A plain 404 ("404 page not found") means a wrong URL, not a missing model.
        if status == 404 and "model" in lowered and "not found" in lowered:
            return ModelNotFound(model, self.host)
        # status -1: an {"error": ...} line inside a stream that had started fine.
        if status in (400, -1) and any(word in lowered for word in _CONTEXT_WORDS):
            return ContextOverflow(text)
        if status == -1:
            return BackendError(f"Ollama at {self.host} failed mid-reply: {text}", transient=True)
        transient = status >= 500 or status in _TRANSIENT_4XX
        return BackendError(f"Ollama at {self.host} returned HTTP {status}: {text}", status, transient=transient)


def _from_the_client(exc: BaseException) -> bool:
    """The error was raised inside the ollama package (reading a reply), not in arawn's own code."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and "ollama" in last.tb_frame.f_code.co_filename.replace("\\", "/").split("/")[-2:-1]


def _require_model(options: ChatOptions) -> None:
    """Fail loudly on a config bug instead of sending a request the client would reject obscurely."""
    if not options.model or not options.model.strip():
        raise LLMError("no model name: set [llm] model in arawn.toml (e.g. model = \"llama3.2\")")
