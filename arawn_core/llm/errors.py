"""Errors a backend raises, each carrying what the user needs to act."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every backend error. `transient` errors are retried with backoff."""

    transient: bool = False


class BackendUnavailable(LLMError):
    transient = True

    def __init__(self, host: str, detail: str = "") -> None:
        self.host = host
        self.detail = detail
        msg = f"LLM backend unreachable at {host}: is `ollama serve` running?"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ModelNotFound(LLMError):
    transient = False

    def __init__(self, model: str, host: str = "") -> None:
        self.model = model
        self.host = host
        where = f" on {host}" if host else ""
        super().__init__(f"model {model!r} not found{where}: run `ollama pull {model}`")


class ContextOverflow(LLMError):
    """The input did not fit the model context (a 400, or a reply showing a filled context)."""

    transient = False

    def __init__(self, detail: str, prompt_tokens: int | None = None, num_ctx: int | None = None) -> None:
        self.prompt_tokens = prompt_tokens
        self.num_ctx = num_ctx
        super().__init__(f"context overflow: {detail}")


class LLMTimeout(LLMError):
    transient = True

    def __init__(self, host: str, timeout_s: float) -> None:
        self.host = host
        self.timeout_s = timeout_s
        super().__init__(f"LLM request to {host} timed out: no complete reply within {timeout_s:g}s"
                         " (request_timeout_s bounds the whole request, streamed reply included)")


class BackendError(LLMError):
    """Any other server-side failure. 5xx and broken streams are transient; 4xx are not."""

    def __init__(self, message: str, status_code: int | None = None, transient: bool = True) -> None:
        self.status_code = status_code
        self.transient = transient
        super().__init__(message)
