"""A backend chosen on first use.

Most headless commands (`ws list`, `export`, `search`...) never talk to a
model; choosing a backend means importing the ollama client (and probing
Ollama in auto mode), which costs more than the command itself. This wrapper
defers that until a request, `info()` or the model name is really needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, AsyncIterator

from arawn_core.llm.base import BackendInfo
from arawn_core.llm.prediction import embedded_model_name, predicted_kind
from arawn_core.llm.server_context import ContextMemory, ServerContext

if TYPE_CHECKING:
    import asyncio

    from arawn_core.config import Settings
    from arawn_core.llm.base import ChatChunk, ChatMessage, ChatOptions, Completion, LLMBackend


class LazyBackend:
    def __init__(self, settings: Settings, memory: ContextMemory | None = None) -> None:
        self.settings = settings
        #: Context sizes per host and model, shared with the backend once chosen (the core persists it).
        self.memory = memory if memory is not None else ContextMemory()
        self._backend: LLMBackend | None = None
        self._lock: asyncio.Lock | None = None  # made on first use: predicting the kind needs no event loop
        self._light_contexts: dict[str, ServerContext] = {}  # model -> what /api/show said (light probe)
        self._prediction: str | None = None

    async def resolve(self) -> LLMBackend:
        import asyncio

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._backend is None:
                # importing the HTTP client stack takes a noticeable moment: not on the event loop
                select = await asyncio.to_thread(importlib.import_module, "arawn_core.llm.select")
                self._backend = await select.make_backend(self.settings, memory=self.memory)
        return self._backend

    # ---- what callers read synchronously ---------------------------------
    def _predicted_kind(self) -> str:
        if self._prediction is None:
            self._prediction = predicted_kind(self.settings)
        return self._prediction

    @property
    def kind(self) -> str:
        return self._backend.kind if self._backend else self._predicted_kind()

    @property
    def host(self) -> str:
        return self._backend.host if self._backend else ", ".join(self.settings.llm.all_hosts)

    @property
    def model_override(self) -> str | None:
        if self._backend is not None:
            return getattr(self._backend, "model_override", None)
        if self._predicted_kind() == "embedded":
            return embedded_model_name(self.settings)
        return None

    # ---- the protocol ----------------------------------------------------
    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        backend = await self.resolve()
        async for chunk in backend.chat(messages, options):
            yield chunk

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        return await (await self.resolve()).complete(messages, options)

    @property
    def info_is_light(self) -> bool:
        """True while `info()` is the light probe: nothing imported, a few ms of the event loop.
        (One Ollama host only: a pool reports each of its hosts, through the full backend.)"""
        return self._backend is None and self.kind == "ollama" and len(self.settings.llm.all_hosts) <= 1

    async def info(self) -> BackendInfo:
        """Before the first request, an Ollama backend is checked with the light probe (two plain
        GETs, no client import: see `probe`), so the status line and `doctor` never wait on it."""
        if self.info_is_light:
            return await self._probe_info()
        return await (await self.resolve()).info()

    async def server_context(self, model: str) -> ServerContext | None:
        if model in self._light_contexts:  # asked once a run, as the backends do: not again once resolved
            return self._light_contexts[model]
        if self.info_is_light:  # as the Ollama backend asks (/api/show), without loading its client
            if model not in self._light_contexts:
                from arawn_core.llm.probe import show_context

                found = await show_context(self.host, model)
                if found is None:
                    return None  # not said, or not reachable: asked again next time
                self._light_contexts[model] = found
            return self._light_contexts[model]
        read = getattr(await self.resolve(), "server_context", None)
        return await read(model) if read is not None else None

    @property
    def capacity(self) -> int:
        """Requests the backend serves at once (a pool: its hosts' slots), for compression's concurrency."""
        if self._backend is not None:
            return int(getattr(self._backend, "capacity", 0) or 0)
        llm = self.settings.llm
        return len(llm.all_hosts) * llm.host_slots if len(llm.all_hosts) > 1 else 0

    @property
    def resolved(self) -> LLMBackend | None:
        """The chosen backend, or None before first use (the pool's `health()` is read through it)."""
        return self._backend

    async def _probe_info(self) -> BackendInfo:
        from arawn_core.llm.probe import probe

        host = self.host
        result = await probe(host)
        reason = self._ollama_reason(result.reachable, result.version or result.detail)
        detail = "; ".join(part for part in (result.detail, reason) if part)
        return BackendInfo(kind="ollama", host=host, reachable=result.reachable, models=result.models,
                           detail=detail)

    def _ollama_reason(self, reachable: bool, why: str) -> str:
        """Why Ollama is (or will be) the backend, in `make_backend`'s words."""
        host = self.host
        if self.settings.llm.backend == "ollama":
            return 'chosen by [llm] backend = "ollama"'
        if reachable:
            return f"auto: Ollama {why} is running at {host}"
        if importlib.util.find_spec("llama_cpp") is not None:
            return f"auto: Ollama not reachable at {host} ({why})"
        from arawn_core.llm.embedded import INSTALL_HINT

        return (f"auto: Ollama not reachable at {host} ({why}) and the embedded backend is not installed: "
                f"start `ollama serve`, or run `{INSTALL_HINT}`")

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()
