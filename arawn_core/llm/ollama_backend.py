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
import re
from typing import Any, AsyncIterator, Iterator

import httpx
import ollama
from pydantic import ValidationError

from .base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, Usage
from .server_context import ServerContext, from_ollama_show
from .errors import (
    BackendError,
    BackendUnavailable,
    ContextOverflow,
    LLMError,
    LLMTimeout,
    ModelNotFound,
)

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


def _usage(reply: ollama.ChatResponse) -> Usage:
    return Usage(
        prompt_tokens=reply.prompt_eval_count or 0,
        completion_tokens=reply.eval_count or 0,
        done_reason=reply.done_reason,
    )


class OllamaBackend:
    """`LLMBackend` over Ollama's HTTP API.

    `timeout_s` is httpx's per-operation timeout: it bounds connecting and
    each wait for the next bytes, not the whole reply, so a slow but steady
    stream never times out while a stalled server does.
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
        with self._translated(options.model):
            stream = await self._client.chat(
                model=options.model, messages=messages, options=_request_options(options), stream=True
            )
        try:
            while True:
                with self._translated(options.model):
                    try:
                        part = await anext(stream)
                    except StopAsyncIteration:
                        break
                if part.done:
                    yield ChatChunk(text=_text(part.message.content), done=True, usage=_usage(part))
                    return
                if part.message.content:
                    yield ChatChunk(text=_text(part.message.content))
        finally:
            # Also runs when the caller stops early: releases the HTTP connection now, not at GC.
            await stream.aclose()
        raise BackendError(f"stream from {self.host} ended before its final message", transient=True)

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        """One non-streamed reply. Raises ContextOverflow if the server had to cut the input."""
        _require_model(options)
        with self._translated(options.model):
            reply = await self._client.chat(
                model=options.model, messages=messages, options=_request_options(options), stream=False
            )
        usage = _usage(reply)
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
            listing = await self._client.list()
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

    @contextlib.contextmanager
    def _translated(self, model: str) -> Iterator[None]:
        """Re-raise client and transport failures as arawn's LLMError types."""
        try:
            yield
        except LLMError:
            raise
        except Exception as exc:
            mapped = self._translate(exc, model)
            if mapped is None:
                raise
            raise mapped from exc

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
        if isinstance(exc, (json.JSONDecodeError, ValidationError)):  # a line or body cut short or garbled
            return BackendError(f"malformed reply from {self.host}: {exc}", transient=True)
        return None

    def _from_response(self, exc: ollama.ResponseError, model: str) -> LLMError:
        status = exc.status_code
        text = str(exc.error)
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


def _require_model(options: ChatOptions) -> None:
    """Fail loudly on a config bug instead of sending a request the client would reject obscurely."""
    if not options.model:
        raise ValueError("ChatOptions.model is empty")
