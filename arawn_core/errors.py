"""Every error arawn expects, in one hierarchy, each with the exit code the CLI uses.

The UI and the CLI catch `ArawnError` (or one of its kinds) and show its
message; anything else is a bug and is reported as one. The older homes of
these classes (`arawn_core.core.UsageError`, `store.repository.NotFound`,
`store.db.DatabaseError`, `store.jsonl.StorageFull`, `config.ConfigError`,
`llm.errors.*`) re-export them, so either import works.

Exit codes: 1 the work failed; 2 bad usage, config or input; 3 the LLM backend
is unreachable. This module imports nothing of arawn: any module may use it.
"""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class ArawnError(Exception):
    """Base of every expected error: `message` is one line for the user, `exit_code` for the CLI."""

    exit_code: int = EXIT_FAILED

    @property
    def message(self) -> str:
        return str(self)


# ---- the user's input ---------------------------------------------------------------

class UsageError(ArawnError):
    """Bad input from the user (unknown workstream, ambiguous title, bad argument, ...)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """Bad configuration: one line, naming the file and the key."""


class NotFound(ArawnError, LookupError):
    """No workstream, session or job with that id."""

    exit_code = EXIT_USAGE


# ---- storage -------------------------------------------------------------------------

class StorageError(ArawnError):
    """The data directory could not be read or written."""


class DatabaseError(StorageError):
    """The index could not be opened or written; names the file."""


class StorageFull(StorageError, OSError):
    """The disk is full: nothing was half-written, retry when space returns.

    An `OSError` too (raised as `StorageFull(errno.ENOSPC, "disk full while writing PATH")`)."""

    def __str__(self) -> str:  # the message alone, without "[Errno 28]"
        return str(self.strerror)


# ---- the LLM backend -------------------------------------------------------------------

class LLMError(ArawnError):
    """Base of every backend error. `transient` errors are retried with backoff."""

    transient: bool = False


class BackendUnavailable(LLMError):
    """Nothing answers at the backend's host (the scheduler pauses job claiming until it does)."""

    transient = True
    exit_code = EXIT_UNREACHABLE

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
        super().__init__(f"LLM request to {host} timed out: no complete reply within {timeout_s:g}s"
                         " (request_timeout_s bounds the whole request, streamed reply included)")


Timeout = LLMTimeout


class BackendError(LLMError):
    """Any other server-side failure. 5xx and broken streams are transient; 4xx are not."""

    def __init__(self, message: str, status_code: int | None = None, transient: bool = True) -> None:
        self.status_code = status_code
        self.transient = transient
        super().__init__(message)


class CommandFailed(ArawnError):
    """A command that ran but could not do what was asked (its own exit code)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
