"""The backend protocol: what compression and chat need from a model server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable

ChatMessage = dict[str, str]  # {"role": "user"|"assistant"|"system", "content": "..."}


@dataclass
class ChatOptions:
    model: str
    num_ctx: int
    num_predict: int
    temperature: float | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0  # Ollama's prompt_eval_count
    completion_tokens: int = 0  # Ollama's eval_count
    done_reason: str | None = None  # "stop" | "length" | ...


@dataclass
class ChatChunk:
    text: str
    done: bool = False
    usage: Usage | None = None  # set on the last chunk


@dataclass
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)


@dataclass
class BackendInfo:
    """What `doctor` and the status line show."""

    kind: str  # "ollama" | "openai" | "embedded" | "fake"
    host: str  # URL, or the model file for embedded (a pool: its hosts, comma-separated)
    reachable: bool
    models: list[str] = field(default_factory=list)
    detail: str = ""
    #: A pool's hosts (`pool.HostStatus`), each up or down; empty for one host.
    hosts: list[Any] = field(default_factory=list)
    #: The context calls are planned with (`server_context.ContextPlan`), when the core has worked it out.
    context: Any = None


@runtime_checkable
class LLMBackend(Protocol):
    kind: str
    host: str

    def chat(self, messages: list[ChatMessage], options: ChatOptions) -> AsyncIterator[ChatChunk]:
        """Stream a reply. The last chunk has done=True and usage set."""
        ...

    async def complete(self, messages: list[ChatMessage], options: ChatOptions) -> Completion:
        """One non-streamed reply with its token usage."""
        ...

    async def info(self) -> BackendInfo:
        """Reachability and the models the backend serves; never raises for a down backend."""
        ...

    async def aclose(self) -> None:
        ...
