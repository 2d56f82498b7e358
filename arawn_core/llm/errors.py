"""Errors a backend raises, each carrying what the user needs to act.

Defined in `arawn_core.errors` (one hierarchy, with exit codes); kept importable from here.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from arawn_core.errors import (  # noqa: F401  (re-exported)
    BackendError,
    BackendUnavailable,
    ContextOverflow,
    LLMError,
    LLMTimeout,
    ModelNotFound,
)

__all__ = ["BackendError", "BackendUnavailable", "ContextOverflow", "LLMError", "LLMTimeout", "ModelNotFound",
           "translated"]


@contextlib.contextmanager
def translated(translate: Callable[[Exception], LLMError | None]) -> Iterator[None]:
    """Re-raise a client's or transport's failure as the LLMError `translate` maps it to (arawn's own
    errors pass through; what it does not know is re-raised as it is). One per backend client."""
    try:
        yield
    except LLMError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
