"""Pick the backend the config asks for: Ollama, the embedded model, or (auto) whichever works."""

from __future__ import annotations

from arawn_core.config import Settings
from arawn_core.llm.base import LLMBackend


async def make_backend(settings: Settings) -> LLMBackend:
    from arawn_core.llm.ollama_backend import OllamaBackend

    return OllamaBackend(settings.llm.resolved_host, settings.llm.request_timeout_s)
