"""Errors a backend raises, each carrying what the user needs to act."""

from __future__ import annotations


class LLMError(Exception):
    """Base of every backend error. `transient` errors are retried with backoff."""

    transient: bool = False


class BackendUnavailable(LLMError):
    transient = True

    def __init__(self, host: str, detail: str = "", hint: str = "is `ollama serve` running?") -> None:
        self.host = host
        self.detail = detail
        msg = f"LLM backend unreachable at {host}: {hint}" if hint else f"LLM backend unreachable at {host}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ModelNotFound(LLMError):
    transient = False

    def __init__(self, model: str, host: str = "", available: list[str] | None = None) -> None:
        self.model = model
        self.host = host
        self.available = available
        where = f" on {host}" if host else ""
        if available is None:
            super().__init__(f"model {model!r} not found{where}: run `ollama pull {model}`")
        else:  # a server that cannot pull: say what it has, so [llm] model can be set to one of them
            has = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "") if available else "none"
            super().__init__(f"model {model!r} not found{where}: the server has {has}; set [llm] model to one of them")


class ContextOverflow(LLMError):
    """The input did not fit the model context (a 400, or a reply showing a filled context)."""

    transient = False

    def __init__(self, detail: str, prompt_tokens: int | None = None, num_ctx: int | None = None,
                 replan: bool = False) -> None:
        self.prompt_tokens = prompt_tokens
        #: The context the server has, when known (a refusal stating it, or the request's own num_ctx).
        self.num_ctx = num_ctx
        #: True: the request was planned for a larger context than the server's and was not sent;
        #: nothing is wrong with the token estimates, only the plan must use `num_ctx`.
        self.replan = replan
        super().__init__(f"context overflow: {detail}")


class LLMTimeout(LLMError):
    transient = True

    def __init__(self, host: str, timeout_s: float) -> None:
        self.host = host
        self.timeout_s = timeout_s
        super().__init__(f"LLM request to {host} timed out after {timeout_s:g}s")


class BackendError(LLMError):
    """Any other server-side failure. 5xx and broken streams are transient; 4xx are not."""

    def __init__(self, message: str, status_code: int | None = None, transient: bool = True) -> None:
        self.status_code = status_code
        self.transient = transient
        super().__init__(message)
