"""The model server's real context size: read it, learn it from a refusal, remember it, plan with it.

Why: `[llm] num_ctx` is what the user asked for, not what the server runs.
A llama.cpp server started with `--n_ctx 2048` refuses (or an Ollama
Modelfile with `PARAMETER num_ctx 4096` quietly cuts) anything planned for
8192. So every call is planned with min(configured, server's), and
`num_ctx = 0` means "whatever the server has".

Where each server says it (facts from their docs and source):

* Ollama `POST /api/show`: `model_info["<arch>.context_length"]` (the trained
  context, a cap) and `parameters` (Modelfile lines such as ``num_ctx 4096``,
  what the server runs when a request names none).
* vLLM `GET /v1/models`: `max_model_len` on each model.
* llama.cpp's `llama-server` `GET /props`: `default_generation_settings.n_ctx`
  (older builds: top-level `n_ctx`).
* llama-cpp-python's server says nothing until refused: a 400
  ``context_length_exceeded`` "This model's maximum context length is 2048
  tokens. However, you requested 2300 tokens (2200 in the messages, 100 in
  the completion)..." (vLLM words it the same way); llama-server's 400
  carries `n_ctx` and `n_prompt_tokens`.

`ContextMemory` holds what was read or learned per (host, model); the core
keeps it in the data dir's kv table so a size learned from a refusal is not
paid for again after a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

#: The context assumed when `num_ctx = 0` and the server has not said (Ollama's old default).
FALLBACK_NUM_CTX = 2048
#: The source recorded for a size learned from a refused request (kept across restarts).
LEARNED = "learned from a refused request"
STATE_VERSION = 1

_MAX_CONTEXT = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_REQUESTED = re.compile(r"\((\d+) in the messages", re.IGNORECASE)
_PROMPT_WORDS = re.compile(r"(\d+) in (?:the messages|your prompt)", re.IGNORECASE)


@dataclass(frozen=True)
class ServerContext:
    """A context size a server stated (or revealed by refusing), and where it came from."""

    size: int
    source: str  # "api/show context_length", "api/show num_ctx", "v1/models max_model_len", "props n_ctx", LEARNED


@dataclass(frozen=True)
class ContextPlan:
    """What one call is planned with: both numbers and which one won (doctor and the status line show it)."""

    configured: int  # [llm] num_ctx; 0 = the server's
    server: int | None  # None: the server has not said (yet)
    source: str = ""  # where `server` came from

    @property
    def used(self) -> int:
        if self.configured <= 0:
            return self.server or FALLBACK_NUM_CTX
        if self.server:
            return min(self.configured, self.server)
        return self.configured

    @property
    def which(self) -> str:
        """"configured", "server" or "fallback": the number `used` is."""
        if self.configured <= 0:
            return "server" if self.server else "fallback"
        return "server" if self.server and self.server < self.configured else "configured"

    def describe(self) -> str:
        """One line: "context 2048 (server's: 2048 learned from a refused request; configured 8192)"."""
        server = f"server's {self.server} ({self.source})" if self.server else "server's unknown"
        configured = "configured 0 (= the server's)" if self.configured <= 0 else f"configured {self.configured}"
        return f"using {self.used} ({self.which}); {configured}; {server}"

    def to_dict(self) -> dict[str, Any]:
        return {"configured": self.configured, "server": self.server, "source": self.source,
                "used": self.used, "which": self.which}


# ---- reading what servers say ------------------------------------------------------
def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return None


def from_ollama_show(model_info: Mapping[str, Any] | None, parameters: str | None) -> ServerContext | None:
    """Ollama: the Modelfile's num_ctx if it sets one (what runs), capped by the trained context_length."""
    trained = None
    for key, value in (model_info or {}).items():
        if str(key).endswith(".context_length"):
            trained = _positive_int(value) or trained
    configured = None
    for line in (parameters or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "num_ctx":
            configured = _positive_int(parts[1])
    if configured and trained:
        return ServerContext(min(configured, trained), "api/show num_ctx")
    if configured:
        return ServerContext(configured, "api/show num_ctx")
    if trained:
        return ServerContext(trained, "api/show context_length")
    return None


def from_openai_models(entries: list[Mapping[str, Any]], model: str) -> ServerContext | None:
    """vLLM's max_model_len (or llama-server's meta.n_ctx) on the /v1/models entry of `model`."""
    chosen = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    for entry in chosen:
        size = _positive_int(entry.get("max_model_len"))
        if size:
            return ServerContext(size, "v1/models max_model_len")
        meta = entry.get("meta")
        if isinstance(meta, Mapping):
            size = _positive_int(meta.get("n_ctx")) or _positive_int(meta.get("n_ctx_train"))
            if size:
                return ServerContext(size, "v1/models meta.n_ctx")
    return None


def from_llamacpp_props(props: Mapping[str, Any] | None) -> ServerContext | None:
    """llama-server's /props: default_generation_settings.n_ctx (older builds: top-level n_ctx)."""
    if not isinstance(props, Mapping):
        return None
    settings = props.get("default_generation_settings")
    size = _positive_int(settings.get("n_ctx")) if isinstance(settings, Mapping) else None
    size = size or _positive_int(props.get("n_ctx"))
    return ServerContext(size, "props n_ctx") if size else None


@dataclass(frozen=True)
class Refusal:
    """What a 400 about the context revealed."""

    num_ctx: int | None
    prompt_tokens: int | None


def parse_refusal(message: str, body: Mapping[str, Any] | None = None) -> Refusal | None:
    """The context size (and the prompt's real token count) in an over-long request's 400, if stated."""
    body = body or {}
    n_ctx = _positive_int(body.get("n_ctx"))
    prompt = _positive_int(body.get("n_prompt_tokens"))
    m = _MAX_CONTEXT.search(message or "")
    if m:
        n_ctx = n_ctx or int(m.group(1))
    p = _PROMPT_WORDS.search(message or "")
    if p:
        prompt = prompt or int(p.group(1))
    if n_ctx is None and prompt is None:
        return None
    return Refusal(n_ctx, prompt)


_CONTEXT_WORDS = ("length", "exceed", "size", "too long", "maximum", "truncat")


def is_context_refusal(status: int, message: str, code: str | None = None, type_: str | None = None) -> bool:
    """A 400 (or 413) that says the input did not fit (each server words it its own way)."""
    if status not in (400, 413):
        return False
    tags = f"{code or ''} {type_ or ''}".lower()
    if "context" in tags:
        return True
    lowered = (message or "").lower()
    return "context" in lowered and any(w in lowered for w in _CONTEXT_WORDS)


# ---- memory ---------------------------------------------------------------------------
class ContextMemory:
    """Context sizes per (host, model): read this run, or learned from a refusal (those persist).

    `dirty` turns True when a learned size changes, so the owner knows to save.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], ServerContext] = {}
        self.dirty = False

    def get(self, host: str, model: str) -> ServerContext | None:
        return self._known.get((host, model))

    def put(self, host: str, model: str, ctx: ServerContext) -> None:
        if self._known.get((host, model)) != ctx:
            self._known[(host, model)] = ctx
            if ctx.source == LEARNED:
                self.dirty = True

    def learn(self, host: str, model: str, size: int) -> ServerContext:
        ctx = ServerContext(size, LEARNED)
        self.put(host, model, ctx)
        return ctx

    def forget(self, host: str, model: str) -> None:
        if self._known.pop((host, model), None) is not None:
            self.dirty = True

    def merge(self, other: ContextMemory) -> None:
        """Take `other`'s sizes where this memory has none (loading saved state into a live backend's)."""
        for key, ctx in other._known.items():
            self._known.setdefault(key, ctx)

    def to_dict(self) -> dict[str, Any]:
        """Only learned sizes: what a server states is read again each run (it may have been restarted)."""
        learned = [{"host": h, "model": m, "size": c.size} for (h, m), c in self._known.items() if c.source == LEARNED]
        return {"version": STATE_VERSION, "learned": learned}

    @classmethod
    def from_dict(cls, data: Any) -> ContextMemory:
        """Inverse of `to_dict`; malformed entries are dropped (a bad state must not block start-up)."""
        memory = cls()
        entries = data.get("learned") if isinstance(data, Mapping) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping):
                continue
            host, model, size = entry.get("host"), entry.get("model"), _positive_int(entry.get("size"))
            if isinstance(host, str) and isinstance(model, str) and size:
                memory._known[(host, model)] = ServerContext(size, LEARNED)
        return memory
