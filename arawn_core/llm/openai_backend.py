"""A backend for any OpenAI-compatible server (llama.cpp's llama-server, llama-cpp-python, vLLM, LM Studio, LocalAI).

Through the maintained `openai` client (it tracks the protocol: server-sent
events, usage chunks, error bodies), with its own retries off (arawn's job
queue retries with backoff) and over an HTTP client that, like the Ollama
backend's, takes no proxy from the environment and follows no redirect: the
conversation goes to `[llm] host` and nowhere else.

`host` is the base URL including `/v1`. `api_key` "" means
$OPENAI_API_KEY, and with neither no Authorization header is sent (local
servers need none).

Errors map like the Ollama backend's: refused -> `BackendUnavailable`
naming the host; an unknown model -> `ModelNotFound` listing the models the
server has; a 400 about the context -> `ContextOverflow` (with the server's
context size when the message states it, which is then remembered, see
`server_context`); 408/429/5xx and timeouts are transient.

The server's context: `server_context()` reads /v1/models (vLLM's
`max_model_len`) and /props (llama-server's `n_ctx`). A server that states
neither (llama-cpp-python) is learned from: its refusal names the size, or
a reply cut short of `max_tokens` at "length" shows where the context
ended. Until that happens for a model, compression calls to it go one at a
time, so at most one request is refused; a call planned for a larger
context than the one learned since is turned back here (`replan`), not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from typing import Any, AsyncIterator

import httpx2
import openai
from pydantic import ValidationError

from .base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, Usage
from .deadline import Deadline
from .errors import BackendError, BackendUnavailable, ContextOverflow, LLMError, LLMTimeout, ModelNotFound, translated
from .server_context import (
    ContextMemory,
    ServerContext,
    from_llamacpp_props,
    from_openai_models,
    is_context_refusal,
    parse_refusal,
)

DEFAULT_OPENAI_HOST = "http://127.0.0.1:8000/v1"
UNREACHABLE_HINT = "is the OpenAI-compatible server running there?"
_TRANSIENT_4XX = frozenset({408, 409, 429})
#: How long discovery (/v1/models, /props) may take: it must not hold up a chat.
DISCOVERY_TIMEOUT_S = 5.0
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str | None) -> str:
    """Reply text as valid Unicode (a lone surrogate escape from the server becomes U+FFFD)."""
    return _LONE_SURROGATE.sub("\ufffd", value) if value else ""


class OpenAIBackend:
    """`LLMBackend` over the OpenAI chat-completions API."""

    kind = "openai"

    def __init__(self, host: str, timeout_s: float, api_key: str = "", memory: ContextMemory | None = None,
                 selection_reason: str = "", stop: list[str] | None = None) -> None:
        self.host = host.rstrip("/")
        self.stop = list(stop or [])  # [llm] stop: a base model behind a server with no Modelfile stop
        self.timeout_s = timeout_s
        self.selection_reason = selection_reason
        self.memory = memory if memory is not None else ContextMemory()
        key = api_key or os.environ.get("OPENAI_API_KEY", "")
        # No proxies from the environment, no redirects (a 307 would re-send the conversation elsewhere).
        self._http = httpx2.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)
        # The client insists on a credential; with none, a placeholder is given and the header omitted per request.
        self._client = openai.AsyncOpenAI(api_key=key or "none", base_url=self.host, http_client=self._http,
                                          max_retries=0, timeout=timeout_s)
        self._headers: dict[str, Any] = {} if key else {"Authorization": openai.Omit()}
        self._probing: dict[str, asyncio.Lock] = {}  # model -> lock, while its context is unknown
        self._probed: set[str] = set()
        self._discovered: set[str] = set()

    # ---- the protocol ----------------------------------------------------
    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        """Stream a reply; the last chunk has done=True and the usage the server counted."""
        _require_model(options)
        deadline = Deadline(self.timeout_s, self.host)  # the whole request, stream included (deadline.py)
        stream = await deadline.within(self._create(options, messages, stream=True))
        usage = Usage()
        finished = False
        try:
            while True:
                with self._translated(options.model):
                    try:
                        chunk = await deadline.within(anext(stream))
                    except StopAsyncIteration:
                        break
                if chunk.usage is not None:
                    usage.prompt_tokens = chunk.usage.prompt_tokens or 0
                    usage.completion_tokens = chunk.usage.completion_tokens or 0
                for choice in chunk.choices or ():
                    if choice.delta is not None and choice.delta.content:
                        yield ChatChunk(text=_text(choice.delta.content))
                    if choice.finish_reason:
                        finished = True
                        usage.done_reason = choice.finish_reason
        finally:
            await stream.close()  # also when the caller stops early: the connection is released now
        if not finished:
            raise BackendError(f"stream from {self.host} ended before its final message", transient=True)
        self._learn_from_cut(options, usage)
        yield ChatChunk(text="", done=True, usage=usage)

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        """One reply. While the model's context is unknown, one such call at a time (see the module doc)."""
        _require_model(options)
        self._turn_back_if_planned_too_large(options)
        gate = self._gate(options.model)
        async with gate if gate is not None else contextlib.nullcontext():
            if gate is not None:
                self._turn_back_if_planned_too_large(options)  # learned while this call waited
            try:
                async with asyncio.timeout(self.timeout_s):
                    reply = await self._create(options, messages, stream=False)
            except TimeoutError:
                raise LLMTimeout(self.host, self.timeout_s) from None
            finally:
                self._probed.add(options.model)
        if not reply.choices:
            raise BackendError(f"reply from {self.host} has no choices", transient=True)
        choice = reply.choices[0]
        usage = Usage(
            prompt_tokens=(reply.usage.prompt_tokens or 0) if reply.usage else 0,
            completion_tokens=(reply.usage.completion_tokens or 0) if reply.usage else 0,
            done_reason=choice.finish_reason,
        )
        learned = self._learn_from_cut(options, usage)
        if learned is not None:
            raise ContextOverflow(
                f"the server at {self.host} stopped the reply after {usage.completion_tokens} of "
                f"{options.num_predict} tokens: its context is {learned.size} tokens",
                prompt_tokens=usage.prompt_tokens, num_ctx=learned.size,
            )
        content = choice.message.content if choice.message is not None else None
        return Completion(text=_text(content), usage=usage)

    async def list_models(self) -> list[str]:
        return [str(e.get("id")) for e in await self._model_entries() if e.get("id")]

    async def info(self) -> BackendInfo:
        """Reachability for `doctor` and the status line; a down server is data, not an error."""
        try:
            models = await self.list_models()
        except Exception as exc:  # noqa: BLE001 - documented to never raise
            detail = "; ".join(p for p in (str(exc), self.selection_reason) if p)
            return BackendInfo(kind=self.kind, host=self.host, reachable=False, detail=detail)
        return BackendInfo(kind=self.kind, host=self.host, reachable=True, models=models,
                           detail=self.selection_reason)

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    # ---- the server's context ----------------------------------------------
    async def server_context(self, model: str) -> ServerContext | None:
        """What the server says its context is for `model` (read once a run), else what a refusal taught."""
        if model not in self._discovered:
            try:
                async with asyncio.timeout(DISCOVERY_TIMEOUT_S):
                    found = await self._discover(model)
            except (LLMError, TimeoutError, httpx2.HTTPError, ValueError):
                found = None  # down or silent: planned with what is known; asked again next time
            else:
                self._discovered.add(model)
            if found is not None:
                self.memory.put(self.host, model, found)
        return self.memory.get(self.host, model)

    async def _discover(self, model: str) -> ServerContext | None:
        found = from_openai_models(await self._model_entries(), model)
        if found is not None:
            return found
        root = self.host[: -len("/v1")] if self.host.endswith("/v1") else self.host
        reply = await self._http.get(f"{root}/props", headers=self._auth(), timeout=DISCOVERY_TIMEOUT_S)
        if reply.status_code != 200:
            return None
        try:
            return from_llamacpp_props(reply.json())
        except ValueError:
            return None

    def _gate(self, model: str) -> asyncio.Lock | None:
        if model in self._probed or self.memory.get(self.host, model) is not None:
            return None
        return self._probing.setdefault(model, asyncio.Lock())

    def _turn_back_if_planned_too_large(self, options: ChatOptions) -> None:
        known = self.memory.get(self.host, options.model)
        if known is not None and options.num_ctx > known.size:
            raise ContextOverflow(
                f"planned for {options.num_ctx} tokens of context but the server at {self.host} has "
                f"{known.size} ({known.source}); not sent", num_ctx=known.size, replan=True,
            )

    def _learn_from_cut(self, options: ChatOptions, usage: Usage) -> ServerContext | None:
        """A reply stopped at "length" before max_tokens: the server ran out of context (llama-cpp-python
        shrinks max_tokens to what is left instead of refusing), so prompt + reply is its context size."""
        if usage.done_reason != "length" or not usage.prompt_tokens or not usage.completion_tokens:
            return None
        if usage.completion_tokens >= options.num_predict:
            return None
        size = usage.prompt_tokens + usage.completion_tokens
        known = self.memory.get(self.host, options.model)
        if known is not None and known.size <= size:
            return None
        return self.memory.learn(self.host, options.model, size)

    # ---- requests --------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        key = self._client.api_key
        return {} if self._headers else {"Authorization": f"Bearer {key}"}

    async def _create(self, options: ChatOptions, messages: list[ChatMessage], *, stream: bool) -> Any:
        kwargs: dict[str, Any] = {"model": options.model, "messages": messages, "max_tokens": options.num_predict,
                                  "extra_headers": self._headers}
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        if self.stop:
            kwargs["stop"] = self.stop
        if stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
        try:
            with self._translated(options.model):
                return await self._client.chat.completions.create(**kwargs)
        except ModelNotFound as exc:
            if exc.available is not None:
                raise
            try:
                available = await self.list_models()
            except LLMError:
                raise exc from None
            raise ModelNotFound(options.model, self.host, available) from None

    async def _model_entries(self) -> list[dict[str, Any]]:
        with self._translated(""):
            page = await self._client.models.list(extra_headers=self._headers)
        return [m.model_dump() for m in page.data]

    def _translated(self, model: str) -> contextlib.AbstractContextManager[None]:
        """Re-raise client and transport failures as arawn's LLMError types."""
        return translated(lambda exc: self._translate(exc, model))

    def _translate(self, exc: Exception, model: str) -> LLMError | None:
        if isinstance(exc, openai.APITimeoutError):
            if isinstance(exc.__cause__, httpx2.ConnectTimeout):
                return BackendUnavailable(self.host, "connect timed out", hint=UNREACHABLE_HINT)
            return LLMTimeout(self.host, self.timeout_s)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            if isinstance(cause, httpx2.ConnectError) or cause is None and "connect" in str(exc).lower():
                return BackendUnavailable(self.host, str(cause or exc) or "could not connect", hint=UNREACHABLE_HINT)
            return BackendError(f"connection to {self.host} broke: {cause or exc}", transient=True)
        if isinstance(exc, openai.APIStatusError):
            return self._from_status(exc, model)
        if isinstance(exc, httpx2.TimeoutException):
            return LLMTimeout(self.host, self.timeout_s)
        if isinstance(exc, httpx2.ConnectError):
            return BackendUnavailable(self.host, str(exc) or "could not connect", hint=UNREACHABLE_HINT)
        if isinstance(exc, httpx2.TransportError):  # the server hung up mid-stream
            return BackendError(f"connection to {self.host} broke: {exc or type(exc).__name__}", transient=True)
        if isinstance(exc, (json.JSONDecodeError, ValidationError, openai.APIResponseValidationError)):
            return BackendError(f"malformed reply from {self.host}: {exc}", transient=True)
        return None

    def _from_status(self, exc: openai.APIStatusError, model: str) -> LLMError:
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = str(inner.get("message") or exc.message or "")
        code = str(inner.get("code") or "") or None
        lowered = text.lower()
        if status == 404 and "model" in lowered and ("not exist" in lowered or "not found" in lowered):
            return ModelNotFound(model, self.host)
        if is_context_refusal(status, text, code, str(inner.get("type") or "")):
            refusal = parse_refusal(text, inner)
            num_ctx = refusal.num_ctx if refusal else None
            if num_ctx and model:
                self.memory.learn(self.host, model, num_ctx)
            return ContextOverflow(f"the server at {self.host} refused the request: {text}",
                                   prompt_tokens=refusal.prompt_tokens if refusal else None, num_ctx=num_ctx)
        if status in (401, 403):
            return BackendError(f"the server at {self.host} refused the API key (HTTP {status}): "
                                "set [llm] api_key or $OPENAI_API_KEY", status, transient=False)
        transient = status >= 500 or status in _TRANSIENT_4XX
        return BackendError(f"the server at {self.host} returned HTTP {status}: {text}", status, transient=transient)


def _require_model(options: ChatOptions) -> None:
    if not options.model:
        raise ValueError("ChatOptions.model is empty")
