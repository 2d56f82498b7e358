"""A backend chosen on first use.

Most headless commands (`ws list`, `export`, `search`...) never talk to a
model; choosing a backend means importing the ollama client (and probing
Ollama in auto mode), which costs more than the command itself. This wrapper
defers that until a request, `info()` or the model name is really needed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from typing import AsyncIterator
from urllib.parse import urlsplit

from arawn_core.config import Settings
from arawn_core.llm.base import BackendInfo, ChatChunk, ChatMessage, ChatOptions, Completion, LLMBackend
from arawn_core.llm.server_context import ContextMemory, ServerContext


def _port_open(host: str, timeout_s: float = 0.2) -> bool:
    """A cheap hint that something listens at the Ollama host (no HTTP client needed)."""
    url = host if "://" in host else f"http://{host}"
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 11434), timeout=timeout_s):
            return True
    except OSError:
        return False


class LazyBackend:
    def __init__(self, settings: Settings, memory: ContextMemory | None = None) -> None:
        self.settings = settings
        #: Context sizes per host and model, shared with the backend once chosen (the core persists it).
        self.memory = memory if memory is not None else ContextMemory()
        self._backend: LLMBackend | None = None
        self._lock = asyncio.Lock()
        self._prediction: str | None = None

    async def resolve(self) -> LLMBackend:
        async with self._lock:
            if self._backend is None:
                # importing the HTTP client stack takes a noticeable moment: not on the event loop
                select = await asyncio.to_thread(importlib.import_module, "arawn_core.llm.select")
                self._backend = await select.make_backend(self.settings, memory=self.memory)
        return self._backend

    # ---- what callers read synchronously ---------------------------------
    def _predicted_kind(self) -> str:
        if self._prediction is None:
            llm = self.settings.llm
            if llm.backend != "auto":
                self._prediction = llm.backend
            elif _port_open(llm.resolved_host) or importlib.util.find_spec("llama_cpp") is None:
                self._prediction = "ollama"
            else:
                self._prediction = "embedded"
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
            from pathlib import Path

            path = self.settings.llm.model_path
            return Path(path).expanduser().stem if path else "gemma3-270m"
        return None

    # ---- the protocol ----------------------------------------------------
    async def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        backend = await self.resolve()
        async for chunk in backend.chat(messages, options):
            yield chunk

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        return await (await self.resolve()).complete(messages, options)

    async def info(self) -> BackendInfo:
        return await (await self.resolve()).info()

    async def server_context(self, model: str) -> ServerContext | None:
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

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()
