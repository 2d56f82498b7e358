"""Which backend `[llm] backend` will be, told without choosing it (and without its imports).

A read that names the model summaries were made with (the "stale" badge in `ws list`)
needs only this: whether the backend will be the embedded model (whose name arawn shows
instead of `[llm] model`). In auto mode that is a cheap guess: something listens at the
Ollama host, or llama-cpp-python is not installed, means Ollama. `LazyBackend` makes the
same guess before it chooses; the one-shot CLI reads (`readonly.py`) ask here directly.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arawn_core.config import Settings

#: The name arawn gives the packaged model when no `model_path` names another file.
PACKAGED_MODEL = "gemma3-270m"


def port_open(host: str, timeout_s: float = 0.2) -> bool:
    """A cheap hint that something listens at the Ollama host (no HTTP client needed)."""
    import socket
    from urllib.parse import urlsplit

    url = host if "://" in host else f"http://{host}"
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 11434), timeout=timeout_s):
            return True
    except OSError:
        return False


def predicted_kind(settings: Settings) -> str:
    """"ollama", "openai" or "embedded": what the backend will be once chosen."""
    llm = settings.llm
    if llm.backend != "auto":
        return llm.backend
    if port_open(llm.resolved_host) or importlib.util.find_spec("llama_cpp") is None:
        return "ollama"
    return "embedded"


def embedded_model_name(settings: Settings) -> str:
    """The model name arawn shows for the embedded backend: the model file's stem."""
    from pathlib import Path

    path = settings.llm.model_path
    return Path(path).expanduser().stem if path else PACKAGED_MODEL
